"""ParallelWorkflow's gather strategies and error modes, and the order of its results."""

from __future__ import annotations

import dataclasses
import gc
import threading
import weakref
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    StepResult,
    WorkflowError,
    step,
    tool,
)
from actors.runtime.cancel import CancelReason
from actors.runtime.events import ActorStopped
from tests.helpers import WAIT
from tests.parallel_kit import (
    Gates,
    Probe,
    async_holding,
    holding,
    raising,
    returning,
    statuses,
    wait_until,
    watch_finished,
)
from tests.workflow_tools import double, inc

# -- FIRST_SUCCESS --------------------------------------------------------------------------------


def test_first_success_resolves_with_the_winner_while_the_losers_run_then_cancels_them(
    system: ActorSystem, gates: Gates
) -> None:
    release = gates.new()
    sync_loser = Probe(release)
    async_loser = Probe(release)

    def win(x: int) -> int:
        sync_loser.started.wait(WAIT)
        async_loser.started.wait(WAIT)
        return x * 10

    flow = ParallelWorkflow(
        [
            holding(sync_loser, "sync_loser", linger=True),
            async_holding(async_loser, "async_loser"),
            win,
        ],
        aggregation=Aggregation.FIRST_SUCCESS,
    )
    run = system.start(flow, 4)
    result = run.result(timeout=WAIT)
    # The losers are still gated: the result did not wait for them to end.
    assert not sync_loser.ended.is_set()
    assert not async_loser.ended.is_set()
    assert result.status is Status.OK
    assert result.value == 40
    assert statuses(result.steps) == [
        ("sync_loser", Status.CANCELLED),
        ("async_loser", Status.CANCELLED),
        ("win", Status.OK),
    ]
    assert sync_loser.cancelled.wait(WAIT)
    assert sync_loser.reason is CancelReason.CANCELLED
    assert async_loser.cancelled.wait(WAIT), "the async loser's task was not cancelled"
    release.set()
    assert sync_loser.ended.wait(WAIT)
    assert async_loser.ended.wait(WAIT)


def test_first_success_fails_only_once_every_branch_failed(system: ActorSystem) -> None:
    first, second = ValueError("first"), KeyError("second")
    flow = ParallelWorkflow(
        [raising(first, "a"), raising(second, "b")], aggregation=Aggregation.FIRST_SUCCESS
    )
    result = system.run(flow, 1)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("a", Status.ERROR), ("b", Status.ERROR)]
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert set(map(id, group.exceptions)) == {id(first), id(second)}


def test_first_success_ignores_failures_while_a_branch_can_still_win(system: ActorSystem) -> None:
    watch = watch_finished(system)
    flow = ParallelWorkflow(
        [
            raising(ValueError("no"), "fails"),
            returning(7, "wins", after=(watch.finished("fails"),)),
        ],
        aggregation=Aggregation.FIRST_SUCCESS,
    )
    result = system.run(flow, 1)
    assert result.status is Status.OK
    assert result.value == 7
    assert statuses(result.steps) == [("fails", Status.ERROR), ("wins", Status.OK)]


# -- ALL_SUCCESS ----------------------------------------------------------------------------------


def test_all_success_returns_every_value_in_input_order(system: ActorSystem) -> None:
    result = system.run(ParallelWorkflow([inc, double, step(inc, name="again")]), 5)
    assert result.status is Status.OK
    assert result.value == [6, 10, 6]
    assert [record.value for record in result.steps] == [6, 10, 6]
    assert all(record.attempts == 1 for record in result.steps)


