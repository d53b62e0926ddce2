"""``GatherActor`` and the aggregation strategies that decide a parallel step.

One gather actor serves one parallel definition node in one run, for every instance of it (a
*batch* each). For each batch it holds a :class:`GatherPolicy` (the strategy's state) and feeds
it the branch results the branch supervisor reports. The moment the policy decides, the gather
resolves the caller; only then does it ask the branch supervisor to cancel what still runs, so
cleanup never delays the result.

Strategies (:class:`Aggregation`):

- ``ALL_SUCCESS``: every branch must succeed; the value is the list of values in input order.
- ``FIRST_SUCCESS``: the first branch to succeed wins; its value is the value.
- ``PARTIAL_SUCCESS``: every branch runs; the value is the list of the successful branches'
  values in input order; it fails only if none succeeded.
- ``quorum(k)``: succeeds once ``k`` branches have succeeded (the value is their values in
  input order); fails as soon as fewer than ``k`` can still succeed.
- ``custom(fn)``: ``fn(list[StepResult])`` computes the value once every branch has a result
  (under ``FAIL_FAST`` the rest is cancelled at the first failure; the cut branches' records
  say ``cancelled`` or ``skipped``).

:class:`ErrorMode` says when failure is decided: ``FAIL_FAST`` as soon as the strategy can no
longer succeed (then the rest is cancelled), ``FAIL_SLOW`` only once every branch has finished,
reporting every error (an ``ExceptionGroup``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Protocol, cast

from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.errors import CastflowError
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import RunEnv
from supervisors.batches import (
    AdmissionGate,
    BatchCut,
    BatchNotice,
    BranchesExhausted,
    BranchReport,
    BranchReports,
)

__all__ = [
    "Aggregation",
    "BranchFailedError",
    "ErrorMode",
    "ExpectBatch",
    "GatherActor",
    "GatherOutcome",
    "GatherPolicy",
    "StrategyPolicy",
    "Verdict",
]


class ErrorMode(StrEnum):
    """When a parallel step decides that it failed."""

    FAIL_FAST = "fail_fast"
    """As soon as the strategy can no longer succeed; the remaining branches are cancelled."""
    FAIL_SLOW = "fail_slow"
    """Only once every branch has finished; every error is reported."""


class BranchFailedError(CastflowError):
    """Stands for a branch failure that carried no exception (a timeout, a cancellation)."""


@dataclass(frozen=True, slots=True)
class Aggregation:
    """How the results of a parallel step's branches become its result.

    Use the constants ``Aggregation.ALL_SUCCESS``, ``FIRST_SUCCESS``, ``PARTIAL_SUCCESS`` or
    the constructors ``Aggregation.quorum(k)`` and ``Aggregation.custom(fn)``.

    Attributes:
        kind: ``"all_success"``, ``"first_success"``, ``"partial_success"``, ``"quorum"`` or
            ``"custom"``.
        k: for a quorum, how many successes decide.
        fn: for custom, ``fn(list[StepResult]) -> value``, called once every branch has a
            result (in input order); if it raises, the step fails with that error.
    """

    kind: str
    k: int | None = None
    fn: Callable[[list[StepResult]], Any] | None = field(default=None, compare=False)

    ALL_SUCCESS: ClassVar[Aggregation]
    FIRST_SUCCESS: ClassVar[Aggregation]
    PARTIAL_SUCCESS: ClassVar[Aggregation]

    @classmethod
    def quorum(cls, k: int) -> Aggregation:
        """Succeed once ``k`` branches succeeded.

        Raises:
            ValueError: ``k`` is not an int >= 1.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            msg = f"quorum needs k >= 1 successes, got {k!r}"
            raise ValueError(msg)
        return cls("quorum", k=k)

    @classmethod
    def custom(cls, fn: Callable[[list[StepResult]], Any]) -> Aggregation:
        """Compute the value with ``fn(results)`` once every branch has a result.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if not callable(fn):
            msg = f"custom aggregation needs a function of list[StepResult], got {fn!r}"
            raise TypeError(msg)
        return cls("custom", fn=fn)

    def __str__(self) -> str:
        return f"quorum({self.k})" if self.kind == "quorum" else self.kind


Aggregation.ALL_SUCCESS = Aggregation("all_success")
Aggregation.FIRST_SUCCESS = Aggregation("first_success")
Aggregation.PARTIAL_SUCCESS = Aggregation("partial_success")


# -- policies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision about a batch: its status, value or error, and the child that failed it.

    ``counts`` (items per status) is set by policies over collections too large to record
    one by one.
    """

    status: Status
    value: Any = None
    error: ErrorInfo | None = None
    failed_step: str | None = None
    counts: dict[str, int] | None = None


