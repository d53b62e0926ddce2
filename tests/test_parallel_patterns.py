"""ScatterGatherWorkflow, FanOutWorkflow and ForkJoinWorkflow: results, failures, nesting."""

from __future__ import annotations

import threading
import time

import pytest

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    ToolContext,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowStepResult,
    step,
    tool,
)
from actors.runtime.cancel import CancelReason
from actors.workflows.fan_out import FanOutWorkflow, SplitterOutputError
from actors.workflows.fork_join import ForkJoinWorkflow
from actors.workflows.scatter_gather import ScatterGatherWorkflow
from tests.helpers import WAIT
from tests.parallel_kit import Gates, Meter, Probe, holding, metered, raising, returning, statuses
from tests.workflow_tools import double, fail, inc


@tool
def words(text: str) -> list[str]:
    """Split a text into words."""
    return text.split()


@tool
def length(word: str) -> int:
    """The length of a word; longer words answer sooner, so completion order is reversed."""
    time.sleep(max(0.0, 0.03 - 0.005 * len(word)))
    return len(word)


@tool
def total(values: list[int]) -> int:
    """Add the values."""
    return sum(values)


@tool
def numbers(n: int) -> list[int]:
    """``[0, 1, ..., n - 1]``."""
    return list(range(n))


# -- ScatterGatherWorkflow ------------------------------------------------------------------------


def test_scatter_gather_is_a_parallel_step_defaulting_to_first_success() -> None:
    flow = ScatterGatherWorkflow([inc, double], name="search")
    assert flow.kind == "scatter_gather"
    assert flow.aggregation == Aggregation.FIRST_SUCCESS
    assert flow.error_mode is ErrorMode.FAIL_FAST
    assert flow.max_concurrency == 10
    assert [spec.name for spec in flow.sources] == ["inc", "double"]
    assert isinstance(flow, ParallelWorkflow)


def test_scatter_gather_returns_the_first_answer_and_cancels_the_slow_sources(
    system: ActorSystem, gates: Gates
) -> None:
    release = gates.new()
    slow_a, slow_b = Probe(release), Probe(release)
    fast = returning(42, "fast", after=(slow_a.started, slow_b.started))
    flow = ScatterGatherWorkflow([holding(slow_a, "slow_a"), holding(slow_b, "slow_b"), fast])
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "scatter_gather"
    assert result.value == 42
    assert statuses(result.steps) == [
        ("slow_a", Status.CANCELLED),
        ("slow_b", Status.CANCELLED),
        ("fast", Status.OK),
    ]
    # On the leaf side: each slow source's ctx.scope.wait() returned True (cancelled).
    assert slow_a.cancelled.wait(WAIT)
    assert slow_b.cancelled.wait(WAIT)
    assert slow_a.reason is CancelReason.CANCELLED
    assert slow_b.reason is CancelReason.CANCELLED
    assert slow_a.ended.wait(WAIT)
    assert slow_b.ended.wait(WAIT)


def test_scatter_gather_with_a_quorum_returns_once_k_sources_answered(
    system: ActorSystem, gates: Gates
) -> None:
    slow = Probe(gates.new())
    first = returning(1, "first", after=(slow.started,))
    second = returning(2, "second", after=(slow.started,))
    flow = ScatterGatherWorkflow(
        [first, holding(slow, "slow"), second], aggregation=Aggregation.quorum(2)
    )
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [1, 2]
    assert statuses(result.steps) == [
        ("first", Status.OK),
        ("slow", Status.CANCELLED),
        ("second", Status.OK),
    ]
    assert slow.cancelled.wait(WAIT)


def test_scatter_gather_fails_when_every_source_failed_and_reports_each_error(
    system: ActorSystem,
) -> None:
    first, second = ValueError("down"), KeyError("missing")
    flow = ScatterGatherWorkflow([raising(first, "a"), raising(second, "b")], name="search")
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("a", Status.ERROR), ("b", Status.ERROR)]
    assert result.error is not None
    assert "scatter_gather 'search'" in result.error.message
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert {id(exc) for exc in group.exceptions} == {id(first), id(second)}


