"""Random nested workflows under injected faults, checked against the reference model.

Each example builds a fresh system, runs one random tree and checks: the run ends within a
bound derived from its timeouts; every branch is recorded exactly once with a status (and
value) the model allows; every leaf started is decided exactly once; no parallel step ran more
branches at once than its limit and no semaphore had more holders than permits; every permit
is back at the end; and after shutdown no thread is left but the reported abandoned ones,
which belong to leaves that ignored their cancellation (and end soon after).

The default size suits CI on two noisy cores; ``CASTFLOW_SOAK=1`` runs many more examples,
with a random seed each time.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ActorSystem, Semaphore, StepFinished, StepStarted
from actors.runtime.events import Event
from tests.parallel_kit import wait_until
from tests.property.harness import Instruments, check_records, limits_of, run_tree
from tests.property.trees import SEMAPHORES, Node, trees
from tests.sizes import SOAK, sized


def _settings(examples: int) -> settings:
    return sized(examples, examples * 20)


class StepEvents:
    """Counts ``StepStarted`` and ``StepFinished`` per call id (leaves and workflow steps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: dict[str, int] = {}
        self.finished: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if not isinstance(event, StepStarted | StepFinished):
            return
        with self._lock:
            if isinstance(event, StepStarted):
                self.started[event.call_id] = self.started.get(event.call_id, 0) + 1
            elif isinstance(event, StepFinished):
                self.finished[event.call_id] = self.finished.get(event.call_id, 0) + 1

    def unaccounted(self) -> list[str]:
        """Call ids started and not finished exactly once, or finished more than once."""
        with self._lock:
            wrong = [c for c in self.started if self.finished.get(c) != 1]
            return wrong + [c for c, n in self.finished.items() if n != 1 and c not in wrong]


def permits_back(system: ActorSystem, name: str, permits: int) -> bool:
    """Whether every permit of semaphore ``name`` is free and nobody waits (or it was unused)."""
    pool = system.permits.get(name)
    return pool is None or (pool.available, pool.waiting) == (permits, 0)


def run_and_check(root: Node, permits: tuple[int, int]) -> None:
    """Run ``root`` on a fresh system and check every invariant of the module docstring."""
    sem_permits = dict(zip(SEMAPHORES, permits, strict=True))
    semaphores = {name: Semaphore(name, n, timeout=60.0) for name, n in sem_permits.items()}
    inst = Instruments(limits_of(root), sem_permits)
    before = set(threading.enumerate())
    system = ActorSystem("property", cancellation_timeout=0.05)
    events = StepEvents()
    system.events.subscribe(events, kinds=(StepStarted, StepFinished))
    system.events.subscribe(inst.on_event, kinds=(StepFinished,))
    try:
        result, took = run_tree(system, root, inst, semaphores)
        # Cleanup never delays a result: what was cut is decided soon after, not before.
        wait_until(
            lambda: not events.unaccounted(),
            what="every step started to be decided exactly once",
        )
        check_records(result, root)
        assert not inst.violations, inst.violations
        assert inst.wait_stubborn_ended(30.0), "a leaf ignoring its cancellation never ended"
        for name, count in sem_permits.items():
            # A cut leaf gives its permits back when its body really ends.
            wait_until(
                lambda name=name, count=count: permits_back(system, name, count),  # type: ignore[misc]
                what=f"every permit of {name} to come back",
            )
    finally:
        report = system.shutdown(timeout=10.0)
    abandoned = {thread.thread for thread in report.abandoned}
    # Abandoned: threads of leaves cut while their body ran (the stubborn ones, or a slow
    # one that the load kept past its grace), never an idle worker or one running other work.
    assert abandoned <= inst.cut_threads, f"abandoned threads not cut while running: {abandoned}"
    left = [t.name for t in threading.enumerate() if t not in before and t.name not in abandoned]
    assert not left, f"threads left after shutdown: {left}"
    assert took < 10.0 + 3.0 * 60, took


@pytest.mark.timeout(3600 if SOAK else 300)
@_settings(600)
@given(trees(racy=False), st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_trees_without_timing_races_give_exactly_the_modelled_statuses_and_values(
    root: Node, permits: tuple[int, int]
) -> None:
    run_and_check(root, permits)


@pytest.mark.timeout(3600 if SOAK else 300)
@_settings(300)
@given(trees(racy=True), st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_trees_with_hangs_timeouts_and_stubborn_leaves_keep_every_invariant(
    root: Node, permits: tuple[int, int]
) -> None:
    run_and_check(root, permits)
