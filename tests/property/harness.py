"""Runs a random tree through castflow with instrumented leaves, and checks what came back.

``Instruments`` watches every leaf: how many branches of each parallel step run at once, how
many leaves hold each semaphore, and the threads of leaves that ignore their cancellation.
``build`` turns a tree into castflow workflows; ``check_records`` walks the run's result
against the reference model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from actors import (
    ActorSystem,
    Aggregation,
    Backoff,
    Barrier,
    ConditionalWorkflow,
    ErrorMode,
    FanOutWorkflow,
    ForkJoinWorkflow,
    LoopWorkflow,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    RetryPolicy,
    RunContext,
    ScatterGatherWorkflow,
    Semaphore,
    SequentialWorkflow,
    Status,
    StepFinished,
    StepResult,
    ToolContext,
    WorkflowResult,
    WorkflowStepResult,
    step,
    tool,
)
from actors.runtime.events import Event
from tests.property.model import Expect, branch_expect, expect
from tests.property.trees import (
    SEMAPHORES,
    Cond,
    Fan,
    Leaf,
    Loop,
    Node,
    Par,
    Rally,
    Seq,
    children_of,
    cost,
)

HANG_CAP = 20.0
"""The longest a hanging leaf waits for its cancellation before it gives up by itself."""

Chain = tuple[tuple[str, int], ...]
"""The (parallel step, branch index) pair metering a leaf: its nearest parallel step, if that
step runs once per run and only sequences and conditionals lie between them."""


class LeafError(Exception):
    """What a failing leaf raises."""


class Instruments:
    """What the leaves of one run report: concurrency per parallel step and per semaphore.

    Args:
        limits: the most branches in flight at once, per parallel step name.
        permits: the permits of each semaphore, per name.
    """

    def __init__(self, limits: dict[str, int], permits: dict[str, int]) -> None:
        self._cond = threading.Condition()
        self.limits = limits
        self.permits = permits
        self._branches: dict[str, Counter[int]] = {name: Counter() for name in limits}
        self.peak_branches: dict[str, int] = dict.fromkeys(limits, 0)
        self._holders: Counter[str] = Counter()
        self.peak_holders: dict[str, int] = dict.fromkeys(permits, 0)
        self.stubborn_threads: set[str] = set()
        self.cut_threads: set[str] = set()
        self._stubborn_running = 0
        self.violations: list[str] = []
        self._decided: set[str] = set()
        self._leaves: dict[str, Callable[[], None]] = {}

    def enter_branches(self, chain: Chain, call_id: str) -> Callable[[], None]:
        """Leaf call ``call_id`` under ``chain`` starts; returns the idempotent call that says
        it stopped (it is also called when the call is decided, see :meth:`on_event`)."""
        with self._cond:
            if call_id in self._decided:
                return lambda: None  # decided before its body began: its slot is free already
            for name, index in chain:
                active = self._branches[name]
                active[index] += 1
                width = sum(1 for count in active.values() if count > 0)
                self.peak_branches[name] = max(self.peak_branches[name], width)
                if width > self.limits[name]:
                    self.violations.append(f"{name}: {width} branches > {self.limits[name]}")
        left = threading.Event()

        def leave() -> None:
            with self._cond:
                if left.is_set():
                    return
                left.set()
                for name, index in chain:
                    self._branches[name][index] -= 1

        with self._cond:
            self._leaves[call_id] = leave
        return leave

    def on_event(self, event: Event) -> None:
        """Subscribed to ``StepFinished``: a decided leaf frees its slot, so it stops counting.

        The dispatcher publishes the event before it reports the decision, hence before the
        slot can be given to another branch (a leaf ignoring its cancellation runs on).
        """
        if not isinstance(event, StepFinished):
            return
        with self._cond:
            self._decided.add(event.call_id)
            leave = self._leaves.pop(event.call_id, None)
        if leave is not None:
            leave()

    def hold(self, semaphore: str | None) -> None:
        """A leaf holding ``semaphore`` starts its body."""
        if semaphore is None:
            return
        with self._cond:
            self._holders[semaphore] += 1
            now = self._holders[semaphore]
            self.peak_holders[semaphore] = max(self.peak_holders[semaphore], now)
            if now > self.permits[semaphore]:
                self.violations.append(f"{semaphore}: {now} holders > {self.permits[semaphore]}")

    def release(self, semaphore: str | None) -> None:
        """A leaf holding ``semaphore`` ends its body."""
        if semaphore is None:
            return
        with self._cond:
            self._holders[semaphore] -= 1

    def cut_while_running(self, thread: str) -> None:
        """A sync leaf was cut while its body ran on ``thread``."""
        with self._cond:
            self.cut_threads.add(thread)

    def stubborn_started(self) -> None:
        """A leaf that ignores its cancellation starts, on the current thread."""
        with self._cond:
            self.stubborn_threads.add(threading.current_thread().name)
            self._stubborn_running += 1

    def stubborn_ended(self) -> None:
        """A leaf that ignores its cancellation ends."""
        with self._cond:
            self._stubborn_running -= 1
            self._cond.notify_all()

    def wait_stubborn_ended(self, timeout: float) -> bool:
        """Wait until every leaf that ignored its cancellation has ended its body."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stubborn_running == 0, timeout)


