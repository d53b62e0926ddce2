"""StreamingWorkflow (credit-based flow, order, error policies, cancellation) and run.stream()."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    BlockingCallError,
    FailedItem,
    ParallelWorkflow,
    SequentialWorkflow,
    Stage,
    Status,
    StepResult,
    StreamingWorkflow,
    ToolContext,
    WorkflowDefinitionError,
    step,
    tool,
)
from tests.helpers import WAIT


class Meter:
    """Thread-safe counts of a stream: items pulled, stage entries and exits, peaks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pulled = 0
        self.done = 0
        self.running = 0
        self.peak_running = 0
        self.max_ahead = 0

    def pull(self) -> None:
        with self._cond:
            self.pulled += 1
            self.max_ahead = max(self.max_ahead, self.pulled - self.done)

    def enter(self) -> None:
        with self._cond:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self.running -= 1
            self.done += 1
            self._cond.notify_all()

    def wait_running(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.running >= n, WAIT)

    def items(self, n: int) -> Iterator[int]:
        for i in range(n):
            self.pull()
            yield i


@tool
def inc(x: int) -> int:
    """Add one."""
    return x + 1


@tool
def double(x: int) -> int:
    """Double it."""
    return 2 * x


@tool
def reject_multiples_of_five(x: int) -> int:
    """Fail on multiples of five."""
    if x % 5 == 0:
        msg = f"bad item {x}"
        raise ValueError(msg)
    return x


# -- flow ---------------------------------------------------------------------------------


