"""Nested supervisors, escalation, dynamic supervisors and automatic shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.runtime.actor import Actor
from actors.runtime.reasons import Escalated, Shutdown
from supervisors import (
    Backoff,
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildSpec,
    ChildStartError,
    MaxChildrenError,
    SupervisorFlags,
    SupervisorReply,
    WhichChildren,
    start_dynamic_supervisor,
)
from tests.helpers import WAIT, Inbox
from tests.supervision_kit import FlakyStart, Kit, handles, open_kit, worker


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def nested(child_id: str, children: list[ChildSpec], **flags: Any) -> ChildSpec:
    return ChildSpec.supervisor(child_id, children, SupervisorFlags(**flags))


def test_a_tree_starts_depth_first_in_order_and_stops_in_reverse(kit: Kit) -> None:
    log: list[str] = []
    inner = nested("inner", [worker("x", kwargs={"log": log}), worker("y", kwargs={"log": log})])
    sup = kit.start([worker("a", kwargs={"log": log}), inner, worker("b", kwargs={"log": log})])
    assert log == ["start a", "start x", "start y", "start b"]
    assert [i.kind for i in sup.which_children()] == ["worker", "supervisor", "worker"]
    assert sup.count_children().supervisors == 1
    assert sup.stop(timeout=WAIT) == Shutdown()
    assert log[4:] == ["stop b", "stop y", "stop x", "stop a"]


def test_an_escalation_reaches_the_parent_as_a_child_failure_and_it_restarts_the_subtree(
    kit: Kit,
) -> None:
    inner = nested("inner", [worker("x")], intensity=0)
    sup = kit.start([worker("a"), inner])
    a, inner_handle = handles(sup)
    x = kit.system.lookup("sup/inner/x")
    assert x is not None
    a.tell("hello")
    kit.until("ChildStarted", "inner")
    x.tell("boom")
    exited = kit.until("ChildExited", "inner")
    assert exited == [
        ("ChildExited", "x"),
        ("ChildRestarting", "x"),
        ("SupervisorEscalated", "x"),
        ("SupervisorStopped", "sup/inner"),
        ("ChildExited", "inner"),
    ]
    kit.expect(("ChildRestarting", "inner"), ("ChildStarted", "x"), ("ChildStarted", "inner"))
    assert (inner_handle.incarnation, x.incarnation, a.incarnation) == (2, 2, 1)
    assert a.ask("get").result(WAIT) == 1


def test_an_escalation_under_one_for_all_restarts_the_siblings_too(kit: Kit) -> None:
    inner = nested("inner", [worker("x")], intensity=0)
    sup = kit.start([worker("a"), inner], SupervisorFlags(strategy="one_for_all"))
    a, _ = handles(sup)
    x = kit.system.lookup("sup/inner/x")
    assert x is not None
    kit.until("ChildStarted", "inner")
    x.tell("boom")
    kit.until("ChildExited", "inner")
    kit.expect(
        ("ChildRestarting", "inner"),
        ("ChildTerminated", "a"),
        ("ChildStarted", "a"),
        ("ChildStarted", "x"),
        ("ChildStarted", "inner"),
    )
    assert a.incarnation == 2


def test_the_root_exits_with_escalated_when_its_child_supervisor_keeps_failing(
    kit: Kit,
) -> None:
    inner = nested("inner", [worker("x")], intensity=0)
    sup = kit.start([inner], SupervisorFlags(intensity=0))
    x = kit.system.lookup("sup/inner/x")
    assert x is not None
    x.tell("boom")
    reason = sup.handle.join(WAIT)
    assert isinstance(reason, Escalated)
    assert reason.child_id == "inner"
    assert isinstance(reason.last_reason, Escalated)


def test_a_dynamic_supervisor_answers_like_otp_for_each_child_state(kit: Kit) -> None:
    sup = start_dynamic_supervisor(kit.system, name="dyn")
    handle = sup.start_child(worker("a"))
    assert handle is not None
    assert handle.is_alive()
    with pytest.raises(ChildAlreadyStartedError) as started:
        sup.start_child(worker("a"))
    assert started.value.handle is handle
    with pytest.raises(ChildRunningError):
        sup.restart_child("a")
    with pytest.raises(ChildRunningError):
        sup.delete_child("a")
    sup.terminate_child("a")
    sup.terminate_child(handle)
    assert [(i.id, i.state) for i in sup.which_children()] == [("a", "stopped")]
    with pytest.raises(ChildAlreadyPresentError):
        sup.start_child(worker("a"))
    assert sup.restart_child("a") is handle
    assert handle.incarnation == 2
    sup.terminate_child("a")
    sup.delete_child("a")
    assert sup.which_children() == []
    for call in (sup.terminate_child, sup.restart_child, sup.delete_child, sup.get_child_spec):
        with pytest.raises(ChildNotFoundError):
            call("a")


def test_a_restarting_child_answers_restarting_and_terminate_cancels_its_restart(
    kit: Kit,
) -> None:
    sup = start_dynamic_supervisor(kit.system, name="dyn")
    handle = sup.start_child(worker("a", backoff=Backoff(min=5.0, max=5.0)))
    assert handle is not None
    handle.tell("boom")
    kit.until("ChildRestarting", "a")
    assert sup.count_children().active == 0
    with pytest.raises(ChildRestartingError):
        sup.restart_child("a")
    with pytest.raises(ChildRestartingError):
        sup.delete_child("a")
    with pytest.raises(ChildAlreadyPresentError):
        sup.start_child(worker("a"))
    sup.terminate_child("a")
    kit.clock.advance(6.0)
    kit.flush_timers()
    assert [(i.id, i.state) for i in sup.which_children()] == [("a", "stopped")]
    assert kit.drain() == []


def test_max_children_counts_live_children_not_start_calls(kit: Kit) -> None:
    sup = start_dynamic_supervisor(kit.system, max_children=2, name="dyn")
    first = sup.start_child(worker("a"))
    assert first is not None
    sup.start_child(worker("b", restart="temporary"))
    with pytest.raises(MaxChildrenError):
        sup.start_child(worker("c"))
    first.tell("boom")
    kit.until("ChildStarted", "b")
    kit.until("ChildStarted", "a")
    with pytest.raises(MaxChildrenError):
        sup.start_child(worker("c"))
    sup.terminate_child("b")
    third = sup.start_child(worker("c"))
    assert third is not None
    assert third.is_alive()


def test_restart_child_counts_against_max_children(kit: Kit) -> None:
    sup = start_dynamic_supervisor(kit.system, max_children=2, name="dyn")
    sup.start_child(worker("a"))
    sup.start_child(worker("b"))
    sup.terminate_child("a")
    sup.start_child(worker("c"))
    with pytest.raises(MaxChildrenError):
        sup.restart_child("a")
    states = [(i.id, i.state) for i in sup.which_children()]
    assert states == [("a", "stopped"), ("b", "running"), ("c", "running")]
    sup.terminate_child("b")
    restarted = sup.restart_child("a")
    assert restarted is not None
    assert restarted.is_alive()


def test_a_restarted_dynamic_supervisor_starts_empty_and_frees_its_childrens_names(
    kit: Kit,
) -> None:
    jobs_spec = ChildSpec.dynamic_supervisor("jobs", SupervisorFlags(intensity=0))
    root = kit.start([jobs_spec], SupervisorFlags(intensity=10), name="root")
    jobs = root.child("jobs")
    started = [jobs.start_child(worker(f"job{i}", restart="transient")) for i in range(3)]
    kit.until("ChildStarted", "job2")
    first = started[0]
    assert first is not None
    first.tell("boom")  # intensity 0: jobs escalates
    kit.until("ChildStarted", "jobs")
    assert root.child("jobs").which_children() == []
    names = [name for name in kit.system._handles if name.startswith("root/jobs/")]
    assert names == [], "the old children's handles outlived their supervisor"
    again = root.child("jobs").start_child(worker("job0"))
    assert again is not None
    assert again is not first
    assert again.is_alive()


def test_a_failed_start_child_returns_the_error_and_keeps_no_spec(kit: Kit) -> None:
    sup = start_dynamic_supervisor(kit.system, name="dyn")
    spec = ChildSpec(id="bad", start=FlakyStart, args=({"fail": True},))
    with pytest.raises(ChildStartError, match="child 'bad' failed to start"):
        sup.start_child(spec)
    assert sup.which_children() == []


def test_a_dynamic_supervisor_stops_its_children_all_at_once(kit: Kit) -> None:
    sup = start_dynamic_supervisor(kit.system, name="dyn")
    a = sup.start_child(worker("a", shutdown=1.0))
    b = sup.start_child(worker("b", shutdown=1.0))
    assert a is not None
    assert b is not None
    kit.block(a)
    kit.block(b)
    stopped = sup.handle.stop()
    assert [i.state for i in sup.which_children()] == ["stopping", "stopping"]
    kit.clock.advance(1.0)
    assert stopped.result(WAIT) == Shutdown()
    events = kit.drain()
    assert sorted(events[2:6]) == [
        ("ChildAbandoned", "a"),
        ("ChildAbandoned", "b"),
        ("ChildTerminated", "a"),
        ("ChildTerminated", "b"),
    ]
    assert events[6:] == [("SupervisorStopped", "dyn")]


def test_a_dynamic_supervisor_puts_its_extra_args_first(kit: Kit) -> None:
    log: list[str] = []
    sup = start_dynamic_supervisor(kit.system, extra_args=(log,), name="dyn")
    sup.start_child(ChildSpec(id="a", start=Worker2, args=("a",)))
    assert log == ["start a"]


class Worker2(Actor):
    def __init__(self, log: list[str], label: str) -> None:
        super().__init__()
        log.append(f"start {label}")


def test_an_actor_asks_a_supervisor_with_tell_and_gets_the_reply_as_a_message(
    kit: Kit,
) -> None:
    out = Inbox()

    class Asker(Actor):
        def on_receive(self, message: Any) -> Any:
            if isinstance(message, SupervisorReply):
                out.tell(message)
            else:
                message.tell(WhichChildren(reply_to=self.handle))

    sup = kit.start([worker("a")])
    asker = kit.system.spawn(Asker)
    asker.tell(sup.handle)
    reply = out.get()
    assert [info.id for info in reply.value] == ["a"]
    assert reply.error is None


def significant(child_id: str, restart: str = "transient") -> ChildSpec:
    return worker(child_id, restart=restart, significant=True)


def test_any_significant_child_ending_normally_stops_the_supervisor(kit: Kit) -> None:
    flags = SupervisorFlags(auto_shutdown="any_significant")
    sup = kit.start([worker("a"), significant("s"), worker("c")], flags)
    _, s, _ = handles(sup)
    kit.until("ChildStarted", "c")
    s.tell("finish")
    kit.expect(
        ("ChildExited", "s"),
        ("AutoShutdownTriggered", "s"),
        ("ChildTerminated", "c"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )
    assert sup.handle.join(WAIT) == Shutdown("auto_shutdown")


def test_a_significant_transient_child_that_crashes_is_restarted_instead(kit: Kit) -> None:
    flags = SupervisorFlags(auto_shutdown="any_significant")
    sup = kit.start([significant("s")], flags)
    (s,) = handles(sup)
    s.tell("boom")
    kit.until("ChildStarted", "s")
    kit.expect(("ChildExited", "s"), ("ChildRestarting", "s"), ("ChildStarted", "s"))
    assert sup.handle.is_alive()


def test_all_significant_waits_for_the_last_significant_child(kit: Kit) -> None:
    flags = SupervisorFlags(auto_shutdown="all_significant")
    specs = [significant("s1", "temporary"), significant("s2", "temporary"), worker("w")]
    sup = kit.start(specs, flags)
    s1, s2, w = handles(sup)
    kit.until("ChildStarted", "w")
    s1.tell("boom")
    kit.expect(("ChildExited", "s1"))
    assert [i.id for i in sup.which_children()] == ["s2", "w"]
    w.tell("finish")
    kit.expect(("ChildExited", "w"), ("ChildRestarting", "w"), ("ChildStarted", "w"))
    s2.tell("finish")
    kit.expect(
        ("ChildExited", "s2"),
        ("AutoShutdownTriggered", "s2"),
        ("ChildTerminated", "w"),
        ("SupervisorStopped", "sup"),
    )


def test_terminating_a_significant_child_does_not_trigger_auto_shutdown(kit: Kit) -> None:
    flags = SupervisorFlags(auto_shutdown="any_significant")
    sup = kit.start([significant("s"), worker("w")], flags)
    sup.terminate_child("s")
    assert [(i.id, i.state) for i in sup.which_children()] == [("s", "stopped"), ("w", "running")]
    assert sup.handle.is_alive()


def auto_inner(**options: Any) -> ChildSpec:
    """A sub-supervisor that shuts itself down once its significant child "s" finishes."""
    return ChildSpec.supervisor(
        "inner",
        [significant("s")],
        SupervisorFlags(auto_shutdown="any_significant"),
        **options,
    )


def test_a_significant_sub_supervisor_that_auto_shuts_down_shuts_its_parent_down_too(
    kit: Kit,
) -> None:
    flags = SupervisorFlags(auto_shutdown="any_significant")
    sup = kit.start([worker("w"), auto_inner(restart="transient", significant=True)], flags)
    s = kit.system.lookup("sup/inner/s")
    assert s is not None
    kit.until("ChildStarted", "inner")
    s.tell("finish")
    events = kit.expect(
        ("ChildExited", "s"),
        ("AutoShutdownTriggered", "s"),
        ("SupervisorStopped", "sup/inner"),
        ("ChildExited", "inner"),
        ("AutoShutdownTriggered", "inner"),
        ("ChildTerminated", "w"),
        ("SupervisorStopped", "sup"),
    )
    # OTP: an auto-shutdown is a normal 'shutdown' exit, at every level.
    assert events[3].reason == Shutdown("auto_shutdown")
    assert sup.handle.join(WAIT) == Shutdown("auto_shutdown")


def test_a_transient_sub_supervisor_that_auto_shuts_down_is_not_restarted(kit: Kit) -> None:
    sup = kit.start([worker("w"), auto_inner(restart="transient")])
    w, _ = handles(sup)
    s = kit.system.lookup("sup/inner/s")
    assert s is not None
    kit.until("ChildStarted", "inner")
    w.tell("hello")
    s.tell("finish")
    assert kit.until("ChildExited", "inner")[-2:] == [
        ("SupervisorStopped", "sup/inner"),
        ("ChildExited", "inner"),
    ]
    assert [(i.id, i.state) for i in sup.which_children()] == [
        ("w", "running"),
        ("inner", "stopped"),
    ]
    assert kit.drain() == []
    assert w.ask("get").result(WAIT) == 1


def test_a_permanent_sub_supervisor_that_auto_shuts_down_is_restarted_by_its_parents_strategy(
    kit: Kit,
) -> None:
    sup = kit.start([worker("w"), auto_inner()], SupervisorFlags(strategy="one_for_all"))
    w, inner = handles(sup)
    s = kit.system.lookup("sup/inner/s")
    assert s is not None
    kit.until("ChildStarted", "inner")
    s.tell("finish")
    kit.until("ChildExited", "inner")
    kit.expect(
        ("ChildRestarting", "inner"),
        ("ChildTerminated", "w"),
        ("ChildStarted", "w"),
        ("ChildStarted", "s"),
        ("ChildStarted", "inner"),
    )
    assert (w.incarnation, inner.incarnation, s.incarnation) == (2, 2, 2)
