"""Two ways to hear about things, built on one primitive: callbacks
(:class:`Listeners`) for code that reacts synchronously (a UI, the agent
helper), and async iterators (:class:`Subscription`) for the natural
``async for event in channel.subscribe():`` loop of an agent.

A listener that raises is logged and skipped: one faulty callback must
neither break delivery to the others nor take the connection down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("tether_client")


class Listeners(Generic[T]):
    """An ordered set of callbacks for one kind of event."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[T], None]] = []

    def add(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Registers ``callback``; returns a function that removes it."""
        self._callbacks.append(callback)

        def off() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return off

    def emit(self, value: T) -> None:
        """Calls every callback with ``value`` (a copy of the list, so a
        callback may unsubscribe itself)."""
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception:
                log.exception("tether_client: a listener raised")

    def __len__(self) -> int:
        return len(self._callbacks)


class Subscription(Generic[T]):
    """An async iterator over events, fed by a listener; unbounded, so the
    connection never waits for a slow consumer (events are small and the
    consumer is the application's own loop). Close it (or leave its
    ``async with``) to stop."""

    def __init__(self, register: Callable[[Callable[[T], None]], Callable[[], None]]) -> None:
        """``register`` adds the subscription's callback to a source (e.g.
        ``Listeners.add``) and returns the function that removes it."""
        self._queue: asyncio.Queue[T | _Closed] = asyncio.Queue()
        self._off = register(self._queue.put_nowait)
        self._closed = False

    def close(self) -> None:
        """Stops the subscription; a waiting ``async for`` ends."""
        if self._closed:
            return
        self._closed = True
        self._off()
        self._queue.put_nowait(_CLOSED)

    def pending(self) -> int:
        """How many events are queued and not yet taken."""
        return self._queue.qsize()

    async def get(self, timeout: float | None = None) -> T:
        """The next event (``asyncio.TimeoutError`` after ``timeout`` s)."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(item, _Closed):
            self._queue.put_nowait(item)
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Closed:
    """The end-of-subscription marker."""


_CLOSED = _Closed()
