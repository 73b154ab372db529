"""The examples, run end to end as their own processes against the real
server and ``tether fake-llm``."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tether_client import TetherClient, stream_status

from .conftest import SDK_ROOT, Server, tether_bin

EXAMPLES = SDK_ROOT / "examples"


@pytest.fixture
def fake_llm() -> Iterator[str]:
    """``tether fake-llm`` on a free port: its ``/v1`` base URL."""
    proc = subprocess.Popen(
        [str(tether_bin()), "fake-llm", "--listen", "127.0.0.1:0", "--tokens-per-second", "400", "--tokens", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (http://\S+)", line)
    assert m, f"fake-llm printed {line!r}"
    yield m.group(1).rstrip("/") + "/v1"
    proc.terminate()
    proc.wait(10)


async def run_example(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / args[0]), *args[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def read_until(proc: asyncio.subprocess.Process, marker: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    async def read() -> str:
        out = ""
        while marker not in out:
            line = await proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"example exited: {out}{err.decode()}")
            out += line.decode()
        return out
    return await asyncio.wait_for(read(), timeout)


@pytest.mark.parametrize("llm_client", ["httpx", "openai"])
async def test_openai_agent_answers_a_prompt(server: Server, client: TetherClient, fake_llm: str, llm_client: str) -> None:
    if llm_client == "openai" and importlib.util.find_spec("openai") is None:
        pytest.skip("the openai package is not installed")
    channel = f"conversation:{llm_client}"
    proc = await run_example(
        "openai_agent.py", "--tether", server.url, "--llm", fake_llm, "--channel", channel,
        "--client", llm_client, "--once",
    )
    try:
        await read_until(proc, "agent ready")
        ch = client.channel(channel)
        ack = await ch.publish("Hello agent", name="prompt")
        msgs = await ch.wait_for(lambda m: len(m) == 2 and stream_status(m[1]) == "complete", 20)
        answer = msgs[1]
        assert answer.get("extras", {}).get("prompt") == ack.serial
        assert answer["data"] == "You said: Hello agent. " + " ".join(f"t{i}" for i in range(1, 21))
        await read_until(proc, "answered")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_multi_agent_example(server: Server, client: TetherClient, fake_llm: str) -> None:
    proc = await run_example(
        "multi_agent.py", "--tether", server.url, "--llm", fake_llm, "--conversation", "trip:test",
        "--ask", "three days in Lisbon",
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert "[flights] You said: You book flights. Suggest flights for: three days in Lisbon." in text
    assert "[hotels] You said: You book hotels. Suggest hotels for: three days in Lisbon." in text
    assert "[coordinator] You said: Summarise: flights: " in text
    history = [m async for m in client.channel("trip:test").history(direction="forwards")]
    agents = [m.get("extras", {}).get("agent") for m in history]
    assert agents[0] is None and sorted(a for a in agents[1:3] if a) == ["flights", "hotels"]
    assert agents[3] == "coordinator" and all(stream_status(m) == "complete" for m in history[1:])
