"""The hardened actor base: every failure path ends in exactly one Down."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.runtime.actor import Actor
from actors.runtime.errors import ActorDeadError, BlockingCallError, StartError
from actors.runtime.events import ActorFailed, ActorStarted, ActorStopped, DeadLetter, Event
from actors.runtime.reasons import Crashed, Down, Normal, Shutdown, StartFailed
from actors.runtime.system import ActorSystem
from tests.helpers import WAIT, Inbox


class Block:
    """Makes Echo wait in its handler until ``gate`` is set; ``entered`` says it is there."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()


def block(handle: Any) -> Block:
    blocker = Block()
    handle.tell(blocker)
    assert blocker.entered.wait(WAIT)
    return blocker


class Echo(Actor):
    def __init__(self, log: list[Any] | None = None) -> None:
        super().__init__()
        self.log = log if log is not None else []

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        if message == "exit":
            raise SystemExit(3)
        if message == "interrupt":
            raise KeyboardInterrupt
        if message == "finish":
            self.exit()
            return "finishing"
        if isinstance(message, Block):
            message.entered.set()
            message.gate.wait(WAIT)
            return "released"
        self.log.append(message)
        return message


class FailsToStart(Actor):
    def on_start(self) -> None:
        raise RuntimeError("no database")


class ExitsOnStart(Actor):
    def on_start(self) -> None:
        raise SystemExit(1)


def one_down(watcher: Inbox, actor_handle: Any) -> Down:
    down = watcher.get()
    assert isinstance(down, Down)
    assert down.handle is actor_handle
    actor_handle.join(WAIT)
    assert watcher.drain() == [], "a second Down was sent"
    return down


def test_an_exception_under_tell_ends_the_actor_with_one_crashed_down(system: ActorSystem) -> None:
    watcher = Inbox()
    handle = system.spawn(Echo, watchers=(watcher,))
    handle.tell("boom")
    down = one_down(watcher, handle)
    assert isinstance(down.reason, Crashed)
    assert down.reason.error.short_type == "ValueError"
    assert down.incarnation == 1
    assert not handle.is_alive()


def test_an_exception_under_ask_reaches_the_asker_and_crashes_the_actor(
    system: ActorSystem,
) -> None:
    watcher = Inbox()
    handle = system.spawn(Echo, watchers=(watcher,))
    with pytest.raises(ValueError, match="boom"):
        handle.ask("boom").result(WAIT)
    down = one_down(watcher, handle)
    assert isinstance(down.reason, Crashed)


def test_reply_errors_are_returned_without_crashing_the_actor(system: ActorSystem) -> None:
    class Lenient(Echo):
        reply_errors = (ValueError,)

    handle = system.spawn(Lenient)
    with pytest.raises(ValueError, match="boom"):
        handle.ask("boom").result(WAIT)
    assert handle.ask("still here").result(WAIT) == "still here"


def test_a_failing_on_start_gives_one_start_failed_down_and_spawn_raises(
    system: ActorSystem,
) -> None:
    watcher = Inbox()
    with pytest.raises(StartError, match="no database"):
        system.spawn(FailsToStart, name="db", watchers=(watcher,))
    down = watcher.get()
    assert isinstance(down.reason, StartFailed)
    assert down.reason.error.message == "no database"
    assert down.handle.join(WAIT) == down.reason
    assert watcher.drain() == []


def test_system_exit_in_on_start_is_a_start_failure_not_a_living_zombie(
    system: ActorSystem,
) -> None:
    watcher = Inbox()
    with pytest.raises(StartError):
        system.spawn(ExitsOnStart, watchers=(watcher,))
    down = watcher.get()
    assert isinstance(down.reason, StartFailed)
    assert down.reason.error.short_type == "SystemExit"
    assert not down.handle.is_alive()


@pytest.mark.parametrize("message", ["exit", "interrupt"])
def test_system_exit_in_one_actor_stops_only_that_actor(system: ActorSystem, message: str) -> None:
    watcher = Inbox()
    victim = system.spawn(Echo, watchers=(watcher,))
    bystanders = [system.spawn(Echo) for _ in range(3)]
    # A plain pykka actor in the global registry must survive too.
    plain = pykka.ThreadingActor.start()
    try:
        victim.tell(message)
        down = one_down(watcher, victim)
        assert isinstance(down.reason, Crashed)
        assert down.reason.error.short_type in {"SystemExit", "KeyboardInterrupt"}
        for i, bystander in enumerate(bystanders):
            assert bystander.ask(i).result(WAIT) == i
        assert plain.is_alive()
    finally:
        plain.stop()