def test_scatter_gather_builder_keeps_the_scatter_gather_defaults() -> None:
    flow = ScatterGatherWorkflow.builder().add_step(inc).add_step(double).build()
    assert isinstance(flow, ScatterGatherWorkflow)
    assert flow.aggregation == Aggregation.FIRST_SUCCESS


def test_scatter_gather_refuses_a_quorum_it_can_never_reach() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"scatter_gather 'sg': quorum\(3\)"):
        ScatterGatherWorkflow([inc, double], name="sg", aggregation=Aggregation.quorum(3))


def test_scatter_gather_runs_as_a_step_of_a_sequential_workflow(system: ActorSystem) -> None:
    flow = SequentialWorkflow(
        [inc, ScatterGatherWorkflow([inc, double], aggregation=Aggregation.ALL_SUCCESS), total]
    )
    result = system.run(flow, 2, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 4 + 6
    inner = result.step("scatter_gather")
    assert isinstance(inner, WorkflowStepResult)
    assert inner.kind == "scatter_gather"
    assert statuses(inner.steps) == [("inc", Status.OK), ("double", Status.OK)]


# -- FanOutWorkflow -----------------------------------------------------------------------------


def test_fan_out_splits_runs_a_worker_per_item_and_aggregates_in_item_order(
    system: ActorSystem,
) -> None:
    flow = FanOutWorkflow(words, step(length, name="worker"), total, name="letters")
    result = system.run(flow, "a bb ccc dddd", timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "fan_out"
    assert result.value == 10
    assert statuses(result.steps) == [
        ("words", Status.OK),
        ("worker[0]", Status.OK),
        ("worker[1]", Status.OK),
        ("worker[2]", Status.OK),
        ("worker[3]", Status.OK),
        ("total", Status.OK),
    ]
    assert [record.value for record in result.steps[1:5]] == [1, 2, 3, 4]


def test_fan_out_without_an_aggregator_outputs_the_worker_values_in_item_order(
    system: ActorSystem,
) -> None:
    result = system.run(FanOutWorkflow(words, length), "ccc a bb", timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [3, 1, 2]
    assert [record.name for record in result.steps] == [
        "words",
        "length[0]",
        "length[1]",
        "length[2]",
    ]


def test_fan_out_accepts_plain_functions_as_splitter_and_aggregator(system: ActorSystem) -> None:
    def halves(n: int) -> list[int]:
        return [n // 2, n - n // 2]

    def largest(values: list[int]) -> int:
        return max(values)

    result = system.run(FanOutWorkflow(halves, double, largest), 7, timeout=WAIT)
    assert result.value == 8


def test_fan_out_admits_at_most_max_concurrency_workers_at_once(system: ActorSystem) -> None:
    meter = Meter()
    flow = FanOutWorkflow(numbers, metered(meter, "work", latency=0.01), max_concurrency=3)
    result = system.run(flow, 12, timeout=WAIT)
    assert result.value == list(range(12))
    assert meter.entries == 12
    assert 1 <= meter.peak <= 3


def test_fan_out_fails_fast_on_a_failed_item_cancelling_the_others_and_skipping_the_aggregator(
    system: ActorSystem,
) -> None:
    seen_cancelled: list[int] = []
    lock = threading.Lock()
    waiting = threading.Semaphore(0)

    def work(x: int, ctx: ToolContext) -> int:
        if x == 1:
            for _ in range(2):  # fail only once both others are running
                assert waiting.acquire(timeout=WAIT)
            raise ValueError(f"item {x} is bad")
        waiting.release()
        if ctx.scope.wait(WAIT):
            with lock:
                seen_cancelled.append(x)
        return x

    flow = FanOutWorkflow(numbers, step(tool(work), name="worker"), total, max_concurrency=3)
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "worker[1]"
    assert statuses(result.steps) == [
        ("numbers", Status.OK),
        ("worker[0]", Status.CANCELLED),
        ("worker[1]", Status.ERROR),
        ("worker[2]", Status.CANCELLED),
        ("total", Status.SKIPPED),
    ]
    with pytest.raises(WorkflowError, match="item 1 is bad"):
        _ = result.value
    deadline = time.monotonic() + WAIT
    while len(seen_cancelled) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sorted(seen_cancelled) == [0, 2]


def test_fan_out_fail_slow_reports_every_failed_item(system: ActorSystem) -> None:
    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    flow = FanOutWorkflow(numbers, odd_fails, total, error_mode=ErrorMode.FAIL_SLOW)
    result = system.run(flow, 4, timeout=WAIT)
    assert result.status is Status.ERROR
    assert [status for _name, status in statuses(result.steps)] == [
        Status.OK,
        Status.OK,
        Status.ERROR,
        Status.OK,
        Status.ERROR,
        Status.SKIPPED,
    ]
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert sorted(str(exc) for exc in group.exceptions) == ["odd 1", "odd 3"]


def test_fan_out_partial_success_aggregates_the_successful_values(system: ActorSystem) -> None:
    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    flow = FanOutWorkflow(numbers, odd_fails, total, aggregation=Aggregation.PARTIAL_SUCCESS)
    result = system.run(flow, 5, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 0 + 2 + 4


def test_fan_out_fails_naming_the_splitter_when_it_fails(system: ActorSystem) -> None:
    result = system.run(FanOutWorkflow(fail, inc, total), 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "fail"
    assert statuses(result.steps) == [("fail", Status.ERROR), ("total", Status.SKIPPED)]


def test_fan_out_refuses_a_splitter_output_that_is_not_a_list_of_items(
    system: ActorSystem,
) -> None:
    @tool
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    result = system.run(FanOutWorkflow(shout, inc), "abc", timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "shout"
    assert result.error is not None
    assert isinstance(result.error.exception, SplitterOutputError)
    assert "must return a list of items" in result.error.message


def test_fan_out_with_no_items_gives_the_aggregator_an_empty_list(system: ActorSystem) -> None:
    result = system.run(FanOutWorkflow(numbers, inc, total), 0, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 0
    assert statuses(result.steps) == [("numbers", Status.OK), ("total", Status.OK)]


def test_fan_out_fails_when_planned_if_a_quorum_exceeds_the_items(system: ActorSystem) -> None:
    flow = FanOutWorkflow(numbers, inc, aggregation=Aggregation.quorum(3))
    result = system.run(flow, 2, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "quorum(3) can never be reached with 2 items" in result.error.message


def test_fan_out_worker_may_be_a_parallel_workflow(system: ActorSystem) -> None:
    flow = FanOutWorkflow(numbers, ParallelWorkflow([inc, double], name="both"))
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [[1, 0], [2, 2], [3, 4]]
    first = result.step("both[0]")
    assert isinstance(first, WorkflowStepResult)
    assert first.kind == "parallel"
    assert statuses(first.steps) == [("inc", Status.OK), ("double", Status.OK)]


def test_fan_out_runs_as_a_step_of_a_sequential_workflow(system: ActorSystem) -> None:
    flow = SequentialWorkflow([inc, FanOutWorkflow(numbers, double, total), inc])
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == (0 + 2 + 4 + 6) + 1


def test_fan_out_deadline_cuts_the_workers_and_records_the_timeout(
    system: ActorSystem, gates: Gates
) -> None:
    probe = Probe(gates.new())
    flow = FanOutWorkflow(numbers, holding(probe, "hold"), total, timeout=0.2)
    result = system.run(flow, 2, timeout=WAIT)
    assert result.status is Status.TIMEOUT
    assert statuses(result.steps) == [
        ("numbers", Status.OK),
        ("hold[0]", Status.TIMEOUT),
        ("hold[1]", Status.TIMEOUT),
        ("total", Status.SKIPPED),
    ]
    assert probe.cancelled.wait(WAIT)


# -- ForkJoinWorkflow ---------------------------------------------------------------------------


def test_fork_join_joins_named_branches_into_a_dict_by_name(system: ActorSystem) -> None:
    flow = ForkJoinWorkflow(
        {"plus": inc, "times": double, "both": SequentialWorkflow([inc, double])},
        name="join",
    )
    assert flow.names == ("plus", "times", "both")
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "fork_join"
    assert result.value == {"plus": 4, "times": 6, "both": 8}
    assert list(result.value) == ["plus", "times", "both"]
    assert statuses(result.steps) == [
        ("plus", Status.OK),
        ("times", Status.OK),
        ("both", Status.OK),
    ]
    assert result.step("both/double").value == 8


def test_fork_join_fails_fast_cancelling_the_other_branches(
    system: ActorSystem, gates: Gates
) -> None:
    probe = Probe(gates.new())
    boom = ValueError("boom")
    flow = ForkJoinWorkflow(
        {"slow": holding(probe, "hold"), "bad": raising(boom, "raise", after=(probe.started,))}
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "bad"
    assert statuses(result.steps) == [("slow", Status.CANCELLED), ("bad", Status.ERROR)]
    assert probe.cancelled.wait(WAIT)
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert caught.value.__cause__ is boom


def test_fork_join_fail_slow_reports_every_error(system: ActorSystem) -> None:
    flow = ForkJoinWorkflow(
        {"a": raising(ValueError("a"), "ra"), "ok": inc, "b": raising(KeyError("b"), "rb")},
        error_mode=ErrorMode.FAIL_SLOW,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [
        ("a", Status.ERROR),
        ("ok", Status.OK),
        ("b", Status.ERROR),
    ]
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert len(group.exceptions) == 2


def test_fork_join_branch_may_be_a_parallel_and_it_nests_in_a_sequential(
    system: ActorSystem,
) -> None:
    fork = ForkJoinWorkflow(
        {"par": ParallelWorkflow([inc, double]), "seq": SequentialWorkflow([double, inc])}
    )
    flow = SequentialWorkflow([inc, fork])
    result = system.run(flow, 2, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == {"par": [4, 6], "seq": 7}
    assert result.step("fork_join/par/double").value == 6


def test_fork_join_refuses_bad_definitions() -> None:
    with pytest.raises(WorkflowDefinitionError, match="branches is empty"):
        ForkJoinWorkflow({})
    with pytest.raises(WorkflowDefinitionError, match="must be a mapping"):
        ForkJoinWorkflow([inc])  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="without '/'"):
        ForkJoinWorkflow({"a/b": inc})
    with pytest.raises(WorkflowDefinitionError, match="is not a step"):
        ForkJoinWorkflow({"a": 42})


# -- nesting and threads --------------------------------------------------------------------------


def test_patterns_nest_in_each_other_inside_a_sequential(system: ActorSystem) -> None:
    inner = ForkJoinWorkflow(
        {
            "fan": FanOutWorkflow(numbers, ScatterGatherWorkflow([double], name="sg"), total),
            "par": ParallelWorkflow([inc, FanOutWorkflow(numbers, inc, total, name="f2")]),
        }
    )
    flow = SequentialWorkflow([inc, inner])
    result = system.run(flow, 2, timeout=WAIT)
    assert result.status is Status.OK
    # input 3: fan -> 0 + 2 + 4; par -> [4, 1 + 2 + 3]
    assert result.value == {"fan": 6, "par": [4, 6]}


def test_a_large_fan_out_adds_threads_for_its_pool_not_for_its_items(
    system: ActorSystem,
) -> None:
    system.run(SequentialWorkflow([inc]), 1, timeout=WAIT)  # warm the system's own threads
    baseline = threading.active_count()
    seen: list[int] = []

    def count_threads(x: int) -> int:
        seen.append(threading.active_count())
        return x

    flow = FanOutWorkflow(numbers, count_threads, total, max_concurrency=4)
    result = system.run(flow, 60, timeout=WAIT)
    assert result.value == sum(range(60))
    # Coordinator, gather, branch supervisor, at most 4 pooled workers, a little slack.
    assert max(seen) - baseline <= 4 + 6
    report = system.shutdown(timeout=WAIT)
    assert report.clean
