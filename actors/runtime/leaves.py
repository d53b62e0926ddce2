"""Leaf execution: the protocol tools implement, pooled leaf workers, and the pool that runs them.

A *leaf* is the unit of real work (a tool call). The runtime does not know what a tool is; it
knows the ``Leaf`` protocol: ``prepare(input)`` validates an input (raising at once when it is
bad) and returns a ``LeafTask`` that a worker executes. Sync tasks run on pooled
``LeafWorker`` actors (one thread each, reused across calls); async tasks run on the system's
asyncio loop and hold no thread while pending.

A ``LeafPool`` is driven by one manager actor, a state machine that admits jobs onto idle
workers, decides each job's status exactly once (the first of: its result, its deadline, its
cancellation), and gives up on a worker whose tool ignores cancellation for longer than the
cancellation timeout (the thread is abandoned and a fresh worker takes its place).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.errors import CancelledError
from actors.runtime.events import StepFinished, StepProgress, StepStarted
from actors.runtime.futures import ActorFuture
from actors.runtime.results import ErrorInfo, Status, StepResult

if TYPE_CHECKING:
    from actors.runtime.handle import ActorHandle
    from actors.runtime.system import ActorSystem

__all__ = ["Leaf", "LeafEnv", "LeafPool", "LeafTask", "LeafWorker"]


@dataclass(frozen=True, slots=True)
class LeafEnv:
    """What a running leaf may use: its scope, identity and the system's shared resources.

    Attributes:
        scope: the call's cancel scope (deadline included).
        call_id: unique id of this call.
        step: the step's name.
        resources: shared clients and pools (``ActorSystem(resources=...)``).
        system: the system running the leaf (its event bus takes progress events).
    """

    scope: CancelScope
    call_id: str
    step: str
    resources: Mapping[str, Any]
    system: ActorSystem

    def report_progress(self, fraction: float | None, message: str | None) -> None:
        """Publish a ``StepProgress`` event for this call on the system's event bus."""
        events = self.system.events
        if events.has_subscribers:
            events.publish(
                StepProgress(
                    system=self.system.name,
                    step=self.step,
                    call_id=self.call_id,
                    fraction=fraction,
                    message=message,
                )
            )


@runtime_checkable
class LeafTask(Protocol):
    """One prepared, validated leaf execution."""

    @property
    def name(self) -> str:
        """The step name reported in results and events."""
        ...

    @property
    def is_async(self) -> bool:
        """Whether ``execute`` returns a coroutine to run on the system loop."""
        ...

    def execute(self, env: LeafEnv) -> Any:
        """Run the work (sync) or return the coroutine that runs it (async)."""
        ...

    def complete(self, value: Any) -> Any:
        """Check (and possibly coerce) the value the work returned; raise if it is invalid."""
        ...


@runtime_checkable
class Leaf(Protocol):
    """Something that can be called on a leaf worker: tools implement it."""

    @property
    def name(self) -> str:
        """The leaf's name."""
        ...

    def prepare(self, input: object) -> LeafTask:
        """Validate ``input`` and return the task to execute; raise if the input is bad."""
        ...


# -- messages ---------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Job:
    task: LeafTask
    scope: CancelScope
    call_id: str
    future: ActorFuture[StepResult]
    cancellation_timeout: float
    context: contextvars.Context
    worker: LeafWorker | None = None
    started_at: float | None = None
    started_wall: datetime | None = None
    decided: bool = False
    finished: bool = False
    remove_callback: Callable[[], None] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Submit:
    job: _Job


@dataclass(frozen=True, slots=True)
class _Run:
    job: _Job


@dataclass(frozen=True, slots=True)
class _Finished:
    job: _Job
    worker: LeafWorker | None
    status: Status
    value: Any
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class _Cancelled:
    job: _Job


@dataclass(frozen=True, slots=True)
class _AbandonCheck:
    job: _Job
    worker: LeafWorker


# -- status helpers -----------------------------------------------------------------------


def _status_for_cancel(scope: CancelScope) -> Status:
    return Status.TIMEOUT if scope.reason is CancelReason.DEADLINE else Status.CANCELLED


def _cancel_error(scope: CancelScope) -> ErrorInfo:
    if scope.reason is CancelReason.DEADLINE:
        return ErrorInfo(type="castflow.Timeout", message="the deadline passed")
    reason = scope.reason.value if scope.reason is not None else "cancelled"
    return ErrorInfo(type="castflow.Cancelled", message=f"cancelled ({reason})")


