"""Named semaphores on parallel branches: bounds across nesting, permit timeouts, no leaks."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    ParallelWorkflow,
    ResourceLimits,
    Semaphore,
    Status,
    StepResult,
    Tool,
    ToolContext,
    WorkflowStepResult,
    step,
    tool,
)
from actors.runtime.cancel import CancelReason
from tests.helpers import WAIT
from tests.parallel_kit import (
    Gates,
    Meter,
    Probe,
    holding,
    metered,
    raising,
    wait_until,
    watch_finished,
)


def permits_back(system: ActorSystem, sem: Semaphore) -> None:
    """Wait until every permit of ``sem`` is free and nobody waits for one."""
    pool = system.permits.get(sem.name)
    assert pool is not None, f"semaphore {sem.name!r} was never used"
    wait_until(
        lambda: pool.available == sem.permits and pool.waiting == 0,
        what=f"the permits of {sem.name!r} to come back ({pool!r})",
    )


def leaves_of(records: list[StepResult]) -> Iterator[StepResult]:
    """Every leaf record under ``records``, depth first."""
    for record in records:
        if isinstance(record, WorkflowStepResult):
            yield from leaves_of(record.steps)
        else:
            yield record


# -- bounds ---------------------------------------------------------------------------------------


def test_a_semaphore_bounds_its_leaves_across_nested_parallel_steps(
    system: ActorSystem, gates: Gates
) -> None:
    llm = Semaphore("llm", permits=2)
    meter = Meter()
    gate = gates.new()

    def inner(prefix: str) -> ParallelWorkflow:
        return ParallelWorkflow(
            [metered(meter, f"{prefix}{i}", gate=gate) for i in range(3)],
            name=prefix,
            max_concurrency=3,
        )

    flow = ParallelWorkflow(
        [
            step(inner("a"), semaphores=[llm]),
            ParallelWorkflow(
                [step(metered(meter, f"b{i}", gate=gate), semaphores=[llm]) for i in range(3)],
                name="b",
            ),
            step(metered(meter, "leaf", gate=gate), semaphores=[llm]),
        ],
        name="outer",
        max_concurrency=3,
    )
    run = system.start(flow, 1)
    assert meter.wait_for(2)
    pool = system.permits.get("llm")
    assert pool is not None
    assert pool.available == 0
    assert meter.current == 2
    gate.set()
    result = run.result(timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [[1, 1, 1], [1, 1, 1], 1]
    assert meter.entries == 7
    assert meter.peak == 2
    permits_back(system, llm)


def test_one_permit_on_a_nested_parallel_step_runs_its_leaves_one_by_one(
    system: ActorSystem,
) -> None:
    # Only leaves hold permits: the nested step itself waits for none, so this cannot deadlock.
    single = Semaphore("single", permits=1)
    meter = Meter()
    inner = ParallelWorkflow(
        [metered(meter, f"m{i}", latency=0.002) for i in range(4)], name="inner"
    )
    flow = ParallelWorkflow(
        [step(inner, semaphores=[single]), step(metered(meter, "solo"), semaphores=[single])]
    )
    result = system.run(flow, 2, timeout=WAIT)
    assert result.value == [[2, 2, 2, 2], 2]
    assert meter.peak == 1
    assert meter.entries == 5
    permits_back(system, single)


def test_a_run_scoped_semaphore_bounds_each_run_separately(
    system: ActorSystem, gates: Gates
) -> None:
    per_run = Semaphore("per-run", permits=1, scope="run")
    gate = gates.new()
    meters = [Meter(), Meter()]
    both = Meter()

    def flow(meter: Meter) -> ParallelWorkflow:
        def counted(x: int) -> int:
            both.enter()
            meter.enter()
            try:
                gate.wait(WAIT)
                return x
            finally:
                meter.leave()
                both.leave()

        body = tool(counted, name="counted")
        return ParallelWorkflow([step(body, name=f"c{i}", semaphores=[per_run]) for i in range(3)])

    runs = [system.start(flow(meter), i) for i, meter in enumerate(meters)]
    assert both.wait_for(2), "each run should hold its own permit"
    gate.set()
    assert [run.result(timeout=WAIT).value for run in runs] == [[0, 0, 0], [1, 1, 1]]
    assert [meter.peak for meter in meters] == [1, 1]
    assert both.peak == 2
    assert system.permits.get("per-run") is None


# -- timeouts and leaks ---------------------------------------------------------------------------


def test_a_leaf_waiting_past_the_semaphore_timeout_fails_with_permit_timeout_error(
    system: ActorSystem, gates: Gates
) -> None:
    api = Semaphore("slow-api", permits=1, timeout=0.2)
    holder = Probe(gates.new())
    watch = watch_finished(system)
    flow = ParallelWorkflow(
        [
            step(holding(holder, "holder", value=5), semaphores=[api]),
            step(raising(AssertionError("never runs"), "starved"), semaphores=[api]),
        ],
        error_mode=ErrorMode.FAIL_SLOW,
    )
    run = system.start(flow, 1)
    assert watch.finished("starved").wait(WAIT)
    assert holder.started.is_set()
    holder.release.set()
    result = run.result(timeout=WAIT)
    assert [(r.name, r.status) for r in result.steps] == [
        ("holder", Status.OK),
        ("starved", Status.ERROR),
    ]
    error = result.step("starved").error
    assert error is not None
    assert error.type.endswith("PermitTimeoutError")
    assert "'slow-api'" in error.message
    assert "0.2 s" in error.message
    permits_back(system, api)


def test_permits_come_back_after_fail_fast_cancels_holders_and_waiters(
    system: ActorSystem, gates: Gates
) -> None:
    api = Semaphore("api", permits=2)
    release = gates.new()
    holders = [Probe(release), Probe(release)]
    waiters = [Probe(release), Probe(release)]
    flow = ParallelWorkflow(
        [
            step(holding(holders[0], "holder_0"), semaphores=[api]),
            step(holding(holders[1], "holder_1", linger=True), semaphores=[api]),
            step(holding(waiters[0], "waiter_0"), semaphores=[api]),
            step(holding(waiters[1], "waiter_1"), semaphores=[api]),
            raising(ValueError("fatal"), "fatal", after=(holders[0].started, holders[1].started)),
        ],
        error_mode=ErrorMode.FAIL_FAST,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert [r.status for r in result.steps] == [Status.CANCELLED] * 4 + [Status.ERROR]
    for probe in holders:
        assert probe.cancelled.wait(WAIT)
        assert probe.reason is CancelReason.CANCELLED
    pool = system.permits.get("api")
    assert pool is not None
    # The lingering holder still runs: its permit stays taken until its thread really ends.
    wait_until(lambda: pool.waiting == 0 and pool.available == 1, what="one permit back")
    assert not holders[1].ended.is_set()
    release.set()
    assert holders[1].ended.wait(WAIT)
    permits_back(system, api)
    assert not any(probe.started.is_set() for probe in waiters)


def test_permits_come_back_after_a_branch_times_out(system: ActorSystem) -> None:
    api = Semaphore("timed", permits=1)
    slow = Probe()
    flow = ParallelWorkflow(
        [step(holding(slow, "slow"), semaphores=[api])],
        limits=ResourceLimits(execution_timeout=0.1),
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.TIMEOUT
    assert result.step("slow").status is Status.TIMEOUT
    # The run is decided at the deadline; the leaf's thread sees it on its own schedule.
    assert slow.cancelled.wait(WAIT)
    assert slow.reason is CancelReason.DEADLINE
    permits_back(system, api)
    again = system.run(ParallelWorkflow([step(metered(Meter(), "next"), semaphores=[api])]), 4)
    assert again.value == [4]


# -- stress ---------------------------------------------------------------------------------------


def _worker(meter: Meter, name: str) -> Tool[..., int]:
    def work(latency: float, fail: bool, ctx: ToolContext) -> int:
        meter.enter()
        try:
            if ctx.scope.wait(latency):
                ctx.raise_if_cancelled()
            if fail:
                raise ValueError("planned failure")
            return 1
        finally:
            meter.leave()

    return tool(work, name=name)


def _random_flow(rng: random.Random, sem: Semaphore, body: Tool[..., int]) -> ParallelWorkflow:
    def leaf(name: str, *, hold: bool) -> object:
        spec = {"latency": rng.uniform(0.0, 0.001), "fail": rng.random() < 0.15}
        return step(
            body,
            name=name,
            input=lambda _x, spec=spec: spec,
            semaphores=[sem] if hold else [],
        )

    def options() -> dict[str, object]:
        return {
            "max_concurrency": rng.randint(1, 4),
            "error_mode": rng.choice([ErrorMode.FAIL_FAST, ErrorMode.FAIL_SLOW]),
            "aggregation": rng.choice([Aggregation.ALL_SUCCESS, Aggregation.PARTIAL_SUCCESS]),
        }

    branches: list[object] = []
    for i in range(rng.randint(1, 4)):
        if rng.random() < 0.6:
            # A nested parallel step: the semaphore on the whole step or on each of its leaves.
            on_step = rng.random() < 0.5
            inner = ParallelWorkflow(
                [leaf(f"l{j}", hold=not on_step) for j in range(rng.randint(1, 4))],
                name=f"inner{i}",
                **options(),  # type: ignore[arg-type]
            )
            branches.append(step(inner, semaphores=[sem]) if on_step else inner)
        else:
            branches.append(leaf(f"leaf{i}", hold=True))
    return ParallelWorkflow(branches, name="outer", **options())  # type: ignore[arg-type]


def test_nested_parallel_steps_sharing_a_semaphore_never_deadlock_or_leak(
    system: ActorSystem,
) -> None:
    seed = 20261126
    rng = random.Random(seed)
    sems = {n: Semaphore(f"shared-{n}", permits=n, timeout=WAIT) for n in (1, 2, 3)}
    meters = {n: Meter() for n in sems}
    bodies = {n: _worker(meters[n], f"work{n}") for n in sems}
    runs_done = 0
    for batch in range(50):
        started = []
        for _ in range(4):
            n = rng.randint(1, 3)
            flow = _random_flow(rng, sems[n], bodies[n])
            started.append(system.start(flow, 0))
        for run in started:
            # A deadlock would leave the run undecided: result() raises TimeoutError.
            result = run.result(timeout=WAIT)
            runs_done += 1
            assert result.status in (Status.OK, Status.ERROR), f"seed {seed}, batch {batch}"
            for record in leaves_of(result.steps):
                assert record.error is None or "PermitTimeout" not in record.error.type, (
                    f"seed {seed}, batch {batch}: a leaf starved: {record}"
                )
        for n, sem in sems.items():
            if system.permits.get(sem.name) is not None:
                permits_back(system, sem)
            assert meters[n].peak <= n, f"seed {seed}, batch {batch}: {meters[n].peak} > {n}"
    assert runs_done == 200
    assert sum(meter.entries for meter in meters.values()) > 200
    assert all(meter.current == 0 for meter in meters.values())
    assert threading.active_count() < 200
