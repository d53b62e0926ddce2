"""Clocks: where the runtime reads the time.

Everything in castflow that waits on a deadline (the timer service, cancel scopes,
supervisors' intensity windows and backoff) reads an injectable :class:`Clock`, so that tests
can drive time with a :class:`ManualClock` instead of waiting for it.

Time is in seconds, as a float, on a monotonic scale with an arbitrary origin.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from itertools import count
from typing import Final, Protocol, runtime_checkable

__all__ = ["MONOTONIC", "Clock", "ManualClock", "MonotonicClock", "ObservableClock"]


class Clock(Protocol):
    """A source of monotonic time in seconds."""

    def now(self) -> float:
        """Return the current time in seconds. It never goes backwards."""
        ...


@runtime_checkable
class ObservableClock(Clock, Protocol):
    """A clock that tells listeners when it moves, such as :class:`ManualClock`.

    Code that waits for a deadline on such a clock cannot wait for a number of real seconds
    (time moves only when someone moves it), so it registers a listener that wakes it instead.
    """

    def add_listener(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every move of the clock; return a function that unregisters it."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    __slots__ = ()

    # time.monotonic itself, not a method that calls it: scopes read it once per leaf job.
    now: Final = staticmethod(time.monotonic)
    """Return :func:`time.monotonic`."""

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC: Final[MonotonicClock] = MonotonicClock()
"""The shared real clock, the default wherever a clock is optional."""


def _check_finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    return value


class ManualClock:
    """A clock for tests: time moves only when :meth:`advance` or :meth:`set` moves it.

    It is thread-safe. After every move it calls its listeners, in the order they were added,
    in the thread that moved it and outside its lock (a listener may read or move the clock).
    Every listener is called even if an earlier one raises; the first exception is then
    re-raised to the caller of ``advance``/``set``, so a broken listener fails the test.

    Args:
        start: the initial time in seconds.

    Raises:
        ValueError: ``start`` is not a finite number.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = _check_finite(start, "start")
        self._lock = threading.Lock()
        self._listeners: dict[int, Callable[[], None]] = {}
        self._tokens = count()

    def now(self) -> float:
        """Return the current time in seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and notify the listeners.

        Args:
            seconds: how far to move; zero is allowed (it still notifies the listeners).

        Returns:
            The new time.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        seconds = _check_finite(seconds, "advance")
        if seconds < 0:
            raise ValueError(f"a clock cannot move backwards: advance({seconds!r}) is negative")
        with self._lock:
            self._now += seconds
            now = self._now
        self._notify()
        return now

    def set(self, t: float) -> None:
        """Move the clock to time ``t`` and notify the listeners.

        Args:
            t: the new time; it may equal the current time but not precede it.

        Raises:
            ValueError: ``t`` is earlier than the current time, or not finite.
        """
        t = _check_finite(t, "set")
        with self._lock:
            if t < self._now:
                raise ValueError(
                    f"a clock cannot move backwards: set({t!r}) is before the current time "
                    f"{self._now!r}"
                )
            self._now = t
        self._notify()

    def add_listener(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every move of the clock.

        Args:
            fn: the listener; it is called in the thread that moved the clock.

        Returns:
            A function that unregisters ``fn``; calling it more than once is harmless.
        """
        with self._lock:
            token = next(self._tokens)
            self._listeners[token] = fn

        def remove() -> None:
            with self._lock:
                self._listeners.pop(token, None)

        return remove

    def _notify(self) -> None:
        with self._lock:
            listeners = tuple(self._listeners.values())
        first_error: BaseException | None = None
        for fn in listeners:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after every listener ran
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