def test_fail_fast_cancels_running_siblings_and_keeps_finished_results(
    system: ActorSystem, gates: Gates
) -> None:
    release = gates.new()
    sync_sibling = Probe(release)
    async_sibling = Probe(release)
    watch = watch_finished(system)
    ready = threading.Event()
    boom = ValueError("boom")

    def fail_when_ready(x: int) -> int:
        # Fail only once the ok branch is recorded and both siblings are running.
        for event in (watch.finished("inc"), sync_sibling.started, async_sibling.started):
            event.wait(WAIT)
        ready.set()
        raise boom

    flow = ParallelWorkflow(
        [
            inc,
            holding(sync_sibling, "sync_sibling", linger=True),
            async_holding(async_sibling, "async_sibling"),
            tool(fail_when_ready, name="fail"),
        ],
        error_mode=ErrorMode.FAIL_FAST,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert ready.is_set()
    assert result.status is Status.ERROR
    assert result.failed_step == "fail"
    assert statuses(result.steps) == [
        ("inc", Status.OK),
        ("sync_sibling", Status.CANCELLED),
        ("async_sibling", Status.CANCELLED),
        ("fail", Status.ERROR),
    ]
    assert result.steps[0].value == 2
    assert sync_sibling.cancelled.wait(WAIT)
    assert sync_sibling.reason is CancelReason.CANCELLED
    assert async_sibling.cancelled.wait(WAIT)
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert caught.value.__cause__ is boom
    assert caught.value.result is result


def test_fail_fast_never_starts_branches_queued_behind_the_failure(gates: Gates) -> None:
    release = gates.new()
    next_in_line = Probe(release)
    later = [Probe(release) for _ in range(3)]
    flow = ParallelWorkflow(
        [
            raising(ValueError("first"), "fail"),
            holding(next_in_line, "next"),
            *(holding(probe, f"later_{i}") for i, probe in enumerate(later)),
        ],
        max_concurrency=1,
    )
    with ActorSystem("queued") as system:
        result = system.run(flow, 1, timeout=WAIT)
        # The branch that took the freed slot was admitted: it is cut, and recorded as such.
        if next_in_line.started.is_set():
            assert next_in_line.cancelled.wait(WAIT)
        release.set()
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [
        ("fail", Status.ERROR),
        ("next", Status.CANCELLED),
        ("later_0", Status.SKIPPED),
        ("later_1", Status.SKIPPED),
        ("later_2", Status.SKIPPED),
    ]
    for record in result.steps[1:]:
        assert record.error is not None
        assert "failed before this branch finished" in record.error.message
    # Checked after shutdown: nothing can admit them any more.
    assert not any(probe.started.is_set() for probe in later)


def test_a_branch_recorded_skipped_never_ran(system: ActorSystem) -> None:
    ran: list[int] = []

    @tool
    def after(x: int) -> int:
        """Records that it ran."""
        ran.append(x)
        return x

    flow = ParallelWorkflow([raising(ValueError("no"), "fail"), after], max_concurrency=1)
    for i in range(30):
        result = system.run(flow, i, timeout=WAIT)
        record = result.step("after")
        assert record.status in (Status.CANCELLED, Status.SKIPPED)
        if record.status is Status.SKIPPED:
            assert i not in ran, f"run {i}: 'after' is recorded skipped but it ran"


def test_fail_slow_lets_every_branch_finish_and_reports_every_error(system: ActorSystem) -> None:
    watch = watch_finished(system)
    first, second = ValueError("first"), RuntimeError("second")
    # The ok branch finishes last, after both failures are decided: nothing cuts it.
    last = returning(99, "last", after=(watch.finished("a"), watch.finished("b")))
    flow = ParallelWorkflow(
        [raising(first, "a"), last, raising(second, "b")], error_mode=ErrorMode.FAIL_SLOW
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("a", Status.ERROR), ("last", Status.OK), ("b", Status.ERROR)]
    assert result.steps[1].value == 99
    assert result.error is not None
    assert "2 of 3 branches failed" in result.error.message
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [id(exc) for exc in group.exceptions] == [id(first), id(second)]


def test_fail_slow_waits_for_a_slow_branch_after_an_early_failure(
    system: ActorSystem, gates: Gates
) -> None:
    watch = watch_finished(system)
    slow = Probe(gates.new())
    run = system.start(
        ParallelWorkflow(
            [raising(ValueError("early"), "early"), holding(slow, "slow", value=5)],
            error_mode=ErrorMode.FAIL_SLOW,
        ),
        1,
    )
    assert watch.finished("early").wait(WAIT)
    assert slow.started.wait(WAIT)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.05)
    slow.release.set()
    result = run.result(timeout=WAIT)
    assert statuses(result.steps) == [("early", Status.ERROR), ("slow", Status.OK)]
    assert result.steps[1].value == 5
    assert not slow.cancelled.is_set()
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert isinstance(caught.value.__cause__, ValueError)


