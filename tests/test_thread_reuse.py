"""Actors that opt in run their loops on threads a system parks for reuse."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from actors import (
    ActorSystem,
    ParallelWorkflow,
    Tool,
    tool,
)
from actors.runtime._threads import LoopThread, ThreadReservoir
from actors.runtime._workqueue import _WorkQueue
from actors.runtime.actor import Actor
from actors.runtime.leaves import LeafJob, LeafWorker
from actors.runtime.reasons import Crashed, Down, Shutdown
from tests.helpers import WAIT, Inbox
from tests.parallel_kit import Probe, abandon_stuck_branch, wait_until

_mark: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="unset")


class ReusingEcho(Actor):
    """Answers with its thread, marks its context, or crashes, on a thread it may reuse."""

    reuse_thread = True

    def on_receive(self, message: Any) -> Any:
        if message == "thread":
            return threading.current_thread()
        if message == "mark":
            _mark.set(self.handle.name)
            return None
        if message == "read":
            return _mark.get()
        if message == "boom":
            raise ValueError("boom")
        return message


def recording(
    threads: list[threading.Thread], names: list[str], before: Callable[[], object] = object
) -> Tool[..., int]:
    """A no-op tool that records the thread running it and that thread's name at the time."""
    lock = threading.Lock()

    def record(x: int) -> int:
        before()
        current = threading.current_thread()
        with lock:
            threads.append(current)
            names.append(current.name)
        return x

    return tool(record, name="record")


def parked(system: ActorSystem, count: int = 1) -> Callable[[], bool]:
    return lambda: system._thread_reservoir.idle >= count


def spares(system: ActorSystem) -> int:
    kept = system._spare_leaf_workers
    return 0 if kept is None else len(kept.parked)


def spare_workers(system: ActorSystem, count: int = 1) -> Callable[[], bool]:
    return lambda: spares(system) >= count


def loop_of(run: Callable[[], bool], name: str = "loop") -> LoopThread:
    return LoopThread(name, run)


# -- the reservoir ------------------------------------------------------------------------------


def test_a_parked_thread_runs_the_next_loop_under_that_loops_name() -> None:
    reservoir = ThreadReservoir("r", idle_timeout=WAIT * 6, max_idle=4)
    seen: list[tuple[threading.Thread, str]] = []

    def record() -> bool:
        current = threading.current_thread()
        seen.append((current, current.name))
        return True

    try:
        first = loop_of(record, "r/first#1")
        reservoir.start(first)
        assert first.join(WAIT)
        wait_until(lambda: reservoir.idle == 1, what="the thread to park")
        assert first.thread is not None
        assert first.thread.name == "r/idle"
        second = loop_of(record, "r/second#1")
        reservoir.start(second)
        assert second.join(WAIT)
    finally:
        assert reservoir.close(time.monotonic() + WAIT)
    assert [(thread is first.thread, name) for thread, name in seen] == [
        (True, "r/first#1"),
        (True, "r/second#1"),
    ]
    assert not first.thread.is_alive()


def test_a_borrowed_loop_is_finished_for_every_joiner_and_never_before_it_returns() -> None:
    reservoir = ThreadReservoir("r", idle_timeout=WAIT * 6, max_idle=4)
    release = threading.Event()
    loop = loop_of(lambda: release.wait(WAIT) or True)
    joined: list[bool] = []

    def join_often() -> None:
        joined.extend(loop.join(WAIT) for _ in range(500))

    try:
        reservoir.start(loop)
        assert not loop.join(0.01)  # still running: the wait runs out
        assert not loop.join(-1.0)  # a deadline already past: no wait, no error
        assert not loop.finished
        release.set()
        assert loop.join(WAIT)
        joiners = [threading.Thread(target=join_often) for _ in range(4)]
        for joiner in joiners:
            joiner.start()
        # Each join holds the loop's lock for a moment: the loop stays finished meanwhile.
        seen = [loop.finished for _ in range(2000)]
        for joiner in joiners:
            joiner.join(WAIT)
    finally:
        release.set()
        assert reservoir.close(time.monotonic() + WAIT)
    assert all(seen)
    assert joined == [True] * 2000


@pytest.mark.parametrize(
    ("idle_timeout", "reusable"),
    [(WAIT * 6, False), (0.05, True)],
    ids=["a loop refusing reuse ends its thread", "a parked thread ends after the idle timeout"],
)
def test_a_thread_ends_when_its_loop_refuses_reuse_or_it_idles_too_long(
    idle_timeout: float, reusable: bool
) -> None:
    reservoir = ThreadReservoir("r", idle_timeout=idle_timeout, max_idle=4)
    loop = loop_of(lambda: reusable)
    reservoir.start(loop)
    assert loop.thread is not None
    loop.thread.join(WAIT)
    assert not loop.thread.is_alive()
    assert reservoir.idle == 0
    assert reservoir.close(time.monotonic() + WAIT)


