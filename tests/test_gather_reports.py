"""The gather folds a report of several branches in order, and stops where it decides.

The branch supervisor hands the results of the branches that ended together in one
``BranchReport``. These tests drive a ``GatherActor`` with such reports directly and check
the order of the fold, what a decision in the middle of a report leaves out, and the
counts at the admission gate.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from actors.gather import (
    Aggregation,
    ErrorMode,
    ExpectBatch,
    GatherActor,
    GatherOutcome,
    StrategyPolicy,
)
from actors.runtime.cancel import CancelScope
from actors.runtime.errors import CastflowError
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.system import ActorSystem
from supervisors.batches import AdmissionGate, BranchesExhausted, BranchReport, BranchReports
from tests.helpers import WAIT

NAMES = ["a", "b", "c", "d"]


def _ok(name: str, value: int) -> StepResult:
    return StepResult(name=name, status=Status.OK, value=value)


def _failed(name: str) -> StepResult:
    error = ErrorInfo.from_exception(CastflowError(f"{name} failed"), with_traceback=False)
    return StepResult(name=name, status=Status.ERROR, error=error)


class _Batch:
    """One batch gathered by a fresh ``GatherActor``: its outcome, and what it asked to cut."""

    def __init__(self, system: ActorSystem, aggregation: Aggregation, mode: ErrorMode) -> None:
        self.outcome: concurrent.futures.Future[GatherOutcome] = concurrent.futures.Future()
        self.cut: list[str] = []
        self.gate = AdmissionGate(paced=True)
        self.gate.backlog_limit = 1_000
        assert self.gate.admit(len(NAMES))
        self.gather = system.spawn(GatherActor)
        self.gather.tell(
            ExpectBatch(
                "k",
                StrategyPolicy(NAMES, aggregation, mode, "test"),
                CancelScope(),
                self.outcome.set_result,
                self.cut.append,
                gate=self.gate,
            )
        )

    def report(self, *reports: BranchReport) -> None:
        self.gather.tell(BranchReports(reports))


def _report(*pairs: tuple[int, StepResult]) -> BranchReport:
    return BranchReport("k", [index for index, _ in pairs], [r for _, r in pairs], len(NAMES))


def test_the_first_success_of_a_report_wins_and_the_ones_after_it_are_late(
    system: ActorSystem,
) -> None:
    batch = _Batch(system, Aggregation.FIRST_SUCCESS, ErrorMode.FAIL_SLOW)
    batch.report(_report((1, _failed("b")), (2, _ok("c", 3)), (0, _ok("a", 1))))
    outcome = batch.outcome.result(WAIT)
    assert outcome.verdict.status is Status.OK
    assert outcome.verdict.value == 3
    records = {r.name: r.status for r in outcome.records}
    # Folded in order: "a" came after the winner, so it is recorded as cut, never as the
    # winner; "d" never reported.
    assert records == {
        "a": Status.CANCELLED,
        "b": Status.ERROR,
        "c": Status.OK,
        "d": Status.CANCELLED,
    }
    assert batch.gate.taken == 3


def test_a_fail_fast_failure_in_the_middle_of_a_report_decides_there(
    system: ActorSystem,
) -> None:
    batch = _Batch(system, Aggregation.ALL_SUCCESS, ErrorMode.FAIL_FAST)
    batch.report(_report((0, _ok("a", 1)), (3, _failed("d")), (1, _ok("b", 2))))
    outcome = batch.outcome.result(WAIT)
    assert outcome.verdict.status is Status.ERROR
    statuses = [r.status for r in outcome.records]
    assert statuses == [Status.OK, Status.CANCELLED, Status.CANCELLED, Status.ERROR]


@pytest.mark.parametrize("aggregation", [Aggregation.ALL_SUCCESS, Aggregation.PARTIAL_SUCCESS])
def test_successes_and_a_slow_failure_decide_nothing_before_the_last_report(
    system: ActorSystem, aggregation: Aggregation
) -> None:
    batch = _Batch(system, aggregation, ErrorMode.FAIL_SLOW)
    batch.report(_report((2, _ok("c", 3)), (1, _failed("b"))), _report((0, _ok("a", 1))))
    # Asked, so answered once the gather has taken everything before it (its mailbox is FIFO).
    batch.gather.ask(BranchesExhausted("k", len(NAMES))).result(WAIT)
    # Nothing is decided with one branch outstanding, whatever the reports held.
    assert not batch.outcome.done()
    assert batch.gate.taken == 3
    batch.report(_report((3, _ok("d", 4))))
    outcome = batch.outcome.result(WAIT)
    expected = Status.ERROR if aggregation is Aggregation.ALL_SUCCESS else Status.OK
    assert outcome.verdict.status is expected
    if expected is Status.OK:
        assert outcome.verdict.value == [1, 3, 4]
    assert batch.gate.taken == 4
