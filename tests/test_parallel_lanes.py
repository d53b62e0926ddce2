"""Batches of plain leaves: branches prepared ahead, started by the workers themselves.

A worker that finishes a branch of such a batch starts the next one through the batch's
admission gate, without the branch supervisor. The bounds and records must be those of any
other batch: never more than ``max_concurrency`` running, branches started in input order,
``skipped`` only for a branch that never ran, and a slot of its own for every branch that is
not a plain leaf.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    MapReduceWorkflow,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    StepCall,
    StepResult,
    StepStarted,
    ToolContext,
    tool,
)
from actors.runtime._workqueue import COALESCE_WINDOW, _WorkQueue
from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelScope
from actors.runtime.clock import ManualClock
from actors.runtime.events import ActorStopped, DeadLetter
from actors.runtime.leaves import Lane, LeafDispatcher, LeafJob, LeafWorker, lane_job
from actors.tools import Tool
from tests.helpers import WAIT
from tests.parallel_kit import Gates, Meter, raising, wait_until
from tests.sizes import sized


class Ledger:
    """What the branches' bodies did: which ran, in what order, how many at once."""

    def __init__(self) -> None:
        self.meter = Meter()
        self._lock = threading.Lock()
        self.ran: list[int] = []

    def enter(self, index: int) -> None:
        self.meter.enter()
        with self._lock:
            self.ran.append(index)

    def plain(self, index: int, *, fail: bool, latency: float) -> Tool[..., int]:
        """A plain tool (no ``ToolContext``): runs ``latency`` seconds, then returns or raises."""

        def body(x: int) -> int:
            self.enter(index)
            try:
                if latency:
                    time.sleep(latency)
                if fail:
                    msg = f"branch {index} fails"
                    raise ValueError(msg)
                return index
            finally:
                self.meter.leave()

        return tool(body, name=f"b{index}")

    def blocking(
        self, index: int, release: threading.Event, started: threading.Event | None = None
    ) -> Tool[..., int]:
        """A plain tool that waits for ``release`` (setting ``started`` as it begins)."""

        def body(x: int) -> int:
            self.enter(index)
            if started is not None:
                started.set()
            try:
                release.wait(WAIT)
                return index
            finally:
                self.meter.leave()

        return tool(body, name=f"b{index}")

    def seeing(self, index: int) -> Tool[..., int]:
        """A tool that takes a ``ToolContext``: it runs with a scope of its own."""

        def body(x: int, ctx: ToolContext) -> int:
            self.enter(index)
            try:
                ctx.raise_if_cancelled()
                return index
            finally:
                self.meter.leave()

        return tool(body, name=f"b{index}")


AGGREGATIONS = [
    Aggregation.ALL_SUCCESS,
    Aggregation.FIRST_SUCCESS,
    Aggregation.PARTIAL_SUCCESS,
    Aggregation.quorum(2),
]


