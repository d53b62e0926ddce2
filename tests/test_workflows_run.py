"""Running workflows: the Run handle, asyncio bridging, deadlines, cancellation, events, threads."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

import pytest

from actors.runtime.cancel import CancelReason
from actors.runtime.events import ActorStarted, Event, StepFinished, StepStarted
from actors.runtime.results import Status
from actors.runtime.steps import Run
from actors.runtime.system import ActorSystem
from actors.tools import ToolContext, tool
from actors.workflows import (
    LoopWorkflow,
    SequentialWorkflow,
    WorkflowResult,
    WorkflowStepResult,
    step,
)
from tests.helpers import WAIT
from tests.workflow_tools import double, inc


class Probe:
    """What a leaf saw: that it started, its deadline, and the cancellation reaching it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.release = threading.Event()
        self.deadline: float | None = None
        self.reason: object = None


def holding_tool(probe: Probe, name: str = "hold") -> Any:
    """A sync tool that waits on its scope (or the probe's release) and records what it saw."""

    def hold(x: int, ctx: ToolContext) -> int:
        probe.deadline = ctx.deadline
        probe.started.set()
        end = time.monotonic() + WAIT
        while time.monotonic() < end and not probe.release.is_set():
            if ctx.scope.wait(0.01):
                probe.reason = ctx.scope.reason
                probe.cancelled.set()
                break
        return x

    return tool(hold, name=name)


def test_result_with_a_timeout_only_stops_waiting(system: ActorSystem) -> None:
    probe = Probe()
    run = system.start(SequentialWorkflow([inc, holding_tool(probe)]), 1)
    assert probe.started.wait(WAIT)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.01)
    assert run.status is None
    assert not run.done()
    probe.release.set()
    result = run.result(timeout=WAIT)
    assert result.value == 2
    assert run.status is Status.OK
    assert not probe.cancelled.is_set()


def test_cancelling_a_run_reaches_a_sync_leaf_and_records_every_unfinished_step(
    system: ActorSystem,
) -> None:
    probe = Probe()
    flow = SequentialWorkflow(
        [inc, SequentialWorkflow([holding_tool(probe), inc], name="inner"), double],
        name="outer",
    )
    run = system.start(flow, 1)
    assert probe.started.wait(WAIT)
    assert run.cancel()
    result = run.result(timeout=WAIT)
    assert result.status is Status.CANCELLED
    assert [(r.name, r.status) for r in result.steps] == [
        ("inc", Status.OK),
        ("inner", Status.CANCELLED),
        ("double", Status.SKIPPED),
    ]
    for record in result.steps[1:]:
        assert record.error is not None
        assert "cancelled before it finished" in record.error.message
    # The nested workflow's record keeps its own steps: cut with the run, it answered first.
    inner = result.steps[1]
    assert isinstance(inner, WorkflowStepResult)
    assert [(r.name, r.status) for r in inner.steps] == [
        ("hold", Status.CANCELLED),
        ("inc", Status.SKIPPED),
    ]
    assert probe.cancelled.wait(WAIT)
    assert probe.reason is CancelReason.CANCELLED
    assert not run.cancel()


def test_cancelling_a_run_cancels_an_async_leafs_task(system: ActorSystem) -> None:
    started = threading.Event()
    task_cancelled = threading.Event()

    @tool
    async def wait_forever(x: int) -> int:
        """Waits until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            task_cancelled.set()
            raise
        return x

    flow = LoopWorkflow(SequentialWorkflow([inc, wait_forever], name="body"), max_iterations=3)
    run = system.start(flow, 0)
    assert started.wait(WAIT)
    run.cancel()
    result = run.result(timeout=WAIT)
    assert result.status is Status.CANCELLED
    assert task_cancelled.wait(WAIT)
    assert [(r.name, r.status) for r in result.steps] == [("body[0]", Status.CANCELLED)]


def test_an_inner_long_timeout_is_cut_by_the_outer_deadline(system: ActorSystem) -> None:
    probe = Probe()
    inner = SequentialWorkflow([holding_tool(probe)], name="inner", timeout=60.0)
    flow = SequentialWorkflow([inc, inner, double], name="outer")
    before = system.clock.now()
    result = system.run(flow, 1, timeout=0.3)
    assert result.status is Status.TIMEOUT
    assert probe.deadline is not None
    assert probe.deadline <= before + 0.3 + 0.05
    assert probe.cancelled.wait(WAIT)
    assert probe.reason is CancelReason.DEADLINE
    assert [(r.name, r.status) for r in result.steps] == [
        ("inc", Status.OK),
        ("inner", Status.TIMEOUT),
        ("double", Status.SKIPPED),
    ]
    inner_record = result.steps[1]
    assert isinstance(inner_record, WorkflowStepResult)
    assert [(r.name, r.status) for r in inner_record.steps] == [("hold", Status.TIMEOUT)]
    with pytest.raises(Exception, match="ended timeout"):
        _ = result.value


def test_a_step_timeout_fails_its_sequence_without_cutting_the_run(system: ActorSystem) -> None:
    probe = Probe()
    flow = SequentialWorkflow([step(holding_tool(probe), timeout=0.05), inc], name="s")
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.failed_step == "hold"
    assert result.step("hold").status is Status.TIMEOUT
    assert result.error is not None
    assert result.error.message == "step 'hold' timed out"
    # The step is decided at its deadline; the leaf's thread sees it on its own schedule.
    assert probe.cancelled.wait(WAIT)
    assert probe.reason is CancelReason.DEADLINE


def test_awaiting_a_run_does_not_block_the_event_loop(system: ActorSystem) -> None:
    gate = threading.Event()

    @tool
    def wait_for_gate(x: int) -> int:
        """Returns once the event loop's ticker opened the gate."""
        if not gate.wait(WAIT):
            raise TimeoutError("the ticker never opened the gate: the loop was blocked")
        return x

    flow = SequentialWorkflow([inc, wait_for_gate, double])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 5:
                gate.set()
            await asyncio.sleep(0.005)

    async def main() -> tuple[WorkflowResult, WorkflowResult]:
        task = asyncio.create_task(ticker())
        try:
            first = await system.run_async(flow, 1)
            gate.clear()
            ticks_before = ticks
            handle: Run[WorkflowResult] = system.start(flow, 2)
            while ticks < ticks_before + 5:
                await asyncio.sleep(0.005)
            gate.set()
            second = await handle
        finally:
            task.cancel()
        return first, second

    first, second = asyncio.run(main())
    assert (first.value, second.value) == (4, 6)
    assert ticks >= 10


