"""Errors: every failure the SDK reports is a :class:`TetherError` with a
stable numeric ``code``, so applications branch on numbers, never on text.

4xxxx and 5xxxx codes come from the server (docs/errors.md; their first
three digits are the HTTP status). 8xxxx codes are raised by the SDK itself
for conditions the server never sees (the same numbers as the TypeScript
SDK, so logs from both read alike).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """The stable codes. Compare ``err.code`` against these."""

    BAD_REQUEST = 40000
    UNKNOWN_FRAME_TYPE = 40001
    INVALID_CHANNEL_NAME = 40002
    INVALID_SERIAL = 40003
    APPEND_TYPE_MISMATCH = 40004
    MUTATION_NOT_ALLOWED = 40005
    NOT_ATTACHED = 40006
    INVALID_MESSAGE_ID = 40007
    INVALID_PARAMETER = 40008
    UNAUTHORIZED = 40100
    #: The token's ``exp`` passed (at connect, or on a live connection that
    #: did not renew in time: close code 4005).
    TOKEN_EXPIRED = 40101
    TOKEN_NOT_YET_VALID = 40102
    FORBIDDEN = 40300
    MESSAGE_NOT_FOUND = 40400
    NOT_FOUND = 40401
    IDLE_TIMEOUT = 40800
    AUTH_TIMEOUT = 40801
    REQUEST_TIMEOUT = 40802
    MESSAGE_DELETED = 40900
    #: An append to (or status change of) a response whose ``extras.stream``
    #: is terminal, e.g. the agent's next append after a user's cancel.
    STREAM_ENDED = 40901
    CONTINUITY_LOST = 41000
    #: A connection ``resume`` was refused; the SDK re-attaches by position.
    RESUME_FAILED = 41001
    MESSAGE_TOO_LARGE = 41300
    FRAME_TOO_LARGE = 41301
    PRESENCE_DATA_TOO_LARGE = 41302
    TOO_MANY_CHANNELS = 42900
    RATE_LIMITED = 42901
    TOO_SLOW = 42902
    TOO_MANY_CONNECTIONS = 42903
    TOO_MANY_MEMBERS = 42904
    PRESENCE_RATE_LIMITED = 42905
    TOO_MANY_JOBS = 42906
    INTERNAL = 50000
    STORAGE_UNAVAILABLE = 50300
    SHUTTING_DOWN = 50301
    INSUFFICIENT_STORAGE = 50700
    #: SDK: the client was closed before the request completed.
    CLIENT_CLOSED = 80000
    #: SDK: the connection dropped while this mutation was in flight and could
    #: not be resumed, so it could not be re-sent exactly once; it may or may
    #: not have been applied. (When the resume succeeds, the usual case, the
    #: mutation is re-sent with its ``seq`` and applied exactly once instead.)
    OUTCOME_UNKNOWN = 80001
    #: SDK: the network request failed (no reply).
    NETWORK_ERROR = 80002
    #: SDK: the server replied with something the SDK cannot read.
    PROTOCOL_ERROR = 80003


class TetherError(Exception):
    """An error with a stable ``code`` and a human ``message`` (never parse
    the message)."""

    code: int
    message: str
    #: The HTTP status, for REST failures that got a response.
    status: int | None
    #: The channel the error is about, when the server named one.
    channel: str | None

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int | None = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.status = status
        self.channel = channel

    @classmethod
    def from_wire(cls, info: Any, status: int | None = None) -> TetherError:
        """Builds from the wire shape ``{code, message[, channel]}``,
        tolerating junk (a server error must never become a ``KeyError``)."""
        obj: dict[str, Any] = info if isinstance(info, dict) else {}
        code = obj.get("code")
        message = obj.get("message")
        channel = obj.get("channel")
        return cls(
            code if isinstance(code, int) else ErrorCode.PROTOCOL_ERROR,
            message if isinstance(message, str) else "unknown error",
            status=status,
            channel=channel if isinstance(channel, str) else None,
        )


class ResponseCancelled(TetherError):
    """The response being streamed was cancelled (a ``cancel`` message
    targeting it arrived, or the server refused an append with 40901 because
    it had been cancelled). Raised from :meth:`ResponseStream.append` so an
    agent's token loop stops; leaving the ``stream_response`` block with it
    is normal and does not re-raise."""

    def __init__(self, serial: str, message: str = "the response was cancelled") -> None:
        super().__init__(ErrorCode.STREAM_ENDED, message)
        #: The serial of the cancelled response.
        self.serial = serial
