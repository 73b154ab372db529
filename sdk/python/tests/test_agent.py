"""The agent helper: ``stream_response`` ends a response complete, error or
cancelled, and a user's cancel reaches the agent's loop as an exception."""

from __future__ import annotations

import asyncio

import pytest

from tether_client import ResponseCancelled, TetherClient, stream_status

from .conftest import Server, history, make_client


async def test_complete_on_exit(client: TetherClient) -> None:
    ch = client.channel("conversation:complete")
    async with ch.stream_response(extras={"model": "m"}) as r:
        for i in range(100):
            await r.append(f"{i},")
    assert r.status == "complete" and not r.cancelled
    [m] = await history(client, "conversation:complete")
    assert m["serial"] == r.serial
    assert m["data"] == "".join(f"{i}," for i in range(100)) == r.text
    assert m.get("extras") == {"role": "assistant", "model": "m", "stream": "complete"}


async def test_error_on_exception(client: TetherClient) -> None:
    ch = client.channel("conversation:error")
    with pytest.raises(RuntimeError, match="model went away"):
        async with ch.stream_response() as r:
            await r.append("partial")
            raise RuntimeError("model went away")
    assert r.status == "error"
    [m] = await history(client, "conversation:error")
    assert m["data"] == "partial"
    assert m.get("extras", {}).get("stream") == "error"
    assert m.get("extras", {}).get("error") == {"message": "model went away"}


async def test_cancel_stops_the_agent_loop(server: Server, client: TetherClient) -> None:
    channel = "conversation:cancel"
    ch = client.channel(channel)
    started = asyncio.Event()
    reached: list[int] = []

    async def agent() -> None:
        async with ch.stream_response() as r:
            for i in range(100_000):
                await r.append(f"{i} ")
                reached.append(i)
                if i == 20:
                    started.set()
                await asyncio.sleep(0.002)  # the model's pace
        assert r.cancelled and r.status == "cancelled"

    async with make_client(server.url) as user:
        uch = user.channel(channel)
        await uch.attach()
        task = asyncio.create_task(agent())
        await asyncio.wait_for(started.wait(), 10)
        response = (await uch.wait_for(lambda m: len(m) == 1, 10))[0]
        await uch.cancel(response["serial"])
        await asyncio.wait_for(task, 10)  # the loop ended by itself, without error
        stopped_at = len(reached)
        final = await history(user, channel)
        assert [m.get("name") for m in final] == ["response", "cancel"]
        assert stream_status(final[0]) == "cancelled"
        assert stopped_at < 1000, "the agent stopped within milliseconds of the cancel"
        # Nothing was appended after the cancel took effect.
        assert final[0]["data"] == "".join(f"{i} " for i in range(len(final[0]["data"].split())))


async def test_cancel_raises_from_append(client: TetherClient) -> None:
    ch = client.channel("conversation:cancel-raise")
    r = ch.stream_response()
    await r.__aenter__()
    await r.append("a")
    await ch.cancel(r.serial)
    with pytest.raises(ResponseCancelled):
        for _ in range(10_000):
            await r.append("b")
            await asyncio.sleep(0.001)
    assert r.cancel_event.is_set()
    assert await r.__aexit__(ResponseCancelled, ResponseCancelled(r.serial), None) is True
    assert r.status == "cancelled"