def _zero(_: Any) -> int:
    return 0


def _custom_count(results: list[StepResult]) -> int:
    return sum(1 for result in results if result.ok)


def _never(_: Any, __: RunContext) -> bool:
    return False


def _always(_: Any, __: RunContext) -> bool:
    return True


def _leaf_tool(leaf: Leaf, chain: Chain, inst: Instruments) -> Any:
    semaphore = None if leaf.semaphore is None else SEMAPHORES[leaf.semaphore]
    name = leaf.name

    def begin(ctx: ToolContext) -> Callable[[], None]:
        leave = inst.enter_branches(chain, ctx.call_id)
        inst.hold(semaphore)
        return leave

    if leaf.is_async:

        async def run_async(x: Any, ctx: ToolContext) -> Any:
            leave = begin(ctx)
            try:
                if leaf.kind == "error":
                    raise LeafError(name)
                if leaf.kind == "slow":
                    await asyncio.sleep(leaf.latency)
                elif leaf.kind == "hang":
                    await asyncio.sleep(HANG_CAP)
                return name
            finally:
                inst.release(semaphore)
                leave()

        return tool(run_async, name=name)

    def run(x: Any, ctx: ToolContext) -> Any:
        leave = begin(ctx)
        thread = threading.current_thread().name
        # Only a thread still in a leaf's body when it is cut may be abandoned.
        forget = ctx.scope.add_callback(lambda _scope: inst.cut_while_running(thread))
        try:
            if leaf.kind == "error":
                raise LeafError(name)
            if leaf.kind == "slow":
                time.sleep(leaf.latency)
            elif leaf.kind == "hang":
                ctx.scope.wait(HANG_CAP)
                ctx.raise_if_cancelled()
            elif leaf.kind == "stubborn":
                assert leaf.timeout is not None
                inst.stubborn_started()
                try:
                    time.sleep(leaf.timeout + leaf.latency)  # deaf to its cancellation
                finally:
                    inst.stubborn_ended()
            return name
        finally:
            forget()
            inst.release(semaphore)
            leave()

    return tool(run, name=name)


def limits_of(root: Node) -> dict[str, int]:
    """The concurrency limit of every parallel step run once per run (not under a repeat)."""
    found: dict[str, int] = {}

    def visit(node: Node) -> None:
        if isinstance(node, Loop | Fan):
            return
        if isinstance(node, Par):
            found[node.name] = node.max_concurrency
        if isinstance(node, Rally):
            found[node.name] = len(node.first)
        for child in children_of(node):
            visit(child)

    visit(root)
    return found


def build(root: Node, inst: Instruments, semaphores: dict[str, Semaphore]) -> Any:
    """The castflow step of ``root``, with instrumented leaves."""
    metered = set(inst.limits)

    def make(node: Node, chain: Chain) -> Any:
        if isinstance(node, Leaf):
            sems = [] if node.semaphore is None else [semaphores[SEMAPHORES[node.semaphore]]]
            return step(
                _leaf_tool(node, chain, inst),
                input=_zero,
                timeout=node.timeout,
                semaphores=sems,
            )
        if isinstance(node, Seq):
            return SequentialWorkflow([make(c, chain) for c in node.children], name=node.name)
        if isinstance(node, Cond):
            return ConditionalWorkflow(
                [(_never, make(node.other, chain)), (_always, make(node.chosen, chain))],
                name=node.name,
            )
        if isinstance(node, Loop):
            return LoopWorkflow(make(node.body, ()), max_iterations=node.iterations, name=node.name)
        if isinstance(node, Par):
            return _par(node, metered, make)
        if isinstance(node, Fan):
            return _fan(node, make)
        return _rally(node, inst)

    return make(root, ())


