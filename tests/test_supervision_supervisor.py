"""Supervisor: start and stop order, restart types, one_for_one, intensity and retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from actors.runtime.actor import Actor
from actors.runtime.events import Event
from actors.runtime.futures import ActorFuture
from actors.runtime.handle import ActorHandle
from actors.runtime.reasons import Crashed, Escalated, Normal, Shutdown, StartFailed
from actors.runtime.system import ActorSystem
from supervisors import (
    Backoff,
    ChildSpec,
    ChildStartError,
    ChildStartFailed,
    StartChild,
    SupervisionEvent,
    SupervisorFlags,
    start_supervisor,
)
from tests.helpers import WAIT
from tests.supervision_kit import FlakyStart, Kit, Worker, brief, open_kit, worker

A = TypeVar("A", bound=Actor)


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def test_children_start_in_list_order_and_stop_in_reverse_order(kit: Kit) -> None:
    log: list[str] = []
    specs = [worker(c, kwargs={"log": log}) for c in "abc"]
    sup = kit.start(specs)
    assert log == ["start a", "start b", "start c"]
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"), ("ChildStarted", "c"))
    assert sup.stop(timeout=WAIT) == Shutdown()
    assert log[3:] == ["stop c", "stop b", "stop a"]
    kit.expect(
        ("ChildTerminated", "c"),
        ("ChildTerminated", "b"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )


def test_a_start_failure_stops_the_started_children_in_reverse_and_names_the_child(
    kit: Kit,
) -> None:
    log: list[str] = []
    specs = [
        worker("a", kwargs={"log": log}),
        worker("b", kwargs={"log": log}),
        ChildSpec(id="c", start=FlakyStart, args=({"fail": True},)),
        worker("d", kwargs={"log": log}),
    ]
    with pytest.raises(ChildStartError, match="child 'c' failed to start") as caught:
        kit.start(specs)
    assert caught.value.child_id == "c"
    assert isinstance(caught.value.reason, StartFailed)
    assert log == ["start a", "start b", "stop b", "stop a"]
    events = kit.expect(
        ("ChildStarted", "a"),
        ("ChildStarted", "b"),
        ("ChildStartFailed", "c"),
        ("ChildTerminated", "b"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )
    assert isinstance(events[-1].reason, StartFailed)
    # The supervisor has ended and, as in OTP, its name is free: a retry may take it.
    assert kit.system.lookup("sup") is None
    retry = kit.start([worker("a", kwargs={"log": log})])
    assert [(info.id, info.state) for info in retry.which_children()] == [("a", "running")]


def test_one_for_one_restarts_only_the_crashed_child_and_the_sibling_keeps_its_state(
    kit: Kit,
) -> None:
    sup = kit.start([worker("a"), worker("b")])
    a, b = (info.handle for info in sup.which_children())
    assert a is not None
    assert b is not None
    a.tell("x")
    b.tell("x")
    b.tell("x")
    a.tell("boom")
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"))
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildStarted", "a"))
    assert a.ask("get").result(WAIT) == 0
    assert (a.incarnation, b.incarnation) == (2, 1)
    assert b.ask("get").result(WAIT) == 2


EXITS = {"normal": ("finish", Normal), "shutdown": ("quit", Shutdown), "crash": ("boom", Crashed)}
RESTARTED = {
    ("permanent", "normal"): True,
    ("permanent", "shutdown"): True,
    ("permanent", "crash"): True,
    ("transient", "normal"): False,
    ("transient", "shutdown"): False,
    ("transient", "crash"): True,
    ("temporary", "normal"): False,
    ("temporary", "shutdown"): False,
    ("temporary", "crash"): False,
}


@pytest.mark.parametrize(("restart", "exit"), sorted(RESTARTED))
def test_the_restart_type_decides_whether_a_child_that_ended_comes_back(
    kit: Kit, restart: str, exit: str
) -> None:
    message, reason_type = EXITS[exit]
    sup = kit.start([worker("a", restart=restart), worker("b")])
    handle = sup.which_children()[0].handle
    assert handle is not None
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"))
    handle.tell(message)
    exited = kit.expect(("ChildExited", "a"))[0]
    assert isinstance(exited.reason, reason_type)
    if RESTARTED[restart, exit]:
        kit.expect(("ChildRestarting", "a"), ("ChildStarted", "a"))
        assert sup.which_children()[0].state == "running"
        return
    children = {info.id: info.state for info in sup.which_children()}
    assert kit.drain() == []
    if restart == "temporary":
        assert children == {"b": "running"}
    else:
        assert children == {"a": "stopped", "b": "running"}
    assert sup.count_children().active == 1


def test_one_more_restart_than_the_intensity_stops_the_children_in_reverse_and_escalates(
    kit: Kit,
) -> None:
    sup = kit.start([worker("a"), worker("b"), worker("c")], SupervisorFlags(intensity=2))
    b = sup.which_children()[1].handle
    assert b is not None
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"), ("ChildStarted", "c"))
    for _ in range(2):
        b.tell("boom")
        kit.expect(("ChildExited", "b"), ("ChildRestarting", "b"), ("ChildStarted", "b"))
    b.tell("boom")
    events = kit.expect(
        ("ChildExited", "b"),
        ("ChildRestarting", "b"),
        ("SupervisorEscalated", "b"),
        ("ChildTerminated", "c"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "sup"),
    )
    assert events[2].restarts == 3
    reason = sup.handle.join(WAIT)
    assert isinstance(reason, Escalated)
    assert reason.child_id == "b"
    assert isinstance(reason.last_reason, Crashed)


def test_with_intensity_zero_the_first_restart_escalates(kit: Kit) -> None:
    sup = kit.start([worker("a")], SupervisorFlags(intensity=0))
    handle = sup.which_children()[0].handle
    assert handle is not None
    handle.tell("boom")
    assert kit.until("SupervisorEscalated", "a")[-2:] == [
        ("ChildRestarting", "a"),
        ("SupervisorEscalated", "a"),
    ]
    assert isinstance(sup.handle.join(WAIT), Escalated)


def test_crashes_spaced_wider_than_the_period_never_exhaust_the_intensity(kit: Kit) -> None:
    sup = kit.start([worker("a")], SupervisorFlags(intensity=1, period=1.0))
    handle = sup.which_children()[0].handle
    assert handle is not None
    kit.expect(("ChildStarted", "a"))
    for _ in range(4):
        handle.tell("boom")
        kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildStarted", "a"))
        kit.clock.advance(2.1)
    assert handle.incarnation == 5
    assert sup.handle.is_alive()


def test_the_window_is_inclusive_of_restarts_just_inside_the_period(kit: Kit) -> None:
    sup = kit.start([worker("a")], SupervisorFlags(intensity=1, period=1.0))
    handle = sup.which_children()[0].handle
    assert handle is not None
    handle.tell("boom")
    kit.until("ChildStarted", "a")
    kit.until("ChildStarted", "a")
    kit.clock.advance(0.999)
    handle.tell("boom")
    assert ("SupervisorEscalated", "a") in kit.until("SupervisorStopped", "sup")


def test_a_failed_restart_is_retried_through_the_mailbox_and_every_retry_counts(
    kit: Kit,
) -> None:
    switch = {"fail": False}
    specs = [ChildSpec(id="a", start=FlakyStart, args=(switch,)), worker("b")]
    sup = kit.start(specs, SupervisorFlags(intensity=3))
    handle = sup.which_children()[0].handle
    assert handle is not None
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"))
    switch["fail"] = True
    handle.tell("boom")
    events = kit.expect(
        ("ChildExited", "a"),
        ("ChildRestarting", "a"),
        ("ChildStartFailed", "a"),
        ("ChildRestarting", "a"),
        ("ChildStartFailed", "a"),
        ("ChildRestarting", "a"),
        ("ChildStartFailed", "a"),
        ("ChildRestarting", "a"),
        ("SupervisorEscalated", "a"),
        ("ChildTerminated", "b"),
        ("SupervisorStopped", "sup"),
    )
    assert [e.attempt for e in events if type(e).__name__ == "ChildRestarting"] == [1, 2, 3, 4]
    assert isinstance(events[2], ChildStartFailed)
    reason = sup.handle.join(WAIT)
    assert isinstance(reason, Escalated)
    assert isinstance(reason.last_reason, StartFailed)


def test_a_restart_that_succeeds_on_retry_leaves_the_supervisor_running(kit: Kit) -> None:
    switch = {"fail": False}
    pause = Backoff(min=1.0, max=1.0)
    sup = kit.start([ChildSpec(id="a", start=FlakyStart, args=(switch,), backoff=pause)])
    handle = sup.which_children()[0].handle
    assert handle is not None
    kit.expect(("ChildStarted", "a"))
    switch["fail"] = True
    handle.tell("boom")
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))
    kit.clock.advance(1.0)
    kit.expect(("ChildStartFailed", "a"), ("ChildRestarting", "a"))
    assert sup.which_children()[0].state == "restarting"
    switch["fail"] = False
    kit.clock.advance(1.0)
    kit.expect(("ChildStarted", "a"))
    assert sup.which_children()[0].state == "running"


def test_a_child_that_does_not_start_in_time_is_stopped_and_fails_the_start(kit: Kit) -> None:
    gate = kit.gate()

    class SlowStart(FlakyStart):
        def on_start(self) -> None:
            gate.wait(WAIT)

    spec = ChildSpec(
        id="slow", start=SlowStart, args=({"fail": False},), start_timeout=1.0, shutdown=0.5
    )
    sup = kit.start([])
    reply: ActorFuture[object] = ActorFuture()
    sup.handle.tell(StartChild(spec=spec, reply_to=reply))
    assert [info.state for info in sup.which_children()] == ["starting"]
    kit.clock.advance(1.0)
    kit.flush_timers()
    assert [info.state for info in sup.which_children()] == ["starting"]
    kit.clock.advance(0.5)
    with pytest.raises(ChildStartError, match=r"did not start within 1\.0 s"):
        reply.result(WAIT)
    kit.expect(("ChildAbandoned", "slow"), ("ChildStartFailed", "slow"))
    assert sup.which_children() == []


class FinishesAtOnce(Worker):
    """A Worker that ends (normally) with the first message it tells itself."""

    def on_start(self) -> None:
        self.handle.tell("finish")


class SlowToLookSystem(ActorSystem):
    """Starts a FinishesAtOnce child and returns only once it has ended: the supervisor then
    registers for the child's start only after the child's Down is already in its mailbox."""

    def start_incarnation(
        self, handle: ActorHandle[A], actor_class: type[A], *args: Any, **kwargs: Any
    ) -> A:
        actor = super().start_incarnation(handle, actor_class, *args, **kwargs)
        if isinstance(actor, FinishesAtOnce):
            actor.terminated.result(WAIT)
        return actor


def test_a_child_that_ends_before_its_start_is_seen_has_started_and_then_exited() -> None:
    system = SlowToLookSystem("test")
    try:
        events: list[tuple[str, str]] = []

        def record(event: Event) -> None:
            assert isinstance(event, SupervisionEvent)
            events.append(brief(event))

        system.events.subscribe(record, kinds=(SupervisionEvent,))
        spec = ChildSpec(id="quick", start=FinishesAtOnce, restart="transient")
        sup = start_supervisor(system, [spec, worker("b")], name="sup", timeout=WAIT)
        assert [(i.id, i.state) for i in sup.which_children()] == [
            ("quick", "stopped"),
            ("b", "running"),
        ]
        assert events == [
            ("ChildStarted", "quick"),
            ("ChildExited", "quick"),
            ("ChildStarted", "b"),
        ]
    finally:
        assert system.shutdown(WAIT).clean
