"""Credentials against a server with authentication on: API keys, tokens
minted over REST and offline (``tether token``), and renewal of short-lived
tokens on the live connection."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from tether_client import ConnectedInfo, ErrorCode, RestClient, TetherError, jwt_expiry

from .conftest import Server, history, make_client, tether_bin

KEY = "app:test-secret-0123456789abcdef"


@pytest.fixture
def auth_server(server_factory: object) -> Server:
    s: Server = server_factory(dev=False, args=["--key", KEY])  # type: ignore[operator]
    return s


async def test_key_auth_with_client_id(auth_server: Server) -> None:
    async with make_client(auth_server.url, key=KEY, client_id="agent-7") as agent:
        info = await agent.wait_connected(10)
        assert info.client_id == "agent-7"
        ch = agent.channel("conversation:keys")
        await ch.publish("hello", name="chat")
        [m] = await history(agent, "conversation:keys")
        assert m.get("client_id") == "agent-7"


async def test_a_wrong_key_fails_for_good(auth_server: Server) -> None:
    async with make_client(auth_server.url, key="app:wrong-secret-0000000000") as c:
        with pytest.raises(TetherError) as err:
            await c.wait_connected(10)
        assert err.value.code == ErrorCode.UNAUTHORIZED
        assert c.state == "failed"
        with pytest.raises(TetherError):
            await c.channel("conversation:x").publish("no")


async def test_offline_token_from_the_cli(auth_server: Server) -> None:
    out = subprocess.run(
        [str(tether_bin()), "token", "--key", KEY, "--client-id", "user-1",
         "--capability", "conversation:user-1=subscribe,publish,history", "--ttl", "600"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    token = out.split()[-1]
    exp = jwt_expiry(token)
    assert exp is not None and 590 < exp - time.time() <= 600
    async with make_client(auth_server.url, token=token) as user:
        assert (await user.wait_connected(10)).client_id == "user-1"
        await user.channel("conversation:user-1").publish("mine")
        with pytest.raises(TetherError) as err:
            await user.channel("conversation:other").publish("not mine")
        assert err.value.code == ErrorCode.FORBIDDEN


async def test_short_lived_tokens_are_renewed_on_the_live_connection(auth_server: Server) -> None:
    minted: list[float] = []
    async with RestClient(auth_server.url) as backend:

        async def auth_callback() -> str:
            body = await backend.mint_token(
                KEY, client_id="user-2", ttl_secs=3,
                capabilities={"conversation:user-2": ["subscribe", "publish", "history"]},
            )
            minted.append(time.time())
            return str(body["token"])

        async with make_client(auth_server.url, auth_callback=auth_callback) as user:
            sockets: list[ConnectedInfo] = []
            user.resumes.add(sockets.append)
            ch = user.channel("conversation:user-2")
            await ch.attach()
            t0 = time.time()
            i = 0
            while time.time() - t0 < 7.5:  # two and a half token lifetimes
                await ch.publish(i)
                i += 1
                await asyncio.sleep(0.1)
            assert len(minted) >= 3, "renewed before each expiry"
            assert len(sockets) == 1, "renewed without reconnecting"
            assert user.state == "connected"
            msgs = await ch.wait_for(lambda m: len(m) == i, 10)
            assert [m["data"] for m in msgs] == list(range(i))
