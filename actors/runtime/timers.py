"""The timer service: one thread that turns deadlines into messages.

A timer entry exists only where there is a deadline. Entries live in one heap of
``(deadline, seq, handle)``; cancelling an entry only marks it (lazy deletion) and the heap is
rebuilt when cancelled entries make up more than half of it, so scheduling and cancelling any
number of timers keeps the heap proportional to the live ones.

The service's thread only calls ``target.tell(message)``: it runs no other user code, and a
``tell`` that raises is reported to ``on_undeliverable`` without stopping the service.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections.abc import Callable
from enum import Enum
from itertools import count
from typing import Any, Protocol

from actors.runtime.clock import MONOTONIC, Clock, ObservableClock
from actors.runtime.errors import CastflowError

__all__ = ["Receiver", "TimerHandle", "TimerService", "TimerServiceStoppedError"]

_log = logging.getLogger("castflow.timers")


class Receiver(Protocol):
    """Anything a timer can deliver a message to: an actor handle, a queue adapter."""

    def tell(self, message: Any) -> None:
        """Accept ``message`` without blocking."""
        ...


class TimerServiceStoppedError(CastflowError, RuntimeError):
    """A timer was scheduled on a :class:`TimerService` that has been stopped."""


class _State(Enum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"
    DROPPED = "dropped"


class TimerHandle:
    """One scheduled delivery; returned by :meth:`TimerService.schedule_at`.

    Once :meth:`cancel` has returned ``True`` the message will never be delivered. Once the
    service has taken the entry for delivery, :meth:`cancel` returns ``False`` and the message
    is (or is being) delivered.
    """

    __slots__ = ("_deadline", "_message", "_service", "_state", "_target")

    def __init__(
        self, service: TimerService, deadline: float, target: Receiver, message: Any
    ) -> None:
        self._service = service
        self._deadline = deadline
        self._target: Receiver | None = target
        self._message: Any = message
        self._state = _State.PENDING

    @property
    def deadline(self) -> float:
        """The time (on the service's clock) at or after which the message is delivered."""
        return self._deadline

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` stopped this delivery."""
        return self._state is _State.CANCELLED

    @property
    def fired(self) -> bool:
        """Whether the service has taken this entry for delivery."""
        return self._state is _State.FIRED

    def cancel(self) -> bool:
        """Prevent the delivery if it has not happened yet.

        Returns:
            ``True`` if this call cancelled an entry that had not fired (including one dropped
            by :meth:`TimerService.stop`); ``False`` if it had fired or was already cancelled.
        """
        return self._service._cancel(self)

    def __repr__(self) -> str:
        return f"<TimerHandle deadline={self._deadline!r} {self._state.value}>"


class TimerService:
    """One thread and a heap of deadlines: delivers each message when its deadline is reached.

    Deliveries happen in ``(deadline, seq)`` order, where ``seq`` is the order of scheduling,
    and never before ``clock.now() >= deadline``. With a real clock the thread sleeps until the
    earliest deadline; with an :class:`~actors.runtime.clock.ObservableClock` (a
    ``ManualClock``) it sleeps until the clock moves.

    The thread is a daemon thread started by the first schedule; there is never more than one.

    Args:
        clock: the clock deadlines are read on; the real monotonic clock by default.
        name: the thread's name.
        on_undeliverable: called as ``on_undeliverable(target, message, error)`` in the
            service's thread when ``target.tell(message)`` raises. Without it the error is
            logged on the ``castflow.timers`` logger. Either way the service carries on.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        name: str = "castflow-timers",
        on_undeliverable: Callable[[Receiver, Any, BaseException], None] | None = None,
    ) -> None:
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._observable: ObservableClock | None = (
            self._clock if isinstance(self._clock, ObservableClock) else None
        )
        self._name = name
        self._on_undeliverable = on_undeliverable
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()
        self._live = 0
        self._cancelled_in_heap = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._remove_listener: Callable[[], None] | None = None

    @property
    def clock(self) -> Clock:
        """The clock deadlines are read on."""
        return self._clock

    @property
    def name(self) -> str:
        """The name of the service's thread."""
        return self._name

    @property
    def thread(self) -> threading.Thread | None:
        """The service's thread, or ``None`` before the first schedule."""
        return self._thread

    @property
    def is_running(self) -> bool:
        """Whether the service's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def heap_size(self) -> int:
        """Entries held in the heap, cancelled ones not yet removed included (for monitoring)."""
        with self._cond:
            return len(self._heap)

    def pending(self) -> int:
        """Return the number of entries that have neither fired nor been cancelled or dropped."""
        with self._cond:
            return self._live

    def schedule(self, delay: float, target: Receiver, message: Any) -> TimerHandle:
        """Deliver ``message`` to ``target`` ``delay`` seconds from ``clock.now()``.

        Args:
            delay: seconds from now; zero delivers as soon as possible.
            target: who receives the message.
            message: what it receives.

        Returns:
            A handle that can cancel the delivery.

        Raises:
            ValueError: ``delay`` is negative or not finite.
            TimerServiceStoppedError: the service has been stopped.
        """
        delay = float(delay)
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(
                f"timer delay must be a finite, non-negative number of seconds, got {delay!r}"
            )
        return self.schedule_at(self._clock.now() + delay, target, message)

    def schedule_at(self, deadline: float, target: Receiver, message: Any) -> TimerHandle:
        """Deliver ``message`` to ``target`` once ``clock.now() >= deadline``.

        Args:
            deadline: a time on the service's clock; one in the past delivers at once.
            target: who receives the message.
            message: what it receives.

        Returns:
            A handle that can cancel the delivery.

        Raises:
            ValueError: ``deadline`` is not finite.
            TimerServiceStoppedError: the service has been stopped.
        """
        deadline = float(deadline)
        if not math.isfinite(deadline):
            raise ValueError(f"timer deadline must be a finite time, got {deadline!r}")
        handle = TimerHandle(self, deadline, target, message)
        with self._cond:
            if self._stopped:
                raise TimerServiceStoppedError(
                    f"timer service {self._name!r} is stopped and accepts no new timers"
                )
            heapq.heappush(self._heap, (deadline, next(self._seq), handle))
            self._live += 1
            if self._thread is None:
                self._start_locked()
            elif self._heap[0][2] is handle:
                # The thread sleeps until the previous earliest deadline; this one is earlier.
                self._cond.notify()
        return handle

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread and drop every entry that has not fired.

        Dropped entries are never delivered. Later schedules raise
        :class:`TimerServiceStoppedError`. Calling ``stop`` again is harmless (it waits for
        the thread again).

        Args:
            timeout: the most seconds to wait for the thread to end; ``None`` waits as long as
                a ``tell`` in progress takes.

        Returns:
            Whether the thread has ended (``True`` if it never started). Called from the
            service's own thread (from a ``tell``), it cannot wait for itself and returns
            ``False``; the thread ends when that ``tell`` returns.
        """
        with self._cond:
            if not self._stopped:
                self._stopped = True
                for _, _, handle in self._heap:
                    if handle._state is _State.PENDING:
                        handle._state = _State.DROPPED
                        handle._target = handle._message = None
                self._heap.clear()
                self._live = 0
                self._cancelled_in_heap = 0
                self._cond.notify_all()
            remove_listener, self._remove_listener = self._remove_listener, None
            thread = self._thread
        if remove_listener is not None:
            remove_listener()
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def _start_locked(self) -> None:
        if self._observable is not None:
            self._remove_listener = self._observable.add_listener(self._wake)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _cancel(self, handle: TimerHandle) -> bool:
        with self._cond:
            state = handle._state
            if state is _State.DROPPED:
                handle._state = _State.CANCELLED
                return True
            if state is not _State.PENDING:
                return False
            handle._state = _State.CANCELLED
            handle._target = handle._message = None
            self._live -= 1
            self._cancelled_in_heap += 1
            if self._cancelled_in_heap * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2]._state is _State.PENDING]
                heapq.heapify(self._heap)
                self._cancelled_in_heap = 0
            return True

    def _take_due_locked(self) -> list[tuple[Receiver, Any]]:
        """Pop every entry whose deadline has passed, in order; drop cancelled ones."""
        heap = self._heap
        due: list[tuple[Receiver, Any]] = []
        now = self._clock.now()
        while heap:
            deadline, _, handle = heap[0]
            if handle._state is _State.CANCELLED:
                heapq.heappop(heap)
                self._cancelled_in_heap -= 1
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            target, message = handle._target, handle._message
            handle._state = _State.FIRED
            handle._target = handle._message = None
            self._live -= 1
            assert target is not None
            due.append((target, message))
        return due

    def _wait_locked(self) -> None:
        if not self._heap or self._observable is not None:
            self._cond.wait()
            return
        delay = self._heap[0][0] - self._clock.now()
        if delay > 0:
            self._cond.wait(min(delay, threading.TIMEOUT_MAX))

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    due = self._take_due_locked()
                    if due:
                        break
                    self._wait_locked()
            for target, message in due:
                self._deliver(target, message)

    def _deliver(self, target: Receiver, message: Any) -> None:
        try:
            target.tell(message)
        except BaseException as exc:  # noqa: BLE001 - the timer thread must outlive any receiver
            self._report_undeliverable(target, message, exc)

    def _report_undeliverable(self, target: Receiver, message: Any, exc: BaseException) -> None:
        if self._on_undeliverable is None:
            _log.error(
                "timer service %r could not deliver %r to %r",
                self._name,
                message,
                target,
                exc_info=exc,
            )
            return
        try:
            self._on_undeliverable(target, message, exc)
        except BaseException:  # noqa: BLE001 - same: a broken handler must not end the thread
            _log.exception(
                "on_undeliverable of timer service %r raised for %r to %r",
                self._name,
                message,
                target,
            )

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("running" if self.is_running else "idle")
        return f"<TimerService {self._name!r} {state} pending={self._live}>"