def _outcome(job: _Job, call: Callable[[], Any]) -> tuple[Status, Any, ErrorInfo | None]:
    """Run ``call`` (the task and its output check) and classify what happened."""
    try:
        value = call()
    except (CancelledError, asyncio.CancelledError) as exc:
        if job.scope.cancelled:
            return _status_for_cancel(job.scope), None, ErrorInfo.from_exception(exc)
        return Status.ERROR, None, ErrorInfo.from_exception(exc)
    except BaseException as exc:  # noqa: BLE001 - a tool's failure is a result, never a crash
        return Status.ERROR, None, ErrorInfo.from_exception(exc)
    return Status.OK, value, None


# -- the worker ---------------------------------------------------------------------------


class LeafWorker(Actor):
    """A pooled actor that runs sync leaf tasks in its own thread, one at a time."""

    def __init__(self, manager: ActorHandle[Any]) -> None:
        super().__init__()
        self._manager = manager

    def on_receive(self, message: Any) -> Any:
        """Run one job and report it to the pool's manager."""
        if not isinstance(message, _Run):
            return super().on_receive(message)
        job = message.job
        env = LeafEnv(job.scope, job.call_id, job.task.name, self.system.resources, self.system)
        job.started_at = time.monotonic()
        job.started_wall = datetime.now(UTC)

        def run() -> Any:
            job.scope.raise_if_cancelled()
            return job.task.complete(job.task.execute(env))

        status, value, error = _outcome(job, lambda: job.context.run(run))
        if not self.abandoned:
            self._manager.tell(_Finished(job, self, status, value, error))
        return None


# -- the pool -------------------------------------------------------------------------------


class _PoolManager(Actor):
    """The pool's state machine: admission, decisions, abandonment. Never blocks."""

    def __init__(self, pool_name: str, max_workers: int) -> None:
        super().__init__()
        self._pool_name = pool_name
        self._max_workers = max_workers
        self._idle: list[LeafWorker] = []
        self._workers: set[LeafWorker] = set()
        self._queue: deque[_Job] = deque()
        self._running: set[_Job] = set()
        self._worker_names = itertools.count(1)

    def on_receive(self, message: Any) -> Any:
        """Dispatch one pool message."""
        match message:
            case _Submit(job):
                self._admit(job)
            case _Finished(job, worker, status, value, error):
                self._finished(job, worker, status, value, error)
            case _Cancelled(job):
                self._cancelled(job)
            case _AbandonCheck(job, worker):
                self._abandon_if_stuck(job, worker)
            case _:
                return super().on_receive(message)
        return None

    # admission

    def _admit(self, job: _Job) -> None:
        if job.decided:
            return
        job.remove_callback = job.scope.add_callback(lambda _s: self.handle.tell(_Cancelled(job)))
        if job.decided:
            return
        self._publish_started(job)
        if job.task.is_async:
            self._start_async(job)
            return
        worker = self._take_worker()
        if worker is None:
            self._queue.append(job)
            return
        self._dispatch(job, worker)

    def _take_worker(self) -> LeafWorker | None:
        if self._idle:
            return self._idle.pop()
        if len(self._workers) >= self._max_workers:
            return None
        handle = self.system.spawn(
            LeafWorker,
            self.handle,
            name=f"{self._pool_name}-leaf-{next(self._worker_names)}",
            wait=False,
        )
        worker = handle._actor
        assert worker is not None
        self._workers.add(worker)
        return worker

    def _dispatch(self, job: _Job, worker: LeafWorker) -> None:
        job.worker = worker
        self._running.add(job)
        worker.handle.tell(_Run(job))

    def _start_async(self, job: _Job) -> None:
        job.started_at = time.monotonic()
        job.started_wall = datetime.now(UTC)
        env = LeafEnv(job.scope, job.call_id, job.task.name, self.system.resources, self.system)
        try:
            coro: Coroutine[Any, Any, Any] = job.context.run(job.task.execute, env)
        except BaseException as exc:  # noqa: BLE001
            self._decide(job, Status.ERROR, None, ErrorInfo.from_exception(exc))
            return
        self._running.add(job)
        loop = self.system.loop
        manager = self.handle

        def start() -> None:
            task = loop.create_task(coro, context=job.context)

            def cancel_task(_scope: CancelScope) -> None:
                loop.call_soon_threadsafe(task.cancel)

            cancel = job.scope.add_callback(cancel_task)

            def done(finished: asyncio.Task[Any]) -> None:
                cancel()
                status, value, error = _outcome(job, lambda: job.task.complete(finished.result()))
                manager.tell(_Finished(job, None, status, value, error))

            task.add_done_callback(done)

        loop.call_soon_threadsafe(start)

    # decisions

    def _finished(
        self,
        job: _Job,
        worker: LeafWorker | None,
        status: Status,
        value: Any,
        error: ErrorInfo | None,
    ) -> None:
        job.finished = True
        self._running.discard(job)
        self._decide(job, status, value, error)
        if worker is not None and worker in self._workers:
            next_job = self._next_queued()
            if next_job is None:
                self._idle.append(worker)
            else:
                self._dispatch(next_job, worker)

    def _next_queued(self) -> _Job | None:
        while self._queue:
            job = self._queue.popleft()
            if not job.decided:
                return job
        return None

    def _cancelled(self, job: _Job) -> None:
        if job.decided:
            return
        status = _status_for_cancel(job.scope)
        self._decide(job, status, None, _cancel_error(job.scope))
        if job.worker is not None and not job.finished:
            self.system.timers.schedule(
                job.cancellation_timeout, self.handle, _AbandonCheck(job, job.worker)
            )

    def _abandon_if_stuck(self, job: _Job, worker: LeafWorker) -> None:
        if job.finished or worker not in self._workers:
            return
        self._workers.discard(worker)
        self._running.discard(job)
        self.system.abandon(worker, job.cancellation_timeout)
        # The freed capacity lets a queued job start on a fresh worker.
        next_job = self._next_queued()
        if next_job is not None:
            fresh = self._take_worker()
            if fresh is not None:
                self._dispatch(next_job, fresh)
            else:
                self._queue.appendleft(next_job)

    def _decide(self, job: _Job, status: Status, value: Any, error: ErrorInfo | None) -> None:
        if job.decided:
            return
        job.decided = True
        if job.remove_callback is not None:
            job.remove_callback()
        finished_at = time.monotonic()
        result = StepResult(
            name=job.task.name,
            status=status,
            value=value,
            error=error,
            started_at=job.started_at,
            finished_at=finished_at,
            started_wall=job.started_wall,
            finished_wall=datetime.now(UTC),
        )
        job.scope.close()
        job.future.set_result(result)
        events = self.system.events
        if events.has_subscribers:
            events.publish(
                StepFinished(
                    system=self.system.name,
                    step=job.task.name,
                    call_id=job.call_id,
                    status=status,
                    duration=result.duration,
                )
            )

    def _publish_started(self, job: _Job) -> None:
        events = self.system.events
        if events.has_subscribers:
            events.publish(
                StepStarted(system=self.system.name, step=job.task.name, call_id=job.call_id)
            )

    def on_stop(self) -> None:
        """Decide every job still pending as cancelled (the pool is going away)."""
        for job in [*self._running, *self._queue]:
            if not job.decided:
                job.scope.cancel(CancelReason.SHUTDOWN)
                self._decide(job, Status.CANCELLED, None, _cancel_error(job.scope))
        for worker in list(self._workers):
            worker.handle.stop()


