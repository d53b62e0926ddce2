"""ParallelWorkflow's limits: concurrency, deadlines, cancellation, abandonment, retries, memory,
threads, and the definition errors of the workflow and its builder."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from actors import (
    ActorAbandoned,
    ActorSystem,
    Aggregation,
    Backoff,
    ErrorInfo,
    ErrorMode,
    Event,
    ParallelWorkflow,
    ResourceLimits,
    RetryPolicy,
    SequentialWorkflow,
    Status,
    StepFinished,
    StepResult,
    ToolContext,
    WorkflowDefinitionError,
    step,
    tool,
)
from actors.runtime.cancel import CancelReason
from actors.runtime.clock import ManualClock
from tests.helpers import WAIT
from tests.parallel_kit import (
    Gates,
    Meter,
    Probe,
    abandon_stuck_branch,
    async_holding,
    holding,
    metered,
    raising,
    statuses,
    stuck,
    wait_until,
)
from tests.workflow_tools import double, inc


class Flaky:
    """A tool body that raises ``errors[i]`` on call ``i`` and returns its input afterwards."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self._lock:
            call = self.calls
            self.calls += 1
        if call < len(self.errors):
            raise self.errors[call]
        return x


# -- concurrency ----------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n=st.integers(1, 40),
    c=st.integers(1, 8),
    latencies=st.lists(st.floats(0.0, 0.002), min_size=40, max_size=40),
)
def test_concurrency_never_exceeds_the_limit(
    system: ActorSystem, n: int, c: int, latencies: list[float]
) -> None:
    meter = Meter()

    def measured(i: int) -> int:
        meter.enter()
        try:
            threading.Event().wait(latencies[i])
            return i
        finally:
            meter.leave()

    body = tool(measured, name="measured")
    flow = ParallelWorkflow(
        [step(body, name=f"b{i}", input=lambda _x, i=i: i) for i in range(n)], max_concurrency=c
    )
    result = system.run(flow, None, timeout=WAIT)
    assert result.value == list(range(n))
    assert meter.entries == n
    assert 1 <= meter.peak <= c


def test_concurrency_reaches_the_limit_when_branches_wait(
    system: ActorSystem, gates: Gates
) -> None:
    meter = Meter()
    gate = gates.new()
    flow = ParallelWorkflow(
        [metered(meter, f"b{i}", gate=gate) for i in range(12)], max_concurrency=4
    )
    run = system.start(flow, 1)
    assert meter.wait_for(4), f"only {meter.current} branches ran at once"
    assert meter.current == 4
    gate.set()
    result = run.result(timeout=WAIT)
    assert result.value == [1] * 12
    assert meter.peak == 4
    assert meter.entries == 12


def test_threads_stay_bounded_by_the_concurrency_limit(system: ActorSystem) -> None:
    names: set[str] = set()
    peak = [0]
    lock = threading.Lock()

    @tool
    def quick(x: int) -> int:
        """Notes which thread ran it and how many threads are alive."""
        with lock:
            names.add(threading.current_thread().name)
            peak[0] = max(peak[0], threading.active_count())
        return x

    before = threading.active_count()
    flow = ParallelWorkflow([step(quick, name=f"b{i}") for i in range(200)], max_concurrency=8)
    result = system.run(flow, 3, timeout=WAIT)
    assert result.value == [3] * 200
    workers = {name for name in names if name.startswith(f"test/{result.run_id}/")}
    assert workers == names, f"a branch ran outside the step's pooled workers: {names}"
    assert len(workers) <= 8 + 1, sorted(workers)
    # Pooled workers, plus the coordinator, gather and supervisor of the run.
    assert peak[0] - before <= 8 + 1 + 3 + 2


# -- deadlines ------------------------------------------------------------------------------------


