"""The conversation view: folds events into the ordered list of current
messages, with exactly the rules of tether-core's ``View`` (fold.rs) and the
TypeScript SDK's view.ts, so the server, the other SDKs and this one never
disagree about what a channel shows.

Pure: no I/O, no asyncio, plain dicts in and out, so golden vectors
(``events`` in, ``messages`` out) can be checked against it directly.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping
from typing import Any, cast

from .types import Message, Serial


class FoldResult(enum.Enum):
    """What folding one event did."""

    #: The view changed.
    APPLIED = "applied"
    #: The view already held this version or a newer one (a repeat after a
    #: resume, or a fragment a snapshot already contains).
    DUPLICATE = "duplicate"
    #: An append to a message the view never saw (it attached after the
    #: message started): new, but it cannot be folded without the start.
    ORPHAN = "orphan"


class View:
    """Current messages of one channel, ordered by serial.

    Folding is idempotent: an event whose ``version.serial`` is not greater
    than the version held for its message is ignored. That is what lets a
    snapshot (the whole message so far) be followed by fragments that
    overlap it, and what makes redelivery after a reconnect harmless.

    Held messages are never mutated in place: a fold replaces the dict, so a
    message an application kept a reference to does not change under it.
    """

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        self._by_serial: dict[Serial, Message] = {}
        #: Serials in ascending order (new messages almost always go last).
        self._order: list[Serial] = []
        #: Highest version delivered for messages the view cannot hold.
        self._orphans: dict[Serial, Serial] = {}
        self._cached: list[Message] | None = None
        for m in messages:
            self._put(m)

    def held_version(self, serial: Serial) -> Serial | None:
        """The version held for ``serial`` (a folded message's, or the last
        orphan fragment's)."""
        held = self._by_serial.get(serial)
        if held is not None:
            return held["version"]["serial"]
        return self._orphans.get(serial)

    def apply(self, event: Message) -> FoldResult:
        """Folds one event in (tether-core ``View::apply``)."""
        serial = event["serial"]
        version = event["version"]["serial"]
        held = self.held_version(serial)
        if held is not None and held >= version:
            return FoldResult.DUPLICATE
        if event["action"] != "append":
            self._put(event)
            return FoldResult.APPLIED
        existing = self._by_serial.get(serial)
        if existing is None:
            self._orphans[serial] = version
            return FoldResult.ORPHAN
        fragment = event.get("data")
        fragment = fragment if isinstance(fragment, str) else ""
        data = existing.get("data")
        folded = cast(Message, dict(existing))
        folded["data"] = data + fragment if isinstance(data, str) else fragment
        folded["action"] = "update"
        folded["version"] = event["version"]
        if "name" in event:
            folded["name"] = event["name"]
        if "extras" in event:
            folded["extras"] = event["extras"]
        self._put(folded)
        return FoldResult.APPLIED

    def fill(self, message: Message) -> bool:
        """Inserts a whole message fetched out of band (REST) for a message
        the view only saw fragments of. Refused (``False``) when the view
        already holds it, or when fragments newer than the fetched version
        were delivered meanwhile (the fetched copy would miss them)."""
        serial = message["serial"]
        if serial in self._by_serial:
            return False
        orphan = self._orphans.get(serial)
        if orphan is not None and orphan > message["version"]["serial"]:
            return False
        self._put(message)
        return True

    def get(self, serial: Serial) -> Message | None:
        """The message with ``serial``, if held."""
        return self._by_serial.get(serial)

    def __contains__(self, serial: object) -> bool:
        return serial in self._by_serial

    def __len__(self) -> int:
        return len(self._by_serial)

    def messages(self) -> list[Message]:
        """Current messages in channel order. A new list each time the view
        changed (the same list while it did not), so callers may compare by
        identity; do not mutate it."""
        if self._cached is None:
            self._cached = [self._by_serial[s] for s in self._order]
        return self._cached

    def clear(self) -> None:
        """Drops everything (continuity lost: the local view is stale)."""
        self._by_serial.clear()
        self._orphans.clear()
        self._order = []
        self._cached = None

    def _put(self, message: Message) -> None:
        serial = message["serial"]
        if serial not in self._by_serial:
            self._orphans.pop(serial, None)
            if not self._order or self._order[-1] < serial:
                self._order.append(serial)
            else:
                bisect.insort(self._order, serial)
        self._by_serial[serial] = message
        self._cached = None


def fold(events: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Folds ``events`` from scratch into the current messages (for tests,
    golden vectors, and checking what a listener saw has no gap)."""
    view = View()
    for event in events:
        view.apply(cast(Message, event))
    return view.messages()
