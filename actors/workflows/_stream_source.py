"""The input of a stream: a sync or async iterator, pulled one item at a time, and closed.

A sync iterator is pulled inline, on the stream coordinator's thread, like a parallel step's
item source; it must not block for long. An async iterator is pulled on the system's event
loop, one ``__anext__`` at a time, and holds no thread while it waits: the outcome comes back
to the coordinator as a message. Closing stops the producer: a pending ``__anext__`` is
cancelled (the generator sees ``CancelledError`` at its ``await``), a suspended async
generator is ``aclose``-d on the loop, and a sync generator is ``close``-d.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.runtime.system import ActorSystem

__all__ = ["END", "Source", "open_source"]

logger = logging.getLogger("castflow.streaming")

END = object()
"""What a pull of an async source resolves to when the source has no more items."""


class Source:
    """One stream instance's input.

    Args:
        iterator: the iterator (sync or async).
        is_async: whether it is an async iterator.
    """

    __slots__ = ("closed", "is_async", "iterator", "pending", "pulled")

    def __init__(self, iterator: Iterator[Any] | AsyncIterator[Any], *, is_async: bool) -> None:
        self.iterator = iterator
        self.is_async = is_async
        self.pending: concurrent.futures.Future[Any] | None = None
        self.pulled = 0
        self.closed = False

    def next(self) -> Any:
        """The next item of a sync source.

        Raises:
            StopIteration: the source has no more items.
            Exception: whatever the source raises.
        """
        assert isinstance(self.iterator, Iterator)
        item = next(self.iterator)
        self.pulled += 1
        return item

    def pull_async(
        self, system: ActorSystem, deliver: Callable[[concurrent.futures.Future[Any]], None]
    ) -> None:
        """Ask an async source for its next item on the system loop.

        ``deliver(future)`` is called (from the loop's thread) with a future of the item, of
        :data:`END`, or of the exception the source raised. One pull at a time.

        Raises:
            Exception: the loop cannot take the pull (the system is shutting down).
        """
        iterator = self.iterator
        assert isinstance(iterator, AsyncIterator)

        async def one() -> Any:
            try:
                return await anext(iterator)
            except StopAsyncIteration:
                return END

        future = system.run_coroutine(one())
        self.pending = future
        future.add_done_callback(deliver)

    def took(self, future: concurrent.futures.Future[Any]) -> bool:
        """Account for a delivered pull; whether it is the current one and not cancelled."""
        if future is not self.pending:
            return False
        self.pending = None
        if future.cancelled() or self.closed:
            return False
        if future.exception() is None and future.result() is not END:
            self.pulled += 1
        return True

    def close(self, system: ActorSystem) -> None:
        """Stop the producer (idempotent); never blocks."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.is_async:
                self._close_async(system)
            else:
                close = getattr(self.iterator, "close", None)
                if close is not None:
                    close()
        except Exception:
            logger.exception("closing the input of a stream failed")

    def _close_async(self, system: ActorSystem) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and not pending.done():
            # The generator sees CancelledError at its await and finishes.
            pending.cancel()
            return
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            system.run_coroutine(aclose())


def open_source(value: object, where: str) -> Source:
    """The source reading ``value``: an async iterable, or any iterable but text and mappings.

    Raises:
        TypeError: ``value`` is not a stream of items.
    """
    if isinstance(value, AsyncIterable):
        return Source(aiter(value), is_async=True)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        msg = (
            f"{where}: the input must be an iterable or an async iterable of items, "
            f"got {type(value).__name__}"
        )
        raise TypeError(msg)
    return Source(iter(value), is_async=False)
