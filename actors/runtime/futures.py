"""Futures handed out at the edge, guarded against blocking inside castflow threads.

Blocking on a reply from inside an actor can deadlock two actors (each waits for the other to
finish its current message). Every future castflow creates raises ``BlockingCallError`` when a
castflow thread would have to wait on it; a future that is already done can always be read.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, TypeVar

import pykka

from actors.runtime.errors import BlockingCallError

__all__ = ["ActorFuture", "in_castflow_thread", "mark_castflow_thread"]

T = TypeVar("T")

_local = threading.local()


def mark_castflow_thread(owner: object | None) -> None:
    """Mark (or, with ``None``, unmark) the current thread as run by castflow."""
    _local.owner = owner


def in_castflow_thread() -> bool:
    """Whether the current thread belongs to a castflow actor or leaf worker."""
    return getattr(_local, "owner", None) is not None


_any_fenced = False  # no thread was ever fenced: the usual case costs one global read


def note_fenced() -> None:
    """Record that an actor's thread has been fenced (see :func:`sent_by_abandoned`)."""
    global _any_fenced  # a process-wide fact, set once
    _any_fenced = True


def sent_by_abandoned() -> bool:
    """Whether the current thread runs an actor incarnation that was abandoned and fenced."""
    if not _any_fenced:
        return False
    owner = getattr(_local, "owner", None)
    return getattr(owner, "abandoned", False) is True and (
        getattr(owner, "_fenced_when_abandoned", False) is True
    )


def _refuse_to_block(what: str) -> None:
    owner = getattr(_local, "owner", None)
    msg = (
        f"{what} would block castflow thread {threading.current_thread().name!r} "
        f"(owned by {owner}); actors must not wait on each other: use tell and handle the "
        "reply as a message; a sync tool that needs another step's result should take it as input "
        "(run that step before it in the workflow), an async tool may await system.run_async()"
    )
    raise BlockingCallError(msg)


class ActorFuture(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` that refuses to block a castflow thread.

    Use it like any future (``result(timeout)``, callbacks, ``asyncio.wrap_future``).
    """

    def result(self, timeout: float | None = None) -> T:
        """Wait for and return the result; see ``concurrent.futures.Future.result``.

        Raises:
            BlockingCallError: if called on a castflow thread before the future is done.
        """
        if not self.done() and in_castflow_thread():
            _refuse_to_block("Future.result()")
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for and return the exception; see ``concurrent.futures.Future.exception``.

        Raises:
            BlockingCallError: if called on a castflow thread before the future is done.
        """
        if not self.done() and in_castflow_thread():
            _refuse_to_block("Future.exception()")
        return super().exception(timeout)


class GuardedThreadingFuture(pykka.ThreadingFuture[T]):
    """pykka's threading future with the same guard, for code that uses pykka refs directly."""

    def get(self, *, timeout: float | None = None) -> Any:
        """Wait for the value; see ``pykka.Future.get``.

        Raises:
            BlockingCallError: if called on a castflow thread before a value is set.
        """
        if self._result is None and in_castflow_thread():
            _refuse_to_block("pykka Future.get()")
        return super().get(timeout=timeout)