@sized(120, 2000)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.0, 0.001])), min_size=1, max_size=30),
    st.integers(1, 6),
    st.sampled_from(AGGREGATIONS),
    st.sampled_from([ErrorMode.FAIL_FAST, ErrorMode.FAIL_SLOW]),
    st.booleans(),
)
@pytest.mark.timeout(300)
def test_plain_batches_keep_the_bound_the_order_and_the_records(
    branches: list[tuple[bool, float]],
    concurrency: int,
    aggregation: Aggregation,
    error_mode: ErrorMode,
    watched: bool,
) -> None:
    if aggregation.k is not None and aggregation.k > len(branches):
        aggregation = Aggregation.ALL_SUCCESS  # a quorum needs that many branches
    ledger = Ledger()
    flow = ParallelWorkflow(
        [ledger.plain(i, fail=fail, latency=latency) for i, (fail, latency) in enumerate(branches)],
        max_concurrency=concurrency,
        aggregation=aggregation,
        error_mode=error_mode,
    )
    started: list[str] = []
    with ActorSystem("lanes") as system:
        if watched:  # events on: lane jobs are decided the general way, one call each
            system.events.subscribe(
                lambda event: (
                    started.append(event.step) if isinstance(event, StepStarted) else None
                ),
                kinds=(StepStarted,),
            )
        result = system.run(flow, 0, timeout=WAIT)
    assert ledger.meter.peak <= concurrency
    # Admitted in input order, whoever admitted them (the supervisor or a worker). Bodies may
    # begin in another order: a worker can be descheduled between taking a job and running it.
    admitted = [int(step[1:]) for step in started if step.startswith("b")]
    assert admitted == sorted(admitted)
    ran = set(ledger.ran)
    assert len(ran) == len(ledger.ran), "a branch ran twice"
    assert [record.name for record in result.steps] == [f"b{i}" for i in range(len(branches))]
    for index, record in enumerate(result.steps):
        fail = branches[index][0]
        if record.status is Status.SKIPPED:
            assert index not in ran, f"b{index} is recorded skipped but it ran"
        elif record.status is Status.OK:
            assert index in ran
            assert not fail
            assert record.value == index
        elif record.status is Status.ERROR:
            assert index in ran
            assert fail
        else:
            assert record.status is Status.CANCELLED, record
    if aggregation is Aggregation.ALL_SUCCESS and not any(fail for fail, _ in branches):
        assert result.status is Status.OK
        assert result.value == list(range(len(branches)))


def _broken(x: int) -> int:
    raise ValueError(f"broken on {x}")


def test_lane_branches_end_as_their_tools_did(system: ActorSystem) -> None:
    @tool(output=int)
    def wrong(x: int) -> Any:
        return f"not {x}"

    flow = ParallelWorkflow(
        [tool(lambda x: x + 1, name="fine"), tool(_broken, name="broken"), wrong],
        aggregation=Aggregation.PARTIAL_SUCCESS,
    )
    result = system.run(flow, 2, timeout=WAIT)
    assert result.value == [3]
    fine, broken, invalid = result.steps
    assert (fine.status, fine.value, fine.attempts) == (Status.OK, 3, 1)
    assert fine.started_wall is not None
    assert fine.finished_wall is not None
    assert fine.started_wall <= fine.finished_wall
    assert broken.status is Status.ERROR
    assert broken.error is not None
    assert broken.error.type == "builtins.ValueError"
    assert broken.error.message == "broken on 2"
    assert broken.error.traceback is not None
    assert "_broken" in broken.error.traceback
    assert invalid.status is Status.ERROR
    assert invalid.error is not None
    assert invalid.error.type.endswith("ToolOutputError")


def test_a_first_success_starts_none_of_the_branches_prepared_behind_the_winner(
    system: ActorSystem, gates: Gates
) -> None:
    # b0 wins at once; every other branch blocks until the run is over. The worker freed by
    # b0 starts b2 before the decision is known, then no slot frees up: b3.. never start.
    ledger = Ledger()
    release = gates.new()

    flow = ParallelWorkflow(
        [ledger.plain(0, fail=False, latency=0.0)]
        + [ledger.blocking(i, release) for i in range(1, 40)],
        max_concurrency=2,
        aggregation=Aggregation.FIRST_SUCCESS,
    )
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 0
    assert [record.status for record in result.steps] == [
        Status.OK,
        Status.CANCELLED,
        Status.CANCELLED,
        *[Status.SKIPPED] * 37,
    ]
    release.set()
    wait_until(lambda: ledger.meter.current == 0, what="the cut branches to end")
    # b2 started, but its body may not have begun before the run was over.
    assert {0, 1} <= set(ledger.ran) <= {0, 1, 2}


def test_branches_that_are_not_plain_leaves_wait_their_turn_for_a_slot(
    system: ActorSystem,
) -> None:
    ledger = Ledger()
    steps: list[Any] = []
    for i in range(24):
        kind = i % 3
        if kind == 0:
            steps.append(ledger.plain(i, fail=False, latency=0.001))
        elif kind == 1:
            steps.append(ledger.seeing(i))
        else:
            steps.append(
                SequentialWorkflow([ledger.plain(i, fail=False, latency=0.0)], name=f"s{i}")
            )
    flow = ParallelWorkflow(steps, max_concurrency=3)
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    assert ledger.meter.peak <= 3
    assert sorted(ledger.ran) == list(range(24))
    values = [value if not isinstance(value, list) else value[-1] for value in result.value]
    assert values == list(range(24))


