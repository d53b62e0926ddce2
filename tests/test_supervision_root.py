"""``system.supervise``: a root supervisor owned by the system and stopped by its shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from actors.runtime.actor import Actor
from actors.runtime.reasons import Shutdown
from supervisors import ChildNotFoundError, ChildSpec, ChildSpecError, SupervisorClient
from tests.helpers import WAIT
from tests.supervision_kit import Kit, handles, open_kit, worker


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


class Bystander(Actor):
    """An actor outside any tree that logs when it stops."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def on_stop(self) -> None:
        self.log.append("stop bystander")


def test_supervise_starts_a_root_whose_children_are_named_under_it(kit: Kit) -> None:
    log: list[str] = []
    root: SupervisorClient = kit.system.supervise(
        [worker("a", kwargs={"log": log}), worker("b", kwargs={"log": log})], name="app"
    )
    assert log == ["start a", "start b"]
    assert [h.name for h in handles(root)] == ["app/a", "app/b"]
    assert root.handle is kit.system.lookup("app")


def test_system_shutdown_stops_the_root_tree_in_reverse_order_before_other_actors(
    kit: Kit,
) -> None:
    log: list[str] = []
    kit.system.supervise([worker("a", kwargs={"log": log}), worker("b", kwargs={"log": log})])
    # Started after the tree: a plain reverse-start-order shutdown would stop it first.
    kit.system.spawn(Bystander, log)
    report = kit.system.shutdown(WAIT)
    assert report.clean
    assert log[2:] == ["stop b", "stop a", "stop bystander"]
    assert kit.drain() == [
        ("ChildStarted", "a"),
        ("ChildStarted", "b"),
        ("ChildTerminated", "b"),
        ("ChildTerminated", "a"),
        ("SupervisorStopped", "root"),
    ]


def test_roots_stop_newest_first_each_waited_for(kit: Kit) -> None:
    log: list[str] = []
    kit.system.supervise([worker("x", kwargs={"log": log})], name="first")
    kit.system.supervise([worker("y", kwargs={"log": log})], name="second")
    kit.system.shutdown(WAIT)
    assert log == ["start x", "start y", "stop y", "stop x"]


def test_supervise_applies_the_flags_it_is_given(kit: Kit) -> None:
    root: SupervisorClient = kit.system.supervise(
        [worker("a"), worker("b")], strategy="one_for_all", intensity=1
    )
    a, b = handles(root)
    kit.until("ChildStarted", "b")
    a.tell("boom")
    kit.expect(
        ("ChildExited", "a"),
        ("ChildRestarting", "a"),
        ("ChildTerminated", "b"),
        ("ChildStarted", "a"),
        ("ChildStarted", "b"),
    )
    a.tell("boom")
    assert ("SupervisorEscalated", "a") in kit.until("SupervisorStopped", "root")
    assert b.incarnation == 2


def test_a_root_stopped_by_hand_is_not_stopped_again_at_shutdown(kit: Kit) -> None:
    root: SupervisorClient = kit.system.supervise([worker("a")])
    assert root.stop(timeout=WAIT) == Shutdown()
    kit.drain()
    assert kit.system.shutdown(WAIT).clean
    assert kit.drain() == []


@pytest.mark.parametrize(
    ("flags", "field"),
    [({"strategy": "one_for_some"}, "strategy"), ({"intensity": -1}, "intensity")],
)
def test_supervise_rejects_invalid_flags_naming_the_field(
    kit: Kit, flags: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        kit.system.supervise([worker("a")], **flags)
    assert kit.system.lookup("root") is None


def test_supervise_rejects_invalid_children_before_starting_anything(kit: Kit) -> None:
    with pytest.raises(ChildSpecError, match="duplicate child id 'a'"):
        kit.system.supervise([worker("a"), worker("a")])
    assert kit.system.actors() == []


def test_a_client_reaches_a_nested_supervisor_by_its_child_id(kit: Kit) -> None:
    root: SupervisorClient = kit.system.supervise(
        [worker("w"), ChildSpec.dynamic_supervisor("jobs", max_children=1)]
    )
    jobs = root.child("jobs")
    assert jobs.handle.name == "root/jobs"
    assert jobs.start_child(worker("j")) is not None
    with pytest.raises(ChildSpecError, match="not a supervisor"):
        root.child("w")
    with pytest.raises(ChildNotFoundError):
        root.child("nope")
