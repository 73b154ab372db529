"""Requests on their way to the server: what each one is (:class:`Policy`),
what is kept while it waits for its reply (:class:`Pending`), and when to
try the next socket (:class:`Backoff`). Separate from the socket loop so the
rules for a request caught by a drop are read in one place."""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass
from typing import Any


class Policy(enum.Enum):
    """What to do with a request written to a socket that dropped before
    its reply came. Requests made while disconnected are queued and sent in
    order once connected, whatever their policy (except ``TRANSIENT``)."""

    #: A publish or mutation: carries ``seq``; re-sent with the same ``seq``
    #: after a successful resume (applied exactly once). If the resume fails
    #: it is re-sent when idempotent (a publish with an id, which the server
    #: deduplicates), else failed with ``OUTCOME_UNKNOWN``.
    SEQUENCED = "sequenced"
    #: Idempotent whatever happens (presence): sent again.
    RESEND = "resend"
    #: Failed with ``OUTCOME_UNKNOWN`` (ephemeral publish: no ``seq``, and a
    #: late typing indicator is worthless anyway).
    AT_MOST_ONCE = "at-most-once"
    #: Only meaningful on this socket (attach, detach, ping, auth): failed
    #: with ``NETWORK_ERROR``; the owner re-issues it.
    TRANSIENT = "transient"


@dataclass
class Pending:
    frame: dict[str, Any]
    policy: Policy
    idempotent: bool
    future: asyncio.Future[dict[str, Any]]
    #: Assigned when first written; kept for re-sends after a resume.
    seq: int | None = None
    #: Order of first write, so re-sends keep the original order.
    order: int | None = None

    def settle(self, reply: dict[str, Any] | None, error: BaseException | None = None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            assert reply is not None
            self.future.set_result(reply)


@dataclass(frozen=True)
class Backoff:
    """Reconnect timing: exponential with "equal jitter" (half of each step
    fixed, half random), so a herd of clients reconnecting after a restart
    spreads out, yet a failing server is not hammered by near-zero delays."""

    initial: float = 0.5
    maximum: float = 15.0

    def delay(self, attempt: int) -> float:
        step = min(self.maximum, self.initial * 2.0 ** min(attempt, 30))
        return step / 2 + random.random() * step / 2
