"""Named semaphores held by leaf executions, and the pools of permits behind them.

A :class:`Semaphore` is a definition: a name, a number of permits and how long a leaf may wait
for one. Its state, a :class:`PermitPool`, lives in the system (``scope="system"``, the
default: an API quota is per process) or in one run (``scope="run"``). Only leaf executions
hold permits, and waiting for one is a state, never a blocked thread: a leaf that cannot get
its permits is parked in the pool's queue and its executor is told when they are granted.

A leaf that needs several semaphores acquires them one at a time in name order, so two leaves
can never each hold what the other waits for.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from actors.runtime.errors import CastflowError

__all__ = [
    "PermitPool",
    "PermitRegistry",
    "PermitRequest",
    "PermitTimeoutError",
    "Semaphore",
    "SemaphoreConflictError",
    "request_permits",
]

SemaphoreScope = Literal["system", "run"]


class SemaphoreConflictError(CastflowError):
    """Two definitions of one named semaphore disagree (permits or timeout)."""


class PermitTimeoutError(CastflowError):
    """A leaf waited longer than its semaphore's ``timeout`` for a permit."""


@dataclass(frozen=True, slots=True)
class Semaphore:
    """A named limit on how many leaf executions may run at once, across a whole system or run.

    Attach it to a step with ``step(tool, semaphores=[llm])``: every leaf execution under that
    step (the tool itself, or every tool inside a nested workflow) holds one permit while it
    runs. Semaphores of the same name share their permits; by default across the whole
    system, with ``scope="run"`` within one run.

    Args:
        name: the semaphore's name; definitions with one name must agree.
        permits: how many leaf executions may hold it at once (>= 1).
        timeout: the most seconds a leaf waits for a permit before it fails with
            ``PermitTimeoutError`` (every wait has a deadline).
        scope: ``"system"`` (shared by every run of the system) or ``"run"``.

    Raises:
        ValueError: an argument is out of range; the message names it.
    """

    name: str
    permits: int
    timeout: float = 60.0
    scope: SemaphoreScope = "system"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            msg = f"semaphore name must be a non-empty string, got {self.name!r}"
            raise ValueError(msg)
        if isinstance(self.permits, bool) or not isinstance(self.permits, int) or self.permits < 1:
            msg = f"semaphore {self.name!r}: permits must be an int >= 1, got {self.permits!r}"
            raise ValueError(msg)
        timeout = self.timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or math.isnan(timeout)
            or timeout <= 0
        ):
            msg = f"semaphore {self.name!r}: timeout must be > 0 seconds, got {timeout!r}"
            raise ValueError(msg)
        if self.scope not in ("system", "run"):
            msg = f"semaphore {self.name!r}: scope must be 'system' or 'run', got {self.scope!r}"
            raise ValueError(msg)


class PermitRequest:
    """One leaf's place in the queues of the semaphores it needs.

    Built by :func:`request_permits`; ``cancel()`` withdraws a request that is still waiting
    and gives back any permit it already holds; ``release()`` gives back the permits of a
    granted request once its leaf has really ended. Both are idempotent.
    """

    __slots__ = ("_granted", "_held", "_lock", "_on_granted", "_pools", "_position", "_withdrawn")

    def __init__(self, pools: Sequence[PermitPool], on_granted: Callable[[], None]) -> None:
        self._pools = pools
        self._on_granted = on_granted
        self._lock = threading.Lock()
        self._held: list[PermitPool] = []
        self._position = 0
        self._granted = False
        self._withdrawn = False

    @property
    def granted(self) -> bool:
        """Whether every permit has been granted."""
        return self._granted

    @property
    def waiting_for(self) -> Semaphore | None:
        """The semaphore this request waits for, if it is waiting."""
        with self._lock:
            if self._granted or self._withdrawn or self._position >= len(self._pools):
                return None
            return self._pools[self._position].semaphore

    def _advance(self) -> None:
        """Acquire the next permits in order; tell the owner once all are held."""
        while True:
            with self._lock:
                if self._withdrawn:
                    return
                if self._position >= len(self._pools):
                    self._granted = True
                    break
                pool = self._pools[self._position]
            if not pool._acquire_or_wait(self):
                return  # parked: the pool calls _granted_one when a permit frees up
        self._on_granted()

    def _granted_one(self, pool: PermitPool) -> bool:
        """Called by ``pool`` when it hands this request a permit; False if it was withdrawn."""
        with self._lock:
            if self._withdrawn:
                return False
            self._held.append(pool)
            self._position += 1
        self._advance()
        return True

    def cancel(self) -> None:
        """Withdraw the request: leave any queue, give back any permit already held."""
        with self._lock:
            if self._withdrawn:
                return
            self._withdrawn = True
            held, self._held = self._held, []
            waiting = None if self._position >= len(self._pools) else self._pools[self._position]
        if waiting is not None:
            waiting._forget(self)
        for pool in reversed(held):
            pool._release()

    def release(self) -> None:
        """Give back every permit (the leaf holding them has ended)."""
        self.cancel()


