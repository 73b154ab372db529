"""The entry point: one client per server, holding one multiplexed
WebSocket (:class:`Connection`), the channels, and a REST client.

Routing is synchronous and in frame order: an ``attached`` reaches its
channel before the replayed messages after it, which is what lets a channel
clear its view on lost continuity before the current state arrives.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .auth import Auth, AuthCallback
from .channel import Channel
from .connection import Connection
from .pending import Backoff, Policy
from .errors import ErrorCode, TetherError
from .listeners import Listeners
from .rest import RestClient
from .types import Ack, ConnectedInfo, ConnectionState, PresenceAction

T = TypeVar("T")

#: ``EPOCH-SEQUENCE``, 13 and 16 digits.
_SERIAL = re.compile(r"^\d{13}-\d{16}$")


def _chain(source: asyncio.Future[dict[str, Any]], convert: Callable[[dict[str, Any]], T]) -> asyncio.Future[T]:
    """A future of ``convert(reply)``; cancelling it cancels the request
    (which is then not sent, if it was still queued)."""
    out: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def done(src: asyncio.Future[dict[str, Any]]) -> None:
        if out.done():
            return
        if src.cancelled():
            out.cancel()
        elif (err := src.exception()) is not None:
            out.set_exception(err)
        else:
            try:
                out.set_result(convert(src.result()))
            except (KeyError, TypeError, ValueError) as exc:
                out.set_exception(TetherError(ErrorCode.PROTOCOL_ERROR, f"unexpected reply: {exc!r}"))

    def cancelled(o: asyncio.Future[T]) -> None:
        if o.cancelled() and not source.done():
            source.cancel()

    source.add_done_callback(done)
    out.add_done_callback(cancelled)
    return out


def _ack(reply: dict[str, Any]) -> Ack:
    if reply.get("type") != "ack":
        raise ValueError(f"expected ack, got {reply.get('type')}")
    return Ack.from_wire(reply)


class TetherClient:
    """A Tether client. One per server and process::

        async with TetherClient("http://localhost:7400") as client:
            chat = client.channel("conversation:42")
            await chat.attach()
            ack = await chat.publish("hi", name="prompt")

    Credentials: ``token`` (fixed), ``auth_callback`` (returns a fresh
    token, sync or async; called before the current one expires and after
    the server refuses one; the new token is sent on the live connection
    with no reconnect), or ``key`` (``name:secret``, for trusted back ends;
    ``client_id`` names the client it acts for). None against ``--dev``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth_callback: AuthCallback | None = None,
        key: str | None = None,
        client_id: str | None = None,
        rewind: int = 100,
        rollup_ms: int | None = None,
        backoff: Backoff = Backoff(),
        connect_timeout: float = 15.0,
        silence_timeout: float | None = None,
    ) -> None:
        self._auth = Auth(token=token, auth_callback=auth_callback, key=key, client_id=client_id)
        self._rest = RestClient(url, auth=self._auth)
        self._rewind = rewind
        self._channels: dict[str, Channel] = {}
        self._state: ConnectionState = "initialized"
        self.states: Listeners[ConnectionState] = Listeners()
        """Every connection state change."""
        self.errors: Listeners[TetherError] = Listeners()
        """Connection-level errors (channel errors go to the channel)."""
        self.resumes: Listeners[ConnectedInfo] = Listeners()
        """Every socket that became usable: ``info.resumed`` tells whether
        it resumed the connection or is a new one (``info.resume_error``)."""
        self._connection = Connection(
            url,
            self._auth,
            on_frame=self._route,
            on_connected=self._on_connected,
            on_state=self._on_state,
            on_error=self.errors.emit,
            positions=self._positions,
            backoff=backoff,
            connect_timeout=connect_timeout,
            silence_timeout=silence_timeout,
            rollup_ms=rollup_ms,
        )

    async def __aenter__(self) -> TetherClient:
        self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def rest(self) -> RestClient:
        """Stateless HTTP calls (history, get message, tokens...)."""
        return self._rest

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self._state

    @property
    def connection_id(self) -> str | None:
        """The connection's id while connected (the ``connection_id`` on
        this client's messages and presence)."""
        info = self._connection.info
        return info.connection_id if info else None

    @property
    def client_id(self) -> str | None:
        """The client id the server knows this connection by."""
        info = self._connection.info
        return info.client_id if info else None

    def connect(self) -> None:
        """Starts connecting (requests made before are queued)."""
        self._connection.start()

    async def wait_connected(self, timeout: float | None = None) -> ConnectedInfo:
        """Connects if needed and waits until a socket is usable."""
        return await asyncio.wait_for(self._connection.wait_connected(), timeout)

    def channel(self, name: str, *, rewind: int | None = None, presence: bool = False) -> Channel:
        """The channel named ``name`` (one object per name, so listeners and
        the view are shared). ``presence=True`` attaches with presence."""
        ch = self._channels.get(name)
        if ch is None:
            ch = Channel(name, self, self._rewind)
            self._channels[name] = ch
        if rewind is not None:
            ch._rewind = rewind
        if presence:
            ch._set_presence()
        return ch

    async def ping(self) -> float:
        """Round trip to the server in seconds."""
        t0 = time.monotonic()
        await self._connection.request({"type": "ping"}, Policy.TRANSIENT)
        return time.monotonic() - t0

    async def close(self) -> None:
        """Closes for good (cleanly: the server drops this connection's
        presence at once). Pending requests fail with ``CLIENT_CLOSED``."""
        await self._connection.close()
        for ch in self._channels.values():
            ch._on_closed()
        await self._rest.aclose()

    # ---- ChannelHost -------------------------------------------------------

    def _closed(self) -> bool:
        return self._state == "closed"

    def _attach(self, channel: Channel) -> None:
        if self._connection.state == "connected":
            self._send_attach(channel)
        else:
            self._connection.start()

    async def _detach(self, channel: Channel) -> None:
        if self._connection.state != "connected":
            return
        try:
            await self._connection.request({"type": "detach", "channel": channel.name}, Policy.TRANSIENT)
        except TetherError:
            pass  # a dropped connection detaches too

    def _mutate(self, frame: dict[str, Any], idempotent: bool) -> asyncio.Future[Ack]:
        # Sequenced: exactly once across a connection resume; a publish with
        # an id is also safe to re-send on a new connection.
        return _chain(self._connection.request(frame, Policy.SEQUENCED, idempotent), _ack)

    def _presence(self, channel: str, action: PresenceAction, data: Any) -> asyncio.Future[None]:
        frame: dict[str, Any] = {"type": "presence", "channel": channel, "action": action}
        if action != "leave":
            frame["data"] = data
        return _chain(self._connection.request(frame, Policy.RESEND), lambda _: None)

    def _ephemeral(self, channel: str, message: dict[str, Any]) -> asyncio.Future[None]:
        frame = {"type": "publish", "channel": channel, "ephemeral": True, "message": message}
        return _chain(self._connection.request(frame, Policy.AT_MOST_ONCE), lambda _: None)

    # ---- connection events -------------------------------------------------

    def _on_state(self, state: ConnectionState) -> None:
        if self._state == "closed":
            return
        self._state = state
        if state == "disconnected":
            for ch in self._channels.values():
                ch._on_suspended()
        self.states.emit(state)

    def _positions(self) -> dict[str, str]:
        """Every channel's last position, for a connection resume (only
        well-formed serials: one bad position fails the whole resume)."""
        return {
            name: ch.position
            for name, ch in self._channels.items()
            if ch.position is not None and _SERIAL.match(ch.position)
        }

    def _on_connected(self, info: ConnectedInfo) -> None:
        """A socket is ready. Resumed: the server re-attached the channels it
        had from our positions and kept presence, so only the others are
        attached (and unwanted ones detached). New: attach every wanted
        channel by position and re-enter presence."""
        resumed = {a.get("channel"): a for a in info.attachments} if info.resumed else {}
        for ch in self._channels.values():
            r = resumed.get(ch.name)
            if r is None:
                if ch._is_wanted:
                    self._send_attach(ch)
            elif not ch._is_wanted:
                self._send_detach(ch.name)
            elif ch.position is None or (ch._presence_enabled and r.get("presence") is False):
                # Dropped before its first position (the server would replay
                # the whole log), or re-attached without presence: again.
                self._send_attach(ch)
        for name in resumed:
            if isinstance(name, str) and name not in self._channels:
                self._send_detach(name)
        if not info.resumed:
            for ch in self._channels.values():
                ch.presence._reenter()
        self.resumes.emit(info)

    def _send_detach(self, channel: str) -> None:
        fut = self._connection.request({"type": "detach", "channel": channel}, Policy.TRANSIENT)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _send_attach(self, ch: Channel) -> None:
        frame = {"type": "attach", "channel": ch.name, **ch._resume_params()}
        fut = self._connection.request(frame, Policy.TRANSIENT)

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            if f.cancelled():
                return
            err = f.exception()
            if isinstance(err, TetherError) and err.code not in (ErrorCode.NETWORK_ERROR, ErrorCode.CLIENT_CLOSED):
                ch._on_attach_failed(err)

        fut.add_done_callback(done)

    def _route(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        name = frame.get("channel")
        ch = self._channels.get(name) if isinstance(name, str) else None
        if ch is None:
            return
        if kind == "attached":
            error = frame.get("error")
            ch._on_attached(frame.get("continuity", "new"), TetherError.from_wire(error) if error else None)
        elif kind == "message":
            ch._on_message(frame["message"], frame.get("position"))
        elif kind == "synced":
            ch._on_synced(frame.get("position"))
        elif kind == "detached" and frame.get("req") is None:
            error = frame.get("error")
            ch._on_detached(TetherError.from_wire(error) if error else None)
        elif kind == "presence-sync":
            ch.presence._on_sync(frame.get("members") or [], frame.get("complete") is not False)
        elif kind == "presence":
            ch.presence._on_event(frame["action"], frame["member"])
        elif kind == "ephemeral":
            ch._on_ephemeral(frame["message"])
        elif kind == "error" and frame.get("req") is None:
            ch._report(TetherError.from_wire(frame))
