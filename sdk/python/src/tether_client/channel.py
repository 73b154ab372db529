"""A channel as the application sees it: events in order (callbacks or
``async for``), the folded conversation view, publish and mutate with acks,
ephemeral messages, presence, history, and the conventions (cancel, steer,
handoff, and the agent's ``stream_response``).

The channel owns its resume state: the last ``position`` it received and
the view. Each (re)attach starts from that position (exact resume); when the
server cannot serve it (``continuity: "lost"``) the view is cleared and the
current state follows. The transport is the client's (:class:`ChannelHost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from . import conventions
from .errors import ErrorCode, TetherError
from .listeners import Listeners, Subscription
from .presence import ChannelPresence
from .types import (
    Ack,
    AttachResult,
    Continuity,
    EphemeralMessage,
    Message,
    PresenceAction,
    PresenceMember,
    Serial,
)
from .view import FoldResult, View

if TYPE_CHECKING:
    from .agent import ResponseStream
    from .rest import RestClient

ChannelState = Literal["initialized", "attaching", "attached", "detaching", "detached", "failed"]


class _Unset:
    """Marks an argument that was not given (``None`` is a value: null data)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class ChannelHost(Protocol):
    """What a channel needs from its client (the WebSocket transport)."""

    @property
    def rest(self) -> RestClient: ...
    def _attach(self, channel: Channel) -> None: ...
    def _detach(self, channel: Channel) -> Awaitable[None]: ...
    def _mutate(self, frame: dict[str, Any], idempotent: bool) -> asyncio.Future[Ack]: ...
    def _presence(self, channel: str, action: PresenceAction, data: Any) -> asyncio.Future[None]: ...
    def _ephemeral(self, channel: str, message: dict[str, Any]) -> asyncio.Future[None]: ...
    def _closed(self) -> bool: ...


