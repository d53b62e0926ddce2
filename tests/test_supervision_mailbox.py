"""The mailbox across a restart (decision D4): messages queued behind a crash are kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from actors.runtime.actor import Actor
from actors.runtime.errors import ActorDeadError
from actors.runtime.events import DeadLetter, Event
from actors.runtime.handle import ActorHandle
from actors.runtime.reasons import Crashed, Shutdown
from actors.runtime.system import ActorSystem
from supervisors import ChildSpec
from tests.helpers import WAIT
from tests.supervision_kit import Block, Kit, handles, open_kit


class Recorder(Actor):
    """Logs (incarnation, message) for every message; "boom" crashes it; Block holds it."""

    def __init__(self, log: list[tuple[int, str]]) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Block):
            message.entered.set()
            message.gate.wait(WAIT)
            return None
        if message == "boom":
            raise ValueError("boom")
        self.log.append((self.incarnation, message))
        return message


@pytest.fixture
def kit() -> Iterator[Kit]:
    with open_kit() as kit:
        yield kit


def dead_letters(system: ActorSystem) -> list[object]:
    """A list that fills with the message of every dead letter from now on."""
    seen: list[object] = []

    def record(event: Event) -> None:
        if isinstance(event, DeadLetter):
            seen.append(event.message)

    system.events.subscribe(record, kinds=(DeadLetter,))
    return seen


def queue_behind_a_crash(kit: Kit, handle: ActorHandle[Any], *messages: str) -> None:
    """Hold the child in a handler, queue "boom" then ``messages``, then let it go on."""
    blocker = Block(kit.gate())
    handle.tell(blocker)
    assert blocker.entered.wait(WAIT)
    handle.tell("boom")
    for message in messages:
        handle.tell(message)
    blocker.gate.set()


def recorder(child_id: str, log: list[tuple[int, str]], **options: Any) -> ChildSpec:
    return ChildSpec(id=child_id, start=Recorder, args=(log,), **options)


def test_messages_queued_behind_a_crash_reach_the_next_incarnation_in_order(kit: Kit) -> None:
    log: list[tuple[int, str]] = []
    sup = kit.start([recorder("a", log)])
    (a,) = handles(sup)
    kit.expect(("ChildStarted", "a"))
    blocker = Block(kit.gate())
    a.tell(blocker)
    assert blocker.entered.wait(WAIT)
    a.tell("boom")
    a.tell("m1")
    asked = a.ask("m2")
    a.tell("m3")
    blocker.gate.set()
    exited = kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildStarted", "a"))[0]
    assert isinstance(exited.reason, Crashed)
    assert asked.result(WAIT) == "m2"  # an ask queued behind the crash is answered, not failed
    assert a.ask("after").result(WAIT) == "after"
    assert log == [(2, "m1"), (2, "m2"), (2, "m3"), (2, "after")]


def test_a_temporary_child_that_crashes_dead_letters_its_queued_messages(kit: Kit) -> None:
    dead = dead_letters(kit.system)
    log: list[tuple[int, str]] = []
    sup = kit.start([recorder("a", log, restart="temporary")])
    (a,) = handles(sup)
    kit.expect(("ChildStarted", "a"))
    blocker = Block(kit.gate())
    a.tell(blocker)
    assert blocker.entered.wait(WAIT)
    a.tell("boom")
    for message in ("m1", "m2", "m3"):
        a.tell(message)
    asked = a.ask("m4")
    blocker.gate.set()
    kit.expect(("ChildExited", "a"))
    with pytest.raises(ActorDeadError):
        asked.result(WAIT)
    assert dead == ["m1", "m2", "m3"]
    assert log == []
    assert sup.which_children() == []


def test_messages_carried_over_a_crash_are_bounded_by_the_stash_capacity(kit: Kit) -> None:
    dead = dead_letters(kit.system)
    log: list[tuple[int, str]] = []
    sup = kit.start([recorder("a", log, stash_capacity=2)])
    (a,) = handles(sup)
    kit.expect(("ChildStarted", "a"))
    queue_behind_a_crash(kit, a, "m1", "m2", "m3")
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildStarted", "a"))
    assert a.ask("after").result(WAIT) == "after"
    assert log == [(2, "m1"), (2, "m2"), (2, "after")]
    assert dead == ["m3"]


def test_messages_queued_behind_a_stop_request_are_not_carried_over(kit: Kit) -> None:
    dead = dead_letters(kit.system)
    log: list[tuple[int, str]] = []
    sup = kit.start([recorder("a", log)])
    (a,) = handles(sup)
    kit.expect(("ChildStarted", "a"))
    blocker = Block(kit.gate())
    a.tell(blocker)
    assert blocker.entered.wait(WAIT)
    a.tell("m1")
    a.tell("m2")
    stopped = a.stop("by hand")
    blocker.gate.set()
    assert stopped.result(WAIT) == Shutdown("by hand")
    # A permanent child comes back even after a normal stop, but its mailbox does not.
    kit.expect(("ChildExited", "a"), ("ChildRestarting", "a"), ("ChildStarted", "a"))
    assert dead == ["m1", "m2"]
    assert a.ask("after").result(WAIT) == "after"
    assert log == [(2, "after")]


def test_an_unsupervised_actor_that_crashes_dead_letters_its_queue_in_order(
    system: ActorSystem,
) -> None:
    dead = dead_letters(system)
    log: list[tuple[int, str]] = []
    handle = system.spawn(Recorder, log)
    blocker = Block(threading.Event())
    try:
        handle.tell(blocker)
        assert blocker.entered.wait(WAIT)
        handle.tell("boom")
        handle.tell("m1")
        asked = handle.ask("m2")
        handle.tell("m3")
    finally:
        blocker.gate.set()
    with pytest.raises(ActorDeadError):
        asked.result(WAIT)
    assert isinstance(handle.join(WAIT), Crashed)
    assert dead == ["m1", "m3"]
    assert log == []
