"""one_for_all and rest_for_one: exactly the right children restart, in the right order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisors import Backoff, ChildSpec, SupervisorFlags
from tests.helpers import WAIT
from tests.supervision_kit import FlakyStart, Kit, handles, open_kit, worker


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def test_one_for_all_stops_the_others_in_reverse_then_starts_everyone_in_order(
    kit: Kit,
) -> None:
    log: list[str] = []
    specs = [worker(c, kwargs={"log": log}) for c in "abc"]
    sup = kit.start(specs, SupervisorFlags(strategy="one_for_all"))
    a, b, c = handles(sup)
    kit.expect(("ChildStarted", "a"), ("ChildStarted", "b"), ("ChildStarted", "c"))
    a.tell("x")
    c.tell("x")
    b.tell("boom")
    kit.expect(
        ("ChildExited", "b"),
        ("ChildRestarting", "b"),
        ("ChildTerminated", "c"),
        ("ChildTerminated", "a"),
        ("ChildStarted", "a"),
        ("ChildStarted", "b"),
        ("ChildStarted", "c"),
    )
    assert log[3:] == ["stop c", "stop a", "start a", "start b", "start c"]
    assert [h.incarnation for h in (a, b, c)] == [2, 2, 2]
    assert a.ask("get").result(WAIT) == 0
    assert c.ask("get").result(WAIT) == 0


def test_rest_for_one_restarts_the_failed_child_and_those_after_it_only(kit: Kit) -> None:
    sup = kit.start([worker(c) for c in "abcd"], SupervisorFlags(strategy="rest_for_one"))
    a, b, c, d = handles(sup)
    kit.until("ChildStarted", "d")
    a.tell("x")
    d.tell("x")
    b.tell("boom")
    kit.expect(
        ("ChildExited", "b"),
        ("ChildRestarting", "b"),
        ("ChildTerminated", "d"),
        ("ChildTerminated", "c"),
        ("ChildStarted", "b"),
        ("ChildStarted", "c"),
        ("ChildStarted", "d"),
    )
    assert [h.incarnation for h in (a, b, c, d)] == [1, 2, 2, 2]
    assert a.ask("get").result(WAIT) == 1
    assert d.ask("get").result(WAIT) == 0


def test_a_temporary_bystander_of_a_group_restart_is_removed_not_restarted(kit: Kit) -> None:
    specs = [worker("a"), worker("tmp", restart="temporary"), worker("c")]
    sup = kit.start(specs, SupervisorFlags(strategy="one_for_all"))
    a, _, _ = handles(sup)
    kit.until("ChildStarted", "c")
    a.tell("boom")
    kit.expect(
        ("ChildExited", "a"),
        ("ChildRestarting", "a"),
        ("ChildTerminated", "c"),
        ("ChildTerminated", "tmp"),
        ("ChildStarted", "a"),
        ("ChildStarted", "c"),
    )
    assert [info.id for info in sup.which_children()] == ["a", "c"]


def test_a_group_restart_counts_once_toward_the_intensity(kit: Kit) -> None:
    flags = SupervisorFlags(strategy="one_for_all", intensity=1)
    sup = kit.start([worker(c) for c in "abc"], flags)
    a, _, _ = handles(sup)
    a.tell("boom")
    kit.until("ChildStarted", "c")
    kit.until("ChildStarted", "c")
    assert sup.handle.is_alive()
    a.tell("boom")
    assert ("SupervisorEscalated", "a") in kit.until("SupervisorStopped", "sup")


def test_a_rest_for_one_retry_does_not_restart_an_earlier_sibling_again(kit: Kit) -> None:
    switch = {"fail": False}
    pause = Backoff(min=1.0, max=1.0)
    specs = [
        worker("a"),
        worker("b"),
        ChildSpec(id="c", start=FlakyStart, args=(switch,), backoff=pause),
    ]
    sup = kit.start(specs, SupervisorFlags(strategy="rest_for_one", intensity=5))
    a, b, _ = handles(sup)
    kit.until("ChildStarted", "c")
    switch["fail"] = True
    b.tell("boom")
    kit.expect(
        ("ChildExited", "b"),
        ("ChildRestarting", "b"),
        ("ChildTerminated", "c"),
        ("ChildStarted", "b"),
        ("ChildStartFailed", "c"),
        ("ChildRestarting", "c"),
    )
    switch["fail"] = False
    kit.clock.advance(1.0)
    kit.expect(("ChildStarted", "c"))
    assert [a.incarnation, b.incarnation] == [1, 2]


def test_a_one_for_all_retry_restarts_the_whole_group_again(kit: Kit) -> None:
    switch = {"fail": False}
    pause = Backoff(min=1.0, max=1.0)
    specs = [
        worker("a"),
        ChildSpec(id="b", start=FlakyStart, args=(switch,), backoff=pause),
        worker("c"),
    ]
    sup = kit.start(specs, SupervisorFlags(strategy="one_for_all", intensity=5))
    a, b, _ = handles(sup)
    kit.until("ChildStarted", "c")
    switch["fail"] = True
    b.tell("boom")
    kit.expect(("ChildExited", "b"), ("ChildRestarting", "b"))
    kit.clock.advance(1.0)
    kit.expect(
        ("ChildTerminated", "c"),
        ("ChildTerminated", "a"),
        ("ChildStarted", "a"),
        ("ChildStartFailed", "b"),
        ("ChildRestarting", "b"),
    )
    switch["fail"] = False
    kit.clock.advance(1.0)
    kit.expect(
        ("ChildTerminated", "a"),
        ("ChildStarted", "a"),
        ("ChildStarted", "b"),
        ("ChildStarted", "c"),
    )
    assert a.incarnation == 3