CANCEL_REST = object()
"""Returned by ``GatherPolicy.add``: cancel the unfinished branches, but do not decide yet."""


class GatherPolicy(Protocol):
    """The state of one strategy for one batch. Called only on the gather actor's thread.

    A policy may also have a ``successes_can_wait`` attribute: true when no single successful
    result decides the batch before every branch has reported (all-success, partial-success,
    a reducer). Successes may then reach the gather a few milliseconds late, several at a
    time, while the workers restart the next branches. Without it, every result is sent on
    at once.

    It may also have a ``runs_code_per_result`` attribute: true when ``add`` runs the user's
    code on each result (a reducer). The gather then checks the step's scope after each, so
    a deadline that passes while that code runs cuts the step at once.
    """

    def add(self, index: int, result: StepResult) -> Verdict | object | None:
        """Take branch ``index``'s result; a ``Verdict`` if the batch is decided now."""
        ...

    def exhausted(self, total: int, error: ErrorInfo | None) -> Verdict | None:
        """The batch has ``total`` branches in all (``error``: its source failed)."""
        ...

    def cut(self, status: Status, error: ErrorInfo) -> Verdict:
        """Decide now: the batch's scope was cancelled or its deadline passed."""
        ...

    def settle(self, admitted: int, why: str) -> Verdict:
        """Decide now: the rest was cancelled at this policy's request (``CANCEL_REST``).

        Every admitted branch has reported; those never admitted have no result.
        """
        ...

    def records(self, admitted: int, why: str, unfinished: Status) -> list[StepResult]:
        """The records of the batch's branches at decision time, in input order.

        Branches without a result get ``unfinished`` (``cancelled`` or ``timeout``) if they
        were admitted, ``skipped`` otherwise, with ``why`` as their error message.
        """
        ...


class StrategyPolicy:
    """The :class:`GatherPolicy` of a parallel step over a known list of branches.

    Args:
        names: the branch names, in input order.
        aggregation: the strategy.
        error_mode: when failure is decided.
        where: names the step in error messages.

    Attributes:
        successes_can_wait: the strategy is all-success or partial-success (see
            :class:`GatherPolicy`).
    """

    def __init__(
        self, names: Sequence[str], aggregation: Aggregation, error_mode: ErrorMode, where: str
    ) -> None:
        self._names = names
        self._aggregation = aggregation
        self._fast = error_mode is ErrorMode.FAIL_FAST
        self._where = where
        self._results: list[StepResult | None] = [None] * len(names)
        self._done = 0
        self._ok = 0
        self._failed = 0
        self._cancel_sent = False
        # The class's function, not a bound method: a policy must not reference itself, or
        # its results would wait for the cyclic collector instead of going with the run.
        self._judge_kind: Callable[[StrategyPolicy, StepResult, bool], Verdict | object | None] = (
            getattr(StrategyPolicy, f"_judge_{aggregation.kind}")
        )
        self.successes_can_wait = aggregation.kind in ("all_success", "partial_success")

    def add(self, index: int, result: StepResult) -> Verdict | object | None:
        """Record a branch result and decide if the strategy can."""
        if self._results[index] is not None:
            return None
        self._results[index] = result
        self._done += 1
        all_done = self._done == len(self._names)
        if result.status is Status.OK:
            self._ok += 1
            if self.successes_can_wait and not all_done:
                return None  # all- and partial-success decide on a success only at the end
        else:
            self._failed += 1
        return self._judge_kind(self, result, all_done)

    def _judge_first_success(self, latest: StepResult, all_done: bool) -> Verdict | None:
        if latest.ok:
            return Verdict(Status.OK, latest.value)
        return self._failure() if all_done else None

    def _judge_all_success(self, _latest: StepResult, all_done: bool) -> Verdict | None:
        if all_done and self._failed == 0:
            return Verdict(Status.OK, self._values())
        if self._failed and (self._fast or all_done):
            return self._failure()
        return None

    def _judge_partial_success(self, _latest: StepResult, all_done: bool) -> Verdict | None:
        if not all_done:
            return None
        return Verdict(Status.OK, self._values()) if self._ok else self._failure()

    def _judge_quorum(self, _latest: StepResult, all_done: bool) -> Verdict | None:
        k = self._aggregation.k or 1
        if self._ok >= k:
            return Verdict(Status.OK, self._values())
        cannot = len(self._names) - self._failed < k
        if cannot and (self._fast or all_done):
            return self._failure()
        return None

    def _judge_custom(self, latest: StepResult, all_done: bool) -> Verdict | object | None:
        if all_done:
            return self._custom()
        if self._fast and not latest.ok and not self._cancel_sent:
            self._cancel_sent = True
            return CANCEL_REST
        return None

    def _values(self) -> list[Any]:
        if self._ok == len(self._results):
            # Every branch succeeded (the usual end): no per-record checks over a long batch.
            return [r.value for r in cast("list[StepResult]", self._results)]
        return [r.value for r in self._results if r is not None and r.ok]

    def _custom(self) -> Verdict:
        fn = self._aggregation.fn
        assert fn is not None
        records = [r for r in self._results if r is not None]
        try:
            value = fn(records)
        except BaseException as exc:  # noqa: BLE001 - the user's function failing fails the step
            return Verdict(Status.ERROR, error=ErrorInfo.from_exception(exc))
        return Verdict(Status.OK, value)

    def _failure(self) -> Verdict:
        failed = [
            (name, r)
            for name, r in zip(self._names, self._results, strict=True)
            if r is not None and not r.ok
        ]
        return failure_verdict(failed, len(self._names), str(self._aggregation), self._where)

    def exhausted(self, total: int, error: ErrorInfo | None) -> Verdict | None:
        """Nothing to do: the branches were known from the start (unless the source failed)."""
        if error is not None:
            return Verdict(Status.ERROR, error=error)
        return None

    def cut(self, status: Status, error: ErrorInfo) -> Verdict:
        """The batch's scope ended it: its status is the scope's."""
        return Verdict(status, error=error)

    def settle(self, admitted: int, why: str) -> Verdict:
        """``custom`` under ``FAIL_FAST``: ``fn`` sees every branch, the cut ones included."""
        for index, name in enumerate(self._names):
            if self._results[index] is None:
                status = Status.CANCELLED if index < admitted else Status.SKIPPED
                self._results[index] = _unfinished(name, status, why)
        return self._custom()

    def records(self, admitted: int, why: str, unfinished: Status) -> list[StepResult]:
        """Every branch's record in input order; unfinished ones marked with ``why``."""
        if self._done == len(self._results):
            return list(cast("list[StepResult]", self._results))
        out: list[StepResult] = []
        for index, (name, result) in enumerate(zip(self._names, self._results, strict=True)):
            if result is not None:
                out.append(result)
            elif index < admitted:
                out.append(_unfinished(name, unfinished, why))
            else:
                out.append(_unfinished(name, Status.SKIPPED, why))
        return out