class LeafPool:
    """A bounded pool of leaf workers, driven by a manager actor.

    Args:
        system: the owning system.
        max_workers: the most worker threads that run sync tasks at once.
        name: names the manager and worker actors.
    """

    _ids = itertools.count(1)

    def __init__(self, system: ActorSystem, *, max_workers: int, name: str) -> None:
        self.system = system
        self.name = name
        self._manager = system.spawn(
            _PoolManager, name, max_workers, name=f"{name}-leaves", wait=False
        )

    def submit(
        self,
        task: LeafTask,
        *,
        parent: CancelScope,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
    ) -> ActorFuture[StepResult]:
        """Run ``task`` on the pool; the future resolves with its ``StepResult``.

        Args:
            task: the prepared leaf task.
            parent: the scope the call's scope is a child of (cancelling it cancels the call).
            timeout: seconds until the call's deadline.
            cancellation_timeout: grace after cancellation before a stuck sync worker's thread
                is abandoned; the system default if omitted.
        """
        if timeout is not None and timeout < 0:
            msg = f"timeout must be >= 0 seconds, got {timeout}"
            raise ValueError(msg)
        grace = (
            self.system.cancellation_timeout
            if cancellation_timeout is None
            else cancellation_timeout
        )
        future: ActorFuture[StepResult] = ActorFuture()
        job = _Job(
            task=task,
            scope=parent.child(timeout=timeout, name=task.name),
            call_id=f"{task.name}-{next(self._ids)}",
            future=future,
            cancellation_timeout=grace,
            context=contextvars.copy_context(),
        )
        self._manager.tell(_Submit(job))
        if not self._manager.is_alive() and not future.done():
            future.set_result(
                StepResult(
                    name=task.name,
                    status=Status.CANCELLED,
                    error=ErrorInfo(type="castflow.Cancelled", message="the pool has stopped"),
                )
            )
        return future

    def close(self) -> None:
        """Stop admitting; pending jobs are decided as cancelled."""
        self._manager.stop("pool closed")

    def join(self, deadline: float) -> None:
        """Wait until the manager has stopped, at most until ``deadline`` (monotonic)."""
        self._manager.join(max(0.0, deadline - time.monotonic()))
