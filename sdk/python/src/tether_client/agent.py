"""The agent helper: stream one response message the way a Python
developer writes an LLM loop::

    async with channel.stream_response() as r:
        async for chunk in llm:
            await r.append(chunk)

On entry it publishes the response (``extras.stream: "streaming"``) and
waits for its serial. Appends are pipelined (up to ``max_in_flight`` await
their ack at once), so the loop runs at the model's pace, not the network's.
The block ends the response exactly once (docs/patterns.md):

- ``complete`` when the block finishes;
- ``error`` (with ``extras.error.message``) when it raises; the exception
  propagates;
- ``cancelled`` when a ``cancel`` message targeting it arrives: the server
  marks it cancelled itself, the next :meth:`ResponseStream.append` raises
  :class:`ResponseCancelled`, and the block absorbs that exception, so the
  agent simply carries on after it (``r.cancelled`` says what happened).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from . import conventions
from .errors import ErrorCode, ResponseCancelled, TetherError
from .types import Ack, Message, Serial

if TYPE_CHECKING:
    from types import TracebackType

    from .channel import Channel


class ResponseStream:
    """One streamed response; made by :meth:`Channel.stream_response`."""

    def __init__(
        self,
        channel: Channel,
        *,
        name: str,
        extras: dict[str, Any] | None,
        data: str,
        id: str | None,
        max_in_flight: int,
    ) -> None:
        self._channel = channel
        self._name = name
        self._extras = {"role": "assistant", **(extras or {}), "stream": "streaming"}
        self._data = data
        self._id = id
        self._max_in_flight = max(1, max_in_flight)
        self._serial: Serial | None = None
        self._inflight: deque[asyncio.Future[Ack]] = deque()
        #: Targets of cancels seen before our serial was known (a fast user).
        self._cancel_targets: set[Serial] = set()
        self._failure: TetherError | None = None
        self._parts: list[str] = [data]
        self._off: Any = None
        #: Set when a cancel for this response arrives (or the server ended it).
        self.cancel_event = asyncio.Event()
        #: ``complete``, ``cancelled`` or ``error`` once the block ended.
        self.status: str | None = None

    @property
    def serial(self) -> Serial:
        """The response message's serial (known once the block is entered)."""
        if self._serial is None:
            raise RuntimeError("the response has not been published yet")
        return self._serial

    @property
    def cancelled(self) -> bool:
        """Whether a cancel for this response arrived."""
        return self.cancel_event.is_set()

    @property
    def text(self) -> str:
        """Everything appended so far (with the initial data)."""
        return "".join(self._parts)

    async def __aenter__(self) -> ResponseStream:
        # Listen before publishing, so a cancel can never slip in between.
        self._off = self._channel.on_message(self._on_event)
        try:
            ack = await self._channel.publish(
                self._data, name=self._name, extras=self._extras, id=self._id
            )
        except BaseException:
            self._off()
            raise
        self._serial = ack.serial
        if ack.serial in self._cancel_targets:
            self.cancel_event.set()
        return self

    async def append(self, chunk: str) -> None:
        """Appends ``chunk`` (pipelined: returns once it is sent, or once the
        oldest of ``max_in_flight`` appends is acknowledged). Raises
        :class:`ResponseCancelled` once the response was cancelled, or the
        error of an earlier append that the server refused."""
        self._check()
        if not chunk:
            return
        fut = self._channel.append(self.serial, chunk)
        fut.add_done_callback(self._on_ack)
        self._inflight.append(fut)
        self._parts.append(chunk)
        while len(self._inflight) >= self._max_in_flight:
            with contextlib.suppress(TetherError):
                await self._inflight[0]
            self._drop_done()
        # Let incoming frames (a cancel) be handled between tokens even when
        # the model's iterator never waits.
        await asyncio.sleep(0)
        self._check()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if exc is None or isinstance(exc, ResponseCancelled):
                await self._finish()
                return isinstance(exc, ResponseCancelled)
            if isinstance(exc, asyncio.CancelledError):
                await asyncio.shield(self._end("cancelled", None))
                return False
            await self._end("error", {"message": str(exc) or type(exc).__name__})
            return False
        finally:
            if self._off is not None:
                self._off()

    # ---- internals ---------------------------------------------------------

    async def _finish(self) -> None:
        if self.cancelled:
            await self._settle()
            self.status = "cancelled"
            return
        await self._end("complete", None)
        if self._failure is not None and not self.cancelled:
            raise self._failure

    async def _end(self, status: str, error: dict[str, Any] | None) -> None:
        """Sends the terminal status right behind the appends (one
        connection's frames apply in order), then waits for every ack."""
        extras: dict[str, Any] = {"stream": status}
        if error is not None:
            extras["error"] = error
        if self._serial is None:
            return
        final = self._channel.update(self._serial, extras=extras)
        try:
            await self._settle()
            await final
            self.status = status
        except TetherError as err:
            if err.code != ErrorCode.STREAM_ENDED:
                raise
            # A cancel (or the server's abandon) ended it first: one end wins.
            self.cancel_event.set()
            self.status = "cancelled"

    async def _settle(self) -> None:
        while self._inflight:
            with contextlib.suppress(TetherError):
                await self._inflight.popleft()

    def _drop_done(self) -> None:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()

    def _on_ack(self, fut: asyncio.Future[Ack]) -> None:
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None:
            return
        if isinstance(err, TetherError) and err.code == ErrorCode.STREAM_ENDED:
            self.cancel_event.set()
        elif isinstance(err, TetherError) and self._failure is None:
            self._failure = err

    def _check(self) -> None:
        if self.cancelled:
            raise ResponseCancelled(self.serial)
        if self._failure is not None:
            raise self._failure

    def _on_event(self, event: Message) -> None:
        target = conventions.target_of(event) if event.get("name") == conventions.CANCEL else None
        if target is not None:
            self._cancel_targets.add(target)
            if target == self._serial:
                self.cancel_event.set()
        elif self._serial is not None and event["serial"] == self._serial:
            if conventions.stream_status(event) == "cancelled":
                self.cancel_event.set()