def test_threads_past_the_idle_limit_end_instead_of_parking() -> None:
    reservoir = ThreadReservoir("r", idle_timeout=WAIT * 6, max_idle=1)
    gate = threading.Event()
    loops = [loop_of(lambda: gate.wait(WAIT), f"r/{i}") for i in range(2)]
    try:
        for loop in loops:
            reservoir.start(loop)
        threads = [loop.thread for loop in loops]
        assert threads[0] is not threads[1]
        gate.set()
        wait_until(
            lambda: [t is not None and t.is_alive() for t in threads].count(True) == 1,
            what="one thread to end and one to park",
        )
        assert reservoir.idle == 1
    finally:
        gate.set()
        assert reservoir.close(time.monotonic() + WAIT)
    assert not any(t is not None and t.is_alive() for t in threads)


def test_close_waits_for_running_loops_but_not_for_kept_threads() -> None:
    reservoir = ThreadReservoir("r", idle_timeout=WAIT * 6, max_idle=4)
    kept_gate, finishing_gate = threading.Event(), threading.Event()
    kept = loop_of(lambda: kept_gate.wait(WAIT) and False)
    finishing = loop_of(lambda: finishing_gate.wait(WAIT))
    reservoir.start(kept)
    reservoir.start(finishing)
    assert kept.thread is not None
    assert finishing.thread is not None
    finishing_gate.set()
    try:
        assert reservoir.close(time.monotonic() + WAIT, keep={kept.thread})
        assert not finishing.thread.is_alive(), "a loop that ended must not park after close"
        assert kept.thread.is_alive()
    finally:
        kept_gate.set()
    kept.thread.join(WAIT)
    assert not kept.thread.is_alive()


# -- leaf workers -------------------------------------------------------------------------------


def test_a_later_runs_leaf_worker_reuses_a_parked_thread_renamed_after_that_run(
    system: ActorSystem,
) -> None:
    threads: list[threading.Thread] = []
    names: list[str] = []
    flow = ParallelWorkflow([recording(threads, names)], max_concurrency=1)
    first = system.run(flow, 1, timeout=WAIT)
    # The run's coordinator, gather and branch supervisor park; its leaf worker is a spare.
    wait_until(parked(system, 3), what="the first run's threads to park")
    wait_until(spare_workers(system), what="the first run's leaf worker to be kept as a spare")
    before = set(threading.enumerate())
    second = system.run(flow, 2, timeout=WAIT)
    assert first.value == [1]
    assert second.value == [2]
    assert threads[1] in before, "the second run's worker started a new thread"
    assert names[0].startswith(f"test/{first.run_id}/")
    assert names[1].startswith(f"test/{second.run_id}/")


def test_a_run_that_needs_every_spare_at_once_wakes_them_all(system: ActorSystem) -> None:
    # Adopted spares are woken one by one, each by the one before as it takes a job: every
    # branch here waits for all the others, so a broken chain would leave the barrier short.
    width = 8
    threads: list[threading.Thread] = []
    names: list[str] = []
    barrier = threading.Barrier(width, timeout=WAIT)
    flow = ParallelWorkflow(
        [recording(threads, names, before=barrier.wait)] * width, max_concurrency=width
    )
    first = system.run(flow, 1, timeout=WAIT)
    wait_until(spare_workers(system, width), what="the first run's workers to be kept as spares")
    kept = set(threads)
    threads.clear()
    barrier.reset()
    second = system.run(flow, 2, timeout=WAIT)
    assert first.value == [1] * width
    assert second.value == [2] * width
    assert set(threads) == kept, "the second run did not run on the first run's workers"


class _Parkable:
    """Stands in for an adopted worker: whether it was told to stop meanwhile."""

    def __init__(self, *, stopping: bool = False) -> None:
        self.abandoned = False
        self.scope = self
        self.cancelled = stopping


def _signal() -> threading.Lock:
    signal = threading.Lock()
    signal.acquire()  # as a parked worker's: held until someone wakes it
    return signal


@pytest.mark.parametrize("jobs_waiting", [True, False])
def test_adopted_spares_are_parked_and_one_is_woken_unless_told_to_stop(
    jobs_waiting: bool,
) -> None:
    queue = _WorkQueue(None)
    if jobs_waiting:
        queue.ready.append(cast("LeafJob", object()))
    live = [(cast("LeafWorker", _Parkable()), _signal()) for _ in range(3)]
    stopping = (cast("LeafWorker", _Parkable(stopping=True)), _signal())
    queue.park_adopted([*live, stopping])
    # A worker stopped since its adoption found itself parked nowhere: it is woken to end.
    assert not stopping[1].locked()
    assert stopping[0] not in queue.parked
    woken = [worker for worker, signal in live if not signal.locked()]
    assert len(woken) == (1 if jobs_waiting else 0)
    assert set(queue.parked) == {worker for worker, _signal in live} - set(woken)
    assert queue.waking == set(woken)


