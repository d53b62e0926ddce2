"""A one-shot outcome whose ``concurrent.futures.Future`` is made only if someone asks for it.

Every actor has two such outcomes, its start and its end, and most actors (those a run starts
for its nodes) have neither awaited: a ``Future`` costs a condition variable each, which was
a tenth of a small run's CPU.
"""

from __future__ import annotations

import concurrent.futures
from _thread import allocate_lock
from typing import Generic, TypeVar, cast

__all__ = ["LazyFuture"]

T = TypeVar("T")


class LazyFuture(Generic[T]):
    """Settled once, by a result or an exception; ``future()`` gives it as a ``Future``."""

    __slots__ = ("_exception", "_future", "_lock", "_result", "_settled")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._settled = False
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._future: concurrent.futures.Future[T] | None = None

    def done(self) -> bool:
        """Whether it has been settled."""
        return self._settled

    def set_result(self, result: T) -> bool:
        """Settle with ``result``; False (and nothing changes) if it was settled already."""
        return self._settle(result, None)

    def set_exception(self, exception: BaseException) -> bool:
        """Settle with ``exception``; False (and nothing changes) if it was settled already."""
        return self._settle(None, exception)

    def future(self) -> concurrent.futures.Future[T]:
        """The outcome as a ``Future`` (made on the first call, the same one after)."""
        with self._lock:
            future = self._future
            if future is None:
                future = self._future = concurrent.futures.Future()
                if self._settled:
                    # Nobody else holds it yet: settling it here runs no callback.
                    _resolve(future, self._result, self._exception)
            return future

    def _settle(self, result: T | None, exception: BaseException | None) -> bool:
        with self._lock:
            if self._settled:
                return False
            self._settled, self._result, self._exception = True, result, exception
            future = self._future
        if future is not None:
            _resolve(future, result, exception)  # outside the lock: it runs the callbacks
        return True


def _resolve(
    future: concurrent.futures.Future[T], result: T | None, exception: BaseException | None
) -> None:
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(cast(T, result))
