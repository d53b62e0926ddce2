"""Shared pieces of the parallel tests: gates, probes that watch a leaf, a concurrency meter,
and the tools built on them.

Every tool here waits with a bound (``WAIT``), so a test that forgets a gate still ends; tests
release their gates at teardown anyway, so abandoned threads end and the leak check holds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from actors import ParallelWorkflow, ResourceLimits
from actors.runtime.cancel import CancelReason
from actors.runtime.events import ActorAbandoned, Event, StepFinished
from actors.runtime.results import Status, StepResult
from actors.runtime.system import ActorSystem
from actors.tools import Tool, ToolContext, tool
from tests.helpers import WAIT


class Gates:
    """Hands out ``threading.Event`` gates and opens them all at teardown."""

    def __init__(self) -> None:
        self._gates: list[threading.Event] = []

    def new(self) -> threading.Event:
        """A fresh, closed gate."""
        gate = threading.Event()
        self._gates.append(gate)
        return gate

    def release_all(self) -> None:
        """Open every gate handed out."""
        for gate in self._gates:
            gate.set()


class Probe:
    """What one leaf saw: that it started, the cancellation reaching it, and that it ended.

    Attributes:
        started: set when the leaf's body starts.
        cancelled: set when the leaf observes its cancellation.
        release: the gate the leaf waits on once cancelled (or instead of finishing).
        ended: set when the leaf's body is about to return or raise.
        reason: the scope's cancel reason the leaf observed.
        calls: how many times the leaf's body ran.
    """

    def __init__(self, release: threading.Event | None = None) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.release = release if release is not None else threading.Event()
        self.ended = threading.Event()
        self.reason: CancelReason | None = None
        self.calls = 0


class Meter:
    """A lock-protected count of bodies running now, and the most seen at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.current = 0
        self.peak = 0
        self.entries = 0

    def enter(self) -> None:
        """A body starts."""
        with self._cond:
            self.current += 1
            self.entries += 1
            self.peak = max(self.peak, self.current)
            self._cond.notify_all()

    def leave(self) -> None:
        """A body ends."""
        with self._cond:
            self.current -= 1
            self._cond.notify_all()

    def wait_for(self, level: int, timeout: float = WAIT) -> bool:
        """Wait until ``level`` bodies run at once; return whether they did in time."""
        with self._cond:
            return self._cond.wait_for(lambda: self.current >= level, timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``predicate`` until it holds, failing the test past ``timeout`` seconds.

    Args:
        predicate: the condition awaited.
        timeout: the most seconds to wait.
        what: describes the condition in the failure message.

    Raises:
        AssertionError: the condition did not hold in time.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what or predicate}"
            raise AssertionError(msg)
        time.sleep(0.002)


class FinishedWatch:
    """An event-bus sink setting one ``threading.Event`` per leaf name once that leaf is decided.

    Subscribe it with ``system.events.subscribe(watch)``; ``watch.finished("inc")`` is the event
    of the leaf named ``inc`` (set when the dispatcher publishes its ``StepFinished``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self.statuses: dict[str, Status] = {}

    def finished(self, step: str) -> threading.Event:
        """The event set once the step named ``step`` has finished."""
        with self._lock:
            return self._events.setdefault(step, threading.Event())

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepFinished):
            self.statuses[event.step] = event.status
            self.finished(event.step).set()


def watch_finished(system: ActorSystem) -> FinishedWatch:
    """A ``FinishedWatch`` subscribed to ``system``'s events for the rest of its life."""
    watch = FinishedWatch()
    system.events.subscribe(watch, kinds=(StepFinished,))
    return watch


# -- tools ------------------------------------------------------------------------------------