def test_cancelling_the_awaiting_task_cancels_a_run_async(system: ActorSystem) -> None:
    probe = Probe()

    async def main() -> None:
        task = asyncio.create_task(system.run_async(SequentialWorkflow([holding_tool(probe)]), 1))
        while not probe.started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert probe.cancelled.wait(WAIT)
    assert probe.reason is CancelReason.CANCELLED


def test_every_node_emits_step_events_in_order(system: ActorSystem) -> None:
    events: queue.Queue[Event] = queue.Queue()
    flow = SequentialWorkflow([inc, SequentialWorkflow([double], name="inner")], name="outer")
    with system.events.subscribe(events, kinds=(StepStarted, StepFinished)):
        result = system.run(flow, 1)
    assert result.value == 4
    seen: list[tuple[str, str]] = []
    while not events.empty():
        event = events.get_nowait()
        assert isinstance(event, StepStarted | StepFinished)
        seen.append((type(event).__name__, event.step))
    assert seen == [
        ("StepStarted", "outer"),
        ("StepStarted", "inc"),
        ("StepFinished", "inc"),
        ("StepStarted", "outer/inner"),
        ("StepStarted", "double"),
        ("StepFinished", "double"),
        ("StepFinished", "outer/inner"),
        ("StepFinished", "outer"),
    ]


def test_a_run_spawns_one_coordinator_per_node_whatever_the_iteration_count(
    system: ActorSystem,
) -> None:
    events: queue.Queue[Event] = queue.Queue()
    body = SequentialWorkflow([inc, SequentialWorkflow([inc], name="deep")], name="body")
    with system.events.subscribe(events, kinds=(ActorStarted,)):
        result = system.run(LoopWorkflow(body, max_iterations=40), 0)
    assert result.value == 80
    assert result.iterations == 40
    names: list[str] = []
    while not events.empty():
        event = events.get_nowait()
        assert isinstance(event, ActorStarted)
        names.append(event.actor)
    coordinators = sorted(n for n in names if n.startswith(f"{result.run_id}/"))
    assert len(coordinators) == 3


def test_many_concurrent_instances_share_their_coordinators(system: ActorSystem) -> None:
    flow = SequentialWorkflow([inc, LoopWorkflow(double, max_iterations=3)], name="s")
    runs = [system.start(flow, i) for i in range(20)]
    assert [run.result(timeout=WAIT).value for run in runs] == [(i + 1) * 8 for i in range(20)]


def test_shutdown_decides_a_pending_run_and_leaves_no_thread() -> None:
    probe = Probe()
    system = ActorSystem("shutdown")
    run = system.start(SequentialWorkflow([holding_tool(probe)], name="s"), 1)
    assert probe.started.wait(WAIT)
    report = system.shutdown(timeout=WAIT)
    assert report.clean
    result = run.result(timeout=WAIT)
    assert result.status is Status.CANCELLED
    assert probe.reason is CancelReason.SHUTDOWN
    alive = [t.name for t in threading.enumerate() if t.name.startswith("shutdown/")]
    assert alive == []


def test_a_records_of_a_nested_workflow_are_workflow_step_results(system: ActorSystem) -> None:
    result = system.run(SequentialWorkflow([SequentialWorkflow([inc], name="in")]), 1)
    record = result.step("in")
    assert isinstance(record, WorkflowStepResult)
    assert record.kind == "sequential"
    assert [r.name for r in record.steps] == ["inc"]


def _plain(value: int) -> int:
    return value


@pytest.mark.parametrize(
    ("target", "named"),
    [
        (_plain, "the plain callable '_plain'; make it a tool first"),
        ("nope", "str 'nope'"),
        (SequentialWorkflow, "the class SequentialWorkflow; make one first"),
    ],
)
def test_running_what_is_not_a_step_is_a_type_error_naming_it(
    system: ActorSystem, target: Any, named: str
) -> None:
    with pytest.raises(TypeError, match=f"run/start takes a step .*got {named}"):
        system.run(target, 1)
    with pytest.raises(TypeError, match=f"call takes a tool .*got {named}"):
        system.call(target, 1)
    with pytest.raises(TypeError, match=r"call takes a tool .*got SequentialWorkflow"):
        system.call(SequentialWorkflow([inc]), 1)  # type: ignore[arg-type]
    assert system.actors() == []


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got '5'"),
        ({"timeout": True}, TypeError, "timeout must be a number of seconds, got True"),
        ({"cancellation_timeout": -1}, ValueError, "cancellation_timeout must be >= 0"),
        ({"cancellation_timeout": "x"}, TypeError, "cancellation_timeout must be a number"),
    ],
)
def test_a_timeout_that_is_not_seconds_is_refused_naming_it(
    system: ActorSystem, options: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named):
        system.call(inc, 1, **options)
    if "cancellation_timeout" not in options:
        with pytest.raises(error, match=named):
            system.run(inc, 1, **options)
    assert system.actors() == []