def _par(node: Par, metered: set[str], make: Callable[[Node, Chain], Any]) -> Any:
    def sub(index: int) -> Chain:
        # Outer steps stop counting here: this step decides (and frees its own slot above)
        # as soon as its strategy can, while its cut leaves are still being cancelled on its
        # own workers. Below sequences and conditionals the order holds: their leaves run on
        # the enclosing step's workers, which decide a cut leaf before they free its slot.
        return ((node.name, index),) if node.name in metered else ()

    kids = [make(child, sub(i)) for i, child in enumerate(node.children)]
    limits = ResourceLimits(
        max_concurrent_executions=node.max_concurrency,
        execution_timeout=node.execution_timeout,
    )
    retry = (
        RetryPolicy(max_attempts=node.attempts, backoff=Backoff(min=0.005, max=0.01))
        if node.attempts > 1
        else None
    )
    mode = ErrorMode.FAIL_FAST if node.fail_fast else ErrorMode.FAIL_SLOW
    if node.kind == "fork_join":
        named = {child.name: kid for child, kid in zip(node.children, kids, strict=True)}
        return ForkJoinWorkflow(named, name=node.name, error_mode=mode, limits=limits, retry=retry)
    aggregation = {
        "all": Aggregation.ALL_SUCCESS,
        "first": Aggregation.FIRST_SUCCESS,
        "partial": Aggregation.PARTIAL_SUCCESS,
        "quorum": Aggregation.quorum(node.quorum),
        "custom": Aggregation.custom(_custom_count),
    }[node.aggregation]
    kind = ParallelWorkflow if node.kind == "parallel" else ScatterGatherWorkflow
    return kind(
        kids, name=node.name, aggregation=aggregation, error_mode=mode, limits=limits, retry=retry
    )


def _fan(node: Fan, make: Callable[[Node, Chain], Any]) -> Any:
    worker = make(node.worker, ())
    aggregation = Aggregation.PARTIAL_SUCCESS if node.partial else Aggregation.ALL_SUCCESS
    mode = ErrorMode.FAIL_FAST if node.fail_fast else ErrorMode.FAIL_SLOW
    items = node.items

    def split(_: Any) -> list[int]:
        return list(range(items))

    split.__name__ = f"{node.name}_split"
    if node.kind == "fan_out":
        return FanOutWorkflow(
            step(split, input=_zero),
            worker,
            name=node.name,
            aggregation=aggregation,
            error_mode=mode,
            max_concurrency=node.max_concurrency,
        )
    return MapReduceWorkflow(
        worker,
        items=split,
        name=node.name,
        aggregation=aggregation,
        error_mode=mode,
        max_concurrency=node.max_concurrency,
    )


def _rally(node: Rally, inst: Instruments) -> Any:
    barrier = Barrier(f"{node.name}-barrier", timeout=30.0)
    parties = []
    for index, (first, second) in enumerate(zip(node.first, node.second, strict=True)):
        sub = ((node.name, index),) if node.name in inst.limits else ()
        parties.append(
            SequentialWorkflow(
                [
                    step(_leaf_tool(first, sub, inst), input=_zero),
                    barrier,
                    step(_leaf_tool(second, sub, inst), input=_zero),
                ],
                name=f"{node.name}-party{index}",
            )
        )
    return ParallelWorkflow(parties, name=node.name, max_concurrency=len(parties))


# -- checking -----------------------------------------------------------------------------------

CUT_STATUSES = frozenset({Status.CANCELLED, Status.SKIPPED, Status.TIMEOUT})
EXACT, CUT, FREE = "exact", "cut", "free"
"""How far a record is constrained: by the model; by the model or a cut; not at all."""


def run_bound(root: Node) -> float:
    """Seconds within which a run of ``root`` must end, however its leaves interleave."""
    return 10.0 + 3.0 * cost(root)


def check_records(result: WorkflowResult, root: Node) -> None:
    """Walk ``result`` against the model: every branch once, with a consistent status.

    Raises:
        AssertionError: a record is missing, extra, misnamed, or has a status or value the
            model rules out.
    """
    (record,) = result.steps  # the root is wrapped in a one-step sequence
    _check(record, root, expect(root), EXACT, "$")