def holding(
    probe: Probe, name: str, value: int | None = None, *, linger: bool = False
) -> Tool[..., int]:
    """A sync tool that runs until its scope is cancelled or ``probe.release`` is set.

    Released first, it returns ``value`` (its input if ``None``). Cancelled first, it records
    the reason, waits for ``probe.release`` if ``linger`` (so it outlives its decision), then
    raises ``CancelledError`` through its context.
    """

    def hold(x: int, ctx: ToolContext) -> int:
        probe.calls += 1
        probe.started.set()
        try:
            end = time.monotonic() + WAIT
            while time.monotonic() < end and not probe.release.is_set():
                if ctx.scope.wait(0.01):
                    probe.reason = ctx.scope.reason
                    probe.cancelled.set()
                    if linger:
                        probe.release.wait(WAIT)
                    ctx.raise_if_cancelled()
            return x if value is None else value
        finally:
            probe.ended.set()

    return tool(hold, name=name)


def async_holding(probe: Probe, name: str) -> Tool[..., Any]:
    """An async tool that awaits forever; once its task is cancelled it waits for the release.

    ``probe.cancelled`` is set inside the coroutine when ``asyncio.CancelledError`` reaches it.
    """

    async def hold_async(x: int) -> int:
        probe.calls += 1
        probe.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            probe.cancelled.set()
            end = time.monotonic() + WAIT
            while not probe.release.is_set() and time.monotonic() < end:
                await asyncio.sleep(0.005)
            raise
        finally:
            probe.ended.set()
        return x

    return tool(hold_async, name=name)


def stuck(probe: Probe, name: str = "stuck") -> Tool[..., int]:
    """A sync tool that ignores cancellation: it blocks on ``probe.release`` (bounded)."""

    def ignore_cancel(x: int, ctx: ToolContext) -> int:
        probe.calls += 1
        probe.started.set()
        probe.release.wait(WAIT)
        if ctx.scope.cancelled:
            probe.reason = ctx.scope.reason
            probe.cancelled.set()
        probe.ended.set()
        return x

    return tool(ignore_cancel, name=name)


def _await_all(name: str, after: tuple[threading.Event, ...]) -> None:
    for event in after:
        if not event.wait(WAIT):
            msg = f"{name}: an event it waits for never came"
            raise AssertionError(msg)


def raising(
    exc: BaseException, name: str, *, after: tuple[threading.Event, ...] = ()
) -> Tool[..., int]:
    """A sync tool raising ``exc`` (the same object every call) once every ``after`` is set."""

    def fail(x: int) -> int:
        _await_all(name, after)
        raise exc

    return tool(fail, name=name)


def returning(value: Any, name: str, *, after: tuple[threading.Event, ...] = ()) -> Tool[..., Any]:
    """A sync tool returning ``value`` once every event of ``after`` is set."""

    def give(x: int) -> Any:
        _await_all(name, after)
        return value

    return tool(give, name=name)


def metered(
    meter: Meter, name: str, *, latency: float = 0.0, gate: threading.Event | None = None
) -> Tool[..., int]:
    """A sync tool counted by ``meter`` while it runs: it sleeps ``latency`` or waits on ``gate``.

    Returns its input.
    """

    def measure(x: int) -> int:
        meter.enter()
        try:
            if gate is not None:
                gate.wait(WAIT)
            elif latency:
                time.sleep(latency)
            return x
        finally:
            meter.leave()

    return tool(measure, name=name)


def statuses(records: list[StepResult]) -> list[tuple[str, Status]]:
    """``(name, status)`` of every record, in order."""
    return [(record.name, record.status) for record in records]


def abandon_stuck_branch(system: ActorSystem, probe: Probe) -> ActorAbandoned:
    """Run a branch that ignores its 0.1 s timeout; return the event of its thread's abandonment.

    The branch's thread is still stuck on ``probe.release`` when this returns.
    """
    abandoned: queue.Queue[Event] = queue.Queue()
    system.events.subscribe(abandoned, kinds=(ActorAbandoned,))
    flow = ParallelWorkflow(
        [stuck(probe)], limits=ResourceLimits(execution_timeout=0.1, cancellation_timeout=0.1)
    )
    assert system.run(flow, 1, timeout=WAIT).status is Status.TIMEOUT
    event = abandoned.get(timeout=WAIT)
    assert isinstance(event, ActorAbandoned)
    return event
