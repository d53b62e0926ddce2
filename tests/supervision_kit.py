"""Shared pieces of the supervision tests: a system on a manual clock, an event recorder,
gates released at teardown, and small child actors."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from actors.runtime.actor import Actor
from actors.runtime.clock import ManualClock
from actors.runtime.handle import ActorHandle
from actors.runtime.reasons import Shutdown
from actors.runtime.system import ActorSystem
from supervisors import (
    ChildSpec,
    SupervisionEvent,
    SupervisorClient,
    SupervisorFlags,
    start_supervisor,
)
from tests.helpers import WAIT, Inbox


class Block:
    """Makes a Worker wait in its handler until ``gate`` is set; ``entered`` says it is there."""

    def __init__(self, gate: threading.Event) -> None:
        self.entered = threading.Event()
        self.gate = gate


class Worker(Actor):
    """Counts messages; "boom" crashes it, "finish" ends it normally, "quit" with Shutdown."""

    def __init__(self, log: list[str] | None = None, label: str = "") -> None:
        super().__init__()
        self.log = log
        self.label = label
        self.count = 0

    def on_start(self) -> None:
        if self.log is not None:
            self.log.append(f"start {self.label}")

    def on_stop(self) -> None:
        if self.log is not None:
            self.log.append(f"stop {self.label}")

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        if message == "get":
            return self.count
        if message == "finish":
            self.exit()
        elif message == "quit":
            self.exit(Shutdown("quit"))
        elif isinstance(message, Block):
            message.entered.set()
            message.gate.wait(WAIT)
        else:
            self.count += 1
        return None


class FlakyStart(Actor):
    """Fails ``on_start`` while ``switch["fail"]`` is true."""

    def __init__(self, switch: dict[str, bool]) -> None:
        super().__init__()
        self.switch = switch

    def on_start(self) -> None:
        if self.switch["fail"]:
            raise RuntimeError("cannot start")

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        return None


def worker(child_id: str, **options: Any) -> ChildSpec:
    """A spec for a ``Worker`` labelled with its id."""
    kwargs = options.pop("kwargs", {})
    return ChildSpec(id=child_id, start=Worker, kwargs={"label": child_id, **kwargs}, **options)


def handles(client: SupervisorClient) -> list[ActorHandle[Any]]:
    """The handles of a supervisor's children, in start order (all must have started)."""
    found = [info.handle for info in client.which_children()]
    assert all(h is not None for h in found)
    return [h for h in found if h is not None]


def brief(event: SupervisionEvent) -> tuple[str, str]:
    """An event as (kind, child or supervisor), for comparing exact sequences."""
    return type(event).__name__, str(getattr(event, "child", event.supervisor))


class Kit:
    """A system on a manual clock, its supervision events, and gates to release."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.system = ActorSystem("test", clock=self.clock)
        self._events: queue.Queue[Any] = queue.Queue()
        self.system.events.subscribe(self._events, kinds=(SupervisionEvent,))
        self._gates: list[threading.Event] = []

    def start(
        self,
        children: Iterable[ChildSpec],
        flags: SupervisorFlags | None = None,
        name: str = "sup",
    ) -> SupervisorClient:
        return start_supervisor(self.system, children, flags, name=name, timeout=WAIT)

    def gate(self) -> threading.Event:
        gate = threading.Event()
        self._gates.append(gate)
        return gate

    def block(self, handle: Any) -> Block:
        """Make a Worker sit in a handler until teardown (so it ignores stop requests)."""
        blocker = Block(self.gate())
        handle.tell(blocker)
        assert blocker.entered.wait(WAIT)
        return blocker

    def next_event(self) -> Any:
        return self._events.get(timeout=WAIT)

    def expect(self, *expected: tuple[str, str]) -> list[Any]:
        """Take the next events and assert they are exactly ``expected``, in order."""
        events = [self.next_event() for _ in expected]
        got = [brief(e) for e in events]
        assert got == list(expected), f"{got} (then {self.drain()})"
        return events

    def until(self, kind: str, child: str) -> list[tuple[str, str]]:
        """Take events up to and including the first (kind, child); return their briefs."""
        seen = []
        while True:
            event = self.next_event()
            seen.append(brief(event))
            if seen[-1] == (kind, child):
                return seen

    def drain(self) -> list[tuple[str, str]]:
        items = []
        while True:
            try:
                items.append(brief(self._events.get_nowait()))
            except queue.Empty:
                return items

    def flush_timers(self) -> None:
        """Wait until the timer thread has delivered everything due now."""
        inbox = Inbox()
        self.system.timers.schedule(0, inbox, "flushed")
        assert inbox.get() == "flushed"

    def release(self) -> None:
        """Open every gate, so every blocked (or abandoned) thread can end."""
        for gate in self._gates:
            gate.set()

    def close(self) -> None:
        self.release()
        # Abandoned threads end once their gate opens; the report must see them ended.
        for entry in list(self.system._abandoned):
            if entry.thread is not None:
                entry.thread.join(WAIT)
        report = self.system.shutdown(timeout=WAIT)
        assert report.clean, f"shutdown left threads running: {report.abandoned}"


@contextmanager
def open_kit() -> Iterator[Kit]:
    kit = Kit()
    try:
        yield kit
    finally:
        kit.close()