def test_exit_ends_the_actor_normally_after_the_current_message(system: ActorSystem) -> None:
    watcher = Inbox()
    handle = system.spawn(Echo, watchers=(watcher,))
    assert handle.ask("finish").result(WAIT) == "finishing"
    assert isinstance(one_down(watcher, handle).reason, Normal)


def test_a_stop_request_overtakes_a_long_mailbox(system: ActorSystem) -> None:
    log: list[Any] = []
    watcher = Inbox()
    handle = system.spawn(Echo, log, watchers=(watcher,))
    blocker = Block()
    blocked = handle.ask(blocker)
    assert blocker.entered.wait(WAIT)
    for i in range(1000):
        handle.tell(i)
    stopped = handle.stop()
    blocker.gate.set()
    assert blocked.result(WAIT) == "released"
    assert isinstance(stopped.result(WAIT), Shutdown)
    assert log == [], "queued messages were handled after the stop request"
    assert isinstance(one_down(watcher, handle).reason, Shutdown)


def test_drain_and_stop_ends_the_actor_after_what_was_sent_before(system: ActorSystem) -> None:
    log: list[Any] = []
    handle = system.spawn(Echo, log)
    blocker = block(handle)  # what follows queues up behind the running handler
    for n in range(3):
        handle.tell(n)
    ended = handle.drain_and_stop()
    late = handle.ask("after")
    blocker.gate.set()
    assert ended.result(WAIT) == Shutdown()
    assert log == [0, 1, 2]
    with pytest.raises(ActorDeadError):
        late.result(WAIT)
    with pytest.raises(ActorDeadError):
        handle.drain_and_stop().result(WAIT)


def test_messages_left_in_the_mailbox_fail_asks_and_become_dead_letters(
    system: ActorSystem,
) -> None:
    events: list[Event] = []
    system.events.subscribe(events.append, kinds=(DeadLetter,))
    handle = system.spawn(Echo)
    blocker = block(handle)
    pending_ask = handle.ask("never answered")
    handle.tell("never handled")
    handle.stop()
    blocker.gate.set()
    with pytest.raises(ActorDeadError):
        pending_ask.result(WAIT)
    handle.join(WAIT)
    assert [e.message for e in events if isinstance(e, DeadLetter)] == ["never handled"]
    handle.tell("after the end")
    assert system.dead_letters == 2


def test_stop_cancels_the_actor_scope_so_cooperative_work_ends(system: ActorSystem) -> None:
    seen = threading.Event()
    entered = threading.Event()

    class Cooperative(Actor):
        def on_receive(self, message: Any) -> Any:
            entered.set()
            self.scope.wait(WAIT)
            if self.scope.cancelled:
                seen.set()
            return None

    handle = system.spawn(Cooperative)
    handle.tell("work")
    assert entered.wait(WAIT)
    assert isinstance(handle.stop().result(WAIT), Shutdown)
    assert seen.is_set()


def test_blocking_on_a_future_inside_an_actor_raises_blocking_call_error(
    system: ActorSystem,
) -> None:
    other = system.spawn(Echo)
    blocker = block(other)

    class Blocker(Actor):
        def on_receive(self, message: Any) -> Any:
            return other.ask("anything").result(WAIT)

    asker = system.spawn(Blocker)
    with pytest.raises(BlockingCallError, match="would block castflow thread"):
        asker.ask("go").result(WAIT)
    blocker.gate.set()


def test_lifecycle_events_are_published(system: ActorSystem) -> None:
    events: list[Event] = []
    system.events.subscribe(events.append)
    handle = system.spawn(Echo, name="echo")
    handle.tell("boom")
    handle.join(WAIT)
    other = system.spawn(Echo, name="other")
    system.stop(other)
    kinds = [(type(e).__name__, getattr(e, "actor", None)) for e in events]
    assert kinds == [
        ("ActorStarted", "echo"),
        ("ActorFailed", "echo"),
        ("ActorStarted", "other"),
        ("ActorStopped", "other"),
    ]
    assert isinstance(events[0], ActorStarted)
    assert isinstance(events[1], ActorFailed)
    assert isinstance(events[3], ActorStopped)


def test_two_systems_do_not_see_each_others_actors() -> None:
    with ActorSystem("a") as a, ActorSystem("b") as b:
        a.spawn(Echo, name="same")
        b.spawn(Echo, name="same")
        assert a.lookup("same") is not b.lookup("same")
        assert [h.name for h in a.actors()] == ["same"]
        assert pykka.ActorRegistry.get_all() == []


def test_names_are_unique_within_a_system(system: ActorSystem) -> None:
    system.spawn(Echo, name="one")
    with pytest.raises(ValueError, match="already exists"):
        system.spawn(Echo, name="one")


