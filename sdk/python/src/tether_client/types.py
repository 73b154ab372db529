"""The shapes the SDK hands out, as in docs/protocol.md.

Messages and presence members stay the plain ``dict`` decoded from JSON
(typed with ``TypedDict``), so what an application sees is exactly what the
server sent, folding works over plain dicts (golden vectors plug in
directly), and nothing is copied into classes on the hot path. Results the
SDK builds itself (acks, attach results) are small dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

#: ``EPOCH-SEQUENCE``, fixed width: string order is log order. Compare
#: serials as strings; never do arithmetic on them.
Serial = str

Action = Literal["create", "append", "update", "delete"]
Continuity = Literal["new", "resumed", "lost"]
PresenceAction = Literal["enter", "update", "leave"]
StreamStatus = Literal["streaming", "complete", "cancelled", "error"]
ConnectionState = Literal["initialized", "connecting", "connected", "disconnected", "closed", "failed"]


class _VersionRequired(TypedDict):
    serial: Serial


class Version(_VersionRequired, total=False):
    """A message version: ``serial`` is the operation that made it."""

    timestamp: int
    client_id: str
    description: str
    metadata: Any


class _MessageRequired(TypedDict):
    serial: Serial
    action: Action
    version: Version


class Message(_MessageRequired, total=False):
    """A stored message or an event (an ``append`` event's ``data`` is only
    the fragment). Absent optional fields are omitted, as on the wire."""

    id: str
    name: str
    data: Any
    extras: dict[str, Any]
    client_id: str
    connection_id: str
    timestamp: int


class _MemberRequired(TypedDict):
    connection_id: str


class PresenceMember(_MemberRequired, total=False):
    """One connection present on a channel."""

    client_id: str
    data: Any
    timestamp: int


class EphemeralMessage(TypedDict, total=False):
    """A live-only message: no serial, never stored, never replayed."""

    id: str
    name: str
    data: Any
    extras: dict[str, Any]
    client_id: str
    connection_id: str
    timestamp: int


@dataclass(frozen=True)
class Ack:
    """The server's acknowledgement of a publish or mutation: it is durable."""

    #: The message's serial (for a publish: the new message's).
    serial: Serial
    #: The serial of the version this operation made.
    version_serial: Serial
    #: A publish whose ``id`` the server already had: nothing was stored.
    duplicate: bool = False

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Ack:
        """From an ``ack`` frame or a REST ack body."""
        return cls(
            serial=str(wire["serial"]),
            version_serial=str(wire.get("version_serial", wire["serial"])),
            duplicate=wire.get("duplicate") is True,
        )


@dataclass(frozen=True)
class AttachResult:
    """How the server honoured an attach's position."""

    continuity: Continuity
    #: With ``continuity == "lost"``: the 41000 error (the view was cleared).
    error: Exception | None = None


@dataclass(frozen=True)
class PresenceEvent:
    """One change of a channel's member set."""

    action: PresenceAction
    member: PresenceMember
    #: Derived by comparing a fresh sync with the set held before (after an
    #: attach or a reconnect), rather than a live change.
    from_sync: bool = False


@dataclass(frozen=True)
class ConnectedInfo:
    """What the server said when the connection became usable."""

    connection_id: str
    client_id: str | None
    heartbeat_ms: int
    limits: dict[str, Any]
    #: This socket resumed the previous connection (presence, channels and
    #: in-flight mutations carried over).
    resumed: bool
    #: After a resume: the channels the server re-attached by itself.
    attachments: list[dict[str, Any]] = field(default_factory=list)
    #: Why a resume that was tried failed (41001), if it did.
    resume_error: Exception | None = None
