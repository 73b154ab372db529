"""When a connection cannot be resumed: in-flight appends fail with
OUTCOME_UNKNOWN rather than risk a double append, publishes with an id are
re-sent (deduplicated), presence is re-entered and channels re-attach by
position. When a position cannot be served, the view is replaced."""

from __future__ import annotations

import asyncio

import pytest

from tether_client import AttachResult, ConnectedInfo, ErrorCode, TetherError

from .conftest import FAST_CONFIG, Proxy, Server, eventually, history, make_client


async def test_a_refused_resume_falls_back(server_factory: object) -> None:
    server: Server = server_factory(config=FAST_CONFIG + "resume_ttl_ms = 300\n")  # type: ignore[operator]
    proxy = await Proxy(server.port).start()
    channel = "conversation:fallback"
    try:
        async with make_client(server.url) as watcher, make_client(proxy.url) as agent:
            wch = watcher.channel(channel)
            await wch.presence.wait_synced(10)
            ch = agent.channel(channel)
            await ch.attach()
            await ch.presence.enter({"status": "idle"})
            await eventually(lambda: len(wch.presence.members()) == 1, 10, "entered")
            ack = await ch.publish("", name="response", extras={"stream": "streaming"})
            sockets: list[ConnectedInfo] = []
            agent.resumes.add(sockets.append)

            proxy.refuse = True
            appends = [ch.append(ack.serial, "x") for _ in range(50)]
            publish = ch.publish("again", id="p-1")
            proxy.cut()
            await asyncio.sleep(1.0)  # past resume_ttl_ms (and the presence of the dead socket)
            proxy.refuse = False

            assert (await publish).serial > ack.serial, "a publish with an id is re-sent"
            results = await asyncio.gather(*appends, return_exceptions=True)
            unknown = [r for r in results if isinstance(r, TetherError) and r.code == ErrorCode.OUTCOME_UNKNOWN]
            applied = [r for r in results if not isinstance(r, BaseException)]
            assert len(unknown) + len(applied) == 50 and unknown, "unacknowledged appends are not re-sent blindly"
            # Past the TTL the client does not even try: a new connection.
            assert sockets and not sockets[-1].resumed

            # Presence re-entered on the new connection; the channel re-attached by position.
            await eventually(
                lambda: [m["connection_id"] for m in wch.presence.members()] == [agent.connection_id],
                10, "re-entered",
            )
            await ch.publish("after")
            expected = await history(agent, channel)
            await ch.wait_for(lambda m: m == expected, 10)
            assert [m.get("data") for m in expected][1:] == ["again", "after"]
    finally:
        await proxy.close()


async def test_continuity_lost_replaces_the_view(server_factory: object, tmp_path: object) -> None:
    first: Server = server_factory()  # type: ignore[operator]
    channel = "conversation:lost"
    async with make_client(first.url) as writer, make_client(first.url) as reader:
        for i in range(3):
            await writer.channel(channel).publish(f"old {i}")
        rch = reader.channel(channel)
        attaches: list[AttachResult] = []
        rch.attaches.add(attaches.append)
        sockets: list[ConnectedInfo] = []
        reader.resumes.add(sockets.append)
        await rch.wait_for(lambda m: len(m) == 3, 10)
        await eventually(lambda: rch.position is not None, 5, "a position")

        # The same address, a different log (its epoch differs): the
        # reader's position cannot be served.
        first.kill()
        second: Server = server_factory()  # type: ignore[operator]
        second.stop()
        second.listen = first.listen
        second.start()
        await writer.channel(channel).publish("new 0")
        msgs = await rch.wait_for(lambda m: [x.get("data") for x in m] == ["new 0"], 20)
        assert attaches[-1].continuity == "lost"
        assert isinstance(attaches[-1].error, TetherError) and attaches[-1].error.code == ErrorCode.CONTINUITY_LOST
        assert msgs == await history(writer, channel)
        # The new server never knew the connection: the resume was refused.
        assert sockets and not sockets[-1].resumed
        assert isinstance(sockets[-1].resume_error, TetherError)
        assert sockets[-1].resume_error.code == ErrorCode.RESUME_FAILED
    with pytest.raises(TetherError):
        await rch.attach()  # closed client