def failure_verdict(
    failed: Sequence[tuple[str, StepResult]],
    total: int,
    strategy: str,
    where: str,
    *,
    failed_count: int | None = None,
) -> Verdict:
    """The failure of a batch whose failed branches are ``failed``: one error, or a group.

    A single failure keeps the branch's own exception as the cause; several become an
    ``ExceptionGroup``. The status is ``timeout`` if every failure was a timeout.
    ``failed_count`` is the number of failures when ``failed`` holds only the first few.
    """
    count = len(failed) if failed_count is None else failed_count
    if not failed:
        info = ErrorInfo(type="castflow.NoBranches", message=f"{where}: no branch succeeded")
        return Verdict(Status.ERROR, error=info)
    status = Status.TIMEOUT if all(r.status is Status.TIMEOUT for _n, r in failed) else Status.ERROR
    if count == 1:
        name, record = failed[0]
        error = record.error
        described = "timed out" if record.status is Status.TIMEOUT else f"failed: {error}"
        message = f"{where} ({strategy}): branch {name!r} {described}"
        info = ErrorInfo(
            type=error.type if error is not None else "castflow.BranchFailed",
            message=message,
            traceback=error.traceback if error is not None else None,
            exception=error.exception if error is not None else None,
        )
        return Verdict(status, error=info, failed_step=name)
    parts = ", ".join(f"{name} ({_short(record)})" for name, record in failed)
    more = f" and {count - len(failed)} more" if count > len(failed) else ""
    message = f"{where} ({strategy}): {count} of {total} branches failed: {parts}{more}"
    group = ExceptionGroup(message, [_exception_of(name, record) for name, record in failed])
    info = ErrorInfo(type="builtins.ExceptionGroup", message=message, exception=group)
    return Verdict(status, error=info, failed_step=failed[0][0])


def _short(record: StepResult) -> str:
    if record.status is Status.TIMEOUT:
        return "timeout"
    return str(record.error) if record.error is not None else record.status.value


