"""Partial results of a run: what ``Run.stream()`` and ``async for ... in run`` yield.

A run has no sink until someone streams it: ``RunEnv.partials`` stays ``None`` and the steps
that could report partial results (a parallel step's gather, a streaming workflow) skip them
with one ``is None`` test. The first ``stream()`` creates the run's :class:`PartialSink`, or
``ActorSystem.start(..., stream=True)`` creates it before the run starts, with a replay
buffer that the first stream takes, so that nothing decided before it is missed. From then
on every branch result decided anywhere in the run is pushed to it, renamed to its path from
the run's root, and fanned out to each consumer's :class:`PartialStream`. When the run is
decided, its final ``StepResult`` (named as the top step, whose path is its name) is
delivered last and every stream ends.

Pushing never blocks (steps push from actor threads): each stream buffers what its consumer
has not read yet, without a bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from actors.runtime.results import StepResult

__all__ = ["PartialSink", "PartialStream"]


class PartialStream:
    """One consumer's view of a run's partial results: those pushed since it subscribed.

    Thread-safe. Items come out in the order they were pushed; the run's final result is
    the last one, after which the stream has ended.
    """

    __slots__ = ("__weakref__", "_cond", "_ended", "_items", "_waiters")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[StepResult] = deque()
        self._ended = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def put(self, item: StepResult, *, last: bool = False) -> None:
        """Add ``item`` (``last``: it is the run's final result and the stream ends with it)."""
        with self._cond:
            if self._ended:
                return
            self._items.append(item)
            self._ended = last
            waiters, self._waiters = self._waiters, []
            self._cond.notify_all()
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:
                continue  # the consumer's loop has closed: nobody waits there any more

    def get(self, deadline: float | None = None) -> StepResult | None:
        """The next item, waiting until ``deadline`` (``time.monotonic()``); ``None`` at the end.

        Raises:
            TimeoutError: the deadline passed before the next item arrived.
        """
        with self._cond:
            while not self._items:
                if self._ended:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    msg = "the run was not decided within the stream's timeout"
                    raise TimeoutError(msg)
                self._cond.wait(left)
            return self._items.popleft()

    async def get_async(self) -> StepResult | None:
        """The next item, awaited without blocking the event loop; ``None`` at the end."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self._ended:
                    return None
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            try:
                await waiter
            finally:
                with self._cond:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))

    def close(self) -> None:
        """Stop buffering: the consumer has gone. Idempotent."""
        with self._cond:
            self._ended = True
            self._items.clear()
            self._cond.notify_all()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PartialSink:
    """The run's fan-out of partial results to its streams. Thread-safe; never blocks.

    Steps push branch results with :meth:`push`; the run calls :meth:`close` with its final
    result once it is decided. Pushes after that are ignored.

    Args:
        replay: keep what is pushed (and the final result) until the first subscriber, who
            gets it all first; without it, what is pushed while nobody listens is dropped.
    """

    __slots__ = ("_backlog", "_final", "_lock", "_streams")

    def __init__(self, *, replay: bool = False) -> None:
        self._lock = threading.Lock()
        self._streams: list[PartialStream] = []
        self._final: StepResult | None = None
        self._backlog: list[StepResult] | None = [] if replay else None

    @property
    def closed(self) -> bool:
        """Whether the run has been decided."""
        return self._final is not None

    def push(self, path: str, result: StepResult) -> None:
        """Deliver ``result`` of the child named ``result.name`` of the step at ``path``.

        Every stream gets a copy named by the child's path from the run's root
        (``"<path>/<name>"``), so results of equally named branches at different depths
        stay apart.
        """
        if self._final is not None or (not self._streams and self._backlog is None):
            return
        named = result.model_copy(update={"name": f"{path}/{result.name}"})
        with self._lock:
            if self._final is not None:
                return
            if self._backlog is not None:
                self._backlog.append(named)
                return
            streams = list(self._streams)
        for stream in streams:
            stream.put(named)

    def close(self, final: StepResult) -> None:
        """Deliver the run's final result as the last item of every stream. Idempotent."""
        with self._lock:
            if self._final is not None:
                return
            self._final = final
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.put(final, last=True)

    def subscribe(self) -> PartialStream:
        """A new stream of everything pushed from now on (only the final result if decided).

        The first subscriber of a replaying sink gets everything pushed so far first.
        """
        stream = PartialStream()
        with self._lock:
            backlog, self._backlog = self._backlog, None
            for item in backlog or ():
                stream.put(item)
            final = self._final
            if final is None:
                self._streams.append(stream)
        if final is not None:
            stream.put(final, last=True)
        return stream

    def unsubscribe(self, stream: PartialStream) -> None:
        """Stop delivering to ``stream`` (its consumer has gone)."""
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
        stream.close()
