"""A workflow run as a supervised child: restarts per policy, exits, cancellation, answers."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from actors.runtime.reasons import Crashed, Normal, Shutdown
from actors.runtime.results import Status
from actors.tools import Tool, ToolContext, ToolInputError, tool
from actors.workflows import SequentialWorkflow, WorkflowResult
from supervisors import (
    Backoff,
    ChildSpec,
    ChildStartError,
    RestartType,
    SupervisorFlags,
    start_dynamic_supervisor,
)
from tests.helpers import WAIT
from tests.supervision_kit import Kit, Worker, open_kit
from tests.workflow_tools import double, inc


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def failing_first(times: int, calls: list[int]) -> Tool[..., int]:
    """A tool that raises ConnectionError on its first ``times`` calls, then adds one."""

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) <= times:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return x + 1

    return tool(flaky, name="flaky")


def holding(started: threading.Event, seen_cancel: threading.Event) -> Tool[..., int]:
    """A tool that waits on its scope until cancelled (at most WAIT) and records it."""

    def hold(x: int, ctx: ToolContext) -> int:
        started.set()
        if ctx.scope.wait(WAIT):
            seen_cancel.set()
        return x

    return tool(hold, name="hold")


def test_a_failing_transient_workflow_child_is_restarted_per_policy_until_a_run_succeeds(
    kit: Kit,
) -> None:
    calls: list[int] = []
    flow = SequentialWorkflow([inc, failing_first(2, calls), double], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    spec = ChildSpec.run("job", flow, 1, reply_to=reply, backoff=Backoff(min=1.0, max=4.0))
    assert spec.restart is RestartType.TRANSIENT
    sup = kit.start([spec])
    first = kit.expect(("ChildStarted", "job"), ("ChildExited", "job"), ("ChildRestarting", "job"))
    assert isinstance(first[1].reason, Crashed)
    assert first[1].reason.error.short_type == "ConnectionError"
    assert "attempt 1 failed" in first[1].reason.error.message
    assert first[2].delay == 1.0
    assert not reply.done()  # a failed run that will be run again answers nothing yet
    kit.clock.advance(1.0)
    second = kit.expect(("ChildStarted", "job"), ("ChildExited", "job"), ("ChildRestarting", "job"))
    assert second[2].delay == 2.0
    kit.clock.advance(2.0)
    third = kit.expect(("ChildStarted", "job"), ("ChildExited", "job"))
    assert third[1].reason == Normal()
    result = reply.result(WAIT)
    assert (result.status, result.value) == (Status.OK, 6)
    assert calls == [2, 2, 2]
    assert [(i.id, i.state, i.incarnation) for i in sup.which_children()] == [("job", "stopped", 3)]
    kit.clock.advance(10.0)
    kit.flush_timers()
    assert kit.drain() == []


def test_a_transient_workflow_child_whose_run_succeeds_is_not_restarted(kit: Kit) -> None:
    calls: list[int] = []
    flow = SequentialWorkflow([failing_first(0, calls), double], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    sup = kit.start([ChildSpec.run("job", flow, 4, reply_to=reply)])
    kit.expect(("ChildStarted", "job"), ("ChildExited", "job"))
    assert reply.result(WAIT).value == 10
    assert calls == [4]
    assert [(i.state, i.incarnation) for i in sup.which_children()] == [("stopped", 1)]
    assert kit.drain() == []


def test_a_permanent_workflow_child_runs_again_after_each_successful_run(kit: Kit) -> None:
    calls: list[int] = []
    flow = SequentialWorkflow([failing_first(0, calls)], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    pause = Backoff(min=1.0, max=1.0)
    spec = ChildSpec.run("job", flow, 0, reply_to=reply, restart="permanent", backoff=pause)
    kit.start([spec], SupervisorFlags(intensity=10))
    for run in (1, 2, 3):
        events = kit.expect(
            ("ChildStarted", "job"), ("ChildExited", "job"), ("ChildRestarting", "job")
        )
        assert events[1].reason == Normal()
        assert len(calls) == run
        kit.clock.advance(1.0)
    assert reply.result(WAIT).value == 1  # the first run answered; later runs do not


def test_stopping_a_workflow_child_cancels_its_run_and_answers_cancelled(kit: Kit) -> None:
    started, seen_cancel = threading.Event(), threading.Event()
    flow = SequentialWorkflow([inc, holding(started, seen_cancel)], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    sup = kit.start([ChildSpec.run("job", flow, 1, reply_to=reply), worker_spec("w")])
    assert started.wait(WAIT)
    sup.terminate_child("job")
    # The run is decided cancelled the moment it is cut, which ends the child; the leaf's
    # thread sees that cancellation on its own schedule, which a loaded machine delays.
    assert seen_cancel.wait(WAIT)
    terminated = kit.until("ChildTerminated", "job")[-1]
    assert terminated == ("ChildTerminated", "job")
    result = reply.result(WAIT)
    assert result.status is Status.CANCELLED
    assert result.step("hold").status is Status.CANCELLED
    assert [(i.id, i.state) for i in sup.which_children()] == [("job", "stopped"), ("w", "running")]


def test_a_workflow_child_stopped_with_its_supervisor_ends_with_shutdown(kit: Kit) -> None:
    started, seen_cancel = threading.Event(), threading.Event()
    flow = SequentialWorkflow([holding(started, seen_cancel)], name="flow")
    sup = kit.start([ChildSpec.run("job", flow, 1)])
    (info,) = sup.which_children()
    assert info.handle is not None
    assert started.wait(WAIT)
    assert sup.stop(timeout=WAIT) == Shutdown()
    assert info.handle.join(WAIT) == Shutdown()
    assert seen_cancel.wait(WAIT)  # the leaf saw it, on its own schedule


def test_a_temporary_workflow_child_answers_its_failed_run_as_it_is_removed(kit: Kit) -> None:
    calls: list[int] = []
    flow = SequentialWorkflow([failing_first(5, calls)], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    sup = kit.start([ChildSpec.run("job", flow, 1, reply_to=reply, restart="temporary")])
    kit.expect(("ChildStarted", "job"), ("ChildExited", "job"))
    result = reply.result(WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "attempt 1 failed" in result.error.message
    assert sup.which_children() == []
    assert calls == [1]


def test_a_workflow_child_past_its_max_restarts_answers_its_last_failed_run(kit: Kit) -> None:
    calls: list[int] = []
    flow = SequentialWorkflow([failing_first(9, calls)], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    backoff = Backoff(min=1.0, max=1.0, max_restarts=1)
    sup = kit.start([ChildSpec.run("job", flow, 1, reply_to=reply, backoff=backoff)])
    kit.expect(("ChildStarted", "job"), ("ChildExited", "job"), ("ChildRestarting", "job"))
    kit.clock.advance(1.0)
    events = kit.expect(
        ("ChildStarted", "job"), ("ChildExited", "job"), ("ChildRestartsExhausted", "job")
    )
    assert events[2].restarts == 1
    result = reply.result(WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "attempt 2 failed" in result.error.message
    assert sup.which_children()[0].state == "stopped"
    assert sup.handle.is_alive()


def test_a_tool_is_a_step_too_and_bad_input_fails_the_childs_start(kit: Kit) -> None:
    dyn = start_dynamic_supervisor(kit.system, name="dyn")
    reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
    with pytest.raises(ChildStartError, match="child 'bad' failed to start"):
        dyn.start_child(ChildSpec.run("bad", inc, "not a number", reply_to=reply))
    with pytest.raises(ToolInputError):
        reply.result(WAIT)
    assert dyn.which_children() == []
    good: concurrent.futures.Future[Any] = concurrent.futures.Future()
    assert dyn.start_child(ChildSpec.run("good", inc, 41, reply_to=good)) is not None
    assert good.result(WAIT).value == 42


def test_a_dynamic_supervisor_removes_a_workflow_child_once_its_run_is_done(kit: Kit) -> None:
    dyn = start_dynamic_supervisor(kit.system, extra_args=("ignored by runs",), name="dyn")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    handle = dyn.start_child(ChildSpec.run("job", double, 21, reply_to=reply))
    assert handle is not None
    assert reply.result(WAIT).value == 42
    kit.until("ChildExited", "job")
    assert dyn.which_children() == []
    assert kit.system.lookup("dyn/job") is None


def test_system_shutdown_cancels_a_workflow_child_under_a_root_and_answers(kit: Kit) -> None:
    started, seen_cancel = threading.Event(), threading.Event()
    flow = SequentialWorkflow([holding(started, seen_cancel)], name="flow")
    reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
    kit.system.supervise([ChildSpec.run("job", flow, 1, reply_to=reply)], name="root")
    assert started.wait(WAIT)
    kit.system.shutdown(WAIT)
    assert seen_cancel.wait(WAIT)  # the leaf saw it, on its own schedule
    assert reply.result(WAIT).status is Status.CANCELLED
    assert ("ChildTerminated", "job") in kit.drain()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"args": (1,)}, "takes its input in input="),
        ({"kwargs": {"retries": 2}}, "unknown run options"),
    ],
)
def test_a_step_spec_rejects_arguments_meant_for_actors(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ChildSpec(id="job", start=inc, **fields)


def test_input_is_refused_for_an_actor_start() -> None:
    with pytest.raises(ValidationError, match="input is only for a step start"):
        ChildSpec(id="w", start=Worker, input=3)


def worker_spec(child_id: str) -> ChildSpec:
    """A plain Worker child."""
    return ChildSpec(id=child_id, start=Worker)
