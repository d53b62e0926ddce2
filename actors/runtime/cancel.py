"""Cancel scopes: castflow's one concept of cancellation, after trio's.

A :class:`CancelScope` is a thread-safe flag with a reason, an optional deadline and
callbacks. Scopes form a tree: cancelling a scope cancels every scope below it, with the same
reason, and a child's deadline is never later than its parent's. Work that runs inside a scope
checks it (``scope.raise_if_cancelled()``, ``scope.wait()``) or registers a callback that
interrupts it (cancelling an asyncio task, killing a process).

A deadline is itself a cancellation: when it passes, the scope is cancelled with
:attr:`CancelReason.DEADLINE`. With a :class:`~actors.runtime.timers.TimerService` that happens
at the deadline, so callbacks fire on time; without one it is noticed the next time someone
asks the scope (``cancelled``, ``reason``, ``raise_if_cancelled``, ``wait``,
``add_callback``).

Limits: cancellation is cooperative. A scope cannot stop a thread that never looks at it; it
can only tell the thread's owner, who may then abandon the thread.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from itertools import count
from types import TracebackType
from typing import Any

from actors.runtime.clock import MONOTONIC, Clock, MonotonicClock, ObservableClock
from actors.runtime.errors import CancelledError
from actors.runtime.timers import TimerHandle, TimerService

__all__ = ["CancelReason", "CancelScope"]

_log = logging.getLogger("castflow.cancel")

_callback_tokens = count()

_Callback = Callable[["CancelScope"], None]


class CancelReason(StrEnum):
    """Why a scope was cancelled. The first reason a scope receives is the one it keeps."""

    CANCELLED = "cancelled"
    """Someone cancelled it: a caller, a failing sibling, a decided gather."""
    DEADLINE = "deadline"
    """Its deadline (or an enclosing scope's) passed."""
    SHUTDOWN = "shutdown"
    """The actor or system that owns the work is shutting down."""
    ABANDONED = "abandoned"
    """The work ignored an earlier cancellation and its thread was given up."""


def _same_clock(a: Clock, b: Clock) -> bool:
    return a is b or (isinstance(a, MonotonicClock) and isinstance(b, MonotonicClock))


def _noop() -> None:
    return None


class _DeadlineReceiver:
    """Receives the timer entry of a scope's own deadline and cancels the scope."""

    __slots__ = ("_scope",)

    def __init__(self, scope: CancelScope) -> None:
        self._scope = scope

    def tell(self, message: Any) -> None:
        self._scope.cancel(CancelReason.DEADLINE)

    def __repr__(self) -> str:
        return f"<deadline of {self._scope!r}>"


class _Propagation:
    """One cancel() call's walk down the tree: mark under each lock, then act outside them."""

    __slots__ = ("events", "notify", "queue", "timers")

    def __init__(self) -> None:
        self.notify: list[tuple[CancelScope, list[_Callback]]] = []
        self.events: list[threading.Event] = []
        self.timers: list[TimerHandle] = []
        self.queue: list[tuple[CancelScope, CancelReason]] = []

    def mark(self, scope: CancelScope, reason: CancelReason) -> bool:
        """Give ``scope`` ``reason`` unless it has one; queue its children; say if it was new."""
        with scope._lock:
            marked = scope._reason is None
            if marked:
                scope._reason = reason
                if scope._callbacks:
                    self.notify.append((scope, list(scope._callbacks.values())))
                scope._callbacks = None
                if scope._event is not None:
                    self.events.append(scope._event)
                if scope._timer is not None:
                    self.timers.append(scope._timer)
                    scope._timer = None
            if scope._children:
                # A scope cancelled earlier passes its own reason down, not this one.
                subtree_reason = scope._reason if scope._reason is not None else reason
                self.queue.extend((child, subtree_reason) for child in scope._children)
        return marked

    def spread(self) -> None:
        """Mark every queued scope and, through them, every descendant."""
        i = 0
        while i < len(self.queue):
            scope, reason = self.queue[i]
            i += 1
            self.mark(scope, reason)

    def finish(self) -> None:
        """Cancel timer entries, set events, then run callbacks, descendants first."""
        for timer in self.timers:
            timer.cancel()
        for event in self.events:
            event.set()
        fatal: BaseException | None = None
        for scope, callbacks in reversed(self.notify):
            for fn in callbacks:
                error = scope._run_callback(fn)
                if fatal is None:
                    fatal = error
        if fatal is not None:
            raise fatal


class CancelScope:
    """A hierarchical, thread-safe cancellation flag with a reason and an optional deadline.

    Use it as a context manager so that it is closed (detached from its parent) when the work
    ends; closing does not cancel, and the ``with`` block does not swallow exceptions::

        with CancelScope(timeout=5.0, timers=timers) as scope:
            for item in items:
                scope.raise_if_cancelled()
                process(item)

    Args:
        deadline: when the scope is cancelled with ``DEADLINE``, as a time on ``clock``.
            ``math.inf`` means no deadline.
        timeout: the same as ``deadline=clock.now() + timeout``.
        parent: the enclosing scope: its cancellation cancels this one, its deadline bounds
            this one's.
        clock: the clock deadlines are read on. Default: the parent's, else the timers'
            clock, else the real monotonic clock.
        timers: the timer service that enforces this scope's own deadline on time. Default:
            the parent's. Without one, deadlines are noticed when the scope is checked.
        name: a name for messages and logs.

    Raises:
        ValueError: both ``deadline`` and ``timeout`` were given; the timeout is negative or
            either is NaN; the clock differs from the parent's or the timers' clock.
        TimerServiceStoppedError: the scope needs a timer entry and ``timers`` is stopped.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_children",
        "_clock",
        "_closed",
        "_deadline",
        "_deadline_owner",
        "_event",
        "_lock",
        "_name",
        "_parent",
        "_reason",
        "_timer",
        "_timers",
    )

    _callbacks: dict[int, _Callback] | None
    _children: set[CancelScope] | None
    _clock: Clock
    _closed: bool
    _deadline: float | None
    _deadline_owner: CancelScope | None
    _event: threading.Event | None
    _lock: threading.Lock
    _name: str
    _parent: CancelScope | None
    _reason: CancelReason | None
    _timer: TimerHandle | None
    _timers: TimerService | None

    def __init__(
        self,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        parent: CancelScope | None = None,
        clock: Clock | None = None,
        timers: TimerService | None = None,
        name: str = "",
    ) -> None:
        if parent is not None:
            if clock is None:
                clock = parent._clock
            elif not _same_clock(clock, parent._clock):
                raise ValueError(
                    f"cancel scope {name!r}: its clock {clock!r} is not its parent's clock "
                    f"{parent._clock!r}; a child reads its parent's clock"
                )
            if timers is None:
                timers = parent._timers
        if clock is None:
            clock = MONOTONIC if timers is None else timers.clock
        if timers is not None and not _same_clock(clock, timers.clock):
            raise ValueError(
                f"cancel scope {name!r}: its clock {clock!r} is not the clock of its timer "
                f"service {timers.clock!r}; deadlines would be read on different scales"
            )

        self._setup(self._own_deadline(deadline, timeout, clock, name), parent, clock, timers, name)

    def _setup(
        self,
        own: float | None,
        parent: CancelScope | None,
        clock: Clock,
        timers: TimerService | None,
        name: str,
    ) -> None:
        """Initialise a scope whose clock and timer service have been checked."""
        inherited = None if parent is None else parent._deadline
        if own is not None and (inherited is None or own < inherited):
            self._deadline = own
            self._deadline_owner = self
        else:
            self._deadline = inherited
            self._deadline_owner = None if parent is None else parent._deadline_owner

        self._name = name
        self._parent = parent
        self._clock = clock
        self._timers = timers
        self._lock = threading.Lock()
        self._reason = None
        self._children = None
        self._callbacks = None
        self._event = None
        self._closed = False
        self._timer = None
        if self._deadline_owner is self and timers is not None:
            assert own is not None
            # Scheduled before attaching, so a stopped service leaves no trace in the parent.
            self._timer = timers.schedule_at(own, _DeadlineReceiver(self), f"deadline {name!r}")
        if parent is not None:
            parent._attach(self)

    @staticmethod
    def _own_deadline(
        deadline: float | None, timeout: float | None, clock: Clock, name: str
    ) -> float | None:
        if deadline is not None and timeout is not None:
            raise ValueError(
                f"cancel scope {name!r}: give a deadline or a timeout, not both "
                f"(deadline={deadline!r}, timeout={timeout!r})"
            )
        if timeout is not None:
            timeout = _seconds(timeout, "timeout", name)
            if math.isnan(timeout) or timeout < 0:
                raise ValueError(
                    f"cancel scope {name!r}: timeout must be a non-negative number of seconds, "
                    f"got {timeout!r}"
                )
            return None if timeout == math.inf else clock.now() + timeout
        if deadline is not None:
            deadline = _seconds(deadline, "deadline", name)
            if math.isnan(deadline) or deadline == -math.inf:
                raise ValueError(
                    f"cancel scope {name!r}: deadline must be a time or math.inf, got {deadline!r}"
                )
            return None if deadline == math.inf else deadline
        return None

    def child(
        self, *, deadline: float | None = None, timeout: float | None = None, name: str = ""
    ) -> CancelScope:
        """Create a scope inside this one, with the same clock and timer service.

        Args:
            deadline: the child's own deadline; its effective deadline is the earlier of this
                and the parent's.
            timeout: the same as ``deadline=clock.now() + timeout``.
            name: the child's name.

        Returns:
            The new scope; it is already cancelled if this one is.
        """
        # The child's clock and timers are this scope's, already checked: only its own
        # deadline needs validating.
        own = self._own_deadline(deadline, timeout, self._clock, name)
        scope = CancelScope.__new__(CancelScope)
        scope._setup(own, self, self._clock, self._timers, name)
        return scope

    @property
    def name(self) -> str:
        """The scope's name."""
        return self._name

    @property
    def parent(self) -> CancelScope | None:
        """The enclosing scope, if any."""
        return self._parent

    @property
    def clock(self) -> Clock:
        """The clock the scope's deadline is read on."""
        return self._clock

    @property
    def timers(self) -> TimerService | None:
        """The timer service that enforces the scope's own deadline, if any."""
        return self._timers

    @property
    def deadline(self) -> float | None:
        """The effective deadline: the earlier of the scope's own and its parent's, or None."""
        return self._deadline

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def children(self) -> tuple[CancelScope, ...]:
        """The child scopes that have not been closed, in no particular order."""
        with self._lock:
            return () if self._children is None else tuple(self._children)

    @property
    def cancelled(self) -> bool:
        """Whether the scope is cancelled; a passed deadline cancels it now if needed."""
        if self._reason is not None:
            return True
        deadline = self._deadline
        # Checked here before the call: a leaf job asks twice per run.
        if deadline is None or self._clock.now() < deadline:
            return False
        return self._check_deadline()

    @property
    def reason(self) -> CancelReason | None:
        """Why the scope was cancelled, or ``None`` while it is not."""
        if self._reason is None:
            self._check_deadline()
        return self._reason

    def remaining(self) -> float | None:
        """Return the seconds left until the effective deadline (at least 0), or None."""
        deadline = self._deadline
        if deadline is None:
            return None
        return max(0.0, deadline - self._clock.now())

    def cancel(self, reason: CancelReason = CancelReason.CANCELLED) -> bool:
        """Cancel this scope and every scope below it.

        The first reason a scope receives is the one it keeps: descendants that were already
        cancelled keep theirs, and so do their own descendants. When this call returns, every
        open descendant is cancelled, the events that :meth:`wait` blocks on are set and the
        callbacks of the scopes this call cancelled have run, in this thread, descendants
        before their ancestors. No lock is held while callbacks run, so a callback may cancel,
        check or add callbacks to any scope. Callbacks that raise are logged on the
        ``castflow.cancel`` logger and do not stop the others.

        Args:
            reason: why.

        Returns:
            ``True`` if this call cancelled the scope, ``False`` if it was already cancelled.
        """
        propagation = _Propagation()
        if not propagation.mark(self, reason):
            return False
        propagation.spread()
        propagation.finish()
        return True

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~actors.runtime.errors.CancelledError` if the scope is cancelled.

        Raises:
            CancelledError: with the scope's reason in ``.reason``.
        """
        deadline = self._deadline
        if self._reason is not None or (
            deadline is not None and self._clock.now() >= deadline and self._check_deadline()
        ):
            reason = self._reason
            raise CancelledError(f"scope {self._name!r} cancelled: {reason}", reason=reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the scope is cancelled or ``timeout`` real seconds have passed.

        Under a real clock the scope's deadline also ends the wait (the scope is then
        cancelled). Under a clock that reports its moves (``ManualClock``) the wait ends when a
        move passes the deadline.

        Args:
            timeout: the most real seconds to wait; ``None`` waits until cancelled.

        Returns:
            Whether the scope is cancelled.

        Raises:
            ValueError: ``timeout`` is negative or NaN.
        """
        if timeout is not None:
            timeout = float(timeout)
            if math.isnan(timeout) or timeout < 0:
                raise ValueError(f"wait timeout must be non-negative seconds, got {timeout!r}")
        if self.cancelled:
            return True
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._reason is not None:
                    self._event.set()
            event = self._event
        remove_listener = _noop
        real_deadline = self._deadline
        if real_deadline is not None and isinstance(self._clock, ObservableClock):
            # Registered before the loop checks, so a move in between is not missed.
            remove_listener = self._clock.add_listener(self._check_deadline_listener)
            real_deadline = None
        try:
            end = None if timeout is None else time.monotonic() + timeout
            while not self.cancelled:
                bound = None if end is None else end - time.monotonic()
                if bound is not None and bound <= 0:
                    break
                if real_deadline is not None:
                    left = real_deadline - self._clock.now()
                    bound = left if bound is None else min(bound, left)
                event.wait(None if bound is None else min(max(bound, 0.0), threading.TIMEOUT_MAX))
        finally:
            remove_listener()
        return self.cancelled

    def add_callback(self, fn: Callable[[CancelScope], None]) -> Callable[[], None]:
        """Call ``fn(scope)`` once, when the scope is cancelled.

        If the scope is already cancelled, ``fn`` is called at once in this thread. Otherwise
        it is called in the thread that cancels the scope (the timer service's thread for a
        deadline), so it should be quick and must not block: set an event, cancel a task,
        send a message.

        Args:
            fn: the callback; an exception it raises is logged, not propagated.

        Returns:
            A function that unregisters ``fn`` (harmless after it ran or was removed).
        """
        if self._reason is None:
            self._check_deadline()
        with self._lock:
            if self._reason is None:
                token = next(_callback_tokens)
                if self._callbacks is None:
                    self._callbacks = {}
                self._callbacks[token] = fn
                return functools.partial(self._remove_callback, token)
        error = self._run_callback(fn)
        if error is not None:
            raise error
        return _noop

    def close(self) -> None:
        """Detach the scope from its parent and cancel its timer entry.

        A closed scope is no longer cancelled by its parent, and the parent no longer refers
        to it. Closing does not cancel the scope. Calling ``close`` again is harmless.
        """
        if self._closed:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._parent is not None:
            self._parent._detach(self)

    def __enter__(self) -> CancelScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._reason is None else f"cancelled ({self._reason})"
        if self._closed:
            state += ", closed"
        return f"<CancelScope {self._name!r} {state} deadline={self._deadline!r}>"

    def _check_deadline(self) -> bool:
        """Cancel with DEADLINE if the effective deadline has passed; return ``cancelled``."""
        deadline = self._deadline
        if deadline is None or self._clock.now() < deadline:
            return self._reason is not None
        owner = self._deadline_owner
        if owner is not None and owner is not self:
            # The deadline belongs to an enclosing scope: expire it there, as its timer would.
            owner.cancel(CancelReason.DEADLINE)
        self.cancel(CancelReason.DEADLINE)
        return True

    def _check_deadline_listener(self) -> None:
        self._check_deadline()

    def _attach(self, child: CancelScope) -> None:
        with self._lock:
            if self._children is None:
                self._children = set()
            self._children.add(child)
            reason = self._reason
        if reason is not None:
            child.cancel(reason)

    def _detach(self, child: CancelScope) -> None:
        with self._lock:
            if self._children is not None:
                self._children.discard(child)

    def _remove_callback(self, token: int) -> None:
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.pop(token, None)

    def _run_callback(self, fn: _Callback) -> BaseException | None:
        """Run ``fn``; log what it raises; return only what must still propagate."""
        try:
            fn(self)
        except (Exception, CancelledError):  # noqa: BLE001 - logged with the traceback
            _log.exception("callback %r of cancel scope %r raised", fn, self._name)
        except BaseException as exc:  # noqa: BLE001 - returned, and re-raised by the caller
            return exc
        return None


def _seconds(value: object, what: str, name: str) -> float:
    """``value`` as a float if it is a real number (not a bool).

    Raises:
        TypeError: it is not; the message names the scope and what was given.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"cancel scope {name!r}: {what} must be a number of seconds, got {value!r}"
        raise TypeError(msg)
    return float(value)