def test_a_custom_fail_fast_sees_the_prepared_branch_it_dropped_as_skipped(
    system: ActorSystem, gates: Gates
) -> None:
    # Two slots, four plain branches, all pulled at once (two running, two prepared). When
    # b0 fails, its worker starts b2 at once; cancelling the rest then drops b3, which never
    # started: the gather must still hear that the batch is over, and record b3 skipped.
    ledger = Ledger()
    release = gates.new()
    b1_started = threading.Event()
    calls: list[list[tuple[str, Status]]] = []

    def summarise(records: list[StepResult]) -> int:
        calls.append([(r.name, r.status) for r in records])
        return len(records)

    flow = ParallelWorkflow(
        [
            raising(ValueError("no"), "b0", after=(b1_started,)),
            ledger.blocking(1, release, b1_started),
            ledger.blocking(2, release),
            ledger.plain(3, fail=False, latency=0.0),
        ],
        aggregation=Aggregation.custom(summarise),
        error_mode=ErrorMode.FAIL_FAST,
        max_concurrency=2,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 4
    assert calls == [
        [
            ("b0", Status.ERROR),
            ("b1", Status.CANCELLED),
            ("b2", Status.CANCELLED),
            ("b3", Status.SKIPPED),
        ]
    ]
    assert 3 not in ledger.ran


# -- nested batches, cut at random ------------------------------------------------------


@dataclass(frozen=True)
class PlainLeaf:
    fail: bool
    latency: float


@dataclass(frozen=True)
class Par:
    children: tuple[PlainLeaf | Par, ...]
    concurrency: int
    aggregation: Aggregation
    error_mode: ErrorMode


def _nodes(depth: int) -> st.SearchStrategy[PlainLeaf | Par]:
    leaf = st.builds(
        PlainLeaf,
        fail=st.sampled_from([False, False, False, True]),
        latency=st.sampled_from([0.0, 0.0, 0.001, 0.003]),
    )
    if depth == 0:
        return leaf
    par = st.builds(
        Par,
        children=st.lists(_nodes(depth - 1), min_size=1, max_size=6).map(tuple),
        concurrency=st.integers(1, 4),
        aggregation=st.sampled_from(AGGREGATIONS[:3]),
        error_mode=st.sampled_from([ErrorMode.FAIL_FAST, ErrorMode.FAIL_SLOW]),
    )
    return st.one_of(leaf, par)


class Nest:
    """Counts, per parallel step, its leaf branches whose body runs now.

    Only a step's own leaves count: a nested step decided while a plain leaf of its runs on
    (a loser cannot be stopped) frees its slot in the enclosing step at once, by design.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: dict[str, dict[int, int]] = {}
        self.violations: list[str] = []
        self.ran: set[str] = set()
        self.limits: dict[str, int] = {}

    def build(self, node: PlainLeaf | Par, path: str, chain: tuple[tuple[str, int], ...]) -> Any:
        if isinstance(node, PlainLeaf):
            return tool(self._body(node, path, chain), name=path.replace("/", "_"))
        name = f"p{len(self.limits)}"
        self.limits[name] = node.concurrency
        self.active[name] = {}
        return ParallelWorkflow(
            [
                self.build(child, f"{path}/{i}", (*chain, (name, i)))
                for i, child in enumerate(node.children)
            ],
            name=name,
            max_concurrency=node.concurrency,
            aggregation=node.aggregation,
            error_mode=node.error_mode,
        )

    def _body(self, leaf: PlainLeaf, path: str, chain: tuple[tuple[str, int], ...]) -> Any:
        name, index = chain[-1] if chain else ("", 0)

        def body(x: int) -> str:
            with self._lock:
                self.ran.add(path)
                if name:
                    counts = self.active[name]
                    counts[index] = counts.get(index, 0) + 1
                    width = sum(1 for count in counts.values() if count)
                    if width > self.limits[name]:
                        self.violations.append(f"{name}: {width} > {self.limits[name]}")
            try:
                if leaf.latency:
                    time.sleep(leaf.latency)
                if leaf.fail:
                    raise ValueError(path)
                return path
            finally:
                if name:
                    with self._lock:
                        self.active[name][index] -= 1

        return body


def _skipped_never_ran(record: StepResult, path: str, ran: set[str]) -> None:
    if record.status is Status.SKIPPED:
        assert not {p for p in ran if p == path or p.startswith(path + "/")}, path
    for i, child in enumerate(getattr(record, "steps", [])):
        _skipped_never_ran(child, f"{path}/{i}", ran)


@sized(150, 2500)
@given(_nodes(3).filter(lambda n: isinstance(n, Par)), st.sampled_from([None, 0.004, 0.02]))
@pytest.mark.timeout(300)
def test_nested_plain_batches_cut_at_random_keep_their_bounds_and_end(
    root: PlainLeaf | Par, timeout: float | None
) -> None:
    nest = Nest()
    flow = nest.build(root, "r", ())
    with ActorSystem("nested-lanes") as system:
        result = system.run(flow, 0, timeout=timeout if timeout is not None else WAIT)
        assert result.status in (Status.OK, Status.ERROR, Status.TIMEOUT)
    assert not nest.violations, nest.violations
    top = StepResult(name="r", status=result.status)
    _skipped_never_ran(top, "r", nest.ran)
    for i, record in enumerate(result.steps):
        _skipped_never_ran(record, f"r/{i}", nest.ran)


def test_the_first_pass_prepares_the_next_slot_s_worth_behind_the_running_branches(
    system: ActorSystem, gates: Gates
) -> None:
    # The second wave must not wait for the supervisor's first drain: when the first wave
    # runs, a slot's worth more is prepared, so each finishing worker starts the next itself.
    concurrency = 4
    release = gates.new()
    meter = Meter()
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(5 * concurrency):
            pulled.append(i)
            yield i

    @tool
    def held(x: int) -> int:
        """Run until released."""
        meter.enter()
        try:
            if not release.wait(WAIT):
                msg = "never released"
                raise TimeoutError(msg)
        finally:
            meter.leave()
        return x

    run = system.start(
        MapReduceWorkflow(held, lambda acc, v: acc + v, initial=0, max_concurrency=concurrency),
        items(),
    )
    assert meter.wait_for(concurrency)
    # Running, plus one slot's worth prepared once the workers took the first (and the item
    # in hand).
    wait_until(lambda: len(pulled) >= 2 * concurrency, what="the next slot's worth")
    assert 2 * concurrency <= len(pulled) <= 2 * concurrency + 1
    assert meter.current == concurrency
    release.set()
    result = run.result(WAIT)
    assert result.status is Status.OK
    assert result.value == sum(range(5 * concurrency))


# -- coalesced completions: the queue's side of the protocol ----------------------------------


class _Owner:
    """Stands in for a dispatcher's actor: records what reaches it, now or by timer."""

    def __init__(self) -> None:
        self.told: list[object] = []
        self.scheduled: list[tuple[float, object]] = []
        self.handle = self
        self.system = self
        self.timers = self

    def tell(self, message: object) -> None:
        self.told.append(message)

    def schedule(self, delay: float, _target: object, message: object) -> None:
        self.scheduled.append((delay, message))


def _ignore_decided(_job: LeafJob, _result: StepResult) -> None:
    pass


def _lane_jobs(lane: Lane, count: int) -> list[LeafJob]:
    task = tool(lambda x: x, name="quick").prepare(0)
    return [
        lane_job(
            task,
            lane,
            parent=CancelScope(),
            cancellation_timeout=1.0,
            run_permits=None,
            label=f"b{i}",
            tag=None,
        )
        for i in range(count)
    ]


def _ended(job: LeafJob, status: Status) -> LeafJob:
    job.status = status
    return job


@pytest.mark.parametrize("coalesce", [True, False])
def test_a_success_that_decides_nothing_alone_is_handed_in_after_the_window(
    coalesce: bool,
) -> None:
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(2, lambda _count: True, lambda _jobs: None, _ignore_decided, coalesce=coalesce)
    first, second, third, fourth = _lane_jobs(lane, 4)
    lane.running = 2  # first and second run; third and fourth wait behind them
    lane.standby.extend([third, fourth])
    worker, other = cast("LeafWorker", object()), cast("LeafWorker", object())

    # A success while more wait in the lane: its successor starts at once, on this worker.
    assert queue.take(worker, _ended(first, Status.OK)) is third
    if not coalesce:
        assert len(owner.told) == 1
        assert owner.scheduled == []
        return
    assert owner.told == []
    assert [delay for delay, _message in owner.scheduled] == [COALESCE_WINDOW]

    # A failure may decide the batch: the owner hears of both at once, not after the window,
    # and the deferred message, once due, is not sent as well.
    assert queue.take(other, _ended(second, Status.ERROR)) is fourth
    assert len(owner.told) == 1
    queue.drain_due()
    assert len(owner.told) == 1
    _direct, started, done = queue.take_done()
    assert started == [third, fourth]
    assert done == [first, second]

    # Nothing waits in the lane any more: even a success is handed in at once.
    assert queue.take(worker, _ended(third, Status.OK)) is None
    assert len(owner.told) == 2
    assert len(owner.scheduled) == 1


def test_a_success_the_lane_cannot_follow_up_is_handed_in_at_once() -> None:
    # Too many abandoned threads: the lane refuses to start what waits. Only the supervisor
    # can refuse those branches, so it hears of the completion now, not after the window.
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(1, lambda _count: None, lambda _jobs: None, _ignore_decided, coalesce=True)
    first, second = _lane_jobs(lane, 2)
    lane.running = 1
    lane.standby.append(second)
    assert queue.take(cast("LeafWorker", object()), _ended(first, Status.OK)) is None
    assert list(lane.standby) == [second]
    assert len(owner.told) == 1
    assert owner.scheduled == []


def test_a_deferred_completion_is_sent_once_its_window_is_over() -> None:
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(1, lambda _count: True, lambda _jobs: None, _ignore_decided, coalesce=True)
    first, second, third = _lane_jobs(lane, 3)
    lane.running = 1
    lane.standby.extend([second, third])
    worker = cast("LeafWorker", object())
    assert queue.take(worker, _ended(first, Status.OK)) is second
    assert owner.told == []
    queue.drain_due()  # the timer fires: nothing took the completion in meanwhile
    assert len(owner.told) == 1
    queue.drain_due()  # a second firing sends nothing more
    assert len(owner.told) == 1
    # Further successes do not schedule another: a message is on its way.
    assert queue.take(worker, _ended(second, Status.OK)) is third
    assert len(owner.told) == 1
    assert len(owner.scheduled) == 1


@pytest.mark.parametrize("sealed", [True, False])
def test_the_last_wave_s_successes_wait_for_its_last_branch_once_the_lane_is_sealed(
    sealed: bool,
) -> None:
    # The batch ran out: successes of its last branches wait for the last one to end, which
    # hands them all in at once (the step is decided then), instead of waking the supervisor
    # while the others still end. Unsealed, more may come, so each is handed in at once.
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(3, lambda _count: True, lambda _jobs: None, _ignore_decided, coalesce=True)
    lane.sealed = sealed
    first, second, third = _lane_jobs(lane, 3)
    lane.running = 3
    worker = cast("LeafWorker", object())
    assert queue.take(worker, _ended(first, Status.OK)) is None
    assert queue.take(worker, _ended(second, Status.OK)) is None
    if not sealed:
        assert len(owner.told) == 1  # one message on its way covers both
        assert owner.scheduled == []
        return
    assert owner.told == []
    assert [delay for delay, _message in owner.scheduled] == [COALESCE_WINDOW]
    assert queue.take(worker, _ended(third, Status.OK)) is None  # the last one: at once
    assert len(owner.told) == 1
    queue.drain_due()  # the window's timer finds nothing left to send
    assert len(owner.told) == 1
    assert queue.take_done() == ([], [], [first, second, third])


def test_a_failure_in_a_sealed_lane_s_last_wave_is_handed_in_at_once() -> None:
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(2, lambda _count: True, lambda _jobs: None, _ignore_decided, coalesce=True)
    lane.sealed = True
    first, second = _lane_jobs(lane, 2)
    lane.running = 2
    assert queue.take(cast("LeafWorker", object()), _ended(first, Status.ERROR)) is None
    assert len(owner.told) == 1
    assert owner.scheduled == []
    assert lane.running == 1
    assert second.status is None


@pytest.mark.parametrize("last", [3, 4, 5])
def test_a_last_wave_s_result_needs_no_timer_whichever_branch_ends_last(last: int) -> None:
    # The clock never moves, so the window's timer never fires: a success left waiting for it
    # would hold the result forever. The last branch to end brings the waiting ones in.
    release = threading.Event()
    ended: list[int] = []
    lock = threading.Lock()

    @tool
    def step(x: int) -> int:
        """End at once, but for the item chosen to end last, which waits to be released."""
        if x == last and not release.wait(WAIT):
            msg = "never released"
            raise TimeoutError(msg)
        with lock:
            ended.append(x)
        return x

    with ActorSystem("last-wave", clock=ManualClock()) as system:
        try:
            flow = MapReduceWorkflow(step, lambda acc, v: acc + v, initial=0, max_concurrency=3)
            run = system.start(flow, list(range(6)))
            wait_until(lambda: len(ended) == 5, what="every item but the held one to end")
        finally:
            release.set()
        result = run.result(WAIT)
    assert result.status is Status.OK
    assert result.value == sum(range(6))
    assert sorted(ended) == list(range(6))


class _Answered:
    """A step that is not a leaf: it answers when the test says, with no leaf of its own."""

    name = "answered"

    def __init__(self) -> None:
        self.calls: list[StepCall] = []
        self.started = threading.Event()

    def start(self, call: StepCall) -> None:
        self.calls.append(call)
        self.started.set()

    def present(self, result: StepResult, run_id: str) -> StepResult:
        del run_id
        return result


def test_a_last_wave_that_ends_with_a_branch_run_outside_the_lane_needs_no_timer() -> None:
    # The last wave holds a plain leaf of the lane and a step that took a slot of it. The leaf
    # ends first: its success waits for that slot, whose release sends it in. The clock never
    # moves, so nothing else would.
    leaf_may_end = threading.Event()
    ended: list[int] = []
    answered = _Answered()

    @tool
    def quick(x: int) -> int:
        """Return at once."""
        return x

    @tool
    def gated(x: int) -> int:
        """Return once the leaf may end."""
        if not leaf_may_end.wait(WAIT):
            msg = "never released"
            raise TimeoutError(msg)
        ended.append(x)
        return x

    flow = ParallelWorkflow([quick, quick, gated, answered], max_concurrency=2)
    with ActorSystem("last-wave", clock=ManualClock()) as system:
        try:
            run = system.start(flow, 1)
            assert answered.started.wait(WAIT)
            leaf_may_end.set()
            wait_until(lambda: ended == [1], what="the leaf to end")
            (call,) = answered.calls
            call.reply(StepResult(name="answered", status=Status.OK, value=2))
        finally:
            leaf_may_end.set()
        result = run.result(WAIT)
    assert result.status is Status.OK
    assert result.value == [1, 1, 1, 2]


def test_the_worker_that_takes_the_last_ready_job_tells_the_owner_once_if_asked() -> None:
    # The first pass starts one slot's worth and asks to hear when the workers have taken it:
    # the next is prepared then, not while the workers wait for the supervisor's thread.
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(3, lambda _count: True, lambda _jobs: None, _ignore_decided)
    jobs = _lane_jobs(lane, 3)
    queue.ready.extend(jobs)
    lane.dry_notice = True
    worker = cast("LeafWorker", object())
    assert queue.take(worker) is jobs[0]
    assert queue.take(worker) is jobs[1]
    assert owner.told == []
    assert not lane.dry
    assert queue.take(worker) is jobs[2]  # the last one: the owner hears of it
    assert len(owner.told) == 1
    assert lane.dry
    assert not lane.dry_notice
    queue.ready.extend(_lane_jobs(lane, 1))
    queue.take(worker)  # asked once, told once
    assert len(owner.told) == 1


def test_a_completion_handed_in_with_the_last_ready_job_taken_is_told_once() -> None:
    # The worker hands in a failure and takes the last ready job in one step: the message
    # that tells the owner of the failure must go, and covers the notice as well.
    owner = _Owner()
    queue = _WorkQueue(cast("Actor", owner))
    lane = Lane(2, lambda _count: True, lambda _jobs: None, _ignore_decided)
    finished, last = _lane_jobs(lane, 2)
    lane.running = 1
    queue.ready.append(last)
    lane.dry_notice = True
    assert queue.take(cast("LeafWorker", object()), _ended(finished, Status.ERROR)) is last
    assert len(owner.told) == 1
    assert lane.dry
    assert queue.take_done() == ([], [], [finished])


def test_a_dry_notice_whose_handling_closes_lanes_reaches_every_lane_that_was_dry() -> None:
    # Handling a notice may close lanes (the gather decided, so admission closes the batch's):
    # the other lanes that ran dry still hear of it.
    owner = _Owner()
    dispatcher = LeafDispatcher(cast("Actor", owner), "lanes", 1)
    lanes: list[Lane] = []
    noticed: list[int] = []

    def on_dry(index: int) -> None:
        noticed.append(index)
        for lane in lanes:
            dispatcher.close_lane(lane)

    for index in range(3):
        lane = dispatcher.open_lane(
            1,
            lambda _count: True,
            lambda _jobs: None,
            _ignore_decided,
            on_dry=functools.partial(on_dry, index),
        )
        lane.dry = True
        lanes.append(lane)
    dispatcher._take_in()
    assert sorted(noticed) == [0, 1, 2]
    assert not any(lane.dry for lane in lanes)


class _Marker:
    """A timer target that says when it fired."""

    def __init__(self) -> None:
        self.fired = threading.Event()

    def tell(self, _message: object) -> None:
        self.fired.set()


def test_deferred_completions_never_reach_a_stopped_supervisor() -> None:
    # On a manual clock the windows never end by themselves: the run still ends (a completion
    # with nothing left in the lane is handed in at once), and the deferred messages that
    # come due after its supervisor stopped are dropped, not dead letters. Nor does the gather
    # ask a supervisor to cancel the rest once every branch has reported.
    clock = ManualClock()
    seen: list[object] = []
    with ActorSystem("coalesced", clock=clock) as system:
        stopped = threading.Event()

        def watch(event: object) -> None:
            seen.append(event)
            name = event.actor if isinstance(event, ActorStopped) else ""
            if ".branches" in name and "-leaf-" not in name:  # the supervisor, not a worker
                stopped.set()

        system.events.subscribe(watch, kinds=(ActorStopped, DeadLetter))
        quick = tool(lambda x: x, name="quick")
        flow = ParallelWorkflow([quick] * 400, max_concurrency=4)
        result = system.run(flow, 1, timeout=WAIT)
        assert result.status is Status.OK
        assert result.value == [1] * 400
        assert stopped.wait(WAIT)
        clock.advance(1.0)  # every deferred message comes due (on the timer thread)
        # A timer due now fires after every timer due earlier: then they have all fired.
        marker = _Marker()
        system.timers.schedule(0.0, marker, None)
        assert marker.fired.wait(WAIT)
    assert [event for event in seen if isinstance(event, DeadLetter)] == []  # nor any other