def test_a_branch_past_its_execution_timeout_is_cut_while_siblings_finish(
    system: ActorSystem,
) -> None:
    slow = Probe()
    flow = ParallelWorkflow(
        [holding(slow, "slow"), inc, double],
        aggregation=Aggregation.PARTIAL_SUCCESS,
        limits=ResourceLimits(execution_timeout=0.2),
    )
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [4, 6]
    assert statuses(result.steps) == [
        ("slow", Status.TIMEOUT),
        ("inc", Status.OK),
        ("double", Status.OK),
    ]
    assert slow.cancelled.wait(WAIT)
    assert slow.reason is CancelReason.DEADLINE
    assert slow.ended.wait(WAIT)


def test_the_overall_timeout_cuts_every_unfinished_branch(system: ActorSystem) -> None:
    probes = [Probe(), Probe()]
    never = Probe()
    flow = ParallelWorkflow(
        [holding(probes[0], "a"), holding(probes[1], "b"), holding(never, "c")],
        max_concurrency=2,
        timeout=0.2,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.TIMEOUT
    assert statuses(result.steps) == [
        ("a", Status.TIMEOUT),
        ("b", Status.TIMEOUT),
        ("c", Status.SKIPPED),
    ]
    for probe in probes:
        assert probe.cancelled.wait(WAIT)
        assert probe.reason is CancelReason.DEADLINE
    assert not never.started.is_set()


@pytest.mark.parametrize("where", ["workflow", "run"])
def test_a_partial_success_cut_by_its_deadline_is_a_timeout_not_a_success(
    system: ActorSystem, where: str
) -> None:
    probe = Probe()
    flow = ParallelWorkflow(
        [holding(probe, "slow"), inc],
        aggregation=Aggregation.PARTIAL_SUCCESS,
        timeout=0.2 if where == "workflow" else None,
    )
    result = system.run(flow, 1, timeout=0.2 if where == "run" else WAIT)
    assert result.status is Status.TIMEOUT
    assert statuses(result.steps) == [("slow", Status.TIMEOUT), ("inc", Status.OK)]
    assert probe.cancelled.wait(WAIT)
    assert probe.reason is CancelReason.DEADLINE


def test_cancelling_a_started_run_cancels_every_branch(system: ActorSystem) -> None:
    sync_probes = [Probe(), Probe()]
    async_probe = Probe()
    flow = ParallelWorkflow(
        [
            holding(sync_probes[0], "a"),
            async_holding(async_probe, "b"),
            holding(sync_probes[1], "c"),
        ]
    )
    run = system.start(flow, 1)
    for probe in (*sync_probes, async_probe):
        assert probe.started.wait(WAIT)
    assert run.cancel()
    result = run.result(timeout=WAIT)
    assert result.status is Status.CANCELLED
    assert statuses(result.steps) == [
        ("a", Status.CANCELLED),
        ("b", Status.CANCELLED),
        ("c", Status.CANCELLED),
    ]
    for probe in sync_probes:
        assert probe.cancelled.wait(WAIT)
        assert probe.reason is CancelReason.CANCELLED
    async_probe.release.set()
    assert async_probe.cancelled.wait(WAIT), "the async branch's task was not cancelled"


def test_cancelling_a_run_records_running_branches_cancelled_and_queued_ones_skipped(
    system: ActorSystem,
) -> None:
    running = [Probe(), Probe()]
    queued = Probe()
    flow = ParallelWorkflow(
        [holding(running[0], "a"), holding(running[1], "b"), holding(queued, "c")],
        max_concurrency=2,
    )
    run = system.start(flow, 1)
    for probe in running:
        assert probe.started.wait(WAIT)
    run.cancel()
    result = run.result(timeout=WAIT)
    assert result.status is Status.CANCELLED
    assert statuses(result.steps) == [
        ("a", Status.CANCELLED),
        ("b", Status.CANCELLED),
        ("c", Status.SKIPPED),
    ]
    for probe in running:
        assert probe.cancelled.wait(WAIT)
        assert probe.ended.wait(WAIT)
    assert not queued.started.is_set()


# -- abandonment ----------------------------------------------------------------------------------


def test_a_branch_ignoring_cancellation_is_abandoned_and_the_run_completes_without_it() -> None:
    probe = Probe()
    seen: queue.Queue[Event] = queue.Queue()
    system = ActorSystem("abandon")
    try:
        system.events.subscribe(seen, kinds=(StepFinished, ActorAbandoned))
        flow = ParallelWorkflow(
            [stuck(probe), inc, double],
            aggregation=Aggregation.PARTIAL_SUCCESS,
            limits=ResourceLimits(execution_timeout=0.2, cancellation_timeout=0.2),
        )
        result = system.run(flow, 3, timeout=WAIT)
        assert result.status is Status.OK
        assert result.value == [4, 6]
        assert statuses(result.steps) == [
            ("stuck", Status.TIMEOUT),
            ("inc", Status.OK),
            ("double", Status.OK),
        ]
        # The leaf was decided (timeout) before its thread was given up, and only once.
        leaf_statuses: list[Status] = []
        while True:
            event = seen.get(timeout=WAIT)
            if isinstance(event, ActorAbandoned):
                break
            if isinstance(event, StepFinished) and event.step == "stuck":
                leaf_statuses.append(event.status)
        assert leaf_statuses == [Status.TIMEOUT]
        assert "-leaf-" in event.actor
        assert event.running == "stuck", "the event names the step the thread is stuck in"
        assert event.waited == pytest.approx(0.2)
        assert system.abandoned_alive() == 1
        (thread,) = [t for t in threading.enumerate() if t.name == event.thread]
        assert not probe.ended.is_set()
        probe.release.set()
        thread.join(WAIT)
        assert not thread.is_alive()
        assert probe.reason is CancelReason.DEADLINE
        assert system.abandoned_alive() == 0
    finally:
        probe.release.set()
        report = system.shutdown(timeout=WAIT)
    assert report.clean
    assert [(t.thread, t.alive, t.running) for t in report.abandoned] == [
        (event.thread, False, "stuck")
    ]
    while not seen.empty():
        late = seen.get_nowait()
        assert not (isinstance(late, StepFinished) and late.step == "stuck"), late


def test_a_stuck_branch_is_abandoned_while_its_run_goes_on(system: ActorSystem) -> None:
    stuck_probe = Probe()
    holder = Probe()
    abandoned: queue.Queue[Event] = queue.Queue()
    system.events.subscribe(abandoned, kinds=(ActorAbandoned,))
    flow = ParallelWorkflow(
        [step(stuck(stuck_probe), timeout=0.1), holding(holder, "holder", value=9)],
        aggregation=Aggregation.PARTIAL_SUCCESS,
        limits=ResourceLimits(cancellation_timeout=0.1),
    )
    try:
        run = system.start(flow, 1)
        event = abandoned.get(timeout=WAIT)
        assert isinstance(event, ActorAbandoned)
        assert not run.done(), "the run waits for its other branch, not for the stuck one"
        assert holder.started.is_set()
        assert not holder.cancelled.is_set()
        holder.release.set()
        result = run.result(timeout=WAIT)
    finally:
        stuck_probe.release.set()
        holder.release.set()
    assert result.value == [9]
    assert statuses(result.steps) == [("stuck", Status.TIMEOUT), ("holder", Status.OK)]
    for thread in [t for t in threading.enumerate() if t.name == event.thread]:
        thread.join(WAIT)
    assert stuck_probe.ended.wait(WAIT)
    assert stuck_probe.reason is CancelReason.DEADLINE


def test_an_abandoned_thread_still_running_at_shutdown_is_reported_alive() -> None:
    probe = Probe()
    system = ActorSystem("abandon-alive")
    try:
        event = abandon_stuck_branch(system, probe)
        report = system.shutdown(timeout=WAIT)
        assert not report.clean
        assert [(t.thread, t.alive) for t in report.abandoned] == [(event.thread, True)]
    finally:
        probe.release.set()
    assert probe.ended.wait(WAIT)


def test_shutdown_right_after_a_cut_run_waits_for_the_grace_not_its_deadline() -> None:
    # The run is cut while its leaf ignores cancellation, and the system is shut down before
    # the leaf's grace is over. The worker is given up on when the grace ends, and shutdown()
    # returns then, not at its own (much later) deadline.
    probe = Probe()
    system = ActorSystem("cut-then-shutdown", cancellation_timeout=0.2)
    try:
        run = system.start(ParallelWorkflow([stuck(probe), inc]), 1)
        assert probe.started.wait(WAIT)
        run.cancel()
        assert run.result(timeout=WAIT).status is Status.CANCELLED
        report = system.shutdown(timeout=60.0)
        assert report.duration < 30.0, f"shutdown waited for its deadline: {report.duration}"
        assert [("-leaf-" in t.owner, t.alive, t.running) for t in report.abandoned] == [
            (True, True, "stuck")
        ]
        assert not probe.ended.is_set()
    finally:
        probe.release.set()
    assert probe.ended.wait(WAIT)
    assert probe.reason is CancelReason.CANCELLED


# -- retries --------------------------------------------------------------------------------------


def test_a_branch_failing_twice_succeeds_on_its_third_attempt(system: ActorSystem) -> None:
    flaky = Flaky(ValueError("one"), ValueError("two"))
    flow = ParallelWorkflow([tool(flaky, name="flaky"), inc], retry=RetryPolicy(max_attempts=3))
    result = system.run(flow, 5, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [5, 6]
    assert [(r.name, r.status, r.attempts) for r in result.steps] == [
        ("flaky", Status.OK, 3),
        ("inc", Status.OK, 1),
    ]
    assert flaky.calls == 3


def test_a_branch_failing_every_attempt_reports_its_last_error(system: ActorSystem) -> None:
    last = ValueError("three")
    flaky = Flaky(ValueError("one"), ValueError("two"), last)
    result = system.run(
        ParallelWorkflow([tool(flaky, name="flaky")], retry=RetryPolicy(max_attempts=3)), 5
    )
    assert result.status is Status.ERROR
    record = result.step("flaky")
    assert (record.status, record.attempts) == (Status.ERROR, 3)
    assert record.error is not None
    assert record.error.exception is last
    assert flaky.calls == 3


def test_retry_on_matches_a_failure_recorded_without_its_exception_by_its_type_name() -> None:
    # A worker process's failure, or a step's own record, carries no exception object.
    def record(type_name: str) -> StepResult:
        error = ErrorInfo(type=type_name, message="failed")
        return StepResult(name="s", status=Status.ERROR, error=error)

    named = RetryPolicy(max_attempts=2, retry_on=(ConnectionError,))
    assert named.should_retry(record("builtins.ConnectionError"), 1)
    assert not named.should_retry(record("builtins.ValueError"), 1)
    assert not named.should_retry(record("builtins.ConnectionError"), 2)
    assert RetryPolicy(max_attempts=2).should_retry(record("castflow.CoordinatorCrashed"), 1)
    cut = StepResult(name="s", status=Status.CANCELLED, error=ErrorInfo(type="x", message="m"))
    assert not RetryPolicy(max_attempts=2).should_retry(cut, 1)


def test_retry_on_retries_only_the_named_errors(system: ActorSystem) -> None:
    flaky = Flaky(ValueError("not retried"))
    retry = RetryPolicy(max_attempts=3, retry_on=(KeyError,))
    result = system.run(ParallelWorkflow([tool(flaky, name="flaky")], retry=retry), 5)
    assert result.status is Status.ERROR
    assert result.step("flaky").attempts == 1
    assert flaky.calls == 1
    keyed = Flaky(KeyError("retried"))
    result = system.run(ParallelWorkflow([tool(keyed, name="keyed")], retry=retry), 5)
    assert result.status is Status.OK
    assert result.step("keyed").attempts == 2


def test_a_timed_out_attempt_is_retried_as_a_timeout_error(system: ActorSystem) -> None:
    calls: list[int] = []

    def slow_then_quick(x: int, ctx: ToolContext) -> int:
        calls.append(x)
        if len(calls) == 1:
            ctx.scope.wait(WAIT)
            ctx.raise_if_cancelled()
        return x

    flow = ParallelWorkflow(
        [tool(slow_then_quick, name="slow_then_quick")],
        limits=ResourceLimits(execution_timeout=0.2),
        retry=RetryPolicy(max_attempts=2, retry_on=(TimeoutError,)),
    )
    result = system.run(flow, 4, timeout=WAIT)
    assert result.status is Status.OK
    assert result.step("slow_then_quick").attempts == 2
    assert calls == [4, 4]


def test_a_branch_cancelled_by_fail_fast_is_not_retried(gates: Gates) -> None:
    release = gates.new()
    sibling = Probe(release)
    calls: list[int] = []

    def fails_when_cancelled(x: int, ctx: ToolContext) -> int:
        calls.append(x)
        sibling.started.set()
        ctx.scope.wait(WAIT)
        sibling.cancelled.set()
        raise ValueError("retryable, but the branch was cancelled")

    flow = ParallelWorkflow(
        [
            tool(fails_when_cancelled, name="sibling"),
            raising(KeyError("fatal"), "fatal", after=(sibling.started,)),
        ],
        retry=RetryPolicy(max_attempts=5, retry_on=(ValueError,)),
    )
    with ActorSystem("no-retry") as system:
        result = system.run(flow, 1, timeout=WAIT)
        assert sibling.cancelled.wait(WAIT)
    assert statuses(result.steps) == [("sibling", Status.CANCELLED), ("fatal", Status.ERROR)]
    # The system has stopped: a retry would have run by now.
    assert calls == [1]


def test_a_cancelled_run_does_not_retry_its_branches() -> None:
    started = threading.Event()
    calls: list[int] = []

    def fails_when_cancelled(x: int, ctx: ToolContext) -> int:
        calls.append(x)
        started.set()
        ctx.scope.wait(WAIT)
        raise ValueError("retryable, but the run was cancelled")

    flow = ParallelWorkflow(
        [tool(fails_when_cancelled, name="branch")], retry=RetryPolicy(max_attempts=5)
    )
    with ActorSystem("cancel-retry") as system:
        run = system.start(flow, 1)
        assert started.wait(WAIT)
        run.cancel()
        assert run.result(timeout=WAIT).status is Status.CANCELLED
    assert calls == [1]


def test_retries_wait_for_their_backoff_delays() -> None:
    clock = ManualClock()
    jitter_draws: list[float] = []

    def no_jitter() -> float:
        jitter_draws.append(0.0)
        return 0.0

    flaky = Flaky(ValueError("one"), ValueError("two"))
    backoff = Backoff(min=5.0, max=20.0, factor=2.0, jitter=0.5, random=no_jitter)
    flow = ParallelWorkflow(
        [tool(flaky, name="flaky")], retry=RetryPolicy(max_attempts=3, backoff=backoff)
    )
    with ActorSystem("backoff", clock=clock) as system:
        run = system.start(flow, 7)
        # Each retry waits on a timer of the manual clock: it starts only once time moves.
        wait_until(lambda: flaky.calls == 1 and system.timers.pending() == 1, what="first retry")
        clock.advance(4.9)
        assert flaky.calls == 1
        clock.advance(0.1)
        wait_until(lambda: flaky.calls == 2 and system.timers.pending() == 1, what="second retry")
        clock.advance(9.9)
        assert flaky.calls == 2
        clock.advance(0.1)
        result = run.result(timeout=WAIT)
    assert result.status is Status.OK
    assert result.step("flaky").attempts == 3
    assert flaky.calls == 3
    assert jitter_draws == [0.0, 0.0]


# -- memory limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [ResourceLimits(max_memory_per_branch=10**8), ResourceLimits(max_total_memory=10**9)],
    ids=["per-branch", "total"],
)
def test_a_memory_limit_with_thread_tools_is_refused_naming_the_tool(
    limits: ResourceLimits,
) -> None:
    with pytest.raises(WorkflowDefinitionError, match="tool 'inc' runs in a thread"):
        ParallelWorkflow([inc, double], limits=limits)
    nested = SequentialWorkflow([double], name="inner")
    with pytest.raises(WorkflowDefinitionError, match="tool 'double' runs in a thread"):
        ParallelWorkflow([nested], limits=limits)


# -- builder and definition errors ----------------------------------------------------------------


def test_the_builder_makes_a_workflow_that_runs(system: ActorSystem) -> None:
    flow = (
        ParallelWorkflow.builder()
        .add_step(inc)
        .add_step(double)
        .with_max_concurrency(3)
        .with_aggregation(Aggregation.ALL_SUCCESS)
        .with_error_mode(ErrorMode.FAIL_FAST)
        .with_timeout(30)
        .build()
    )
    assert flow.max_concurrency == 3
    assert flow.aggregation == Aggregation.ALL_SUCCESS
    assert flow.error_mode is ErrorMode.FAIL_FAST
    assert flow.timeout == 30
    assert system.run(flow, 4, timeout=WAIT).value == [5, 8]


def test_the_defaults_are_ten_branches_all_success_and_fail_fast() -> None:
    flow = ParallelWorkflow([inc])
    assert flow.max_concurrency == 10
    assert flow.aggregation == Aggregation.ALL_SUCCESS
    assert flow.error_mode is ErrorMode.FAIL_FAST
    assert flow.copy_input == "branch"


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: ParallelWorkflow([]), "steps is empty"),
        (lambda: ParallelWorkflow.builder().build(), "steps is empty"),
        (
            lambda: ParallelWorkflow([inc, double], aggregation=Aggregation.quorum(3)),
            r"quorum\(3\) can never be reached with 2 branches",
        ),
        (lambda: ParallelWorkflow([inc], max_concurrency=0), "max_concurrency must be >= 1"),
        (
            lambda: ParallelWorkflow.builder().add_step(inc).with_max_concurrency(0).build(),
            "max_concurrency must be >= 1",
        ),
        (
            lambda: ParallelWorkflow(
                [inc], max_concurrency=3, limits=ResourceLimits(max_concurrent_executions=5)
            ),
            "max_concurrency=3 contradicts limits.max_concurrent_executions=5",
        ),
        (
            lambda: (
                ParallelWorkflow.builder()
                .add_step(inc)
                .with_limits(ResourceLimits(max_concurrent_executions=5))
                .with_max_concurrency(3)
                .build()
            ),
            "contradicts",
        ),
        (lambda: ParallelWorkflow([inc], aggregation="all"), "aggregation must be"),  # type: ignore[arg-type]
        (lambda: ParallelWorkflow([inc], error_mode="sometimes"), "error_mode must be"),  # type: ignore[arg-type]
        (lambda: ParallelWorkflow([inc], copy_input="deep"), "copy_input must be"),  # type: ignore[arg-type]
        (lambda: ParallelWorkflow([inc], retry=3), "retry must be a RetryPolicy"),  # type: ignore[arg-type]
        (lambda: ParallelWorkflow([inc, 42]), "step 2: 42"),
    ],
    ids=[
        "empty",
        "builder-empty",
        "quorum-too-big",
        "zero-concurrency",
        "builder-zero-concurrency",
        "contradicting-limits",
        "builder-contradicting-limits",
        "aggregation",
        "error-mode",
        "copy-input",
        "retry",
        "not-a-step",
    ],
)
def test_an_invalid_definition_raises_naming_the_part(make: Any, names: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=names):
        make()


def test_invalid_limits_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="max_concurrent_executions"):
        ResourceLimits(max_concurrent_executions=0)
    with pytest.raises(ValidationError, match="execution_timeout"):
        ResourceLimits(execution_timeout=-1)
    with pytest.raises(ValidationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="quorum needs k >= 1"):
        Aggregation.quorum(0)