def _message_fields(
    data: Any, name: str | None, extras: dict[str, Any] | None, id: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if id is not None:
        out["id"] = id
    if name is not None:
        out["name"] = name
    if data is not UNSET:
        out["data"] = data
    if extras is not None:
        out["extras"] = extras
    return out


class Channel:
    """One named channel of a :class:`TetherClient` (``client.channel(name)``)."""

    def __init__(self, name: str, host: ChannelHost, rewind: int) -> None:
        self.name = name
        self._host = host
        self._rewind = rewind
        self._state: ChannelState = "initialized"
        self._view = View()
        #: Highest version delivered per message: the app never sees an event twice.
        self._seen: dict[Serial, Serial] = {}
        self._position: Serial | None = None
        self._wanted = False
        self._want_presence = False
        self._attach_pending = False
        self._waiters: list[asyncio.Future[AttachResult]] = []
        self._last_attach: AttachResult | None = None
        #: Bumped when the view is reset, so late out-of-band fetches are dropped.
        self._generation = 0
        self._filling: set[Serial] = set()
        self._notify_queued = False
        self._view_waiters: list[tuple[Callable[[list[Message]], bool], asyncio.Future[list[Message]]]] = []
        self.events: Listeners[tuple[Message, Serial | None]] = Listeners()
        """Every event once, with its position (if it carries one)."""
        self.views: Listeners[list[Message]] = Listeners()
        """The view changed (batched per loop iteration): the new message list."""
        self.ephemerals: Listeners[EphemeralMessage] = Listeners()
        """Live-only messages."""
        self.errors: Listeners[TetherError] = Listeners()
        """Errors about this channel that answer no request."""
        self.attaches: Listeners[AttachResult] = Listeners()
        """Every (re)attach with its continuity (``new``, ``resumed``, ``lost``)."""
        self.syncs: Listeners[Serial | None] = Listeners()
        """A (re)attach caught up: what follows is live."""
        self.presence = ChannelPresence(self)
        """Presence of this channel: enter, update, leave, members, subscribe."""

    # ---- state -------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        """Attach lifecycle state."""
        return self._state

    @property
    def position(self) -> Serial | None:
        """The last position received: where a reconnect resumes from."""
        return self._position

    def messages(self) -> list[Message]:
        """The current messages, ordered by serial, with appends folded in
        (the same list object until the view changes; do not mutate it)."""
        return self._view.messages()

    def get(self, serial: Serial) -> Message | None:
        """The current version of one message, if the view holds it."""
        return self._view.get(serial)

    # ---- attach ------------------------------------------------------------

    async def attach(self, *, rewind: int | None = None) -> AttachResult:
        """Starts receiving. With a known position it resumes exactly after
        it; otherwise it attaches fresh with ``rewind`` (default 100) so a
        late joiner sees the conversation so far. Re-attaching after
        reconnects is automatic until :meth:`detach`."""
        if rewind is not None:
            self._rewind = rewind
        if self._host._closed():
            raise TetherError(ErrorCode.CLIENT_CLOSED, "client closed")
        self._wanted = True
        if self._state == "attached" and self._last_attach is not None:
            return self._last_attach
        waiter: asyncio.Future[AttachResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._request_attach()
        return await waiter

    def _request_attach(self) -> None:
        """Sends the attach a moment later, so that everything the app sets
        up in the same step (subscribe, presence) makes one attach."""
        if self._state == "attaching" and self._attach_pending:
            return
        self._set_state("attaching")
        if not self._attach_pending:
            self._attach_pending = True
            asyncio.get_running_loop().call_soon(self._send_pending_attach)

    def _send_pending_attach(self) -> None:
        if self._attach_pending and self._wanted:
            self._host._attach(self)
        self._attach_pending = False

    async def detach(self) -> None:
        """Stops receiving. The view and position are kept, so a later
        attach resumes."""
        self._wanted = False
        self._attach_pending = False
        self.presence._reset()
        self._settle_waiters(TetherError(ErrorCode.NOT_ATTACHED, "detached before the attach completed"))
        if self._state in ("attached", "attaching"):
            self._set_state("detaching")
            try:
                await self._host._detach(self)
            finally:
                if not self._wanted:
                    self._set_state("detached")

    # ---- receiving ---------------------------------------------------------

    def subscribe(self) -> Subscription[Message]:
        """Events in channel order as an async iterator, each delivered once
        even across reconnects and resumes. Attaches if needed. An ``append``
        event's ``data`` is only the fragment (see :meth:`messages`)."""
        sub: Subscription[Message] = Subscription(
            lambda put: self.events.add(lambda pair: put(pair[0]))
        )
        self._ensure_attached()
        return sub

    def on_message(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        """Calls ``callback`` for every event; attaches if needed. Returns an
        unsubscribe."""
        off = self.events.add(lambda pair: callback(pair[0]))
        self._ensure_attached()
        return off

    def on_messages(self, callback: Callable[[list[Message]], None]) -> Callable[[], None]:
        """Calls ``callback`` now with the current messages and again
        whenever they change. Attaches if needed. Returns an unsubscribe."""
        off = self.views.add(callback)
        callback(self._view.messages())
        self._ensure_attached()
        return off

    def ephemeral(self) -> Subscription[EphemeralMessage]:
        """Ephemeral (live-only) messages as an async iterator; attaches."""
        sub = Subscription(self.ephemerals.add)
        self._ensure_attached()
        return sub

    async def wait_for(
        self, predicate: Callable[[list[Message]], bool], timeout: float | None = None
    ) -> list[Message]:
        """Waits until ``predicate(messages)`` holds for the view (attaches
        if needed); ``asyncio.TimeoutError`` after ``timeout`` seconds."""
        self._ensure_attached()
        if predicate(self._view.messages()):
            return self._view.messages()
        waiter: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._view_waiters.append(entry)
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            if entry in self._view_waiters:
                self._view_waiters.remove(entry)

    # ---- publishing and mutating -------------------------------------------

    def publish(
        self,
        data: Any = UNSET,
        *,
        name: str | None = None,
        extras: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> asyncio.Future[Ack]:
        """Publishes a message; the future resolves with the ack once it is
        durable. Sent now (pipelined): await the future when you need the
        ack. An ``id`` is generated when absent, so that a re-send after a
        drop is deduplicated by the server even when the connection cannot
        be resumed (across a resumed connection ``seq`` already makes it
        exactly-once); ``duplicate`` in the ack means the server had it."""
        message = _message_fields(data, name, extras, id if id is not None else uuid.uuid4().hex)
        return self._host._mutate({"type": "publish", "channel": self.name, "message": message}, True)

    def append(
        self, serial: Serial, data: str, *, name: str | None = None, extras: dict[str, Any] | None = None
    ) -> asyncio.Future[Ack]:
        """Appends a string fragment to message ``serial``. Pipelined: call
        it for every token without awaiting. If the connection drops while
        it is in flight it is re-sent on the resumed connection with the
        same ``seq`` and applied exactly once; only if the connection cannot
        be resumed does it fail with ``OUTCOME_UNKNOWN`` (80001) rather than
        risk a double append."""
        frame = {"type": "append", "channel": self.name, "serial": serial, "data": data}
        frame.update(_message_fields(UNSET, name, extras, None))
        return self._host._mutate(frame, False)

    def update(
        self,
        serial: Serial,
        *,
        data: Any = UNSET,
        name: str | None = None,
        extras: dict[str, Any] | None = None,
        description: str | None = None,
        metadata: Any = UNSET,
    ) -> asyncio.Future[Ack]:
        """Makes a new version of message ``serial``: ``name`` and ``data``
        replace, ``extras`` keys merge one level deep (``None`` removes a key)."""
        frame: dict[str, Any] = {"type": "update", "channel": self.name, "serial": serial}
        frame.update(_message_fields(data, name, extras, None))
        if description is not None:
            frame["description"] = description
        if metadata is not UNSET:
            frame["metadata"] = metadata
        return self._host._mutate(frame, False)

    def delete(
        self, serial: Serial, *, description: str | None = None, metadata: Any = UNSET
    ) -> asyncio.Future[Ack]:
        """Replaces message ``serial`` with a tombstone (``data: null``)."""
        frame: dict[str, Any] = {"type": "delete", "channel": self.name, "serial": serial}
        if description is not None:
            frame["description"] = description
        if metadata is not UNSET:
            frame["metadata"] = metadata
        return self._host._mutate(frame, False)

    def publish_ephemeral(
        self, data: Any = UNSET, *, name: str | None = None, extras: dict[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Publishes a live-only message to the channel's current
        subscribers: never stored, never replayed, not re-sent after a drop.
        For typing indicators and "calling tool X" ticks."""
        return self._host._ephemeral(self.name, _message_fields(data, name, extras, None))

    # ---- conventions -------------------------------------------------------

    def cancel(self, serial: Serial) -> asyncio.Future[Ack]:
        """Asks the agent to stop response ``serial``. The server marks it
        ``cancelled`` right behind the cancel, so the agent's next append is
        refused (40901) even if it does not watch the channel."""
        return self.publish(name=conventions.CANCEL, extras={"target": serial})

    def steer(self, serial: Serial, instruction: Any) -> asyncio.Future[Ack]:
        """Gives the agent a new instruction about response ``serial``."""
        return self.publish(instruction, name=conventions.STEER, extras={"target": serial})

    def claim(self) -> asyncio.Future[Ack]:
        """An operator takes the conversation over (needs ``operator``)."""
        return self.publish(name=conventions.HANDOFF, extras={"action": "claim"})

    def release(self) -> asyncio.Future[Ack]:
        """An operator hands the conversation back (needs ``operator``)."""
        return self.publish(name=conventions.HANDOFF, extras={"action": "release"})

    def stream_response(
        self,
        *,
        name: str = "response",
        extras: dict[str, Any] | None = None,
        data: str = "",
        id: str | None = None,
        max_in_flight: int = 512,
    ) -> ResponseStream:
        """Streams one response message, for an agent::

            async with channel.stream_response() as r:
                async for chunk in llm:
                    await r.append(chunk)

        Ends it ``complete`` when the block ends, ``error`` on an exception,
        and stops it when a ``cancel`` for it arrives (``r.append`` raises
        :class:`ResponseCancelled`, which the block absorbs)."""
        from .agent import ResponseStream

        return ResponseStream(self, name=name, extras=extras, data=data, id=id, max_in_flight=max_in_flight)

    # ---- reading over REST -------------------------------------------------

    def history(self, **options: Any) -> AsyncIterator[Message]:
        """Every message of the history (current versions), paged lazily:
        ``async for m in ch.history(direction="forwards")``. Options:
        ``limit`` (page size), ``direction``, ``start``/``end``,
        ``from_time``/``to_time``, ``cursor``."""
        return self._host.rest.history(self.name, **options)

    async def message(self, serial: Serial) -> Message:
        """The current version of one message, from the server."""
        return await self._host.rest.message(self.name, serial)

    async def versions(self, serial: Serial) -> list[Message]:
        """Every version of a message, oldest first."""
        return await self._host.rest.versions(self.name, serial)

    # ---- called by the client and by presence ------------------------------

    @property
    def _is_wanted(self) -> bool:
        return self._wanted

    @property
    def _presence_enabled(self) -> bool:
        return self._want_presence

    def _resume_params(self) -> dict[str, Any]:
        """Where the attach being sent starts."""
        self._attach_pending = False
        params: dict[str, Any] = (
            {"from": self._position} if self._position is not None else {"rewind": self._rewind}
        )
        if self._want_presence:
            params["presence"] = True
        return params

    def _set_presence(self) -> None:
        """Deliver presence whenever attached (does not attach by itself)."""
        if self._want_presence:
            return
        self._want_presence = True
        if self._wanted and not self._attach_pending and self._state in ("attached", "attaching"):
            self._host._attach(self)

    def _enable_presence(self) -> None:
        if self._host._closed():
            return
        self._set_presence()
        self._ensure_attached()

    def _send_presence(self, action: PresenceAction, data: Any) -> asyncio.Future[None]:
        return self._host._presence(self.name, action, data)

    async def _fetch_presence(self) -> list[PresenceMember]:
        return await self._host.rest.presence(self.name)

    def _report(self, err: TetherError) -> None:
        self.errors.emit(err)

    def _on_suspended(self) -> None:
        self.presence._suspend()
        if self._wanted and self._state == "attached":
            self._set_state("attaching")

    def _on_attached(self, continuity: Continuity, error: TetherError | None) -> None:
        if continuity == "lost":
            self._reset()
        result = AttachResult(continuity, error)
        self._last_attach = result
        if self._wanted:
            self._set_state("attached")
        self.attaches.emit(result)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(result)

    def _on_attach_failed(self, err: TetherError) -> None:
        if err.code == ErrorCode.INVALID_SERIAL and self._position is not None:
            # A corrupt position: start over rather than fail forever.
            self._reset()
            self._host._attach(self)
            return
        self._wanted = False
        self._set_state("failed")
        self._settle_waiters(err)
        self.errors.emit(err)

    def _on_detached(self, error: TetherError | None) -> None:
        """The server detached us without being asked."""
        if self._state == "detaching":
            return
        self._wanted = False
        self.presence._reset()
        self._set_state("detached")
        self._settle_waiters(error or TetherError(ErrorCode.NOT_ATTACHED, "detached by the server"))

    def _on_closed(self) -> None:
        self._settle_waiters(TetherError(ErrorCode.CLIENT_CLOSED, "client closed"))
        self._set_state("detached")

    def _on_message(self, event: Message, position: Serial | None) -> None:
        serial = event["serial"]
        version = event["version"]["serial"]
        seen = self._seen.get(serial)
        fresh = seen is None or seen < version
        folded = self._view.apply(event)
        if fresh:
            self._seen[serial] = version
        if position is not None:
            self._position = position
        if folded is FoldResult.APPLIED:
            self._queue_notify()
        elif folded is FoldResult.ORPHAN:
            self._fill(serial)
        if fresh:
            self.events.emit((event, position))

    def _on_synced(self, position: Serial | None) -> None:
        if position is not None:
            self._position = position
        self.syncs.emit(position)

    def _on_ephemeral(self, message: EphemeralMessage) -> None:
        self.ephemerals.emit(message)

    # ---- internals ---------------------------------------------------------

    def _ensure_attached(self) -> None:
        if self._host._closed():
            return
        self._wanted = True
        if self._state not in ("attached", "attaching"):
            self._request_attach()

    def _reset(self) -> None:
        self._generation += 1
        self._view.clear()
        self._seen.clear()
        self._position = None
        self._queue_notify()

    def _fill(self, serial: Serial) -> None:
        """Fetches a message the view only has fragments of (it started
        before we attached), so the view shows it whole."""
        if serial in self._filling:
            return
        self._filling.add(serial)
        generation = self._generation

        async def fetch() -> None:
            try:
                for _ in range(3):
                    message = await self._host.rest.message(self.name, serial)
                    if generation != self._generation or serial in self._view:
                        return
                    if self._view.fill(message):
                        self._queue_notify()
                        return
            except TetherError:
                pass  # a later whole event inserts it
            finally:
                self._filling.discard(serial)

        asyncio.get_running_loop().create_task(fetch())

    def _queue_notify(self) -> None:
        if self._notify_queued:
            return
        self._notify_queued = True
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_queued = False
        messages = self._view.messages()
        self.views.emit(messages)
        for predicate, waiter in list(self._view_waiters):
            if not waiter.done() and predicate(messages):
                waiter.set_result(messages)

    def _settle_waiters(self, err: TetherError) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_exception(err)
                with contextlib.suppress(BaseException):
                    w.exception()  # retrieved: an unawaited attach must not log

    def _set_state(self, state: ChannelState) -> None:
        self._state = state