def test_an_abandoned_workers_thread_ends_with_its_work_and_is_never_parked() -> None:
    probe = Probe()
    system = ActorSystem("reuse-abandon", idle_thread_timeout=WAIT * 6)
    threads: list[threading.Thread] = []
    names: list[str] = []
    try:
        event = abandon_stuck_branch(system, probe)
        (thread,) = [t for t in threading.enumerate() if t.name == event.thread]
        # While it is stuck, later runs get threads of their own.
        later = ParallelWorkflow([recording(threads, names)], max_concurrency=1)
        assert system.run(later, 2, timeout=WAIT).value == [2]
        assert thread not in threads
        assert system.abandoned_alive() == 1
        probe.release.set()
        thread.join(WAIT)
        assert not thread.is_alive(), "the abandoned thread parked instead of ending"
        assert thread.name == event.thread
        assert system.abandoned_alive() == 0
    finally:
        probe.release.set()
        report = system.shutdown(timeout=WAIT)
    assert report.clean
    assert [(t.thread, t.alive) for t in report.abandoned] == [(event.thread, False)]


def test_parked_worker_threads_end_after_the_systems_idle_timeout() -> None:
    threads: list[threading.Thread] = []
    names: list[str] = []
    system = ActorSystem("reuse-idle", idle_thread_timeout=0.05)
    # Every branch waits for the others: four workers, each recording its thread.
    together = threading.Barrier(4, timeout=WAIT)
    try:
        flow = ParallelWorkflow(
            [recording(threads, names, before=together.wait)] * 4, max_concurrency=4
        )
        assert system.run(flow, 1, timeout=WAIT).value == [1] * 4
        # The workers are kept as spares for a later run, then end once idle for 0.05 s.
        for thread in threads:
            thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads)
        assert spares(system) == 0
        # The run's other actors (coordinator, gather, supervisor) park a little later.
        wait_until(lambda: system._thread_reservoir.idle == 0, what="every parked thread to end")
    finally:
        report = system.shutdown(timeout=WAIT)
    assert report.clean


def test_no_spare_worker_is_kept_when_no_thread_may_idle() -> None:
    threads: list[threading.Thread] = []
    names: list[str] = []
    system = ActorSystem("reuse-none", max_idle_threads=0)
    try:
        flow = ParallelWorkflow([recording(threads, names)] * 4, max_concurrency=2)
        assert system.run(flow, 1, timeout=WAIT).value == [1] * 4
        for thread in set(threads):
            thread.join(WAIT)
            assert not thread.is_alive()
        assert spares(system) == 0
    finally:
        report = system.shutdown(timeout=WAIT)
    assert report.clean


def test_shutdown_ends_every_parked_thread() -> None:
    threads: list[threading.Thread] = []
    names: list[str] = []
    system = ActorSystem("reuse-shutdown", idle_thread_timeout=WAIT * 6)
    try:
        flow = ParallelWorkflow([recording(threads, names)] * 8, max_concurrency=4)
        assert system.run(flow, 1, timeout=WAIT).value == [1] * 8
        wait_until(parked(system), what="a worker thread to park")
    finally:
        report = system.shutdown(timeout=WAIT)
    assert report.clean
    assert report.abandoned == []
    assert [t.name for t in set(threads) if t.is_alive()] == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("reuse-shutdown/")] == []


# -- any actor that opts in ---------------------------------------------------------------------


def one_down(watcher: Inbox, handle: Any) -> Down:
    down = watcher.get()
    assert isinstance(down, Down)
    assert down.handle is handle
    handle.join(WAIT)
    assert watcher.drain() == [], "a second Down was sent"
    return down


def test_a_crash_or_a_stop_on_a_reused_thread_gives_exactly_one_down(
    system: ActorSystem,
) -> None:
    first = system.spawn(ReusingEcho, name="first")
    thread = first.ask("thread").result(WAIT)
    assert thread.name == "test/first#1"
    assert system.stop(first, timeout=WAIT) == Shutdown()
    wait_until(parked(system), what="the first actor's thread to park")

    watcher = Inbox()
    crashing = system.spawn(ReusingEcho, name="crashing", watchers=(watcher,))
    assert crashing.ask("thread").result(WAIT) is thread
    assert thread.name == "test/crashing#1"
    crashing.tell("boom")
    assert isinstance(one_down(watcher, crashing).reason, Crashed)
    wait_until(parked(system), what="the crashed actor's thread to park")

    stopping = system.spawn(ReusingEcho, name="stopping", watchers=(watcher,))
    assert stopping.ask("thread").result(WAIT) is thread
    stopping.stop()
    assert one_down(watcher, stopping).reason == Shutdown()


def test_each_actor_on_a_reused_thread_starts_from_a_fresh_context(system: ActorSystem) -> None:
    first = system.spawn(ReusingEcho, name="first")
    thread = first.ask("thread").result(WAIT)
    first.ask("mark").result(WAIT)
    assert first.ask("read").result(WAIT) == "first"
    system.stop(first, timeout=WAIT)
    wait_until(parked(system), what="the first actor's thread to park")
    second = system.spawn(ReusingEcho, name="second")
    assert second.ask("thread").result(WAIT) is thread
    assert second.ask("read").result(WAIT) == "unset"


def test_negative_reservoir_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="idle_thread_timeout"):
        ActorSystem("bad", idle_thread_timeout=-1.0)
    with pytest.raises(ValueError, match="max_idle_threads"):
        ActorSystem("bad", max_idle_threads=-1)
