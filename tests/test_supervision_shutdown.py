"""Shutdown specs, abandonment, stopping mid-restart, backoff and the restart stash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.runtime.errors import ActorDeadError
from actors.runtime.events import DeadLetter, Event
from actors.runtime.reasons import Abandoned, Crashed, Shutdown
from supervisors import Backoff, ChildSpec, SupervisorFlags, start_dynamic_supervisor
from tests.helpers import WAIT
from tests.supervision_kit import Block, Kit, Worker, handles, open_kit, worker


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def test_a_child_that_ignores_stop_is_abandoned_after_its_shutdown_time(kit: Kit) -> None:
    sup = kit.start([worker("a"), worker("stubborn", shutdown=2.0)])
    _, stubborn = handles(sup)
    kit.until("ChildStarted", "stubborn")
    kit.block(stubborn)
    stopped = sup.handle.stop()
    assert [info.state for info in sup.which_children()] == ["running", "stopping"]
    kit.clock.advance(1.9)
    kit.flush_timers()
    assert [info.state for info in sup.which_children()] == ["running", "stopping"]
    kit.clock.advance(0.2)
    events = kit.expect(
        ("ChildAbandoned", "stubborn"),
        ("ChildTerminated", "stubborn"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )
    assert events[0].waited == pytest.approx(2.1)
    assert isinstance(events[1].reason, Abandoned)
    assert stopped.result(WAIT) == Shutdown()
    kit.close()
    assert [t.owner for t in kit.system.shutdown(WAIT).abandoned] == ["sup/stubborn"]


def test_a_brutal_child_is_abandoned_at_once_without_waiting(kit: Kit) -> None:
    sup = kit.start([worker("a", shutdown="brutal")])
    (a,) = handles(sup)
    kit.until("ChildStarted", "a")
    kit.block(a)
    assert sup.stop(timeout=WAIT) == Shutdown()
    kit.expect(("ChildAbandoned", "a"), ("ChildTerminated", "a"), ("SupervisorStopped", "sup"))


def test_stopping_a_supervisor_while_a_restart_waits_cancels_the_restart(kit: Kit) -> None:
    specs = [worker("a"), worker("b", backoff=Backoff(min=5.0, max=5.0))]
    sup = kit.start(specs)
    _, b = handles(sup)
    kit.until("ChildStarted", "b")
    b.tell("boom")
    kit.expect(("ChildExited", "b"), ("ChildRestarting", "b"))
    assert [info.state for info in sup.which_children()] == ["running", "restarting"]
    assert sup.count_children().active == 1
    assert sup.stop(timeout=WAIT) == Shutdown()
    kit.expect(("ChildTerminated", "a"), ("SupervisorStopped", "sup"))
    kit.clock.advance(10.0)
    kit.flush_timers()
    assert kit.drain() == []
    assert not b.is_alive()


def test_stopping_a_supervisor_while_a_group_restart_waits_for_a_child_stops_the_rest(
    kit: Kit,
) -> None:
    specs = [worker("a"), worker("slow", shutdown=1.0), worker("c")]
    sup = kit.start(specs, SupervisorFlags(strategy="one_for_all"))
    a, slow, _ = handles(sup)
    kit.until("ChildStarted", "c")
    kit.block(slow)
    a.tell("boom")
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildTerminated", "c"))
    stopped = sup.handle.stop()
    assert [info.state for info in sup.which_children()] == ["stopped", "stopping", "stopped"]
    kit.clock.advance(1.5)
    kit.expect(
        ("ChildAbandoned", "slow"), ("ChildTerminated", "slow"), ("SupervisorStopped", "sup")
    )
    assert stopped.result(WAIT) == Shutdown()


def test_backoff_delays_grow_to_the_max_and_reset_after_stability(kit: Kit) -> None:
    backoff = Backoff(min=1.0, max=4.0, reset_after=10.0)
    sup = kit.start([worker("a", backoff=backoff)], SupervisorFlags(intensity=100))
    (a,) = handles(sup)
    kit.until("ChildStarted", "a")
    delays = []
    for _ in range(4):
        a.tell("boom")
        restarting = kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))[1]
        delays.append(restarting.delay)
        kit.clock.advance(restarting.delay - 0.01)
        kit.flush_timers()
        assert sup.which_children()[0].state == "restarting"
        kit.clock.advance(0.01)
        kit.expect(("ChildStarted", "a"))
    assert delays == [1.0, 2.0, 4.0, 4.0]
    kit.clock.advance(10.0)
    kit.flush_timers()
    a.tell("boom")
    restarting = kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))[1]
    assert (restarting.attempt, restarting.delay) == (1, 1.0)


def test_messages_to_a_restarting_child_are_stashed_for_its_next_incarnation(
    kit: Kit,
) -> None:
    dead: list[Event] = []
    kit.system.events.subscribe(dead.append, kinds=(DeadLetter,))
    spec = worker("a", backoff=Backoff(min=1.0, max=1.0), stash_capacity=2)
    sup = kit.start([spec])
    (a,) = handles(sup)
    kit.until("ChildStarted", "a")
    a.tell("boom")
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))
    for message in ("x", "y", "overflow"):
        a.tell(message)
    assert [e.message for e in dead if isinstance(e, DeadLetter)] == ["overflow"]
    kit.clock.advance(1.0)
    kit.expect(("ChildStarted", "a"))
    assert a.ask("get").result(WAIT) == 2


def test_a_child_that_exits_by_itself_during_the_shutdown_is_not_restarted_and_keeps_its_reason(
    kit: Kit,
) -> None:
    sup = kit.start([worker("a"), worker("b", shutdown=5.0)])
    a, b = handles(sup)
    kit.until("ChildStarted", "b")
    blocker = kit.block(b)
    stopped = sup.handle.stop()
    assert [info.state for info in sup.which_children()] == ["running", "stopping"]
    a.tell("boom")  # a ends on its own while the supervisor waits for b
    exited = kit.expect(("ChildExited", "a"))[0]
    assert isinstance(exited.reason, Crashed)
    blocker.gate.set()
    kit.expect(("ChildTerminated", "b"), ("SupervisorStopped", "sup"))
    assert stopped.result(WAIT) == Shutdown()
    assert a.incarnation == 1


class GivesUpWhenReleased(Worker):
    """A Worker that crashes as soon as the Block it sits in is released."""

    def on_receive(self, message: Any) -> Any:
        super().on_receive(message)
        if isinstance(message, Block):
            raise RuntimeError("gave up on its own")
        return None


def test_a_dynamic_child_that_crashes_during_the_shutdown_keeps_its_reason_and_stays_down(
    kit: Kit,
) -> None:
    dyn = start_dynamic_supervisor(kit.system, name="dyn")
    a = dyn.start_child(ChildSpec(id="a", start=GivesUpWhenReleased, shutdown=5.0))
    b = dyn.start_child(worker("b", shutdown=5.0))
    assert a is not None
    assert b is not None
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"))
    a_blocker, b_blocker = kit.block(a), kit.block(b)
    stopped = dyn.handle.stop()
    assert [i.state for i in dyn.which_children()] == ["stopping", "stopping"]
    a_blocker.gate.set()
    terminated = kit.expect(("ChildTerminated", "a"))[0]
    assert isinstance(terminated.reason, Crashed)  # its own reason, not the shutdown's
    assert [i.state for i in dyn.which_children()] == ["stopped", "stopping"]
    b_blocker.gate.set()
    events = kit.expect(("ChildTerminated", "b"), ("SupervisorStopped", "dyn"))
    assert events[0].reason == Shutdown()
    assert stopped.result(WAIT) == Shutdown()
    assert (a.incarnation, b.incarnation) == (1, 1)


def test_an_infinity_shutdown_waits_without_a_timer_and_a_late_stop_is_still_normal(
    kit: Kit,
) -> None:
    sup = kit.start([worker("a"), worker("patient", shutdown="infinity")])
    _, patient = handles(sup)
    kit.until("ChildStarted", "patient")
    blocker = kit.block(patient)
    stopped = sup.handle.stop()
    assert [info.state for info in sup.which_children()] == ["running", "stopping"]
    assert kit.system.timers.pending() == 0  # nothing will give up on it
    kit.clock.advance(3600.0)
    kit.flush_timers()
    assert [info.state for info in sup.which_children()] == ["running", "stopping"]
    assert kit.drain() == []
    blocker.gate.set()
    events = kit.expect(
        ("ChildTerminated", "patient"), ("ChildTerminated", "a"), ("SupervisorStopped", "sup")
    )
    assert events[0].reason == Shutdown()
    assert stopped.result(WAIT) == Shutdown()
    assert kit.system.shutdown(WAIT).abandoned == []


def test_stopping_a_supervisor_during_a_backoff_fails_what_was_stashed_for_the_child(
    kit: Kit,
) -> None:
    dead: list[Event] = []
    kit.system.events.subscribe(dead.append, kinds=(DeadLetter,))
    sup = kit.start([worker("a"), worker("b", backoff=Backoff(min=5.0, max=5.0))])
    _, b = handles(sup)
    kit.until("ChildStarted", "b")
    b.tell("boom")
    kit.expect(("ChildExited", "b"), ("ChildRestarting", "b"))
    b.tell("kept")
    asked = b.ask("get")
    assert sup.stop(timeout=WAIT) == Shutdown()
    with pytest.raises(ActorDeadError):
        asked.result(WAIT)
    assert [e.message for e in dead if isinstance(e, DeadLetter)] == ["kept"]
    kit.clock.advance(5.0)
    kit.flush_timers()
    assert not b.is_alive()
    assert b.incarnation == 1


def test_stopping_a_supervisor_while_a_restarted_child_starts_waits_for_it_then_stops_it(
    kit: Kit,
) -> None:
    gate = kit.gate()
    switch = {"hold": False}

    class SlowRestart(Worker):
        def on_start(self) -> None:
            if switch["hold"]:
                gate.wait(WAIT)

    sup = kit.start([worker("a"), ChildSpec(id="slow", start=SlowRestart)])
    _, slow = handles(sup)
    kit.until("ChildStarted", "slow")
    switch["hold"] = True
    slow.tell("boom")
    kit.expect(("ChildExited", "slow"), ("ChildRestarting", "slow"))
    assert sup.which_children()[1].state == "starting"
    stopped = sup.handle.stop()
    assert [i.state for i in sup.which_children()] == ["running", "starting"]
    gate.set()
    kit.expect(
        ("ChildStarted", "slow"),
        ("ChildTerminated", "slow"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )
    assert stopped.result(WAIT) == Shutdown()
    assert slow.incarnation == 2


def test_stopping_a_dynamic_supervisor_while_a_restart_waits_cancels_it(kit: Kit) -> None:
    dyn = start_dynamic_supervisor(kit.system, name="dyn")
    a = dyn.start_child(worker("a", backoff=Backoff(min=5.0, max=5.0)))
    assert a is not None
    a.tell("boom")
    kit.until("ChildRestarting", "a")
    assert dyn.stop(timeout=WAIT) == Shutdown()
    kit.expect(("SupervisorStopped", "dyn"))
    kit.clock.advance(5.0)
    kit.flush_timers()
    assert kit.drain() == []
    assert a.incarnation == 1
