"""MapReduceWorkflow: lazy items, incremental reduce, failures, bounded memory."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    MapReduceWorkflow,
    ParallelWorkflow,
    ReducerError,
    ResourceLimits,
    SequentialWorkflow,
    Status,
    ToolContext,
    WorkflowDefinitionError,
    WorkflowError,
    tool,
)
from tests.helpers import WAIT


@tool
def square(x: int) -> int:
    """Square a number."""
    return x * x


@tool
def reject_multiples_of_three(x: int) -> int:
    """Fail on multiples of three."""
    if x % 3 == 0:
        msg = f"bad item {x}"
        raise ValueError(msg)
    return x


def add(acc: int, value: int) -> int:
    """Sum reducer."""
    return acc + value


class CountingItems:
    """An item source that records how far it has been read ahead of finished items."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0
        self.finished = 0
        self.max_ahead = 0
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            with self._lock:
                self.pulled += 1
                self.max_ahead = max(self.max_ahead, self.pulled - self.finished)
            yield i

    def done(self) -> None:
        with self._lock:
            self.finished += 1


def test_map_reduce_folds_every_value_into_the_accumulator(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(square, add, initial=0, max_concurrency=4)
    result = system.run(flow, range(200), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == sum(i * i for i in range(200))
    assert result.counts == {"ok": 200}
    assert result.steps == []


def test_map_reduce_without_a_reducer_collects_values_in_input_order(
    system: ActorSystem,
) -> None:
    result = system.run(MapReduceWorkflow(square, max_concurrency=3), [3, 1, 2], timeout=WAIT)
    assert result.value == [9, 1, 4]


def test_map_reduce_over_no_items_returns_the_initial_value(system: ActorSystem) -> None:
    result = system.run(MapReduceWorkflow(square, add, initial=7), [], timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 7


def test_map_reduce_selects_its_items_from_the_input(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(square, add, initial=0, items="numbers")
    result = system.run(flow, {"numbers": [1, 2, 3]}, timeout=WAIT)
    assert result.value == 14


def test_indexed_reducer_receives_index_and_value_pairs(system: ActorSystem) -> None:
    def place(acc: dict[int, int], pair: tuple[int, int]) -> dict[int, int]:
        index, value = pair
        acc[index] = value
        return acc

    flow = MapReduceWorkflow(square, place, initial={}, indexed=True)
    result = system.run(flow, [5, 6], timeout=WAIT)
    assert result.value == {0: 25, 1: 36}


def test_the_initial_accumulator_is_copied_for_each_run(system: ActorSystem) -> None:
    initial: list[int] = []

    def append(acc: list[int], value: int) -> list[int]:
        acc.append(value)
        return acc

    flow = MapReduceWorkflow(square, append, initial=initial, max_concurrency=1)
    first = system.run(flow, [1, 2], timeout=WAIT)
    second = system.run(flow, [3], timeout=WAIT)
    assert first.value == [1, 4]
    assert second.value == [9]
    assert initial == []


def test_fail_fast_stops_at_the_first_failed_item(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(reject_multiples_of_three, add, initial=0, max_concurrency=1)
    result = system.run(flow, range(1, 100), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "reject_multiples_of_three[2]"
    assert result.counts is not None
    assert result.counts["error"] == 1
    assert sum(result.counts.values()) < 99
    with pytest.raises(WorkflowError) as caught:
        _ = result.value
    assert isinstance(caught.value.__cause__, ValueError)


def test_fail_slow_runs_every_item_and_reports_the_first_failures(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(
        reject_multiples_of_three,
        add,
        initial=0,
        error_mode=ErrorMode.FAIL_SLOW,
        keep_results=2,
    )
    result = system.run(flow, range(30), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.counts == {"ok": 20, "error": 10}
    assert len(result.steps) == 2
    assert all(record.status is Status.ERROR for record in result.steps)
    assert result.error is not None
    assert "10 of 30" in result.error.message
    assert isinstance(result.error.exception, ExceptionGroup)


def test_partial_success_folds_the_successful_values(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(
        reject_multiples_of_three, add, initial=0, aggregation=Aggregation.PARTIAL_SUCCESS
    )
    result = system.run(flow, range(10), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 1 + 2 + 4 + 5 + 7 + 8
    assert result.counts == {"ok": 6, "error": 4}


def test_a_failing_reducer_fails_the_run_with_reducer_error(system: ActorSystem) -> None:
    def broken(acc: int, value: int) -> int:
        if value > 10:
            msg = "too big"
            raise OverflowError(msg)
        return acc + value

    result = system.run(MapReduceWorkflow(square, broken, initial=0), range(10), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert isinstance(result.error.exception, ReducerError)
    assert isinstance(result.error.exception.__cause__, OverflowError)


def test_an_item_source_that_raises_fails_the_run_naming_it(system: ActorSystem) -> None:
    def items() -> Iterator[int]:
        yield 1
        msg = "source broke"
        raise OSError(msg)

    result = system.run(MapReduceWorkflow(square, add, initial=0), items(), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "source broke" in result.error.message


def test_an_input_that_is_not_iterable_fails_the_run(system: ActorSystem) -> None:
    result = system.run(MapReduceWorkflow(square), 42, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "iterable" in result.error.message


def test_items_are_read_no_further_ahead_than_the_concurrency(system: ActorSystem) -> None:
    items = CountingItems(500)

    @tool
    def track(x: int) -> int:
        """Count a finished item."""
        items.done()
        return x

    flow = MapReduceWorkflow(track, add, initial=0, max_concurrency=4)
    result = system.run(flow, items, timeout=WAIT * 3)
    assert result.value == sum(range(500))
    # Running, plus as many prepared to start as slots free up; allow for the item in hand.
    assert items.max_ahead <= 2 * 4 + 1


def test_cancelling_a_map_reduce_cancels_the_running_items(system: ActorSystem) -> None:
    started = threading.Event()
    seen_cancelled = threading.Event()

    @tool
    def wait_for_cancel(x: int, ctx: ToolContext) -> int:
        """Block until cancelled."""
        started.set()
        if ctx.scope.wait(WAIT):
            seen_cancelled.set()
        ctx.raise_if_cancelled()
        return x

    run = system.start(MapReduceWorkflow(wait_for_cancel, add, initial=0), range(1000))
    assert started.wait(WAIT)
    run.cancel()
    result = run.result(WAIT)
    assert result.status is Status.CANCELLED
    assert seen_cancelled.wait(WAIT)


def test_map_reduce_nests_in_sequences_and_parallel_steps(system: ActorSystem) -> None:
    total = MapReduceWorkflow(square, add, initial=0, name="total")
    flow = SequentialWorkflow(
        [ParallelWorkflow([total, MapReduceWorkflow(square, name="each")]), len]
    )
    result = system.run(flow, [1, 2, 3], timeout=WAIT)
    assert result.value == 2
    parallel = result.steps[0]
    assert parallel.value == [14, [1, 4, 9]]


def test_map_reduce_definition_errors_name_the_part() -> None:
    with pytest.raises(WorkflowDefinitionError, match="aggregation"):
        MapReduceWorkflow(square, aggregation=Aggregation.FIRST_SUCCESS)
    with pytest.raises(WorkflowDefinitionError, match="reducer"):
        MapReduceWorkflow(square, 42)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="keep_results"):
        MapReduceWorkflow(square, keep_results=-1)
    with pytest.raises(WorkflowDefinitionError, match="max_memory_per_branch"):
        MapReduceWorkflow(square, limits=ResourceLimits(max_memory_per_branch=10**8))


def test_a_hundred_thousand_items_run_in_bounded_memory(system: ActorSystem) -> None:
    items = CountingItems(100_000)

    @tool
    def tracked_square(x: int) -> int:
        """Square a number and count it finished."""
        items.done()
        return x * x

    flow = MapReduceWorkflow(tracked_square, add, initial=0, max_concurrency=16)
    result = system.run(flow, items, timeout=240)
    assert result.status is Status.OK
    assert result.value == sum(i * i for i in range(100_000))
    assert result.counts == {"ok": 100_000}
    assert items.max_ahead <= 2 * 16 + 1


def _peak_bytes(system: ActorSystem, flow: MapReduceWorkflow, n: int) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        result = system.run(flow, range(n), timeout=120)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result.value


def test_memory_does_not_grow_with_the_number_of_items(system: ActorSystem) -> None:
    flow = MapReduceWorkflow(square, add, initial=0, max_concurrency=8)
    system.run(flow, range(100), timeout=WAIT)  # warm up workers and caches
    small_peak, _ = _peak_bytes(system, flow, 1_000)
    large_peak, value = _peak_bytes(system, flow, 8_000)
    assert value == sum(i * i for i in range(8_000))
    # Eight times the items: memory stays within a small constant of the small run's.
    assert large_peak < small_peak + 400_000


def test_a_slow_reducer_holds_the_items_back_instead_of_queueing_their_results(
    system: ActorSystem,
) -> None:
    # Mapping is instant, folding is slow: without back-pressure from the reducer, thousands
    # of results would wait in its mailbox. Items run only while few results are unfolded.
    lock = threading.Lock()
    counts = {"mapped": 0, "folded": 0, "most_unfolded": 0}

    @tool
    def mark(x: int) -> int:
        """Count the item mapped; note how many mapped items are not folded yet."""
        with lock:
            counts["mapped"] += 1
            unfolded = counts["mapped"] - counts["folded"]
            counts["most_unfolded"] = max(counts["most_unfolded"], unfolded)
        return x

    def slow_add(acc: int, value: int) -> int:
        """Sum, slowly (a reducer writing to a store)."""
        time.sleep(0.0005)
        with lock:
            counts["folded"] += 1
        return acc + value

    concurrency = 4
    flow = MapReduceWorkflow(mark, slow_add, initial=0, max_concurrency=concurrency)
    result = system.run(flow, range(1500), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == sum(range(1500))
    assert counts["folded"] == 1500
    # At most the backlog bound (64 at this concurrency) on their way, plus one drain's worth
    # reported past it, the running items and those started from the prepared ones meanwhile.
    assert counts["most_unfolded"] <= 64 + 4 * concurrency + 1


def test_a_reducer_still_folding_at_the_deadline_is_cut_there(system: ActorSystem) -> None:
    # Mapping is instant and folding slow: results queue up for the reducer. The deadline
    # cuts the run during a fold; the queued results are not folded after it.
    folded_at: list[float] = []

    def slow_add(acc: int, value: int) -> int:
        time.sleep(0.05)  # the reducer's work, racing the run's deadline
        folded_at.append(time.monotonic())
        return acc + value

    flow = MapReduceWorkflow(square, slow_add, initial=0, max_concurrency=8)
    deadline = time.monotonic() + 0.3
    result = system.run(flow, range(200), timeout=0.3)
    assert result.status is Status.TIMEOUT
    late = [at for at in folded_at if at > deadline]
    # The fold running at the deadline ends after it; a late timer may let one more start.
    assert len(late) <= 2, f"{len(late)} folds ended after the deadline"


def test_a_custom_aggregation_running_past_the_deadline_makes_a_timeout(
    system: ActorSystem,
) -> None:
    def take_long(records: list[Any]) -> int:
        time.sleep(0.5)  # the aggregation's work, outlasting the run's deadline
        return len(records)

    flow = ParallelWorkflow([square, square], aggregation=Aggregation.custom(take_long))
    result = system.run(flow, 1, timeout=0.2)
    assert result.status is Status.TIMEOUT


@pytest.mark.parametrize("ending", ["failure", "cancel", "deadline"])
def test_a_run_that_stops_early_closes_its_item_generator_at_once(
    system: ActorSystem, ending: str
) -> None:
    closed = threading.Event()
    started = threading.Event()

    def rows() -> Iterator[int]:
        try:
            yield from range(100_000)
        finally:
            closed.set()  # a cursor or a file would be closed here

    @tool
    def map_item(x: int, ctx: ToolContext) -> int:
        """Fail on item 10 (for the failure); otherwise wait to be cut."""
        started.set()
        if ending == "failure" and x == 10:
            raise ValueError("ten")
        if ending != "failure":
            ctx.scope.wait(WAIT)
        return x

    flow = MapReduceWorkflow(map_item, lambda acc, v: acc + v, initial=0, max_concurrency=4)
    run = system.start(flow, rows(), timeout=0.2 if ending == "deadline" else WAIT)
    if ending == "cancel":
        assert started.wait(WAIT)
        run.cancel()
    result = run.result(timeout=WAIT)
    expected = {"failure": Status.ERROR, "cancel": Status.CANCELLED, "deadline": Status.TIMEOUT}
    assert result.status is expected[ending]
    assert closed.wait(WAIT), "the item generator was left open"