def test_every_item_flows_through_every_stage_in_input_order(system: ActorSystem) -> None:
    flow = StreamingWorkflow([Stage(inc, concurrency=3), Stage(double, concurrency=2)])
    result = system.run(flow, range(50), timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "streaming"
    assert result.value == [2 * (i + 1) for i in range(50)]
    assert result.counts == {"ok": 50}
    assert result.steps == []


def test_an_empty_input_ends_the_stream_at_once_with_no_outputs(system: ActorSystem) -> None:
    result = system.run(StreamingWorkflow([inc]), [], timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == []


def test_a_hundred_thousand_items_never_exceed_the_in_flight_bound(system: ActorSystem) -> None:
    meter = Meter()
    emitted = [0]

    @tool
    def slowish(x: int) -> int:
        """A stage slower than the producer."""
        meter.enter()
        try:
            return sum(range(x % 50))
        finally:
            meter.leave()

    def count(_value: int) -> None:
        emitted[0] += 1

    flow = StreamingWorkflow(
        [Stage(slowish, concurrency=4, max_in_flight=6)], max_in_flight=8, on_output=count
    )
    result = system.run(flow, meter.items(100_000), timeout=120)
    assert result.status is Status.OK
    assert result.value == 100_000 == emitted[0]
    assert meter.peak_running <= 4
    # Pulled but not yet finished: never more than the stage holds.
    assert meter.max_ahead <= 6


def test_a_slow_stage_holds_back_the_stages_before_it_and_the_input(system: ActorSystem) -> None:
    meter = Meter()

    @tool
    def slow(x: int) -> int:
        """The bottleneck."""
        meter.enter()
        try:
            time.sleep(0.0005)
            return x
        finally:
            meter.leave()

    # The stream's own bound is far away: only the stages' credit can hold the input back.
    flow = StreamingWorkflow(
        [Stage(inc, concurrency=2, max_in_flight=4), Stage(slow, max_in_flight=2)],
        max_in_flight=1_000,
        collect=False,
    )
    result = system.run(flow, meter.items(2_000), timeout=WAIT * 3)
    assert result.value == 2_000
    assert meter.peak_running == 1
    assert meter.max_ahead <= 4 + 2


def _peak_bytes(system: ActorSystem, flow: StreamingWorkflow, n: int) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        result = system.run(flow, range(n), timeout=120)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result.value


def test_memory_does_not_grow_with_the_length_of_the_stream(system: ActorSystem) -> None:
    emitted: list[int] = [0]

    def count(_value: int) -> None:
        emitted[0] += 1

    flow = StreamingWorkflow(
        [Stage(inc, concurrency=4), Stage(double, concurrency=2)], on_output=count
    )
    system.run(flow, range(100), timeout=WAIT)  # warm up workers and caches
    small_peak, _ = _peak_bytes(system, flow, 1_000)
    large_peak, value = _peak_bytes(system, flow, 8_000)
    assert value == 8_000
    # Eight times the items: memory stays within a small constant of the small run's.
    assert large_peak < small_peak + 400_000


def test_threads_stay_bounded_however_many_items_flow(system: ActorSystem) -> None:
    before = threading.active_count()
    seen = [0]

    @tool
    def observe(x: int) -> int:
        """Record how many threads are alive."""
        seen[0] = max(seen[0], threading.active_count())
        return x

    flow = StreamingWorkflow([Stage(observe, concurrency=3), Stage(inc, concurrency=2)])
    result = system.run(flow, range(1_000), timeout=WAIT * 3)
    assert result.counts == {"ok": 1_000}
    # The coordinator, at most one worker per item running at once, the system's own threads.
    assert seen[0] - before <= 1 + 3 + 2 + 3


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    latencies=st.lists(st.floats(0.0, 0.002), max_size=30),
    first=st.integers(1, 4),
    second=st.integers(1, 4),
)
def test_input_order_is_kept_under_random_stage_latencies(
    system: ActorSystem, latencies: list[float], first: int, second: int
) -> None:
    @tool
    def jitter(pair: tuple[int, float]) -> int:
        """Take a random time."""
        index, delay = pair
        threading.Event().wait(delay)
        return index

    flow = StreamingWorkflow(
        [Stage(jitter, concurrency=first), Stage(double, concurrency=second)], ordered=True
    )
    result = system.run(flow, list(enumerate(latencies)), timeout=WAIT)
    assert result.value == [2 * i for i in range(len(latencies))]


def test_an_unordered_stream_emits_outputs_as_they_complete(system: ActorSystem) -> None:
    others_out = threading.Event()
    seen: list[int] = []

    @tool
    def first_is_last(x: int) -> int:
        """Item 0 waits until every other item has been emitted."""
        if x == 0:
            others_out.wait(WAIT)
        return x

    def record(value: int) -> None:
        seen.append(value)
        if len(seen) == 9:
            others_out.set()

    flow = StreamingWorkflow(
        [Stage(first_is_last, concurrency=10)], ordered=False, collect=True, on_output=record
    )
    try:
        result = system.run(flow, range(10), timeout=WAIT)
    finally:
        others_out.set()
    assert result.value == seen
    assert seen[-1] == 0
    assert sorted(seen) == list(range(10))


def test_an_async_input_is_pulled_on_the_system_loop(system: ActorSystem) -> None:
    pulled_on: set[str] = set()

    async def numbers() -> AsyncIterator[int]:
        for i in range(20):
            await asyncio.sleep(0)
            pulled_on.add(threading.current_thread().name)
            yield i

    result = system.run(StreamingWorkflow([Stage(inc, concurrency=2)]), numbers(), timeout=WAIT)
    assert result.value == list(range(1, 21))
    assert pulled_on == {f"{system.name}/asyncio"}


def test_run_async_awaits_a_stream_over_an_async_input(system: ActorSystem) -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            await asyncio.sleep(0)
            yield i

    async def main() -> Any:
        return await system.run_async(StreamingWorkflow([inc, double]), numbers(), timeout=WAIT)

    assert asyncio.run(main()).value == [2, 4, 6]


def test_without_collect_the_value_is_the_count_and_outputs_go_to_on_output(
    system: ActorSystem,
) -> None:
    outputs: list[int] = []
    flow = StreamingWorkflow([inc], on_output=outputs.append)
    result = system.run(flow, range(5), timeout=WAIT)
    assert result.value == 5
    assert outputs == [1, 2, 3, 4, 5]
    both = StreamingWorkflow([inc], on_output=outputs.append, collect=True)
    assert system.run(both, range(2), timeout=WAIT).value == [1, 2]


# -- error policies -------------------------------------------------------------------------


def test_the_fail_policy_fails_the_run_at_the_first_failed_item(system: ActorSystem) -> None:
    flow = StreamingWorkflow([Stage(reject_multiples_of_five, concurrency=2)])
    result = system.run(flow, (i + 1 for i in range(100)), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "reject_multiples_of_five[4]"
    assert result.counts is not None
    assert result.counts["error"] == 1
    assert sum(result.counts.values()) < 100
    assert result.steps[0].name == "reject_multiples_of_five[4]"
    assert result.error is not None
    assert isinstance(result.error.exception, ValueError)


def test_the_fail_policy_stops_pulling_and_cancels_items_in_flight(system: ActorSystem) -> None:
    meter = Meter()
    cancelled = threading.Event()

    @tool
    def fail_second(x: int, ctx: ToolContext) -> int:
        """Item 1 fails once item 0 runs; item 0 waits to be cancelled."""
        if x == 1:
            assert meter.wait_running(1)
            msg = "item 1 is bad"
            raise ValueError(msg)
        meter.enter()
        try:
            if ctx.scope.wait(WAIT):
                cancelled.set()
            ctx.raise_if_cancelled()
            return x
        finally:
            meter.leave()

    flow = StreamingWorkflow([Stage(fail_second, concurrency=2)])
    result = system.run(flow, meter.items(1_000), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "fail_second[1]"
    assert result.counts == {"error": 1, "cancelled": 1}
    assert [(r.name, r.status) for r in result.steps] == [
        ("fail_second[1]", Status.ERROR),
        ("fail_second[0]", Status.CANCELLED),
    ]
    assert cancelled.wait(WAIT)
    assert meter.pulled == 2


def test_the_skip_policy_records_failures_and_goes_on(system: ActorSystem) -> None:
    flow = StreamingWorkflow(
        [Stage(reject_multiples_of_five, concurrency=3), double],
        error_policy="skip",
        keep_results=2,
    )
    result = system.run(flow, range(20), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [2 * i for i in range(20) if i % 5]
    assert result.counts == {"ok": 16, "error": 4}
    failed = {f"reject_multiples_of_five[{i}]" for i in (0, 5, 10, 15)}
    assert len(result.steps) == 2
    assert {r.name for r in result.steps} <= failed
    assert all(r.status is Status.ERROR for r in result.steps)


def test_the_dead_letter_policy_puts_failed_items_on_a_queue(system: ActorSystem) -> None:
    dead: queue.Queue[FailedItem] = queue.Queue()
    flow = StreamingWorkflow(
        [inc, reject_multiples_of_five], error_policy="dead_letter", dead_letters=dead
    )
    result = system.run(flow, range(12), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [i + 1 for i in range(12) if (i + 1) % 5]
    letters = sorted((dead.get_nowait() for _ in range(2)), key=lambda f: f.index)
    assert dead.empty()
    assert [(f.index, f.item, f.stage, f.input) for f in letters] == [
        (4, 4, "reject_multiples_of_five", 5),
        (9, 9, "reject_multiples_of_five", 10),
    ]
    assert letters[0].result.status is Status.ERROR
    assert letters[0].result.error is not None
    assert "bad item 5" in letters[0].result.error.message


def test_the_dead_letter_policy_calls_a_callable_sink(system: ActorSystem) -> None:
    dead: list[FailedItem] = []
    flow = StreamingWorkflow(
        [reject_multiples_of_five], error_policy="dead_letter", dead_letters=dead.append
    )
    result = system.run(flow, range(7), timeout=WAIT)
    assert result.value == [1, 2, 3, 4, 6]
    assert [f.index for f in dead] == [0, 5]


def test_a_failing_output_sink_fails_the_stream(system: ActorSystem) -> None:
    def broken(value: int) -> None:
        if value == 3:
            msg = "sink is full"
            raise OSError(msg)

    result = system.run(StreamingWorkflow([inc], on_output=broken), range(10), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "on_output raised on item 2" in result.error.message
    assert isinstance(result.error.exception, OSError)


def test_a_stage_timeout_counts_the_item_as_timed_out(system: ActorSystem) -> None:
    @tool
    def stall_on_two(x: int, ctx: ToolContext) -> int:
        """Item 2 outlives its deadline."""
        if x == 2:
            ctx.scope.wait(WAIT)
            ctx.raise_if_cancelled()
        return x

    flow = StreamingWorkflow([step(stall_on_two, timeout=0.05)], error_policy="skip")
    result = system.run(flow, range(4), timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [0, 1, 3]
    assert result.counts == {"ok": 3, "timeout": 1}
    assert result.steps[0].status is Status.TIMEOUT


def test_an_input_that_raises_fails_the_run_naming_it(system: ActorSystem) -> None:
    def items() -> Iterator[int]:
        yield 1
        msg = "source broke"
        raise OSError(msg)

    result = system.run(StreamingWorkflow([inc]), items(), timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "reading the input failed after 1 items" in result.error.message
    assert "source broke" in result.error.message


def test_an_input_that_is_not_a_stream_fails_the_run(system: ActorSystem) -> None:
    result = system.run(StreamingWorkflow([inc]), 42, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "iterable" in result.error.message


# -- cancellation -----------------------------------------------------------------------------


def test_cancelling_a_stream_stops_the_input_and_every_stage(system: ActorSystem) -> None:
    meter = Meter()
    seen_cancelled = Meter()
    input_closed = threading.Event()

    @tool
    def hold(x: int, ctx: ToolContext) -> int:
        """Run until cancelled."""
        meter.enter()
        try:
            if ctx.scope.wait(WAIT):
                seen_cancelled.enter()
            ctx.raise_if_cancelled()
            return x
        finally:
            meter.leave()

    def items() -> Iterator[int]:
        try:
            yield from meter.items(1_000_000)
        finally:
            input_closed.set()

    flow = StreamingWorkflow([Stage(hold, concurrency=3)], keep_results=2)
    run = system.start(flow, items())
    assert meter.wait_running(3)
    run.cancel()
    result = run.result(WAIT)
    assert result.status is Status.CANCELLED
    assert result.counts == {"cancelled": 3}
    assert [(r.name, r.status) for r in result.steps] == [
        ("hold[0]", Status.CANCELLED),
        ("hold[1]", Status.CANCELLED),
    ]
    assert seen_cancelled.wait_running(3)
    # The input was closed, so nothing can be pulled from it any more.
    assert input_closed.is_set()
    assert meter.pulled == 3


def test_cancelling_a_stream_cancels_its_pending_async_pull(system: ActorSystem) -> None:
    pulled_one = threading.Event()
    producer_cancelled = threading.Event()

    async def quiet_after_one() -> AsyncIterator[int]:
        yield 1
        pulled_one.set()
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            producer_cancelled.set()
            raise
        yield 2

    outputs: list[int] = []
    run = system.start(StreamingWorkflow([inc], on_output=outputs.append), quiet_after_one())
    assert pulled_one.wait(WAIT)
    run.cancel()
    result = run.result(WAIT)
    assert result.status is Status.CANCELLED
    assert producer_cancelled.wait(WAIT)
    assert outputs in ([], [2])


def test_a_stream_deadline_reports_the_items_in_flight_as_timed_out(system: ActorSystem) -> None:
    @tool
    def wait_out(x: int, ctx: ToolContext) -> int:
        """Wait for the deadline."""
        ctx.scope.wait(WAIT)
        ctx.raise_if_cancelled()
        return x

    flow = StreamingWorkflow([Stage(wait_out, concurrency=2)], timeout=0.1)
    result = system.run(flow, range(100), timeout=WAIT)
    assert result.status is Status.TIMEOUT
    assert result.counts == {"timeout": 2}
    assert {r.status for r in result.steps} == {Status.TIMEOUT}


# -- nesting ----------------------------------------------------------------------------------


def test_a_stream_nests_in_a_sequence_and_takes_workflows_as_stages(system: ActorSystem) -> None:
    def numbers(n: int) -> list[int]:
        return list(range(n))

    inner = SequentialWorkflow([inc, double], name="inner")
    flow = SequentialWorkflow(
        [numbers, StreamingWorkflow([Stage(inner, concurrency=3), inc], name="stream"), sum]
    )
    result = system.run(flow, 5, timeout=WAIT)
    assert result.value == sum(2 * (i + 1) + 1 for i in range(5))
    assert result.step("stream").value == [3, 5, 7, 9, 11]


def test_a_stream_runs_as_a_parallel_branch(system: ActorSystem) -> None:
    flow = ParallelWorkflow([StreamingWorkflow([double], name="doubled"), sum])
    result = system.run(flow, [1, 2, 3], timeout=WAIT)
    assert result.value == [[2, 4, 6], 6]


def test_stream_definition_errors_name_the_part() -> None:
    with pytest.raises(WorkflowDefinitionError, match="stages is empty"):
        StreamingWorkflow([])
    with pytest.raises(WorkflowDefinitionError, match="error_policy"):
        StreamingWorkflow([inc], error_policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="needs dead_letters"):
        StreamingWorkflow([inc], error_policy="dead_letter")
    with pytest.raises(WorkflowDefinitionError, match="only used with"):
        StreamingWorkflow([inc], dead_letters=print)
    with pytest.raises(WorkflowDefinitionError, match="concurrency"):
        Stage(inc, concurrency=0)
    with pytest.raises(WorkflowDefinitionError, match="at least its concurrency"):
        Stage(inc, concurrency=4, max_in_flight=2)
    with pytest.raises(WorkflowDefinitionError, match="max_in_flight"):
        StreamingWorkflow([inc], max_in_flight=0)
    flow = StreamingWorkflow([inc, inc, Stage(inc, concurrency=2)])
    assert [s.name for s in flow.stages] == ["inc", "inc_2", "inc_3"]
    assert flow.max_in_flight == 4


# -- partial results of a run ----------------------------------------------------------------


def test_partial_results_of_a_parallel_run_arrive_before_the_slowest_branch_finishes(
    system: ActorSystem,
) -> None:
    release = threading.Event()

    @tool
    def slowest(x: int) -> int:
        """Finish only once a partial result has been received."""
        release.wait(WAIT)
        return x * 100

    flow = ParallelWorkflow([inc, double, slowest], name="fan")
    run = system.start(flow, 1, stream=True)
    try:
        results = run.stream(timeout=WAIT)
        first = next(results)
        assert not run.done()
        assert first.name in ("fan/inc", "fan/double")
    finally:
        release.set()
    rest = list(results)
    assert [r.name for r in rest][-1] == "fan"
    assert rest[-1].value == [2, 2, 100]
    partials = sorted(r.name for r in [first, *rest[:-1]])
    assert partials == ["fan/double", "fan/inc", "fan/slowest"]


def test_partials_of_nested_parallel_steps_are_named_by_their_path(system: ActorSystem) -> None:
    inner = ParallelWorkflow([inc, double], name="inner")
    flow = SequentialWorkflow([ParallelWorkflow([inner, inc], name="outer")], name="top")
    run = system.start(flow, 3, stream=True)
    names = {r.name: r for r in run.stream(timeout=WAIT)}
    assert set(names) == {
        "top/outer/inner/inc",
        "top/outer/inner/double",
        "top/outer/inner",
        "top/outer/inc",
        "top",
    }
    assert names["top/outer/inner"].value == [4, 6]
    assert names["top"].value == [[4, 6], 4]


def test_async_for_over_a_run_yields_partials_then_the_final_result(system: ActorSystem) -> None:
    flow = StreamingWorkflow([Stage(inc, concurrency=2)], name="s")

    async def consume() -> list[StepResult]:
        run = system.start(flow, range(5), stream=True)
        return [result async for result in run]

    results = asyncio.run(consume())
    assert [r.name for r in results] == [f"s/inc[{i}]" for i in range(5)] + ["s"]
    assert [r.value for r in results[:-1]] == [1, 2, 3, 4, 5]
    assert results[-1].value == [1, 2, 3, 4, 5]


def test_streaming_a_stream_run_yields_failures_and_outputs_as_decided(
    system: ActorSystem,
) -> None:
    flow = StreamingWorkflow([reject_multiples_of_five], error_policy="skip", name="s")
    run = system.start(flow, range(1, 7), stream=True)
    results = list(run.stream(timeout=WAIT))
    assert [(r.name, r.status) for r in results] == [
        *((f"s/reject_multiples_of_five[{i}]", Status.OK) for i in range(4)),
        ("s/reject_multiples_of_five[4]", Status.ERROR),
        ("s/reject_multiples_of_five[5]", Status.OK),
        ("s", Status.OK),
    ]


def test_streaming_a_decided_run_yields_only_its_final_result(system: ActorSystem) -> None:
    run = system.start(ParallelWorkflow([inc, double], name="p"), 1)
    assert run.wait(WAIT)
    assert [(r.name, r.value) for r in run.stream()] == [("p", [2, 2])]


def test_a_run_started_to_stream_replays_what_was_decided_before_the_first_stream(
    system: ActorSystem,
) -> None:
    run = system.start(ParallelWorkflow([inc, double], name="p"), 1, stream=True)
    assert run.wait(WAIT)
    first = [(r.name, r.value) for r in run.stream()]
    assert sorted(first[:2]) == [("p/double", 2), ("p/inc", 2)]
    assert first[2:] == [("p", [2, 2])]
    # Only the first stream gets the replay; a later one sees the final result.
    assert [r.name for r in run.stream()] == ["p"]


def test_the_stream_timeout_only_stops_waiting(system: ActorSystem) -> None:
    release = threading.Event()

    @tool
    def held(x: int) -> int:
        """Wait for the test."""
        release.wait(WAIT)
        return x

    run = system.start(ParallelWorkflow([held], name="p"), 1)
    try:
        with pytest.raises(TimeoutError):
            list(run.stream(timeout=0.05))
        assert not run.done()
    finally:
        release.set()
    assert run.result(WAIT).value == [1]


def test_streaming_a_run_on_a_castflow_thread_raises_blocking_call_error(
    system: ActorSystem,
) -> None:
    release = threading.Event()

    @tool
    def held(x: int) -> int:
        """Wait for the test."""
        release.wait(WAIT)
        return x

    other = system.start(ParallelWorkflow([held]), 1)

    @tool
    def try_to_stream(x: int) -> str:
        """Stream another run from a leaf worker."""
        try:
            other.stream()
        except BlockingCallError:
            return "refused"
        return "allowed"

    try:
        assert system.run(try_to_stream, 1, timeout=WAIT).value == "refused"
    finally:
        release.set()
    assert other.result(WAIT).value == [1]
