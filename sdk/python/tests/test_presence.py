"""Presence (enter, update, leave, members, subscribe; no flicker across a
resumed drop), ephemeral messages and history iteration."""

from __future__ import annotations

import asyncio

from tether_client import PresenceEvent, TetherClient

from .conftest import Proxy, Server, eventually, history, make_client


async def test_presence_enter_update_leave(server: Server, client: TetherClient) -> None:
    channel = "conversation:presence"
    watcher = client.channel(channel)
    events: list[PresenceEvent] = []
    watcher.presence.on_change(events.append)
    assert await watcher.presence.wait_synced(10) == []
    async with make_client(server.url) as agent:
        ach = agent.channel(channel)
        await ach.presence.enter({"role": "agent", "status": "idle"})
        await eventually(lambda: len(watcher.presence.members()) == 1, 10, "enter seen")
        [member] = watcher.presence.members()
        assert member["connection_id"] == agent.connection_id
        assert member.get("data") == {"role": "agent", "status": "idle"}
        await ach.presence.update({"role": "agent", "status": "thinking"})
        await eventually(lambda: len(events) == 2, 10, "update seen")
        assert watcher.presence.members()[0].get("data") == {"role": "agent", "status": "thinking"}
        assert [m["connection_id"] for m in await watcher.presence.fetch()] == [agent.connection_id]
        await ach.presence.leave()
        await eventually(lambda: watcher.presence.members() == [], 10, "leave seen")
    assert [(e.action, e.from_sync) for e in events] == [("enter", False), ("update", False), ("leave", False)]


async def test_presence_does_not_flicker_across_a_resumed_drop(
    server: Server, proxy: Proxy, client: TetherClient
) -> None:
    channel = "conversation:flicker"
    watcher = client.channel(channel)
    events: list[PresenceEvent] = []
    watcher.presence.on_change(events.append)
    await watcher.presence.wait_synced(10)
    async with make_client(proxy.url) as agent:
        await agent.channel(channel).presence.enter({"status": "idle"})
        await eventually(lambda: len(events) == 1, 10, "enter seen")
        resumed = asyncio.Event()
        agent.resumes.add(lambda info: resumed.set() if info.resumed else None)
        proxy.cut()
        await asyncio.wait_for(resumed.wait(), 10)
        await agent.channel(channel).presence.update({"status": "back"})
        await eventually(lambda: len(events) == 2, 10, "update after resume")
    assert [e.action for e in events[:2]] == ["enter", "update"], "no leave/enter flicker"


async def test_ephemeral_is_live_only(server: Server, client: TetherClient) -> None:
    channel = "conversation:ephemeral"
    sub = client.channel(channel).ephemeral()
    await client.channel(channel).attach()
    async with make_client(server.url) as agent:
        ach = agent.channel(channel)
        await ach.publish_ephemeral({"tool": "search"}, name="tool")
        got = await sub.get(10)
        assert got.get("name") == "tool" and got.get("data") == {"tool": "search"}
        assert "serial" not in got
    sub.close()
    assert await history(client, channel) == []


async def test_history_pages_lazily_both_directions(client: TetherClient) -> None:
    ch = client.channel("chat:history")
    await asyncio.gather(*(ch.publish(i) for i in range(250)))
    forwards = [m["data"] async for m in ch.history(direction="forwards", limit=100)]
    assert forwards == list(range(250))
    backwards = [m["data"] async for m in ch.history(limit=100)]
    assert backwards == list(reversed(range(250)))
    pages = [len(p) async for p in client.rest.history_pages("chat:history", limit=100)]
    assert pages == [100, 100, 50]
    first = [m async for m in ch.history(direction="forwards", limit=10)]
    assert first[0]["serial"] < first[-1]["serial"]
    bounded = [m["data"] async for m in ch.history(direction="forwards", start=first[3]["serial"], end=first[5]["serial"])]
    assert bounded == [3, 4, 5]
    info = await client.rest.channel_info("chat:history")
    assert info["position"] >= first[-1]["serial"]
