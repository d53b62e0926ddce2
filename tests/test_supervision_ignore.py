"""OTP's ``ignore`` start result, and Backoff's ``max_restarts``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from actors.runtime.actor import Actor
from supervisors import (
    IGNORE,
    Backoff,
    ChildSpec,
    Ignore,
    SupervisorFlags,
    start_dynamic_supervisor,
)
from tests.helpers import WAIT
from tests.supervision_kit import Kit, Worker, handles, open_kit, worker


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


Started = tuple[type[Actor], tuple[Any, ...], dict[str, Any]] | Literal[Ignore.IGNORE]


class Switch:
    """A start factory for a Worker that returns IGNORE while ``ignore`` is set."""

    def __init__(self, *, ignore: bool) -> None:
        self.ignore = ignore
        self.calls = 0

    def __call__(self) -> Started:
        self.calls += 1
        if self.ignore:
            return IGNORE
        return Worker, (), {}


def test_an_ignored_static_child_keeps_its_spec_without_an_incarnation(kit: Kit) -> None:
    sup = kit.start([worker("a"), ChildSpec(id="i", start=Switch(ignore=True)), worker("b")])
    kit.expect(("ChildStarted", "a"), ("ChildIgnored", "i"), ("ChildStarted", "b"))
    infos = sup.which_children()
    assert [(i.id, i.handle is None, i.state) for i in infos] == [
        ("a", False, "running"),
        ("i", True, "stopped"),
        ("b", False, "running"),
    ]
    counts = sup.count_children()
    assert (counts.specs, counts.active) == (3, 2)


def test_an_ignored_temporary_static_child_is_discarded(kit: Kit) -> None:
    spec = ChildSpec(id="i", start=Switch(ignore=True), restart="temporary")
    sup = kit.start([spec, worker("b")])
    kit.expect(("ChildIgnored", "i"), ("ChildStarted", "b"))
    assert [i.id for i in sup.which_children()] == ["b"]


def test_start_child_and_restart_child_return_none_when_the_start_is_ignored(kit: Kit) -> None:
    switch = Switch(ignore=True)
    sup = kit.start([worker("a")])
    assert sup.start_child(ChildSpec(id="i", start=switch)) is None
    assert [(i.id, i.state) for i in sup.which_children()] == [("a", "running"), ("i", "stopped")]
    assert sup.restart_child("i") is None
    switch.ignore = False
    handle = sup.restart_child("i")
    assert handle is not None
    assert handle.is_alive()
    assert switch.calls == 3


def test_a_dynamic_supervisor_keeps_nothing_for_an_ignored_start(kit: Kit) -> None:
    dyn = start_dynamic_supervisor(kit.system, max_children=1, name="dyn")
    assert dyn.start_child(ChildSpec(id="i", start=Switch(ignore=True))) is None
    assert dyn.which_children() == []
    assert dyn.start_child(worker("a")) is not None  # the ignored child took no slot


def test_a_dynamic_child_whose_restart_is_ignored_is_removed(kit: Kit) -> None:
    switch = Switch(ignore=False)
    dyn = start_dynamic_supervisor(kit.system, name="dyn")
    handle = dyn.start_child(ChildSpec(id="a", start=switch))
    assert handle is not None
    switch.ignore = True
    handle.tell("boom")
    kit.expect(
        ("ChildStarted", "a"),
        ("ChildExited", "a"),
        ("ChildRestarting", "a"),
        ("ChildIgnored", "a"),
    )
    assert dyn.which_children() == []


def test_a_static_child_whose_restart_is_ignored_stays_stopped_with_its_spec(kit: Kit) -> None:
    switch = Switch(ignore=False)
    sup = kit.start([ChildSpec(id="a", start=switch), worker("b")])
    a, _ = handles(sup)
    kit.until("ChildStarted", "b")
    switch.ignore = True
    a.tell("boom")
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildIgnored", "a"))
    assert [(i.id, i.state) for i in sup.which_children()] == [("a", "stopped"), ("b", "running")]
    assert sup.handle.is_alive()


def test_a_child_past_its_backoff_max_restarts_stays_down_and_the_supervisor_lives(
    kit: Kit,
) -> None:
    backoff = Backoff(min=1.0, max=1.0, max_restarts=2)
    sup = kit.start([worker("a", backoff=backoff), worker("b")], SupervisorFlags(intensity=10))
    a, b = handles(sup)
    kit.until("ChildStarted", "b")
    for attempt in (1, 2):
        a.tell("boom")
        restarting = kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))[1]
        assert restarting.attempt == attempt
        kit.clock.advance(1.0)
        kit.expect(("ChildStarted", "a"))
    a.tell("boom")
    exhausted = kit.expect(("ChildExited", "a"), ("ChildRestartsExhausted", "a"))[1]
    assert exhausted.restarts == 2
    kit.clock.advance(5.0)
    kit.flush_timers()
    assert kit.drain() == []
    assert [(i.id, i.state) for i in sup.which_children()] == [("a", "stopped"), ("b", "running")]
    assert b.ask("get").result(WAIT) == 0
    # A manual restart begins a new series.
    assert sup.restart_child("a") is a
    a.tell("boom")
    assert kit.until("ChildRestarting", "a")[-1] == ("ChildRestarting", "a")


def test_stability_for_reset_after_clears_the_count_toward_max_restarts(kit: Kit) -> None:
    backoff = Backoff(min=1.0, max=1.0, reset_after=3.0, max_restarts=1)
    sup = kit.start([worker("a", backoff=backoff)], SupervisorFlags(intensity=10))
    (a,) = handles(sup)
    kit.expect(("ChildStarted", "a"))
    for _ in range(3):
        a.tell("boom")
        kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"))
        kit.clock.advance(1.0)
        kit.expect(("ChildStarted", "a"))
        kit.clock.advance(3.0)  # stable long enough: the count returns to 0
        kit.flush_timers()
    assert a.incarnation == 4


def test_a_significant_child_past_its_max_restarts_triggers_auto_shutdown(kit: Kit) -> None:
    backoff = Backoff(min=1.0, max=1.0, max_restarts=0)
    spec = worker("s", restart="transient", significant=True, backoff=backoff)
    sup = kit.start([spec, worker("w")], SupervisorFlags(auto_shutdown="any_significant"))
    s, _ = handles(sup)
    kit.until("ChildStarted", "w")
    s.tell("boom")
    kit.expect(
        ("ChildExited", "s"),
        ("ChildRestartsExhausted", "s"),
        ("AutoShutdownTriggered", "s"),
        ("ChildTerminated", "w"),
        ("SupervisorStopped", "sup"),
    )


@pytest.mark.parametrize("max_restarts", [-1, 1.5])
def test_an_invalid_max_restarts_is_rejected(max_restarts: Any) -> None:
    with pytest.raises(ValidationError, match="max_restarts"):
        Backoff(min=1.0, max=2.0, max_restarts=max_restarts)