def test_a_name_is_free_again_once_its_actor_has_ended(system: ActorSystem) -> None:
    with pytest.raises(StartError):
        system.spawn(FailsToStart, name="db")
    assert system.lookup("db") is None
    retry = system.spawn(Echo, name="db")
    assert retry.ask("hi").result(WAIT) == "hi"
    system.stop(retry, timeout=WAIT)
    assert system.lookup("db") is None
    assert system.spawn(Echo, name="db").ask("again").result(WAIT) == "again"


class Late(Actor):
    """Sits in its handler until released, then sends, answers, and logs its stop hook."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        blocker, sink = message
        blocker.entered.set()
        blocker.gate.wait(WAIT)
        sink.tell("late tell")
        self.log.append("handler returned")
        return "late answer"

    def on_stop(self) -> None:
        self.log.append("on_stop")


def test_an_abandoned_incarnation_is_fenced_like_a_killed_process(system: ActorSystem) -> None:
    dead: list[tuple[str, object]] = []

    def on_dead_letter(event: Event) -> None:
        assert isinstance(event, DeadLetter)
        dead.append((event.recipient, event.message))

    system.events.subscribe(on_dead_letter, kinds=(DeadLetter,))
    log: list[str] = []
    sink_log: list[Any] = []
    sink = system.spawn(Echo, sink_log, name="sink")
    late = system.spawn(Late, log, name="late")
    blocker = Block()
    answer = late.ask((blocker, sink))
    assert blocker.entered.wait(WAIT)
    queued = late.ask("queued behind the stuck handler")
    assert type(system.stop(late, timeout=0.05)).__name__ == "Abandoned"
    # The askers stop waiting at the abandonment, not when the stuck handler returns.
    with pytest.raises(ActorDeadError, match="abandoned while handling"):
        answer.result(WAIT)
    with pytest.raises(ActorDeadError, match="stopped before handling"):
        queued.result(WAIT)
    blocker.gate.set()
    late.join(WAIT)
    thread = system._abandoned[0].thread
    assert thread is not None
    thread.join(WAIT)
    assert system.abandoned_alive() == 0
    assert system._abandoned[0].thread is None, "an ended abandoned thread is still held"
    assert log == ["handler returned"], "the abandoned incarnation ran its stop hook"
    assert sink.ask("probe").result(WAIT) == "probe"
    assert sink_log == ["probe"], "the abandoned thread's tell was delivered"
    assert dead == [("sink", "late tell")]


def test_shutdown_past_its_deadline_leaves_no_thread_it_does_not_report() -> None:
    system = ActorSystem("spent")
    blocker = Block()
    before = set(threading.enumerate())
    try:
        stuck = system.spawn(Echo, name="stuck")
        system.timers.schedule(60, stuck, "never")  # the timer thread runs
        stuck.tell(blocker)
        assert blocker.entered.wait(WAIT)
        report = system.shutdown(timeout=0.05)
        reported = {t.thread for t in report.abandoned if t.alive}
        alive = {t.name for t in threading.enumerate() if t not in before and t.is_alive()}
        assert alive <= reported, f"alive after shutdown but not reported: {alive - reported}"
        assert [t.owner for t in report.abandoned] == ["stuck"]
    finally:
        blocker.gate.set()


def test_a_stop_that_times_out_abandons_the_thread_and_reports_it() -> None:
    watcher = Inbox()
    system = ActorSystem("abandon")
    blocker = Block()
    try:
        handle = system.spawn(Echo, name="stuck", watchers=(watcher,))
        handle.tell(blocker)
        assert blocker.entered.wait(WAIT)
        reason = system.stop(handle, timeout=0.05)
        assert type(reason).__name__ == "Abandoned"
        assert type(watcher.get().reason).__name__ == "Abandoned"
        report = system.shutdown(timeout=0.1)
        assert [t.owner for t in report.abandoned] == ["stuck"]
        assert report.abandoned[0].alive
        assert not report.clean
    finally:
        blocker.gate.set()
        system.shutdown()
    handle.join(WAIT)
    assert watcher.drain() == [], "the abandoned thread's real end sent a second Down"


def test_shutdown_stops_every_actor_and_leaves_no_thread(system: ActorSystem) -> None:
    handles = [system.spawn(Echo) for _ in range(20)]
    report = system.shutdown(timeout=WAIT)
    assert report.stopped == 20
    assert report.clean
    assert all(not h.is_alive() for h in handles)
    assert system.shutdown() is report


def test_a_system_left_running_is_shut_down_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "leaky.py"
    script.write_text(
        "from actors import Actor, ActorSystem\n"
        "class Polite(Actor):\n"
        "    def on_stop(self) -> None:\n"
        "        print('stopped', self.handle.name, flush=True)\n"
        "system = ActorSystem('leaky')\n"
        "system.spawn(Polite, name='polite')\n"
        "print('main done', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main done", "stopped polite"]
