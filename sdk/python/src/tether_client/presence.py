"""Presence (docs/presence.md): who is on a channel right now. The member
set is rebuilt from the server's ``presence-sync`` pages (which replace it)
and kept by ``presence`` events (which change it), so :meth:`members` is the
current set while the channel is attached with presence.

Entering is remembered: if the connection is lost and cannot be resumed,
the SDK enters again with the last data by itself (a resumed connection
keeps its presence on the server, so nobody sees a flicker).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .errors import TetherError
from .listeners import Listeners, Subscription
from .types import PresenceAction, PresenceEvent, PresenceMember


class PresenceHost(Protocol):
    """What a :class:`ChannelPresence` needs from its channel."""

    def _send_presence(self, action: PresenceAction, data: Any) -> asyncio.Future[None]: ...
    def _enable_presence(self) -> None: ...
    def _fetch_presence(self) -> Awaitable[list[PresenceMember]]: ...
    def _report(self, err: TetherError) -> None: ...


def _same(a: PresenceMember, b: PresenceMember) -> bool:
    return (
        a.get("timestamp") == b.get("timestamp")
        and a.get("client_id") == b.get("client_id")
        and json.dumps(a.get("data"), sort_keys=True) == json.dumps(b.get("data"), sort_keys=True)
    )


class ChannelPresence:
    """The presence of one channel: ``channel.presence``. Entering needs the
    ``presence`` capability; watching (members, subscribe) needs
    ``presence-subscribe`` and attaches the channel with presence."""

    def __init__(self, host: PresenceHost) -> None:
        self._host = host
        self._set: dict[str, PresenceMember] = {}
        self._syncing: dict[str, PresenceMember] | None = None
        self._synced = asyncio.Event()
        self._entered = False
        self._data: Any = None
        #: Presence requests not yet answered (they are re-sent after a drop,
        #: so no re-enter is needed while any is pending).
        self._pending = 0
        self._events: Listeners[PresenceEvent] = Listeners()
        self._members: Listeners[list[PresenceMember]] = Listeners()

    # ---- as a member -------------------------------------------------------

    def enter(self, data: Any = None) -> asyncio.Future[None]:
        """Enters the member set as this connection with ``data`` (by
        convention ``{"role", "status"}``); entering again updates. The
        future resolves on the server's ``ok``."""
        self._entered = True
        self._data = data
        return self._send("enter", data)

    def update(self, data: Any) -> asyncio.Future[None]:
        """Changes this connection's member data (enters if not present)."""
        self._entered = True
        self._data = data
        return self._send("update", data)

    def leave(self) -> asyncio.Future[None]:
        """Leaves the member set (closing the client leaves every channel)."""
        self._entered = False
        return self._send("leave", None)

    @property
    def entered(self) -> bool:
        """Whether this connection entered (as far as the app asked)."""
        return self._entered

    # ---- watching ----------------------------------------------------------

    def members(self) -> list[PresenceMember]:
        """The current members (one per connection), ordered by connection
        id. Current while the channel is attached with presence; see
        :meth:`wait_synced`."""
        return [self._set[k] for k in sorted(self._set)]

    @property
    def synced(self) -> bool:
        """A complete sync arrived on the current attachment."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> list[PresenceMember]:
        """Attaches with presence if needed and waits for the member set."""
        self._host._enable_presence()
        await asyncio.wait_for(self._synced.wait(), timeout)
        return self.members()

    def subscribe(self) -> Subscription[PresenceEvent]:
        """Member changes (``enter``, ``update``, ``leave``) as an async
        iterator. After an attach or reconnect, the differences between the
        fresh sync and the set held before come as events with
        ``from_sync=True``, so a consumer keeping its own state never drifts."""
        sub = Subscription(self._events.add)
        self._host._enable_presence()
        return sub

    def on_change(self, callback: Callable[[PresenceEvent], None]) -> Callable[[], None]:
        """Calls ``callback`` on each member change; returns an unsubscribe."""
        off = self._events.add(callback)
        self._host._enable_presence()
        return off

    def on_members(self, callback: Callable[[list[PresenceMember]], None]) -> Callable[[], None]:
        """Calls ``callback`` now and whenever the member set changes."""
        off = self._members.add(callback)
        callback(self.members())
        self._host._enable_presence()
        return off

    async def fetch(self) -> list[PresenceMember]:
        """The members right now, from the server over REST."""
        return await self._host._fetch_presence()

    # ---- called by the channel ---------------------------------------------

    def _on_sync(self, members: list[PresenceMember], complete: bool) -> None:
        if self._syncing is None:
            self._syncing = {}
        for m in members:
            self._syncing[m["connection_id"]] = m
        if not complete:
            return
        fresh, self._syncing = self._syncing, None
        events = [PresenceEvent("leave", old, True) for cid, old in self._set.items() if cid not in fresh]
        for cid, m in fresh.items():
            old = self._set.get(cid)
            if old is None:
                events.append(PresenceEvent("enter", m, True))
            elif not _same(old, m):
                events.append(PresenceEvent("update", m, True))
        self._set = dict(fresh)
        self._synced.set()
        for e in events:
            self._events.emit(e)
        if events:
            self._members.emit(self.members())

    def _on_event(self, action: PresenceAction, member: PresenceMember) -> None:
        # A change arriving while a sync is paged applies to the set being built.
        target = self._syncing if self._syncing is not None else self._set
        if action == "leave":
            target.pop(member["connection_id"], None)
        else:
            target[member["connection_id"]] = member
        if target is not self._set:
            return
        self._events.emit(PresenceEvent(action, member))
        self._members.emit(self.members())

    def _reset(self) -> None:
        """Detached: the set is no longer known."""
        self._syncing = None
        self._synced.clear()
        if self._set:
            self._set = {}
            self._members.emit([])

    def _suspend(self) -> None:
        """The connection was lost: the set is stale until the next sync."""
        self._syncing = None
        self._synced.clear()

    def _reenter(self) -> None:
        """A new connection (not a resumed one): the server forgot our
        presence, so enter again, unless a request is pending (it is re-sent
        and sets the state)."""
        if not self._entered or self._pending > 0:
            return
        fut = self._send("enter", self._data)
        fut.add_done_callback(self._report_failure)

    def _report_failure(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            return
        err = fut.exception()
        if isinstance(err, TetherError):
            self._host._report(err)

    def _send(self, action: PresenceAction, data: Any) -> asyncio.Future[None]:
        self._pending += 1
        fut = self._host._send_presence(action, data)

        def done(_: asyncio.Future[None]) -> None:
            self._pending -= 1

        fut.add_done_callback(done)
        return fut
