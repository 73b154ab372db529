"""Publish, append, update, delete over the WebSocket: acks, pipelining,
and the folded view against REST history."""

from __future__ import annotations

import asyncio

import pytest

from tether_client import ErrorCode, TetherClient, TetherError

from .conftest import Server, history, make_client


async def test_pipelined_appends_fold_into_one_message(client: TetherClient) -> None:
    ch = client.channel("chat:basics")
    await ch.attach()
    ack = await ch.publish("", name="response", extras={"stream": "streaming"})
    acks = [ch.append(ack.serial, f"t{i} ") for i in range(200)]
    done = await asyncio.gather(*acks)
    assert [a.serial for a in done] == [ack.serial] * 200
    versions = [a.version_serial for a in done]
    assert versions == sorted(versions) and len(set(versions)) == 200, "applied in the order sent"
    await ch.update(ack.serial, extras={"stream": "complete"})
    want = "".join(f"t{i} " for i in range(200))
    msgs = await ch.wait_for(lambda m: bool(m) and m[-1].get("extras", {}).get("stream") == "complete", 10)
    assert len(msgs) == 1 and msgs[0]["data"] == want
    assert msgs == await history(client, "chat:basics")


async def test_update_delete_and_refusals(client: TetherClient) -> None:
    ch = client.channel("chat:edit")
    a = await ch.publish("helo", name="chat")
    await ch.update(a.serial, data="hello", description="typo")
    versions = await ch.versions(a.serial)
    assert [v.get("data") for v in versions] == ["helo", "hello"]
    await ch.delete(a.serial)
    with pytest.raises(TetherError) as err:
        await ch.append(a.serial, "more")
    assert err.value.code == ErrorCode.MESSAGE_DELETED
    with pytest.raises(TetherError) as err:
        await ch.append("1764151200000-0000000000000999", "x")
    assert err.value.code == ErrorCode.MESSAGE_NOT_FOUND
    assert (await ch.message(a.serial)).get("data") is None


async def test_publish_with_id_is_idempotent(client: TetherClient) -> None:
    ch = client.channel("chat:idem")
    first = await ch.publish("x", id="m-1")
    again = await ch.publish("x", id="m-1")
    assert again.serial == first.serial and again.duplicate and not first.duplicate


async def test_late_joiner_sees_streaming_message_whole(server: Server, client: TetherClient) -> None:
    ch = client.channel("chat:late")
    ack = await ch.publish("", name="response", extras={"stream": "streaming"})
    await asyncio.gather(*(ch.append(ack.serial, "ab") for _ in range(10)))
    async with make_client(server.url) as late:
        lch = late.channel("chat:late")
        await lch.attach()
        await lch.wait_for(lambda m: len(m) == 1 and m[0].get("data") == "ab" * 10, 10)
        await ch.append(ack.serial, "!")
        msgs = await lch.wait_for(lambda m: m[0].get("data") == "ab" * 10 + "!", 10)
        assert msgs == await history(client, "chat:late")