class PermitPool:
    """The permits of one semaphore: a count and a queue of waiting requests."""

    __slots__ = ("_free", "_lock", "_waiting", "semaphore")

    def __init__(self, semaphore: Semaphore) -> None:
        self.semaphore = semaphore
        self._lock = threading.Lock()
        self._free = semaphore.permits
        self._waiting: deque[PermitRequest] = deque()

    @property
    def available(self) -> int:
        """Permits not held by anyone."""
        return self._free

    @property
    def waiting(self) -> int:
        """Requests parked in the queue."""
        return len(self._waiting)

    def _acquire_or_wait(self, request: PermitRequest) -> bool:
        # Lock order is always pool, then request; ``cancel`` never holds both.
        with self._lock, request._lock:
            if request._withdrawn:
                return False
            if self._free > 0 and not self._waiting:
                self._free -= 1
                request._held.append(self)
                request._position += 1
                return True
            self._waiting.append(request)
            return False

    def _forget(self, request: PermitRequest) -> None:
        with self._lock:
            try:
                self._waiting.remove(request)
            except ValueError:
                return

    def _release(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._free += 1
                    return
                # The permit passes straight to the next waiter: it never becomes free.
                nxt = self._waiting.popleft()
            if nxt._granted_one(self):
                return

    def __repr__(self) -> str:
        sem = self.semaphore
        return f"PermitPool({sem.name!r}, {self._free}/{sem.permits} free, {self.waiting} waiting)"


class PermitRegistry:
    """The pools of the semaphores defined in one system (or one run), by name."""

    __slots__ = ("_lock", "_pools", "scope")

    def __init__(self, scope: SemaphoreScope) -> None:
        self.scope = scope
        self._lock = threading.Lock()
        self._pools: dict[str, PermitPool] = {}

    def pool(self, semaphore: Semaphore) -> PermitPool:
        """The pool of ``semaphore``, created on first use.

        Raises:
            SemaphoreConflictError: a semaphore of that name was defined differently.
        """
        with self._lock:
            pool = self._pools.get(semaphore.name)
            if pool is None:
                pool = self._pools[semaphore.name] = PermitPool(semaphore)
                return pool
        if pool.semaphore != semaphore:
            old = pool.semaphore
            msg = (
                f"semaphore {semaphore.name!r} is already defined with {old.permits} permits "
                f"and timeout {old.timeout} s; cannot use it with {semaphore.permits} permits "
                f"and timeout {semaphore.timeout} s"
            )
            raise SemaphoreConflictError(msg)
        return pool

    def get(self, name: str) -> PermitPool | None:
        """The pool of the semaphore called ``name``, if one was used."""
        with self._lock:
            return self._pools.get(name)

    def __repr__(self) -> str:
        return f"PermitRegistry({self.scope!r}, {sorted(self._pools)})"


def request_permits(
    semaphores: Iterable[Semaphore],
    registries: Callable[[SemaphoreScope], PermitRegistry],
    on_granted: Callable[[], None],
) -> PermitRequest:
    """Queue for one permit of each semaphore, in name order.

    ``on_granted`` is called once every permit is held: at once (on this thread) if they are
    free, else later on the thread that released the last one. It must not block.

    Args:
        semaphores: the semaphores to hold (duplicates by name count once).
        registries: the registry of each scope (the system's, the run's).
        on_granted: called once all permits are held.

    Raises:
        SemaphoreConflictError: a semaphore clashes with an earlier definition of its name.
    """
    unique = {(sem.scope, sem.name): sem for sem in semaphores}
    pools = [registries(sem.scope).pool(sem) for _key, sem in sorted(unique.items())]
    request = PermitRequest(pools, on_granted)
    request._advance()
    return request