def _exception_of(name: str, record: StepResult) -> Exception:
    error = record.error
    if error is not None and isinstance(error.exception, Exception):
        return error.exception
    if record.status is Status.TIMEOUT:
        return TimeoutError(f"branch {name!r} timed out")
    detail = f": {error}" if error is not None else ""
    return BranchFailedError(f"branch {name!r} ended {record.status.value}{detail}")


def _unfinished(name: str, status: Status, why: str) -> StepResult:
    kind = {
        Status.SKIPPED: "castflow.Skipped",
        Status.TIMEOUT: "castflow.Timeout",
    }.get(status, "castflow.Cancelled")
    return StepResult(name=name, status=status, error=ErrorInfo(type=kind, message=why))


# -- the actor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatherOutcome:
    """What the gather hands the caller: the verdict and every branch's record.

    Attributes:
        key: the batch.
        verdict: the decision.
        records: the branches' records in input order (as the policy keeps them).
        started_at: ``time.monotonic()`` when the gather learned of the batch.
        started_wall: the wall-clock time of the same moment.
    """

    key: str
    verdict: Verdict
    records: list[StepResult]
    started_at: float
    started_wall: datetime


@dataclass(frozen=True, slots=True)
class ExpectBatch:
    """Request: gather batch ``key`` with ``policy``.

    Attributes:
        key: the batch.
        policy: the strategy's state for this batch.
        scope: the batch's scope (a cancelled scope decides the status of a cut).
        decided: receives the outcome once, the moment the policy decides; must not block.
        cancel_rest: asks the branch supervisor to cancel what still runs; must not block.
        env: the run's environment: while someone streams the run (``env.partials``), each
            branch result is pushed there as it arrives.
        path: the step's path in the run, under which its branches' results are streamed.
        gate: the batch's admission gate, closed here when the batch is decided (or the rest
            is cancelled), so no branch starts after that; ``None`` if there is none.
    """

    key: str
    policy: GatherPolicy
    scope: CancelScope
    decided: Callable[[GatherOutcome], None]
    cancel_rest: Callable[[str], None]
    env: RunEnv | None = None
    path: str = ""
    gate: AdmissionGate | None = None


@dataclass(slots=True, eq=False)
class _Batch:
    expect: ExpectBatch
    started_at: float
    started_wall: datetime
    admitted: int = 0
    total: int | None = None
    reported: int = 0
    rest_cancelled: bool = False
    cut_from_above: bool = False  # a branch ended unfinished once the step's scope had ended