def _check(record: StepResult, node: Node, want: Expect, level: str, path: str) -> None:
    where = f"{path}/{node.name} ({type(node).__name__})"
    assert record.name == node.name, f"{where}: record named {record.name!r}"
    status = record.status
    if level == EXACT and want.known:
        assert status in want.statuses, f"{where}: {status} not in {set(want.statuses)}"
        if want.ok and want.values is not None:
            assert record.value in want.values, f"{where}: value {record.value!r}"
    elif level == CUT and want.known:
        allowed = want.statuses | {Status.CANCELLED, Status.SKIPPED}
        assert status in allowed, f"{where}: {status} not in {set(allowed)}"
    if isinstance(node, Leaf):
        assert not isinstance(record, WorkflowStepResult), f"{where}: a leaf has steps"
        return
    if not isinstance(record, WorkflowStepResult):
        # A nested workflow cut before it started, or while it ran, is one record.
        assert level != EXACT, f"{where}: no steps ({status})"
        assert status in CUT_STATUSES, f"{where}: no steps ({status})"
        return
    steps = record.steps
    if not steps and (status is Status.SKIPPED or (level != EXACT and status in CUT_STATUSES)):
        return  # cut before it planned a branch
    inner = level if want.known else FREE
    if level == EXACT and want.known and want.cuts:
        inner = CUT
    if isinstance(node, Seq):
        _check_seq(record, node, inner, where)
    elif isinstance(node, Cond):
        names = [s.name for s in steps]
        if inner != EXACT and names != [node.other.name, node.chosen.name]:
            assert set(names) <= {node.other.name, node.chosen.name}, f"{where}: {names}"
            return  # cut while it chose
        assert names == [node.other.name, node.chosen.name], f"{where}: {names}"
        assert steps[0].status is Status.SKIPPED, f"{where}: the branch not chosen ran"
        _check(steps[1], node.chosen, expect(node.chosen), inner, where)
    elif isinstance(node, Par):
        assert [s.name for s in steps] == [c.name for c in node.children], (
            f"{where}: branches {[s.name for s in steps]}"
        )
        for child, sub in zip(node.children, steps, strict=True):
            got = branch_expect(node, child)
            _check(sub, child, got, inner, where)
            if inner == EXACT and got.known:
                attempts = 1 if got.ok else node.attempts
                assert sub.attempts == attempts, f"{where}/{child.name}: {sub.attempts} attempts"
    elif isinstance(node, Fan):
        _check_fan(record, node, where, every_item=inner == EXACT)
    elif isinstance(node, Rally):
        parties = [f"{node.name}-party{i}" for i in range(len(node.first))]
        assert [s.name for s in steps] == parties, f"{where}: parties {[s.name for s in steps]}"


def _check_seq(record: WorkflowStepResult, node: Seq, level: str, where: str) -> None:
    steps = record.steps
    assert [s.name for s in steps] == [c.name for c in node.children], (
        f"{where}: steps {[s.name for s in steps]}"
    )
    stopped = False
    for child, sub in zip(node.children, steps, strict=True):
        if stopped:
            assert sub.status is Status.SKIPPED, f"{where}/{child.name}: ran after a failure"
            continue
        got = expect(child)
        _check(sub, child, got, level, where)
        if not got.known:
            level = FREE
        elif not got.ok and level == EXACT:
            stopped = True  # the sequence stops at its first failure; the rest never run


def _check_fan(record: WorkflowStepResult, node: Fan, where: str, *, every_item: bool) -> None:
    if node.kind == "map_reduce":
        # Counts cover every item admitted; items never admitted are not counted.
        counted = sum((record.counts or {}).values())
        if every_item:
            assert counted == node.items, f"{where}: counts {record.counts}"
        else:
            assert counted <= node.items, f"{where}: counts {record.counts}"
        return
    names = [f"{node.name}_split"] + [f"{node.worker.name}[{i}]" for i in range(node.items)]
    got = [s.name for s in record.steps]
    # The splitter alone when the fan-out was cut before it split.
    assert got in (names, names[:1]), f"{where}: steps {got}"


def run_tree(
    system: ActorSystem, root: Node, inst: Instruments, semaphores: dict[str, Semaphore]
) -> tuple[WorkflowResult, float]:
    """Run ``root`` (wrapped in a one-step sequence) and return its result and seconds taken.

    Raises:
        AssertionError: the run did not end within its bound.
    """
    flow = SequentialWorkflow([build(root, inst, semaphores)], name="root")
    bound = run_bound(root)
    began = time.monotonic()
    run = system.start(flow, 0, timeout=bound)
    try:
        result = run.result(timeout=bound + 10.0)
    except TimeoutError:
        run.cancel()
        raise AssertionError(f"the run did not end within {bound + 10.0:.1f} s") from None
    return result, time.monotonic() - began
