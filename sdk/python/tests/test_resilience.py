"""Drops and restarts mid-stream: every append is applied exactly once and
the subscriber's folded view equals history."""

from __future__ import annotations

import asyncio

from tether_client import ConnectedInfo, TetherClient

from .conftest import Proxy, Server, eventually, history, make_client

TOKENS = 600


def token(i: int) -> str:
    return f"<{i}>"


async def test_drops_every_50_appends(server: Server, proxy: Proxy) -> None:
    channel = "conversation:drops"
    async with make_client(proxy.url) as agent, make_client(proxy.url) as user:
        resumes: list[ConnectedInfo] = []
        agent.resumes.add(resumes.append)
        uch = user.channel(channel)
        await uch.attach()
        ch = agent.channel(channel)
        ack = await ch.publish("", name="response", extras={"stream": "streaming"})
        acks = []
        for i in range(TOKENS):
            acks.append(ch.append(ack.serial, token(i)))
            if i % 50 == 49:
                # Cut the socket under appends in flight; the next ones are
                # made while it reconnects.
                await eventually(lambda: agent.state == "connected", 10, "connected")
                await asyncio.sleep(0.002)
                assert proxy.cut() >= 1
                await eventually(lambda: agent.state != "connected", 10, "the drop noticed")
        await asyncio.gather(*acks)
        await ch.update(ack.serial, extras={"stream": "complete"})
        want = "".join(token(i) for i in range(TOKENS))
        final = await uch.wait_for(
            lambda m: len(m) == 1 and m[0].get("extras", {}).get("stream") == "complete", 30
        )
        assert final[0]["data"] == want, "each append applied exactly once, in order"
        assert final == await history(agent, channel)
        assert proxy.cuts == TOKENS // 50
        assert sum(1 for r in resumes if r.resumed) >= 5, "the connection was resumed, not replaced"


async def test_server_restart_mid_stream(server: Server) -> None:
    channel = "conversation:restart"
    async with make_client(server.url) as agent, make_client(server.url) as user:
        uch = user.channel(channel)
        await uch.attach()
        ch = agent.channel(channel)
        ack = await ch.publish("", name="response", extras={"stream": "streaming"})
        acks = [ch.append(ack.serial, token(i)) for i in range(200)]
        await asyncio.sleep(0.01)
        server.kill()  # kill -9 with appends in flight
        await eventually(lambda: agent.state == "disconnected", 10, "agent sees the drop")
        acks += [ch.append(ack.serial, token(i)) for i in range(200, 400)]  # queued while down
        server.start()  # same port, same data directory
        await asyncio.wait_for(asyncio.gather(*acks), 30)
        await ch.update(ack.serial, extras={"stream": "complete"})
        want = "".join(token(i) for i in range(400))
        final = await uch.wait_for(
            lambda m: len(m) == 1 and m[0].get("extras", {}).get("stream") == "complete", 30
        )
        assert final[0]["data"] == want
        assert final == await history(agent, channel)


async def test_subscriber_away_misses_nothing(server: Server, proxy: Proxy, client: TetherClient) -> None:
    channel = "chat:away"
    async with make_client(proxy.url, rewind=5) as sub:
        sch = sub.channel(channel)
        await sch.attach()
        await eventually(lambda: sch.position is not None, 5, "a position from synced")
        proxy.cut()
        ch = client.channel(channel)
        for i in range(30):
            await ch.publish(f"while away {i}")
        msgs = await sch.wait_for(lambda m: len(m) == 30, 15)
        assert msgs == await history(client, channel)
