"""The work queue a leaf owner shares with its workers, and the system's spare workers.

An owner (the actor a ``LeafDispatcher`` serves, such as a branch supervisor) queues ready
jobs; the ``LeafWorker`` actors serving it take them without a message per job, park when the
queue is empty, and hand completed jobs back in batches. A ``Lane`` lets workers start the
next prepared job of a batch themselves. Between owners, idle workers wait as the system's
spares. It is private to the runtime: its locking protocol is an internal contract of
``leaves``, which re-exports ``Lane``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.runtime.results import Status
from actors.runtime.timers import TimerServiceStoppedError

if TYPE_CHECKING:
    from actors.runtime.actor import Actor
    from actors.runtime.leaves import LeafJob, LeafWorker
    from actors.runtime.results import StepResult
    from actors.runtime.system import ActorSystem

__all__ = ["COALESCE_WINDOW", "Lane", "spare_workers"]

COALESCE_WINDOW = 0.004
"""Seconds a successful completion of a coalescing lane may wait to be handed in with others.

While a wave of branches ends, their workers restart the next ones from the lane; the owner
takes their results in once that is done, instead of competing with them for the interpreter
lock at the first completion.
"""


class Lane:
    """Jobs of one batch that their owner prepared ahead; workers start them as slots free up.

    A worker that finishes a job of the lane starts the next one itself, under the queue's
    lock, with no round trip through the owner (which is told afterwards, with the job's
    completion). Every field is read and written under the owner's queue lock.

    Args:
        limit: the most jobs of the lane (and slots reserved with ``reserve_slot``) at once.
        admit: asked, under the queue lock, as the next ``n`` waiting jobs are about to start
            (``admit(n)``): ``True`` starts them, ``None`` leaves them waiting (the owner
            retries later), ``False`` closes the lane and drops what waits. It must not
            block, nor take the queue lock.
        on_start: called on the owner's thread with the jobs that started (in order).
        on_decided: called on the owner's thread with each job of the lane and its result,
            once the job is decided (it ended, or it was cancelled).
        coalesce: the owner may hear of a successful completion up to ``COALESCE_WINDOW``
            late while the lane refills its slots by itself and more jobs wait in it, or
            while the last jobs of a sealed lane still run (nothing is decided by one success
            alone).

    ``sealed`` says the owner queues nothing more in the lane: its batch has run out.
    ``dry_notice`` asks the worker that takes the queue's last ready job to tell the owner
    (``dry`` is then set, and ``on_dry`` called on the owner's thread as it takes that in).
    """

    __slots__ = (
        "admit",
        "closed",
        "coalesce",
        "dry",
        "dry_notice",
        "limit",
        "on_decided",
        "on_dry",
        "on_start",
        "running",
        "sealed",
        "standby",
    )

    def __init__(
        self,
        limit: int,
        admit: Callable[[int], bool | None],
        on_start: Callable[[list[LeafJob]], None],
        on_decided: Callable[[LeafJob, StepResult], None],
        *,
        coalesce: bool = False,
        on_dry: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.admit = admit
        self.on_start = on_start
        self.on_decided = on_decided
        self.coalesce = coalesce
        self.running = 0
        self.standby: deque[LeafJob] = deque()
        self.closed = False
        self.sealed = False
        self.on_dry = on_dry
        self.dry_notice = False
        self.dry = False

    def start_locked(self) -> list[LeafJob]:
        """Under the queue lock: take the waiting jobs that may start now (admitted together)."""
        standby = self.standby
        room = min(len(standby), self.limit - self.running)
        if room <= 0 or self.closed:
            return []
        verdict = self.admit(room)
        if verdict is None:
            return []
        if not verdict:
            self.closed = True
            standby.clear()
            return []
        self.running += room
        if room == 1:
            return [standby.popleft()]  # a slot freed by one completion: the usual case
        return [standby.popleft() for _ in range(room)]


def _skip_locked(job: LeafJob, skipped: list[LeafJob]) -> None:
    """Under the queue lock: ``job`` was cut while queued; it is not run (its lane is closed,
    its permits come back once the lock is let go)."""
    skipped.append(job)
    if job.lane is not None:
        job.lane.running -= 1


@dataclass(frozen=True, slots=True)
class _Wake:
    """To a new worker: start taking work from the queue."""


@dataclass(frozen=True, slots=True)
class _Drain:
    """To the owner: completed jobs are waiting in the queue's done list."""


_QUIET, _NOW, _LATER = object(), object(), object()
"""How a completion is announced to the owner: not at all (one is on its way), now, later."""


class _WorkQueue:
    """What an owner and its workers share: ready jobs, parked workers, completed jobs.

    Workers take ready jobs themselves and keep going while there are any, so a busy pool
    costs no message per job. A worker that finds the queue empty parks on its own lock.
    Parked workers are woken one at a time: a put wakes one when no wake-up is already on its
    way, and whoever takes a job while more are waiting passes the wake-up on. Every queued
    job still finds a worker as soon as it needs one (a job that blocks has woken the next
    worker before it runs), but quick jobs are mostly taken by workers already awake instead
    of costing a thread switch each. The owner is told of completions with one ``_Drain``
    per batch (only when none is already on its way); a success of a coalescing lane is told
    ``COALESCE_WINDOW`` later, unless something else is told first.
    """

    __slots__ = (
        "closed",
        "deferred",
        "direct",
        "done",
        "lock",
        "notified",
        "owner",
        "parked",
        "ready",
        "started",
        "starting",
        "waking",
    )

    def __init__(self, owner: Actor | None) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.ready: deque[LeafJob] = deque()
        # Parked workers and the locks they wait on; whoever removes an entry releases it.
        self.parked: dict[LeafWorker, threading.Lock] = {}
        # Workers woken for work that have not taken a job yet (at most one, but for stops).
        self.waking: set[LeafWorker] = set()
        # Workers spawned for this queue that have not taken a job yet.
        self.starting: set[LeafWorker] = set()
        # Completed jobs (how each ended is on the job), and the jobs workers started from
        # lanes (taken in first: a job's start comes before its end).
        self.done: list[LeafJob] = []
        self.started: list[LeafJob] = []
        # Jobs callers queued straight to idle workers (``put_direct``), not accounted yet.
        self.direct: list[LeafJob] = []
        self.closed = False  # the owner is stopping: nothing more is queued past it
        self.notified = False  # a _Drain is on its way to the owner, or due (``deferred``)
        self.deferred = False

    def put(self, jobs: list[LeafJob]) -> int:
        """Queue ``jobs``; return how many queued jobs no idle worker is there to take.

        Parked workers, woken ones and new ones on their way each take one queued job before
        they run anything; the queued jobs beyond those need more workers. Counted over the
        whole queue: a parked worker counted for an earlier put may have been woken for that
        put's job since, and must not be counted again.
        """
        with self.lock:
            self.ready.extend(jobs)
            uncovered = len(self.ready) - len(self.parked) - len(self.waking) - len(self.starting)
            signal = self._pass_wake()
        if signal is not None:
            signal.release()
        return max(0, uncovered)

    def put_direct(self, job: LeafJob) -> bool:
        """Queue ``job`` from a caller's thread if an idle worker is there to take it (the
        owner accounts for it when it takes in what workers handed in); False, with nothing
        queued, if none is or the owner is stopping: the job must then go through the owner.

        ``job`` must need nothing from its owner to start: sync, no permits, no events.
        """
        with self.lock:
            idle = len(self.parked) + len(self.waking) + len(self.starting)
            if self.closed or len(self.ready) >= idle:
                return False
            job.dispatched = True
            self.ready.append(job)
            self.direct.append(job)
            signal = self._pass_wake()
        if signal is not None:
            signal.release()
        return True

    def expect(self, worker: LeafWorker) -> None:
        """``worker`` was spawned for this queue: until it takes a job, it is on its way to
        one (see :meth:`put`)."""
        with self.lock:
            self.starting.add(worker)

    def take(self, worker: LeafWorker, done: LeafJob | None = None) -> LeafJob | None:
        """The next ready job, now assigned to ``worker``; jobs decided meanwhile are skipped.

        ``done``, the job ``worker`` just finished, is handed to the owner under the same lock
        (see :meth:`complete`).
        """
        skipped: list[LeafJob] = []
        signal = None
        notify = _QUIET
        try:
            with self.lock:
                if done is not None:
                    self.done.append(done)
                    lane = done.lane
                    coalesce = False
                    if lane is not None:
                        # Its slot is free: the lane's next job starts now, on this worker.
                        lane.running -= 1
                        started = lane.start_locked()
                        if started:
                            self.ready.extend(started)
                            self.started.extend(started)
                        # It may wait only while the lane flows without the owner: the slot was
                        # refilled and more wait (a refusal to start needs the owner now), or
                        # the lane is sealed and its last jobs still run (the last one to end
                        # tells the owner at once, with every success that waited).
                        coalesce = (
                            lane.coalesce
                            and done.status is Status.OK
                            and (
                                (bool(started) and bool(lane.standby))
                                or (lane.sealed and not lane.standby and lane.running > 0)
                            )
                        )
                    # Announced already, a success that may wait adds nothing (no call).
                    if not (coalesce and self.notified):
                        notify = self._announce_locked(coalesce=coalesce)
                self.waking.discard(worker)
                self.starting.discard(worker)
                while self.ready:
                    job = self.ready.popleft()
                    if job.decided:
                        _skip_locked(job, skipped)
                        continue
                    job.worker = worker
                    # Before this job runs (it may block): the next waiting job needs a worker.
                    if self.ready and self.parked and not self.waking:
                        signal = self._pass_wake()
                    lane = job.lane
                    if lane is not None and lane.dry_notice and not self.ready:
                        lane.dry_notice = False
                        lane.dry = True
                        # One sent now covers the completion as well.
                        notify = _NOW if notify is _NOW else self._announce_locked(coalesce=False)
                    return job
                return None
        finally:
            if notify is not _QUIET:
                self._notify(later=notify is _LATER)
            if signal is not None:
                signal.release()
            for job in skipped:
                job.release_permits()

    def _announce_locked(self, *, coalesce: bool) -> object:
        """Under the lock, after a completion: whether to tell the owner now, later or not.

        One ``_Drain`` is on its way at a time; a completion that may not wait turns a
        deferred one into one sent now.
        """
        if coalesce:
            if self.notified:
                return _QUIET
            self.notified = self.deferred = True
            return _LATER
        if self.notified and not self.deferred:
            return _QUIET
        self.notified = True
        self.deferred = False
        return _NOW

    def _notify(self, *, later: bool = False) -> None:
        owner = self.owner
        assert owner is not None  # spare workers run no jobs
        if later:
            try:
                owner.system.timers.schedule(COALESCE_WINDOW, _DrainDue(self), None)
            except TimerServiceStoppedError:
                pass  # the system is stopping: tell the owner now
            else:
                return
        owner.handle.tell(_Drain())

    def drain_due(self) -> None:
        """The window of a deferred ``_Drain`` is over: send it, unless the owner took the
        completions in meanwhile, was told at once since, or stopped (see
        ``cancel_deferred_locked``)."""
        with self.lock:
            due = self.deferred
            self.deferred = False
        if due:
            self._notify()

    def cancel_deferred_locked(self) -> None:
        """Under the lock, as the owner stops: a deferred ``_Drain`` is no longer sent."""
        self.deferred = False

    def _pass_wake(self) -> threading.Lock | None:
        """Under the lock: a parked worker to wake, if jobs wait and no wake-up is on its way."""
        if not self.ready or self.waking or not self.parked:
            return None
        worker, signal = self.parked.popitem()
        self.waking.add(worker)
        return signal

    def park(self, worker: LeafWorker, signal: threading.Lock) -> bool:
        """Park ``worker`` on ``signal`` until a job is queued; False if it must not wait.

        It must not when a job was queued meanwhile, or when it is stopping or abandoned
        (checked under the lock: a stop sets those flags before it calls :meth:`unpark`).
        """
        with self.lock:
            if self.ready or worker.abandoned or worker.scope.cancelled:
                return False
            self.parked[worker] = signal
            return True

    def park_adopted(self, adopted: list[tuple[LeafWorker, threading.Lock]]) -> None:
        """Park workers adopted from the spares (still waiting on their signals) here, and
        wake one if jobs wait: it passes the wake-up on as it takes a job.

        A worker told to stop since its adoption is woken instead, to end: its stop found
        it parked nowhere (checked under the lock, as in :meth:`park`).
        """
        wake: list[threading.Lock] = []
        with self.lock:
            for worker, signal in adopted:
                if worker.abandoned or worker.scope.cancelled:
                    wake.append(signal)
                else:
                    self.parked[worker] = signal
            first = self._pass_wake()
        if first is not None:
            wake.append(first)
        for signal in wake:
            signal.release()

    def unpark(self, worker: LeafWorker) -> bool:
        """Wake ``worker`` if it is parked (it is stopping, or it was abandoned)."""
        with self.lock:
            self.starting.discard(worker)  # stopped before its first look at the queue
            signal = self._take_parked(worker)
        if signal is None:
            return False
        signal.release()
        return True

    def _take_parked(self, worker: LeafWorker) -> threading.Lock | None:
        """Under the lock: remove ``worker`` from the parked ones; its signal, if it was one."""
        return self.parked.pop(worker, None)

    def hand_over(self, workers: list[LeafWorker], spares: _SpareWorkers) -> set[LeafWorker]:
        """Move those of ``workers`` parked here to the system's spare workers (still parked),
        taking this queue's lock and the spares' once for all; return the ones moved."""
        with self.lock:
            taken = [(worker, self._take_parked(worker)) for worker in workers]
        moved = [(worker, signal) for worker, signal in taken if signal is not None]
        spares.keep(moved)
        return {worker for worker, _signal in moved}

    def leave(self, worker: LeafWorker) -> None:
        """``worker`` takes no more jobs: a wake-up it was given goes to another worker."""
        with self.lock:
            self._take_parked(worker)
            self.starting.discard(worker)
            if worker not in self.waking:
                return
            self.waking.discard(worker)
            signal = self._pass_wake()
        if signal is not None:
            signal.release()

    def complete(self, done: LeafJob) -> None:
        """Hand a finished job to the owner (one ``_Drain`` message per batch)."""
        with self.lock:
            self.done.append(done)
            notify = self._announce_locked(coalesce=False)
        if notify is not _QUIET:
            self._notify()

    def take_done(self) -> tuple[list[LeafJob], list[LeafJob], list[LeafJob]]:
        """The jobs callers queued directly, the jobs workers started from lanes, and the jobs
        completed, since the last call (the owner's side).

        A direct job cut before a worker took it is left out: it never runs (the worker that
        comes to it skips it), so there is nothing to account for.
        """
        with self.lock:
            direct = self.direct
            if direct:
                self.direct = []
                direct = [job for job in direct if job.worker is not None or not job.decided]
            started, self.started = self.started, []
            done, self.done = self.done, []
            self.notified = self.deferred = False
        return direct, started, done


class _SpareWorkers(_WorkQueue):
    """Idle leaf workers of one system, between the per-run owners they serve.

    A branch supervisor or stream coordinator lives as long as its run; when it stops, its
    parked workers move here, still parked, instead of ending, and the next owner that needs
    a worker adopts one instead of spawning an actor. A spare idle for the system's
    ``idle_thread_timeout`` is stopped (checked by a timer while there are spares); at most
    ``max_idle_threads`` are kept.
    """

    __slots__ = ("_idle_since", "_sweep_armed", "_system")

    def __init__(self, system: ActorSystem) -> None:
        super().__init__(None)
        self._system = system
        self._idle_since: dict[LeafWorker, float] = {}
        self._sweep_armed = False

    def room(self) -> int:
        """How many more spare workers may be kept."""
        return max(0, self._system.max_idle_threads - len(self.parked))

    def keep(self, workers: list[tuple[LeafWorker, threading.Lock]]) -> None:
        """Take ``workers`` (each parked on its signal, which nobody else will release) as
        spares."""
        stopping: list[threading.Lock] = []
        arm = False
        with self.lock:
            now = time.monotonic()
            for worker, signal in workers:
                worker._queue = self
                # Checked after the move: a stop from now on reaches this queue's ``unpark``.
                if worker.abandoned or worker.scope.cancelled:
                    stopping.append(signal)
                    continue
                self.parked[worker] = signal
                self._idle_since[worker] = now
                arm = not self._sweep_armed
            self._sweep_armed = self._sweep_armed or arm
        for signal in stopping:
            signal.release()
        if arm:
            self._arm(self._system.idle_thread_timeout)

    def adopt(self, queue: _WorkQueue, count: int) -> list[tuple[LeafWorker, threading.Lock]]:
        """Up to ``count`` spare workers, now working for ``queue``, and the signals that wake
        them (fewer, or none, if fewer are idle)."""
        adopted: list[tuple[LeafWorker, threading.Lock]] = []
        with self.lock:
            parked = self.parked
            while parked and len(adopted) < count:
                worker, signal = parked.popitem()  # the most recently parked: the warmest
                del self._idle_since[worker]
                worker._queue = queue
                adopted.append((worker, signal))
        return adopted

    def _take_parked(self, worker: LeafWorker) -> threading.Lock | None:
        self._idle_since.pop(worker, None)
        return self.parked.pop(worker, None)

    def sweep(self) -> None:
        """Stop the spares idle for ``idle_thread_timeout``; check again while any are left."""
        timeout = self._system.idle_thread_timeout
        now = time.monotonic()
        expired: list[tuple[LeafWorker, threading.Lock]] = []
        with self.lock:
            for worker, since in list(self._idle_since.items()):  # the oldest first
                if now - since < timeout:
                    break
                signal = self._take_parked(worker)
                if signal is not None:
                    expired.append((worker, signal))
            oldest = next(iter(self._idle_since.values()), None)
            self._sweep_armed = oldest is not None
        for worker, signal in expired:
            worker.handle.stop()  # cancels its scope first: it ends when it wakes
            signal.release()
        if oldest is not None:
            self._arm(max(0.0, oldest + timeout - now))

    def _arm(self, delay: float) -> None:
        try:
            self._system.timers.schedule(delay, _SweepSpares(self), None)
        except TimerServiceStoppedError:
            return  # the system is shutting down: it stops every worker


@dataclass(frozen=True, slots=True)
class _DrainDue:
    """Timer target: the window of a queue's deferred ``_Drain`` is over."""

    queue: _WorkQueue

    def tell(self, _message: object) -> None:
        """Send the deferred ``_Drain`` if it is still due (quick: one lock, one tell)."""
        self.queue.drain_due()


@dataclass(frozen=True, slots=True)
class _SweepSpares:
    """Timer target: stops the spare workers idle for too long."""

    spares: _SpareWorkers

    def tell(self, _message: object) -> None:
        """Run the sweep (on the timer thread: it only stops workers, which is quick)."""
        self.spares.sweep()


def spare_workers(system: ActorSystem) -> _SpareWorkers:
    """The system's spare leaf workers (made on first use)."""
    spares = system._spare_leaf_workers
    if spares is None:
        with system._lock:
            spares = system._spare_leaf_workers
            if spares is None:
                spares = system._spare_leaf_workers = _SpareWorkers(system)
    return spares
