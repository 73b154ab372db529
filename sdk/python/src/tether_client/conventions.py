"""The conventions of docs/patterns.md: the stream status of a streamed
response, and the messages that cancel, steer and hand a conversation over.
Plain functions over message dicts, shared by the channel helpers and the
agent helper so the names are written in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from .types import StreamStatus

#: A request to stop a streaming response: ``extras.target`` is its serial.
#: The server then marks the response ``cancelled``.
CANCEL = "cancel"
#: A new instruction about a response: ``extras.target`` is its serial,
#: ``data`` the instruction. A convention only: the agent decides.
STEER = "steer"
#: An operator claims (``extras.action == "claim"``) or releases
#: (``"release"``) a conversation. Needs the ``operator`` capability.
HANDOFF = "handoff"

_STATUSES: frozenset[str] = frozenset({"streaming", "complete", "cancelled", "error"})
_TERMINAL: frozenset[str] = frozenset({"complete", "cancelled", "error"})


def stream_status(message: Mapping[str, Any] | None) -> StreamStatus | None:
    """``extras.stream`` of a message: ``streaming`` while a response is
    being written, then ``complete``, ``cancelled`` or ``error``; ``None``
    for a message that is not a streamed response."""
    extras = message.get("extras") if message is not None else None
    status = extras.get("stream") if isinstance(extras, Mapping) else None
    if isinstance(status, str) and status in _STATUSES:
        return status  # type: ignore[return-value]
    return None


def is_stream_ended(status: str | None) -> bool:
    """Whether a stream status is final: the server refuses further appends
    (40901) and further status changes."""
    return status in _TERMINAL


def target_of(message: Mapping[str, Any]) -> str | None:
    """The target serial of a ``cancel`` or ``steer`` message, else ``None``."""
    name = message.get("name")
    if name not in (CANCEL, STEER):
        return None
    extras = message.get("extras")
    target = extras.get("target") if isinstance(extras, Mapping) else None
    if isinstance(target, str):
        return target
    data = message.get("data")
    return data if name == CANCEL and isinstance(data, str) else None


def handoff_action(message: Mapping[str, Any]) -> Literal["claim", "release"] | None:
    """``claim`` or ``release`` for a ``handoff`` message, else ``None``."""
    if message.get("name") != HANDOFF:
        return None
    extras = message.get("extras")
    action = extras.get("action") if isinstance(extras, Mapping) else None
    if action == "claim":
        return "claim"
    if action == "release":
        return "release"
    return None
