"""Shutdown specs, abandonment, stopping mid-restart, backoff and the restart stash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.runtime.events import DeadLetter, Event
from actors.runtime.reasons import Abandoned, Shutdown
from supervisors import Backoff, SupervisorFlags
from tests.helpers import WAIT
from tests.supervision_kit import Kit, handles, open_kit, worker


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