# -- PARTIAL_SUCCESS, quorum, custom --------------------------------------------------------------


def test_partial_success_returns_the_ok_values_in_input_order(system: ActorSystem) -> None:
    watch = watch_finished(system)
    flow = ParallelWorkflow(
        [
            returning("a", "a", after=(watch.finished("d"),)),
            raising(ValueError("b"), "b"),
            returning("c", "c"),
            returning("d", "d", after=(watch.finished("c"),)),
            raising(KeyError("e"), "e"),
        ],
        aggregation=Aggregation.PARTIAL_SUCCESS,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == ["a", "c", "d"]
    assert statuses(result.steps) == [
        ("a", Status.OK),
        ("b", Status.ERROR),
        ("c", Status.OK),
        ("d", Status.OK),
        ("e", Status.ERROR),
    ]


def test_partial_success_fails_only_when_no_branch_succeeded(system: ActorSystem) -> None:
    first, second = ValueError("x"), KeyError("y")
    flow = ParallelWorkflow(
        [raising(first, "a"), raising(second, "b")], aggregation=Aggregation.PARTIAL_SUCCESS
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [id(exc) for exc in group.exceptions] == [id(first), id(second)]


def test_quorum_succeeds_at_k_and_cancels_the_rest(system: ActorSystem, gates: Gates) -> None:
    release = gates.new()
    pending = [Probe(release), Probe(release)]
    flow = ParallelWorkflow(
        [
            holding(pending[0], "pending_0"),
            returning(1, "one"),
            returning(2, "two"),
            holding(pending[1], "pending_1"),
        ],
        aggregation=Aggregation.quorum(2),
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [1, 2]
    assert statuses(result.steps) == [
        ("pending_0", Status.CANCELLED),
        ("one", Status.OK),
        ("two", Status.OK),
        ("pending_1", Status.CANCELLED),
    ]
    for probe in pending:
        if probe.started.is_set():
            assert probe.cancelled.wait(WAIT)
            assert probe.reason is CancelReason.CANCELLED


def test_quorum_under_fail_fast_fails_once_fewer_than_k_can_succeed(
    system: ActorSystem, gates: Gates
) -> None:
    release = gates.new()
    running = [Probe(release), Probe(release)]
    first, second = ValueError("first"), ValueError("second")
    flow = ParallelWorkflow(
        [
            holding(running[0], "running_0"),
            raising(first, "a", after=(running[0].started, running[1].started)),
            raising(second, "b", after=(running[0].started, running[1].started)),
            holding(running[1], "running_1"),
        ],
        aggregation=Aggregation.quorum(3),
        error_mode=ErrorMode.FAIL_FAST,
    )
    # The holding branches never finish by themselves: the run ends because 4 - 2 < 3.
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [
        ("running_0", Status.CANCELLED),
        ("a", Status.ERROR),
        ("b", Status.ERROR),
        ("running_1", Status.CANCELLED),
    ]
    for probe in running:
        assert probe.cancelled.wait(WAIT)
        assert probe.reason is CancelReason.CANCELLED
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert {id(exc) for exc in group.exceptions} == {id(first), id(second)}


def test_quorum_under_fail_slow_waits_for_every_branch(system: ActorSystem) -> None:
    watch = watch_finished(system)
    flow = ParallelWorkflow(
        [
            raising(ValueError("a"), "a"),
            raising(ValueError("b"), "b"),
            returning(3, "late", after=(watch.finished("a"), watch.finished("b"))),
        ],
        aggregation=Aggregation.quorum(2),
        error_mode=ErrorMode.FAIL_SLOW,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("a", Status.ERROR), ("b", Status.ERROR), ("late", Status.OK)]


def test_custom_is_called_once_with_every_result_in_input_order(system: ActorSystem) -> None:
    watch = watch_finished(system)
    calls: list[list[tuple[str, Status, Any]]] = []

    def summarise(records: list[StepResult]) -> str:
        calls.append([(r.name, r.status, r.value) for r in records])
        return "+".join(str(r.value) for r in records if r.ok)

    boom = ValueError("boom")
    flow = ParallelWorkflow(
        [
            returning("x", "first", after=(watch.finished("third"),)),
            raising(boom, "second"),
            returning("z", "third"),
        ],
        aggregation=Aggregation.custom(summarise),
        error_mode=ErrorMode.FAIL_SLOW,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == "x+z"
    assert calls == [
        [("first", Status.OK, "x"), ("second", Status.ERROR, None), ("third", Status.OK, "z")]
    ]


def test_custom_under_fail_fast_cancels_the_rest_and_still_sees_every_record(
    system: ActorSystem,
) -> None:
    pending = Probe()
    calls: list[list[tuple[str, Status]]] = []

    def summarise(records: list[StepResult]) -> int:
        calls.append([(r.name, r.status) for r in records])
        return len(records)

    flow = ParallelWorkflow(
        [raising(ValueError("no"), "fails", after=(pending.started,)), holding(pending, "pending")],
        aggregation=Aggregation.custom(summarise),
        error_mode=ErrorMode.FAIL_FAST,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 2
    assert calls == [[("fails", Status.ERROR), ("pending", Status.CANCELLED)]]
    assert pending.cancelled.wait(WAIT)
    assert pending.reason is CancelReason.CANCELLED


def test_a_custom_function_that_raises_fails_the_step(system: ActorSystem) -> None:
    problem = ArithmeticError("cannot combine")

    def combine(records: list[StepResult]) -> int:
        raise problem

    result = system.run(ParallelWorkflow([inc, double], aggregation=Aggregation.custom(combine)), 1)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("inc", Status.OK), ("double", Status.OK)]
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert caught.value.__cause__ is problem


# -- order ----------------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.integers(1, 10).flatmap(lambda n: st.permutations(range(n))),
    latencies=st.lists(st.floats(0.0, 0.003), min_size=10, max_size=10),
)
def test_results_keep_input_order_whatever_the_completion_order(
    system: ActorSystem, order: list[int], latencies: list[float]
) -> None:
    n = len(order)
    done = [threading.Event() for _ in range(n)]
    completed: list[int] = []
    lock = threading.Lock()

    def finish_in_turn(i: int) -> int:
        # Branch order[k] finishes after branch order[k - 1]: a chosen completion order.
        position = order.index(i)
        if position > 0:
            done[order[position - 1]].wait(WAIT)
        threading.Event().wait(latencies[i])
        with lock:
            completed.append(i)
        done[i].set()
        return i * 10

    body = tool(finish_in_turn, name="finish_in_turn")
    flow = ParallelWorkflow(
        [step(body, name=f"b{i}", input=lambda _x, i=i: i) for i in range(n)],
        max_concurrency=n,
    )
    result = system.run(flow, None, timeout=WAIT)
    assert completed == list(order)
    assert result.value == [i * 10 for i in range(n)]
    assert [record.name for record in result.steps] == [f"b{i}" for i in range(n)]


# -- branch inputs --------------------------------------------------------------------------------


class Locked:
    """A value the codec cannot copy: it holds a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_a_branch_mutating_its_input_affects_neither_a_sibling_nor_the_caller(
    system: ActorSystem,
) -> None:
    mutated = threading.Event()
    seen: dict[str, Any] = {}

    def mutate(data: Any) -> int:
        data["items"].append(99)
        data["count"] = -1
        seen["mutator"] = data
        mutated.set()
        return len(data["items"])

    def read(data: Any) -> int:
        # Reads only once the sibling has mutated its own copy.
        mutated.wait(WAIT)
        seen["reader"] = data
        return len(data["items"])

    original = {"data": {"items": [1, 2, 3], "count": 3}}
    flow = ParallelWorkflow([tool(mutate, name="mutate"), tool(read, name="read")])
    result = system.run(flow, original, timeout=WAIT)
    assert result.value == [4, 3]
    assert seen["reader"] == {"items": [1, 2, 3], "count": 3}
    assert seen["mutator"] is not seen["reader"]
    assert original == {"data": {"items": [1, 2, 3], "count": 3}}


@dataclasses.dataclass
class Order:
    id: int
    lines: list[str]


def test_a_dataclass_input_reaches_each_branch_as_its_own_copy_of_its_own_type(
    system: ActorSystem,
) -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    def take(order: Any) -> str:
        with lock:
            seen.append(order)
        order.lines.append("mine")
        return type(order).__name__

    one = tool(take, name="one")
    original = Order(7, ["a"])
    sequential = SequentialWorkflow([one])
    parallel = ParallelWorkflow([one, tool(take, name="two")])
    assert system.run(sequential, Order(7, ["a"]), timeout=WAIT).value == "Order"
    # Bound as the sequential step binds it: one value of its own type, not keyword fields.
    assert system.run(parallel, original, timeout=WAIT).value == ["Order", "Order"]
    copies = seen[1:]
    assert all(isinstance(order, Order) and order.id == 7 for order in copies)
    assert copies[0] is not copies[1]
    assert sorted(map(len, (order.lines for order in copies))) == [2, 2]
    assert original == Order(7, ["a"])


def test_paths_and_fractions_are_shared_as_the_immutable_values_they_are(
    system: ActorSystem,
) -> None:
    def kind(value: Any) -> str:
        return type(value).__name__

    flow = ParallelWorkflow([tool(kind, name="one"), tool(kind, name="two")])
    assert system.run(flow, Fraction(1, 3), timeout=WAIT).value == ["Fraction", "Fraction"]
    path_kind = type(PurePosixPath("/tmp")).__name__
    assert system.run(flow, PurePosixPath("/tmp"), timeout=WAIT).value == [path_kind] * 2


def test_shared_inputs_are_the_callers_object_with_copy_input_none(system: ActorSystem) -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    def keep(value: Any) -> int:
        with lock:
            seen.append(value)
        return 1

    shared = [Locked()]
    flow = ParallelWorkflow([tool(keep, name="one"), tool(keep, name="two")], copy_input="none")
    assert system.run(flow, shared, timeout=WAIT).value == [1, 1]
    assert len(seen) == 2
    assert all(value is shared for value in seen)


def test_an_input_that_cannot_be_copied_fails_the_step_naming_the_error(
    system: ActorSystem,
) -> None:
    ran: list[Any] = []

    def keep(value: Any) -> int:
        ran.append(value)
        return 1

    flow = ParallelWorkflow([tool(keep, name="one"), tool(keep, name="two")])
    result = system.run(flow, {"value": {"nested": [Locked()]}}, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.type.endswith("InputNotCopyableError")
    assert "copy_input='none'" in result.error.message
    assert ran == []
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert type(caught.value.__cause__).__name__ == "InputNotCopyableError"


class _Payload:
    """A branch's value that a test can watch with a weak reference."""


@pytest.mark.parametrize("aggregation", [Aggregation.ALL_SUCCESS, Aggregation.FIRST_SUCCESS])
def test_a_finished_run_s_result_goes_without_the_cyclic_collector(
    system: ActorSystem, aggregation: Aggregation
) -> None:
    # A long-running service must get a finished run's result back by reference counting,
    # not at the next full collection: no cycle through the run's actors may hold it.
    @tool
    def make(x: int) -> object:
        """A fresh payload per branch."""
        return _Payload()

    stopped: list[str] = []
    system.events.subscribe(
        lambda event: stopped.append(event.actor) if isinstance(event, ActorStopped) else None,
        kinds=(ActorStopped,),
    )
    flow = ParallelWorkflow([make] * 50, max_concurrency=4, aggregation=aggregation)
    gc.disable()
    try:
        result = system.run(flow, 1, timeout=WAIT)
        assert result.status is Status.OK
        values = result.value if isinstance(result.value, list) else [result.value]
        refs = [weakref.ref(value) for value in values]
        assert len(refs) == (50 if aggregation is Aggregation.ALL_SUCCESS else 1)
        del result, values
        # The run's coordinator, gather and branch supervisor have stopped.
        wait_until(lambda: sum("-leaf-" not in name for name in stopped) >= 3)
        assert [ref for ref in refs if ref() is not None] == []
    finally:
        gc.enable()
