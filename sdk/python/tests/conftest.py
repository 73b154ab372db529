"""Test harness: the REAL server binary, and a TCP proxy to cut.

It builds nothing: it runs ``$TETHER_BIN`` (default
``../../target/debug/tether`` relative to sdk/python) as ``tether serve
--dev --listen 127.0.0.1:0 --data-dir <tmp>`` and reads the bound address
from the stdout line ``listening on http://127.0.0.1:PORT``. A server can be
killed (``SIGKILL``) and started again on the same port and data directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether_client import Backoff, Message, TetherClient

SDK_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = SDK_ROOT.parent.parent

#: Mutations per credential: every --dev client is the same credential, and
#: these tests stream faster than the default budget allows.
FAST_CONFIG = "publish_rate_per_sec = 1000000\npublish_burst = 1000000\n"


def tether_bin() -> Path:
    """The server binary under test."""
    env = os.environ.get("TETHER_BIN")
    path = Path(env).resolve() if env else (SDK_ROOT / "../../target/debug/tether").resolve()
    if not path.exists():
        pytest.fail(f"tether binary not found at {path}: build it (cargo build --bin tether) or set TETHER_BIN")
    return path


class Server:
    """One ``tether serve`` process with its own data directory."""

    def __init__(self, tmp: Path, *, dev: bool = True, args: list[str] | None = None, config: str = FAST_CONFIG) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.dev = dev
        self.args = args or []
        self.config_file = tmp / "tether.toml"
        self.config_file.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.listen = "127.0.0.1:0"
        self.url = ""
        self.stderr: list[str] = []

    def start(self) -> Server:
        """Starts it (on the port it had, if it ran before)."""
        cmd = [str(tether_bin()), "serve", "--listen", self.listen, "--data-dir", str(self.data_dir)]
        cmd += ["--config", str(self.config_file)]
        if self.dev:
            cmd.append("--dev")
        cmd += self.args
        env = {**os.environ, "TETHER_LOG": os.environ.get("TETHER_LOG", "warn")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        found: list[str] = []
        ready = threading.Event()

        def read_stdout(stream: Any) -> None:
            for raw in stream:
                m = re.search(r"listening on (http://\S+)", raw.decode(errors="replace"))
                if m and not found:
                    found.append(m.group(1).rstrip("/"))
                    ready.set()
            ready.set()

        def read_stderr(stream: Any) -> None:
            for raw in stream:
                self.stderr.append(raw.decode(errors="replace"))

        threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=read_stderr, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(30) or not found:
            self.kill()
            raise RuntimeError(f"server did not start: {''.join(self.stderr)[-2000:]}")
        self.url = found[0]
        self.listen = self.url.removeprefix("http://")
        return self

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def kill(self) -> None:
        """``kill -9``: no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Makes servers (``factory(dev=..., args=..., config=...)``), stopped at the end."""
    servers: list[Server] = []

    def make(**kwargs: Any) -> Server:
        sub = tmp_path / f"s{len(servers)}"
        sub.mkdir()
        s = Server(sub, **kwargs)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(server_factory: Any) -> Server:
    """A fresh ``--dev`` server."""
    s: Server = server_factory()
    return s


def make_client(url: str, **kwargs: Any) -> TetherClient:
    """A client for tests: every fragment delivered (no roll-up), fast reconnects."""
    kwargs.setdefault("rollup_ms", 0)
    kwargs.setdefault("backoff", Backoff(initial=0.02, maximum=0.25))
    return TetherClient(url, **kwargs)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[TetherClient]:
    """A connected client of ``server``."""
    async with make_client(server.url) as c:
        await c.wait_connected(10)
        yield c


async def history(client: TetherClient, channel: str) -> list[Message]:
    """Every message of ``channel`` from REST history, oldest first."""
    return [m async for m in client.channel(channel).history(direction="forwards", limit=1000)]


class Proxy:
    """A TCP proxy in front of the server whose connections can be cut, as
    a network drop would (no close handshake)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        #: While set, new connections are cut at once (the network is down).
        self.refuse = False
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Aborts every open connection; returns how many."""
        pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()
        self.cuts += 1
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pairs.append((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def proxy(server: Server) -> AsyncIterator[Proxy]:
    """A cuttable proxy in front of ``server``."""
    p = await Proxy(server.port).start()
    yield p
    await p.close()


async def eventually(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls ``cond()`` until true, or fails after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
