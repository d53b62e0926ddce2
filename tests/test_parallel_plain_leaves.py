"""Branches whose tool takes no ``ToolContext`` run in their batch's scope, not one each.

Such a tool cannot see a scope, so the branch supervisor cancels its job by hand: a cut must
still decide it at once (cancelled, or timeout past a deadline), leave its body running to
its end, and abandon its thread only if it runs on past the grace.
"""

from __future__ import annotations

import queue
import threading
import time

from actors import (
    ActorAbandoned,
    ActorSystem,
    Aggregation,
    ErrorMode,
    Event,
    ParallelWorkflow,
    ResourceLimits,
    Status,
    StepFinished,
    tool,
)
from actors.tools import Tool
from tests.helpers import WAIT
from tests.parallel_kit import Gates, raising, returning, statuses


class Plain:
    """A plain sync tool (no ``ToolContext``) that blocks on a gate and records its body."""

    def __init__(self, gate: threading.Event, name: str = "plain") -> None:
        self.gate = gate
        self.started = threading.Event()
        self.ended = threading.Event()
        self.thread: threading.Thread | None = None

        def block(x: int) -> int:
            self.thread = threading.current_thread()
            self.started.set()
            self.gate.wait(WAIT)
            self.ended.set()
            return x

        self.tool: Tool[..., int] = tool(block, name=name)


def finished_and_abandoned(system: ActorSystem) -> queue.Queue[Event]:
    seen: queue.Queue[Event] = queue.Queue()
    system.events.subscribe(seen, kinds=(StepFinished, ActorAbandoned))
    return seen


def drain(seen: queue.Queue[Event]) -> list[Event]:
    events = []
    while not seen.empty():
        events.append(seen.get_nowait())
    return events


def test_a_plain_loser_is_decided_cancelled_at_once_and_its_body_runs_to_its_end(
    system: ActorSystem, gates: Gates
) -> None:
    seen = finished_and_abandoned(system)
    loser = Plain(gates.new(), "loser")
    flow = ParallelWorkflow(
        [loser.tool, returning(7, "winner", after=(loser.started,))],
        aggregation=Aggregation.FIRST_SUCCESS,
        limits=ResourceLimits(cancellation_timeout=WAIT),
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 7
    assert statuses(result.steps) == [("loser", Status.CANCELLED), ("winner", Status.OK)]
    # Decided while its body still runs: the cut never waits for a tool that cannot see it.
    assert not loser.ended.is_set()
    loser.gate.set()
    assert loser.ended.wait(WAIT)
    system.shutdown(timeout=WAIT)
    events = drain(seen)
    leaves = [(e.step, e.status) for e in events if isinstance(e, StepFinished)]
    assert [leaf for leaf in leaves if leaf[0] != "parallel"] == [
        ("winner", Status.OK),
        ("loser", Status.CANCELLED),
    ]
    assert not [e for e in events if isinstance(e, ActorAbandoned)]


def test_a_plain_branch_past_the_deadline_is_decided_timeout_then_its_thread_abandoned() -> None:
    system = ActorSystem("plain-deadline")
    gate = threading.Event()
    try:
        seen = finished_and_abandoned(system)
        slow = Plain(gate, "slow")
        flow = ParallelWorkflow(
            [slow.tool, slow.tool, slow.tool],
            max_concurrency=1,
            limits=ResourceLimits(cancellation_timeout=0.2),
        )
        begun = time.monotonic()
        result = system.run(flow, 1, timeout=0.2)
        assert result.status is Status.TIMEOUT
        assert time.monotonic() - begun < WAIT / 2
        # One started and timed out; the slot never freed, so the others never ran.
        assert statuses(result.steps) == [
            ("slow", Status.TIMEOUT),
            ("slow_2", Status.SKIPPED),
            ("slow_3", Status.SKIPPED),
        ]
        while True:
            event = seen.get(timeout=WAIT)
            if isinstance(event, ActorAbandoned):
                break
            assert isinstance(event, StepFinished)
            assert event.status is Status.TIMEOUT
            assert event.step in ("slow", "parallel")
        assert event.waited == 0.2
        assert slow.thread is not None
        assert event.thread == slow.thread.name
        assert system.abandoned_alive() == 1
        assert not slow.ended.is_set()
        gate.set()
        slow.thread.join(WAIT)
        assert not slow.thread.is_alive()
        assert system.abandoned_alive() == 0
    finally:
        gate.set()
        report = system.shutdown(timeout=WAIT)
    assert report.killed == []


def test_fail_fast_cancels_plain_siblings_and_frees_their_slots_for_the_next_run(
    system: ActorSystem, gates: Gates
) -> None:
    sibling = Plain(gates.new(), "sibling")
    failing = raising(ValueError("no"), "failing", after=(sibling.started,))
    flow = ParallelWorkflow(
        [sibling.tool, failing],
        error_mode=ErrorMode.FAIL_FAST,
        limits=ResourceLimits(cancellation_timeout=WAIT),
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert statuses(result.steps) == [("sibling", Status.CANCELLED), ("failing", Status.ERROR)]
    assert not sibling.ended.is_set()
    sibling.gate.set()
    assert sibling.ended.wait(WAIT)
    # The same step runs again at once, on the workers the first run left idle.
    again = ParallelWorkflow([returning(1, "a"), returning(2, "b")], max_concurrency=2)
    assert system.run(again, 1, timeout=WAIT).value == [1, 2]
