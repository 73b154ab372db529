"""One WebSocket to the server, kept alive: reconnect with exponential
backoff and jitter, detection of a silent (dead) server through the
``heartbeat`` frames, and request/reply correlation by ``req`` so many
requests are in flight at once (the server applies and answers one
connection's frames in order, which is what makes pipelining safe).

**Connection resume.** The ``connected`` frame gives a ``connection_id``
and a ``resume_key``. After a drop, the first frame on the next socket is
``resume`` (with every channel's position); on ``resumed`` the socket *is*
the old connection again: the server kept its presence and exactly-once
state and re-attaches its channels by itself. Every publish and mutation
carries ``seq``, a per-connection counter, and those in flight at the drop
are re-sent with the same ``seq``, so each is applied exactly once. If the
resume is refused (41001, or too late), the socket is a new connection:
the owner re-attaches by position and re-enters presence, and in-flight
requests are settled by their :class:`Policy`.

**Token renewal.** Before the token expires, a fresh one from the
``auth_callback`` is sent as an ``auth`` frame on the live connection;
attachments continue. If the server closes with 4005 (expired), the token
is renewed and the next socket resumes.

The wire handling mirrors sdk/typescript/src/connection.ts, so both SDKs
behave the same under the same failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .auth import Auth
from .errors import ErrorCode, TetherError
from .pending import Backoff, Pending, Policy
from .rest import http_base
from .types import ConnectedInfo, ConnectionState

log = logging.getLogger("tether_client")

#: Close codes after which re-sending the same frames would fail the same way.
_CLIENT_FAULT_CLOSE = frozenset({4000, 4009})
#: The credential was refused (4003) or is forbidden (4004).
_AUTH_CLOSE = frozenset({4003, 4004})
_EXPIRED_CLOSE = 4005


@dataclass
class _Session:
    """What resumes the connection on the next socket."""

    connection_id: str
    resume_key: str
    ttl: float
    dropped_at: float | None = None


FrameHandler = Callable[[dict[str, Any]], None]
ConnectedHandler = Callable[[ConnectedInfo], None]
StateHandler = Callable[[ConnectionState], None]
ErrorHandler = Callable[[TetherError], None]
PositionsSource = Callable[[], dict[str, str]]


class Connection:
    """A self-healing, resumable WebSocket with pipelined requests. Create
    it with its callbacks, :meth:`start` it, :meth:`close` it."""

    def __init__(
        self,
        url: str,
        auth: Auth,
        *,
        on_frame: FrameHandler,
        on_connected: ConnectedHandler,
        on_state: StateHandler,
        on_error: ErrorHandler,
        positions: PositionsSource,
        backoff: Backoff = Backoff(),
        connect_timeout: float = 15.0,
        silence_timeout: float | None = None,
        rollup_ms: int | None = None,
    ) -> None:
        self._url = url
        self._auth = auth
        self._on_frame = on_frame
        self._on_connected = on_connected
        self._on_state = on_state
        self._on_error = on_error
        self._positions = positions
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._silence_override = silence_timeout
        self._rollup_ms = rollup_ms
        self._state: ConnectionState = "initialized"
        self._ws: ClientConnection | None = None
        self._sendq: asyncio.Queue[str] | None = None
        self._inflight: dict[int, Pending] = {}
        self._outbox: list[Pending] = []
        #: Written to a socket that dropped; settled once the next socket's
        #: resume succeeds or fails.
        self._limbo: list[Pending] = []
        self._next_req = 1
        self._writes = 0
        self._seq = 0
        self._session: _Session | None = None
        self._fresh: dict[str, Any] | None = None
        self._resume_req: int | None = None
        self._socket_error: TetherError | None = None
        self._failure: TetherError | None = None
        self._info: ConnectedInfo | None = None
        self._silence = connect_timeout
        self._runner: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._connected_event = asyncio.Event()

    @property
    def state(self) -> ConnectionState:
        """``initialized``, ``connecting``, ``connected``, ``disconnected``
        (waiting to reconnect), ``closed`` or ``failed`` (credential refused
        and nothing to renew it with)."""
        return self._state

    @property
    def info(self) -> ConnectedInfo | None:
        """The current connection, while connected."""
        return self._info if self._state == "connected" else None

    @property
    def failure(self) -> TetherError | None:
        """Why the connection failed for good, in state ``failed``."""
        return self._failure

    def start(self) -> None:
        """Starts connecting (idempotent)."""
        if self._runner is None and self._state == "initialized":
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def wait_connected(self) -> ConnectedInfo:
        """Waits until a socket is usable (raises if the connection failed
        for good or was closed)."""
        self.start()
        while True:
            if self._state == "connected" and self._info is not None:
                return self._info
            if self._state in ("closed", "failed"):
                raise self._failure or TetherError(ErrorCode.CLIENT_CLOSED, "client closed")
            self._connected_event.clear()
            await self._connected_event.wait()

    def request(
        self, frame: dict[str, Any], policy: Policy, idempotent: bool = False
    ) -> asyncio.Future[dict[str, Any]]:
        """Sends ``frame`` with a fresh ``req`` and returns a future of the
        server's reply (``ack``, ``attached``, ``detached``, ``pong``, ``ok``,
        ``authorized``); an ``error`` reply fails it with a TetherError.

        The frame is queued at once (not when the future is awaited), so
        several requests made in a row are pipelined."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending = Pending(frame, policy, idempotent, future)
        if self._state == "closed":
            pending.settle(None, TetherError(ErrorCode.CLIENT_CLOSED, "client closed"))
        elif self._state == "failed":
            pending.settle(None, self._failure or TetherError(ErrorCode.UNAUTHORIZED, "connection failed"))
        elif self._state == "connected":
            # Attaches may overtake queued mutations (order between them does
            # not matter); everything else keeps its place behind the queue.
            if policy is Policy.TRANSIENT or not self._outbox:
                self._write(pending)
            else:
                self._outbox.append(pending)
        elif policy is Policy.TRANSIENT:
            pending.settle(None, TetherError(ErrorCode.NETWORK_ERROR, "not connected"))
        else:
            self._outbox.append(pending)
            self.start()
        return future

    async def close(self) -> None:
        """Closes for good: no reconnect; pending requests fail with
        ``CLIENT_CLOSED``. The close is clean (1000), so the server drops the
        connection's presence at once and forgets it."""
        if self._state == "closed":
            return
        self._set_state("closed")
        self._connected_event.set()
        for task in (self._renewer, self._runner):
            if task is not None:
                task.cancel()
        ws = self._ws
        self._ws = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "client closed"), 2.0)
        for task in (self._renewer, self._runner):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        self._reject_all(TetherError(ErrorCode.CLIENT_CLOSED, "client closed"))

    # ---- the socket loop ---------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        #: Consecutive attempts that ended before ``connected``.
        failed_attempts = 0
        while self._state not in ("closed", "failed"):
            self._set_state("connecting")
            if failed_attempts >= 2:
                # Attempts that never got `connected` may be a refused token.
                self._auth.invalidate()
            close_code, got_connected = await self._one_socket()
            if self._state in ("closed", "failed"):
                return
            was_connected = self._state == "connected"
            failed_attempts = 0 if got_connected else failed_attempts + 1
            self._handle_drop(close_code, was_connected)
            if self._state == "failed":
                return
            if was_connected:
                attempt = 0
            self._set_state("disconnected")
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _one_socket(self) -> tuple[int | None, bool]:
        """Runs one socket to its end: the close code (``None`` for a network
        drop or a connect failure) and whether ``connected`` arrived."""
        try:
            token = await self._auth.token()
        except TetherError as err:
            self._on_error(err)
            return None, False
        try:
            ws = await connect(
                self._ws_url(token),
                open_timeout=self._connect_timeout,
                # The server sends `heartbeat` frames and pings; silence is
                # detected from those (see _silence) rather than client pings.
                ping_interval=None,
                compression=None,
                max_size=16 * 1024 * 1024,
                max_queue=None,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            self._refused(exc)
            return None, False
        except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
            self._on_error(TetherError(ErrorCode.NETWORK_ERROR, f"cannot connect: {exc!r}"))
            return None, False
        if self._state == "closed":
            await ws.close()
            return None, False
        self._ws = ws
        self._fresh = None
        self._resume_req = None
        self._socket_error = None
        self._silence = self._connect_timeout
        sendq: asyncio.Queue[str] = asyncio.Queue()
        self._sendq = sendq
        writer = asyncio.get_running_loop().create_task(self._writer(ws, sendq))
        close_code: int | None = None
        try:
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), self._silence)
                except asyncio.TimeoutError:
                    # The server (or the path to it) is dead: do not wait for
                    # a close handshake that may never complete, and cut the
                    # TCP connection so the server sees a drop, not a clean
                    # close (it keeps the session for our resume).
                    self._on_error(TetherError(ErrorCode.NETWORK_ERROR, "server silent; reconnecting"))
                    ws.transport.abort()
                    break
                try:
                    self._on_data(text)
                except Exception:
                    # An application callback must not take the socket down.
                    log.exception("tether_client: error while handling a frame")
        except ConnectionClosed as exc:
            close_code = exc.rcvd.code if exc.rcvd is not None else None
        finally:
            writer.cancel()
            self._sendq = None
            if self._ws is ws:
                self._ws = None
            self._stop_renewal()
        return close_code, self._fresh is not None or self._state == "connected"

    async def _writer(self, ws: ClientConnection, sendq: asyncio.Queue[str]) -> None:
        """The one writer of a socket, so frames go out in the order queued."""
        try:
            while True:
                await ws.send(await sendq.get())
        except ConnectionClosed:
            pass  # the reader sees the close and handles the drop

    def _refused(self, exc: InvalidStatus) -> None:
        """The upgrade was refused with an HTTP status and a JSON error."""
        res = exc.response
        try:
            body = json.loads(res.body or b"{}")
        except ValueError:
            body = {}
        err = TetherError.from_wire(body.get("error") if isinstance(body, dict) else None, res.status_code)
        if err.code == ErrorCode.PROTOCOL_ERROR:
            err = TetherError(res.status_code * 100, f"upgrade refused: HTTP {res.status_code}", status=res.status_code)
        self._on_error(err)
        if res.status_code in (401, 403):
            if res.status_code == 401 and self._auth.can_renew:
                self._auth.invalidate()
                return
            self._failure = err
            self._reject_all(err)
            self._set_state("failed")
            self._connected_event.set()

    def _ws_url(self, token: str | None) -> str:
        base = http_base(self._url)
        scheme = "wss" if base.startswith("https:") else "ws"
        params = dict(self._auth.query(token))
        if self._rollup_ms is not None:
            params["rollup_ms"] = str(self._rollup_ms)
        query = f"?{urlencode(params)}" if params else ""
        return f"{scheme}:{base.split(':', 1)[1]}/ws{query}"

    # ---- frames ------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        try:
            frame = json.loads(data)
            if not isinstance(frame, dict):
                raise ValueError("not an object")
        except ValueError:
            self._on_error(TetherError(ErrorCode.PROTOCOL_ERROR, "unreadable frame from server"))
            return
        kind = frame.get("type")
        if kind == "connected":
            self._on_hello(frame)
            return
        req = frame.get("req")
        if req is not None and req == self._resume_req:
            self._resume_req = None
            if kind == "resumed":
                self._finish_handshake(frame, None)
            elif kind == "error":
                self._finish_handshake(None, TetherError.from_wire(frame))
            else:
                self._finish_handshake(None, TetherError(ErrorCode.PROTOCOL_ERROR, f"unexpected reply to resume: {kind}"))
            return
        self._on_frame(frame)
        if req is not None:
            pending = self._inflight.pop(req, None)
            if pending is not None:
                if kind == "error":
                    pending.settle(None, TetherError.from_wire(frame))
                else:
                    pending.settle(frame)
        elif kind == "error":
            err = TetherError.from_wire(frame)
            self._socket_error = err
            if err.code == ErrorCode.TOKEN_EXPIRED:
                self._auth.invalidate()
            self._on_error(err)

    def _on_hello(self, frame: dict[str, Any]) -> None:
        self._fresh = frame
        heartbeat = frame.get("heartbeat_ms")
        heartbeat_s = heartbeat / 1000 if isinstance(heartbeat, (int, float)) else 15.0
        self._silence = self._silence_override or heartbeat_s * 2 + 1
        s = self._session
        now = time.monotonic()
        if s is not None and frame.get("resume_key") is not None and now - (s.dropped_at or now) < s.ttl:
            # The resume must be the first frame on the socket: nothing else
            # is written until its reply (requests wait in the outbox).
            req = self._next_req
            self._next_req += 1
            self._resume_req = req
            self._send(
                {
                    "type": "resume",
                    "req": req,
                    "connection_id": s.connection_id,
                    "resume_key": s.resume_key,
                    "positions": self._positions(),
                }
            )
            return
        self._finish_handshake(None, None)

    def _finish_handshake(self, resumed: dict[str, Any] | None, resume_error: TetherError | None) -> None:
        """The socket is usable: as the resumed connection, or a new one."""
        fresh = self._fresh
        if fresh is None:
            return
        ttl_ms = fresh.get("resume_ttl_ms")
        ttl = ttl_ms / 1000 if isinstance(ttl_ms, (int, float)) else 0.0
        limbo = sorted(self._limbo, key=lambda p: p.order or 0)
        self._limbo = []
        requeue: list[Pending] = []
        if resumed is not None:
            self._session = _Session(str(resumed["connection_id"]), str(resumed["resume_key"]), ttl)
            # The same connection: every in-flight request is re-sent,
            # mutations with their original seq, so each applies once.
            requeue.extend(limbo)
        else:
            key = fresh.get("resume_key")
            self._session = _Session(str(fresh["connection_id"]), str(key), ttl) if key is not None else None
            for p in limbo:
                if p.policy is Policy.RESEND or (p.policy is Policy.SEQUENCED and p.idempotent):
                    p.seq = None  # a new connection numbers it afresh
                    requeue.append(p)
                else:
                    why = f" ({resume_error.message})" if resume_error is not None else ""
                    p.settle(
                        None,
                        TetherError(
                            ErrorCode.OUTCOME_UNKNOWN,
                            f"the connection dropped before the reply and could not be resumed{why}; "
                            f"the {p.frame.get('type')} may or may not have been applied",
                        ),
                    )
        self._outbox = requeue + self._outbox
        client_id = fresh.get("client_id")
        heartbeat = fresh.get("heartbeat_ms")
        self._info = ConnectedInfo(
            connection_id=self._session.connection_id if self._session else str(fresh.get("connection_id")),
            client_id=client_id if isinstance(client_id, str) else None,
            heartbeat_ms=heartbeat if isinstance(heartbeat, int) else 15000,
            limits=fresh.get("limits") or {},
            resumed=resumed is not None,
            attachments=list(resumed.get("attachments") or []) if resumed is not None else [],
            resume_error=resume_error,
        )
        self._set_state("connected")
        self._connected_event.set()
        self._on_connected(self._info)
        # Queued requests go after the re-attaches the owner just made.
        while self._state == "connected" and self._outbox:
            self._write(self._outbox.pop(0))
        self._schedule_renewal()

    def _write(self, pending: Pending) -> None:
        if pending.future.done():
            return  # cancelled by its caller before it was sent
        req = self._next_req
        self._next_req += 1
        wire = {**pending.frame, "req": req}
        if pending.policy is Policy.SEQUENCED:
            if pending.seq is None:
                self._seq += 1
                pending.seq = self._seq
            wire["seq"] = pending.seq
        if pending.order is None:
            pending.order = self._writes
            self._writes += 1
        text = json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
        limit = self._info.limits.get("max_frame_bytes") if self._info else None
        if isinstance(limit, int) and len(text) * 3 > limit and len(text.encode()) > limit:
            pending.settle(
                None,
                TetherError(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"frame of {len(text.encode())} bytes is over the server's limit of {limit}",
                ),
            )
            return
        self._inflight[req] = pending
        self._send_text(text)

    def _send(self, frame: dict[str, Any]) -> None:
        self._send_text(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))

    def _send_text(self, text: str) -> None:
        if self._sendq is not None:
            self._sendq.put_nowait(text)

    # ---- drops -------------------------------------------------------------

    def _handle_drop(self, close_code: int | None, was_connected: bool) -> None:
        if self._session is not None and was_connected:
            self._session.dropped_at = time.monotonic()
        socket_error = self._socket_error
        if socket_error is not None and socket_error.code == ErrorCode.RESUME_FAILED:
            # Another socket resumed this connection: leave it to them and
            # start a new one, or the two would keep taking it from each other.
            self._session = None
        if close_code == _EXPIRED_CLOSE or (socket_error is not None and socket_error.code == ErrorCode.TOKEN_EXPIRED):
            self._auth.invalidate()
        client_fault = (
            close_code in _CLIENT_FAULT_CLOSE
            and not (socket_error is not None and socket_error.code == ErrorCode.RESUME_FAILED)
        )
        inflight = sorted(self._inflight.values(), key=lambda p: p.order or 0)
        self._inflight.clear()
        for p in inflight:
            if client_fault:
                p.settle(None, TetherError(ErrorCode.BAD_REQUEST, f"server closed the connection ({close_code}) while this was in flight"))
            elif p.policy in (Policy.SEQUENCED, Policy.RESEND):
                self._limbo.append(p)
            elif p.policy is Policy.AT_MOST_ONCE:
                p.settle(None, TetherError(ErrorCode.OUTCOME_UNKNOWN, "connection dropped before the reply; it may or may not have been applied"))
            else:
                p.settle(None, TetherError(ErrorCode.NETWORK_ERROR, "connection dropped"))
        self._fresh = None
        self._resume_req = None
        if close_code in _AUTH_CLOSE:
            if not self._auth.can_renew:
                self._failure = socket_error or TetherError(
                    ErrorCode.UNAUTHORIZED if close_code == 4003 else ErrorCode.FORBIDDEN,
                    "the server refused the credential",
                )
                self._reject_all(self._failure)
                self._set_state("failed")
                self._connected_event.set()
                return
            self._auth.invalidate()

    def _reject_all(self, err: TetherError) -> None:
        every = [*self._inflight.values(), *self._limbo, *self._outbox]
        self._inflight.clear()
        self._limbo = []
        self._outbox = []
        for p in every:
            p.settle(None, err)

    def _set_state(self, state: ConnectionState) -> None:
        if self._state == state:
            return
        self._state = state
        self._on_state(state)

    # ---- token renewal -----------------------------------------------------

    def _schedule_renewal(self) -> None:
        self._stop_renewal()
        delay = self._auth.renew_delay()
        if delay is not None and self._state == "connected":
            self._renewer = asyncio.get_running_loop().create_task(self._renew_on_live(delay))

    def _stop_renewal(self) -> None:
        if self._renewer is not None and self._renewer is not asyncio.current_task():
            self._renewer.cancel()
        self._renewer = None

    async def _renew_on_live(self, delay: float) -> None:
        """Renews the token and sends it on the live connection; if that
        keeps failing, the server closes with 4005 once it expires and the
        next socket renews and resumes."""
        await asyncio.sleep(delay)
        while self._state == "connected":
            try:
                token = await self._auth.renew()
                if self._state != "connected" or not token:
                    return
                reply = await self.request({"type": "auth", "token": token}, Policy.TRANSIENT)
                self._auth.note_expiry(reply.get("expires_at"))
                break
            except TetherError as err:
                if self._state != "connected":
                    return
                self._on_error(err)
                if err.code == ErrorCode.TOKEN_EXPIRED:
                    self._auth.invalidate()
                await asyncio.sleep(1.0)
        self._renewer = None
        self._schedule_renewal()