class GatherActor(Actor):
    """Collects branch results per batch and resolves each batch the moment it is decided."""

    reuse_thread = True  # one per parallel node per run: a parked thread saves a thread start
    _fenced_when_abandoned = False

    def __init__(self) -> None:
        super().__init__()
        self._batches: dict[str, _Batch] = {}

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message of the gather protocol."""
        match message:
            case BranchReports(items):
                self._take(items)
            case BranchReport() | BranchesExhausted() | BatchCut():
                self._take((message,))
            case ExpectBatch(key):
                self._batches[key] = _Batch(message, time.monotonic(), datetime.now(UTC))
            case _:
                return super().on_receive(message)
        return None

    def _take(self, items: Iterable[BatchNotice]) -> None:
        """Take in notices, in order."""
        batches = self._batches
        for item in items:
            batch = batches.get(item.key)
            if batch is None:
                continue  # decided already: a late result
            if isinstance(item, BranchReport):
                self._take_report(batch, item)
            else:
                self._take_notice(batch, item)

    def _take_report(self, batch: _Batch, report: BranchReport) -> None:
        """Fold the results of a report in, in order, until the batch is decided."""
        expect = batch.expect
        count = len(report.indices)
        if expect.gate is not None:
            expect.gate.take(count)
        batch.reported += count
        batch.admitted = max(batch.admitted, report.admitted)
        env = expect.env
        partials = None if env is None else env.partials
        add = expect.policy.add
        batches = self._batches
        scope = expect.scope
        # Results that ended in time are taken in even once the step was cut; the user's
        # aggregation code that runs past the step's deadline is cut, as a tool would be.
        in_time = not scope.cancelled
        watch_each = in_time and getattr(expect.policy, "runs_code_per_result", False)
        for index, result in zip(report.indices, report.results, strict=True):
            if partials is not None:
                # Before the policy sees it: a deciding branch streams before the result.
                partials.push(expect.path, result)
            status = result.status
            if (status is Status.TIMEOUT or status is Status.CANCELLED) and scope.cancelled:
                batch.cut_from_above = True
            verdict = add(index, result)
            if (watch_each or (in_time and verdict is not None)) and scope.cancelled:
                self._cut(batch)
                return
            if verdict is not None:
                self._apply(batch, verdict)
                if batches.get(expect.key) is not batch:
                    return  # decided: the rest are late results

    def _take_notice(self, batch: _Batch, item: BranchesExhausted | BatchCut) -> None:
        """Take in the end of a batch's branches, or its cut."""
        if isinstance(item, BatchCut):
            batch.admitted = max(batch.admitted, item.admitted)
            if batch.rest_cancelled and not batch.expect.scope.cancelled:
                # The end of the cancellation the policy asked for, not a cut from above.
                self._decide(batch, batch.expect.policy.settle(batch.admitted, item.why), item.why)
                return
            status, error = _cut_status(batch.expect.scope, item.why)
            self._decide(batch, batch.expect.policy.cut(status, error), item.why)
            return
        batch.total = item.total
        batch.admitted = max(batch.admitted, item.total)
        self._apply(batch, batch.expect.policy.exhausted(item.total, item.error))

    def _apply(self, batch: _Batch, verdict: Verdict | object | None) -> None:
        if verdict is None:
            return
        if verdict is CANCEL_REST:
            batch.rest_cancelled = True
            self._close_gate(batch)
            batch.expect.cancel_rest("a sibling branch failed (fail_fast)")
            return
        assert isinstance(verdict, Verdict)
        scope = batch.expect.scope
        if scope.cancelled and (verdict.status is not Status.OK or batch.cut_from_above):
            # The branches failed, or a success is partial, because the step's own scope
            # ended: the step was cut, and says so (a deadline is a timeout, not a success).
            self._cut(batch)
            return
        if verdict.status is Status.OK:
            why = "not needed: the step had its result before this branch finished"
        else:
            why = "cancelled: the step failed before this branch finished"
        self._decide(batch, verdict, why)

    def _cut(self, batch: _Batch) -> None:
        """Decide ``batch`` as its step's scope ended it (its deadline or a cancellation)."""
        scope = batch.expect.scope
        why = _why(scope)
        status, error = _cut_status(scope, why)
        self._decide(batch, batch.expect.policy.cut(status, error), why)

    def _close_gate(self, batch: _Batch) -> None:
        """Admit no more branches; count exactly those that were."""
        gate = batch.expect.gate
        if gate is not None:
            batch.admitted = max(batch.admitted, gate.close())

    def _decide(self, batch: _Batch, verdict: Verdict, why: str) -> None:
        expect = batch.expect
        del self._batches[expect.key]
        self._close_gate(batch)
        scope = expect.scope
        unfinished = (
            Status.TIMEOUT
            if scope.cancelled and scope.reason is CancelReason.DEADLINE
            else Status.CANCELLED
        )
        records = expect.policy.records(batch.admitted, why, unfinished)
        expect.decided(
            GatherOutcome(expect.key, verdict, records, batch.started_at, batch.started_wall)
        )
        # Only after the caller has its result: cleanup never delays it. Once every branch
        # admitted (an exact count now that the gate is closed) has reported, nothing is left
        # to cancel, and the run may already be stopping its supervisor.
        if expect.gate is None or batch.reported < batch.admitted:
            expect.cancel_rest(why)

    def on_stop(self) -> None:
        """Decide every batch still open as cancelled (the run or the system is ending)."""
        for batch in list(self._batches.values()):
            status, error = _cut_status(batch.expect.scope, "the run has ended")
            self._decide(batch, batch.expect.policy.cut(status, error), "the run has ended")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Fail every batch still open: a crashed gather leaves no step waiting for it."""
        info = ErrorInfo(
            type="castflow.GatherCrashed",
            message=f"the gather of {self.handle.name!r} crashed: {exception_value!r}",
        )
        for batch in list(self._batches.values()):
            self._decide(batch, Verdict(Status.ERROR, error=info), "the gather crashed")


def _why(scope: CancelScope) -> str:
    if scope.reason is CancelReason.DEADLINE:
        return "the step's deadline passed before it finished"
    if scope.reason is CancelReason.SHUTDOWN:
        return "the system shut down before it finished"
    return "the step was cancelled before it finished"


def _cut_status(scope: CancelScope, why: str) -> tuple[Status, ErrorInfo]:
    if scope.reason is CancelReason.DEADLINE:
        return Status.TIMEOUT, ErrorInfo(type="castflow.Timeout", message=why)
    return Status.CANCELLED, ErrorInfo(type="castflow.Cancelled", message=why)
