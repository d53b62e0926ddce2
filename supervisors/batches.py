"""The batch protocol: what a batch of parallel branches is made of, and the messages about it.

A batch is the branches of one instance of a parallel step (``BranchBatch``: each a
``Branch``), with the ``AdmissionGate`` they are admitted through and the callback their
results go to. These are the facts and requests the branch supervisor, the gather and the
parallel coordinators exchange about it: the supervisor reports the branches' final results
(``BranchReport``, one for those that ended together), the end of the branches
(``BranchesExhausted``) or a cut (``BatchCut``) to the gather, several at a time in a
``BranchReports``; it is asked to run
a batch (``StartBatch``), to cancel what still runs of it (``CancelRemaining``, from the
gather) and to cut it (``CutBranches``, from the coordinator). The errors a branch fails
with when it is not admitted or cannot run as asked are here too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.errors import CastflowError
from actors.runtime.permits import Semaphore
from actors.runtime.results import ErrorInfo, StepResult
from actors.runtime.steps import Step, StepCall
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = [
    "AdmissionGate",
    "BatchCut",
    "BatchNotice",
    "Branch",
    "BranchBatch",
    "BranchReport",
    "BranchReports",
    "BranchesExhausted",
    "CancelRemaining",
    "CutBranches",
    "MemoryLimitUnsupportedError",
    "StartBatch",
    "TooManyAbandonedThreadsError",
]


class TooManyAbandonedThreadsError(CastflowError):
    """A branch was not admitted: too many abandoned threads are still alive in the system."""


class MemoryLimitUnsupportedError(CastflowError):
    """A memory limit was asked for a leaf that runs in a thread, where it cannot be enforced."""


# -- what a batch is made of ------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Branch:
    """One branch of a batch: which step runs, on what input, under which name.

    Read-only by contract (not frozen: one is made per branch, and a frozen dataclass costs
    twice as much to build).

    Attributes:
        index: the branch's position in the batch (results keep this order).
        name: the branch's name in records and paths.
        step: the step to run.
        input: makes the input of each attempt: a fresh copy each time, so branches (and
            retries) never share mutable state. If it raises, the attempt fails with that error.
        timeout: the branch's own per-attempt deadline, if it has one; the earlier of this and
            ``execution_timeout`` applies.
        semaphores: semaphores every leaf of the branch holds while it runs.
    """

    index: int
    name: str
    step: Step[Any]
    input: Callable[[], Any]
    timeout: float | None = None
    semaphores: tuple[Semaphore, ...] = ()


@dataclass(slots=True, eq=False)
class BranchReport:
    """Fact, to the gather: branches of batch ``key`` ended, branch ``indices[i]`` with
    ``results[i]``, in the order they ended (one report for the branches that ended together,
    not one per branch).

    Read-only by contract.

    Attributes:
        key: the batch.
        indices: the branches' indices.
        results: their final results (named as the branches, ``attempts`` counted).
        admitted: how many branches of the batch had been admitted when this was sent.
    """

    key: str
    indices: list[int]
    results: list[StepResult]
    admitted: int


@dataclass(frozen=True, slots=True)
class BranchesExhausted:
    """Fact, to the gather: batch ``key`` has no more branches; it had ``total``.

    Attributes:
        key: the batch.
        total: how many branches it had.
        error: why the branches ran out early (the iterator raised), if they did.
    """

    key: str
    total: int
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class BatchCut:
    """Fact, to the gather: batch ``key`` was cut (its scope was cancelled or timed out).

    Attributes:
        key: the batch.
        admitted: how many branches had been admitted: the gather records those without a
            result as cut (they started) and the others as skipped.
        why: the reason, for the unfinished branches' records.
    """

    key: str
    admitted: int
    why: str


BatchNotice = BranchReport | BranchesExhausted | BatchCut
"""What a branch supervisor tells a gather about a batch."""


@dataclass(frozen=True, slots=True)
class BranchReports:
    """Fact, to the gather: what happened to branches of one batch, in order."""

    items: tuple[BatchNotice, ...]


class AdmissionGate:
    """Where the branches of one batch are admitted; shared by its supervisor and its gather.

    The supervisor admits each branch through it; the gather closes it the moment it decides
    the batch (or asks to cancel the rest) and learns how many branches had been admitted.
    Both happen under one lock, so no branch starts after the decision, even before
    ``CancelRemaining`` reaches the supervisor, and the gather records exactly the branches
    that started as cut and the others as skipped.

    A ``paced`` gate also keeps the gather's backlog bounded: the supervisor counts the
    results it has sent (``sent``), the gather counts those it takes with :meth:`take`.
    While ``backlog_limit`` or more are on their way, the supervisor admits nothing; the
    gather calls ``on_room`` once it has caught up by half (both are set by the supervisor
    when the batch starts). A slow reducer holds the branches back instead of piling their
    results up in its mailbox.

    Args:
        paced: whether the receiver of the batch's reports calls :meth:`take` for each
            result of a ``BranchReport`` (``GatherActor`` does); an unpaced gate never holds
            admission.
    """

    __slots__ = (
        "_admitted",
        "_closed",
        "_lock",
        "_stalled",
        "backlog_limit",
        "on_room",
        "paced",
        "sent",
        "taken",
    )

    def __init__(self, *, paced: bool = False) -> None:
        self.paced = paced
        self._lock = threading.Lock()
        self._admitted = 0
        self._closed = False
        self._stalled = False
        # Each written by one thread only: ``sent`` by the supervisor, ``taken`` by the gather.
        self.sent = 0
        self.taken = 0
        self.backlog_limit = 0
        self.on_room: Callable[[], None] | None = None

    def admit(self, count: int = 1) -> bool:
        """Count ``count`` more branches admitted; False, counting nothing, once it is closed."""
        with self._lock:
            if self._closed:
                return False
            self._admitted += count
            return True

    def close(self) -> int:
        """Admit nothing more; return how many branches were admitted."""
        with self._lock:
            self._closed = True
            return self._admitted

    def stall(self) -> bool:
        """The supervisor's side: whether it must wait for the gather (``on_room`` then tells).

        Raises no flag the gather could miss: the backlog is read again after the flag is up.
        """
        with self._lock:
            self._stalled = True
            if self.sent - self.taken < self.backlog_limit:
                self._stalled = False
        return self._stalled

    def take(self, count: int = 1) -> None:
        """The gather's side: ``count`` results taken; wake a waiting supervisor once there is
        room."""
        self.taken += count
        if self._stalled and self.sent - self.taken <= self.backlog_limit // 2:
            with self._lock:
                wake, self._stalled = self._stalled, False
            if wake and self.on_room is not None:
                self.on_room()


@dataclass(slots=True, eq=False)
class BranchBatch:
    """The branches of one instance of a parallel step, and where their results go.

    Attributes:
        key: unique id of the batch (the instance's call id).
        call: the instance's call: its scope is the parent of every branch scope, its env,
            path and outputs are the branches'.
        branches: the branches, pulled lazily as slots free up.
        limits: the step's resource limits.
        retry: how failed attempts are retried; no retry if ``None``.
        report: receives every ``BranchReport`` and the final ``BranchesExhausted``, several
            at a time in a ``BranchReports``; must not block (it tells the gather actor).
        cancellation_timeout: the grace before a stuck leaf thread is abandoned.
        gate: admits the branches; the batch's gather closes it when it decides.
        successes_can_wait: no single successful result decides the batch before every branch
            has reported (all-success, partial-success, a reducer), and nobody streams them:
            the supervisor may take a success in a few milliseconds late, with others, while
            the workers restart the next branches (see ``Lane``).
    """

    key: str
    call: StepCall
    branches: Iterator[Branch]
    limits: ResourceLimits
    retry: RetryPolicy | None
    report: Callable[[BranchReports], None]
    cancellation_timeout: float
    gate: AdmissionGate = field(default_factory=AdmissionGate)
    successes_can_wait: bool = False


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartBatch:
    """Request: run the branches of ``batch``."""

    batch: BranchBatch


@dataclass(frozen=True, slots=True)
class CancelRemaining:
    """Request (from the gather, once it has decided): cancel what still runs of batch ``key``.

    Attributes:
        key: the batch.
        why: the reason, recorded in the cancelled branches' errors.
    """

    key: str
    why: str


@dataclass(frozen=True, slots=True)
class CutBranches:
    """Request (from the coordinator): the batch's scope ended; tell the gather, cancel the rest.

    Going through the supervisor, which knows exactly which branches it admitted, lets the
    gather record each unfinished branch as cut (it started) or skipped (it never did).

    Attributes:
        key: the batch.
        why: the reason.
    """

    key: str
    why: str
