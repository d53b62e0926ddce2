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
import contextlib
import contextvars
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from actors.runtime._trusted import trusted_result
from actors.runtime._workqueue import (
    Lane,
    _Drain,
    _Wake,
    _WorkQueue,
    spare_workers,
)
from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.errors import CancelledError
from actors.runtime.events import StepFinished, StepProgress, StepStarted
from actors.runtime.futures import ActorFuture
from actors.runtime.inbox import Awaited
from actors.runtime.permits import (
    PermitRegistry,
    PermitRequest,
    PermitTimeoutError,
    Semaphore,
    request_permits,
)
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.timers import TimerServiceStoppedError

if TYPE_CHECKING:
    from actors.runtime.handle import ActorHandle
    from actors.runtime.system import ActorSystem
    from actors.runtime.timers import TimerHandle

__all__ = [
    "Lane",
    "Leaf",
    "LeafDispatcher",
    "LeafEnv",
    "LeafExecutor",
    "LeafJob",
    "LeafPool",
    "LeafTask",
    "LeafWorker",
    "OwnerExecutor",
    "PreparedTask",
    "SubmitLeaf",
    "lane_job",
    "new_job",
]


@dataclass(slots=True, eq=False)
class LeafEnv:
    """What a running leaf may use: its scope, identity and the system's shared resources.

    Read-only by contract (not frozen: one is made per call).

    Attributes:
        scope: the call's cancel scope (deadline included).
        call_id: unique id of this call.
        step: the step's name.
        resources: shared clients and pools (``ActorSystem(resources=...)``).
        system: the system running the leaf (its event bus takes progress events).
        cancellation_timeout: the job's grace after cancellation before its executor gives
            up on the work (a process-isolated task kills its worker then).
        memory_limit: bytes the work may use, for tasks that can enforce it (process-isolated
            ones); ``None`` for no limit.
    """

    scope: CancelScope
    call_id: str
    step: str
    resources: Mapping[str, Any]
    system: ActorSystem
    cancellation_timeout: float | None = None
    memory_limit: int | None = None

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

    def execute(self, env: LeafEnv | None) -> Any:
        """Run the work (sync) or return the coroutine that runs it (async).

        ``env`` is ``None`` only for a task that says it does not use it (see ``uses_env``).
        """
        ...

    def complete(self, value: Any) -> Any:
        """Check (and possibly coerce) the value the work returned; raise if it is invalid."""
        ...


@runtime_checkable
class PreparedTask(LeafTask, Protocol):
    """A sync task that never uses its env, run in one call: what a lane job runs.

    A ``Leaf`` whose ``plain`` attribute is true prepares such tasks (tools without a
    ``ToolContext`` do), so a parallel step may prepare its branches ahead.
    """

    def run(self) -> Any:
        """``complete(execute(None))``: run the work, then check the value it returned."""
        ...


def uses_env(task: LeafTask) -> bool:
    """Whether ``task`` looks at its ``LeafEnv`` while it runs (a task that does not say, does).

    A task may say it does not with a ``uses_env`` attribute: it is then given no env
    (``None``), and its executor may skip making it a scope of its own.
    """
    return bool(getattr(task, "uses_env", True))


@runtime_checkable
class Leaf(Protocol):
    """Something that can be called on a leaf worker: tools implement it.

    A step that is also a ``Leaf`` (it has ``prepare``) is run by parallel steps directly as a
    leaf, without its ``start``: its ``start`` must mean ``start_leaf(self, call)``. A step
    kind that is not a unit of leaf work must not define ``prepare``. A leaf whose ``plain``
    attribute is true prepares ``PreparedTask``s, which a parallel step may prepare ahead.
    """

    @property
    def name(self) -> str:
        """The leaf's name."""
        ...

    def prepare(self, input: object) -> LeafTask:
        """Validate ``input`` and return the task to execute; raise if the input is bad."""
        ...


@runtime_checkable
class LeafExecutor(Protocol):
    """Where leaf tasks run: the system's ``LeafPool``, or a parallel step's branch supervisor.

    A step reaches its executor through ``StepCall.leaves``; leaves nested anywhere under a
    parallel branch run on that step's pooled workers.
    """

    def submit(
        self,
        task: LeafTask,
        *,
        parent: CancelScope,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
        semaphores: tuple[Semaphore, ...] = (),
        run_permits: PermitRegistry | None = None,
    ) -> ActorFuture[StepResult]:
        """Run ``task``; the future resolves with its ``StepResult`` (never an exception)."""
        ...


# -- jobs and messages --------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class LeafJob:
    """One leaf execution as an executor tracks it, from submission to its decision.

    ``own_scope`` is False for a job that runs in its parent's scope (see ``new_job``): its
    owner cancels it through ``LeafDispatcher.cancel``, and nothing closes or cancels that
    scope on the job's behalf.
    """

    task: LeafTask
    scope: CancelScope
    seq: int  # numbers the job among the process's jobs (the suffix of its call id)
    on_decided: Callable[[StepResult], None] | None  # None: its lane's ``on_decided`` is told
    cancellation_timeout: float
    context: contextvars.Context
    semaphores: tuple[Semaphore, ...] = ()
    run_permits: PermitRegistry | None = None
    label: str | None = None
    memory_limit: int | None = None
    permits: PermitRequest | None = None
    worker: LeafWorker | None = None
    started_at: float | None = None
    started_wall: datetime | None = None
    dispatched: bool = False
    decided: bool = False
    finished: bool = False
    remove_callback: Callable[[], None] | None = field(default=None, repr=False)
    permit_timer: TimerHandle | None = field(default=None, repr=False)
    own_scope: bool = True
    # Its worker may decide it as it ends (``on_decided`` may run on any thread; see ``new_job``).
    worker_decides: bool = False
    is_async: bool = False  # the task's, read once
    uses_env: bool = True  # the task's, read once
    lane: Lane | None = None  # the lane it waits in, if its owner prepared it ahead
    tag: Any = None  # the owner's own reference (e.g. its attempt)
    # How the work ended, set by whoever ran it before handing the job in.
    status: Status | None = None
    value: Any = None
    error: ErrorInfo | None = None

    @property
    def call_id(self) -> str:
        """The call's unique id: the task's name and the job's number."""
        return f"{self.task.name}-{self.seq}"

    def release_permits(self) -> None:
        """Give back the job's permits (idempotent)."""
        if self.permits is not None:
            self.permits.release()


_call_ids = itertools.count(1)
_monotonic = time.monotonic
_now = datetime.now


def new_job(
    task: LeafTask,
    *,
    parent: CancelScope,
    timeout: float | None,
    cancellation_timeout: float,
    on_decided: Callable[[StepResult], None],
    semaphores: tuple[Semaphore, ...] = (),
    run_permits: PermitRegistry | None = None,
    label: str | None = None,
    memory_limit: int | None = None,
    cancelled_by_owner: bool = False,
    worker_decides: bool = False,
) -> LeafJob:
    """A job for ``task`` whose scope is a child of ``parent`` (with its own ``timeout``).

    ``label`` names the job's result (the task's name by default); ``memory_limit`` (bytes)
    reaches the task through its ``LeafEnv``. ``cancelled_by_owner`` says the job's owner
    cancels it itself (``LeafDispatcher.cancel``), also when ``parent`` is cancelled: a sync
    job with no timeout, no semaphores and a task that does not use its scope then runs in
    ``parent``'s scope, which costs nothing to make, watch or close. ``worker_decides`` says
    ``on_decided`` may be called on any thread: the worker that ran a sync job then decides
    it as it ends (unless it was decided first), and the owner only accounts for it after.

    Raises:
        ValueError: ``timeout`` is negative.
    """
    if timeout is not None and timeout < 0:
        msg = f"timeout must be >= 0 seconds, got {timeout}"
        raise ValueError(msg)
    is_async = task.is_async
    needs_env = uses_env(task)
    shared = (
        cancelled_by_owner and timeout is None and not semaphores and not is_async and not needs_env
    )
    return LeafJob(
        task=task,
        is_async=is_async,
        uses_env=needs_env,
        scope=parent if shared else parent.child(timeout=timeout, name=task.name),
        own_scope=not shared,
        seq=next(_call_ids),
        on_decided=on_decided,
        cancellation_timeout=cancellation_timeout,
        context=contextvars.copy_context(),
        semaphores=semaphores,
        run_permits=run_permits,
        label=label,
        memory_limit=memory_limit,
        worker_decides=worker_decides,
    )


def lane_job(
    task: PreparedTask,
    lane: Lane,
    *,
    parent: CancelScope,
    cancellation_timeout: float,
    run_permits: PermitRegistry | None,
    label: str,
    tag: Any,
) -> LeafJob:
    """A job to wait in ``lane`` (see :meth:`LeafDispatcher.stand_by`).

    A worker runs it with ``task.run()``, in ``parent``'s scope, with no env; its owner cancels
    it itself (as ``new_job(cancelled_by_owner=True)`` with nothing else). Its decision goes to
    ``lane.on_decided``, with the job: the owner needs no callback made per job.
    """
    # One per branch: the leading fields by position, the rest set after, cost half as much
    # as a dozen keywords matched against the record's fields.
    job = LeafJob(
        task,
        parent,
        next(_call_ids),
        None,
        cancellation_timeout,
        contextvars.copy_context(),
        (),
        run_permits,
        label,
    )
    job.own_scope = False
    job.uses_env = False
    job.lane = lane
    job.tag = tag
    return job


@dataclass(frozen=True, slots=True)
class SubmitLeaf(Awaited):
    """Request to an executor's actor: admit ``job``.

    If the actor stops before it handles the request, the job is decided ``cancelled``
    with ``gone`` as the reason.
    """

    job: LeafJob
    gone: str

    def undelivered(self) -> None:
        """Decide the job, which nobody admitted, as cancelled."""
        job = self.job
        if job.decided:
            return
        job.decided = True  # not admitted: nothing else can decide it
        error = ErrorInfo(type="castflow.Cancelled", message=self.gone)
        assert job.on_decided is not None  # only a lane job has none, and it is never submitted
        job.on_decided(_conclude(job, Status.CANCELLED, None, error))


class OwnerExecutor:
    """The leaf executor of an actor that owns a ``LeafDispatcher``: jobs reach it as messages.

    The system's ``LeafPool`` submits through one to its manager; the steps nested in a
    parallel branch or a stream stage run their leaves on the pooled workers of the branch
    supervisor or stream coordinator that started them, through one each.

    Args:
        system: the owner's system (its cancellation timeout is the default grace).
        owner: the handle of the actor whose dispatcher admits the jobs (``SubmitLeaf``).
        memory_limit: the budget (bytes) given to the process-isolated leaves submitted here.
        gone: why a job submitted after the owner stopped is ``cancelled`` at once.
        direct: the owner's work queue, for an owner that serves callers waiting on futures
            (the system's pool), whose callbacks run on whichever thread settles them. A job
            that needs nothing of the owner to start (sync, no semaphores, nobody watching
            events) goes straight to an idle worker, and a sync job's result reaches its
            future from the worker that ran it (``worker_decides``); the owner accounts for
            both later.
    """

    __slots__ = ("_direct", "_gone", "_handle", "_memory_limit", "_system")

    def __init__(
        self,
        system: ActorSystem,
        owner: ActorHandle[Any],
        *,
        memory_limit: int | None = None,
        gone: str = "the run has ended",
        direct: _WorkQueue | None = None,
    ) -> None:
        self._system = system
        self._handle = owner
        self._memory_limit = memory_limit
        self._gone = gone
        self._direct = direct

    def submit(
        self,
        task: LeafTask,
        *,
        parent: CancelScope,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
        semaphores: tuple[Semaphore, ...] = (),
        run_permits: PermitRegistry | None = None,
    ) -> ActorFuture[StepResult]:
        """Run ``task`` on the owner's workers (called from any thread).

        The future resolves with the task's ``StepResult``, never an exception; if the owner
        has stopped, the result is ``cancelled`` at once.

        Raises:
            ValueError: ``timeout`` is negative.
        """
        future: ActorFuture[StepResult] = ActorFuture()
        grace = self._system.cancellation_timeout
        queue = self._direct
        job = new_job(
            task,
            parent=parent,
            timeout=timeout,
            cancellation_timeout=grace if cancellation_timeout is None else cancellation_timeout,
            on_decided=future.set_result,
            semaphores=semaphores,
            run_permits=run_permits,
            memory_limit=self._memory_limit if getattr(task, "isolated", False) else None,
            worker_decides=queue is not None,
        )
        handle = self._handle
        if (
            queue is not None
            and not job.is_async
            and not job.semaphores
            and not self._system.events.has_subscribers
        ):
            if job.own_scope:
                # Before it is queued: a cut from now on reaches the owner, which decides the
                # job and has its worker abandoned if it runs on (see ``_WorkQueue.put_direct``).
                job.remove_callback = job.scope.add_callback(
                    lambda _s: handle.tell(_Cancelled(job))
                )
            if queue.put_direct(job):
                return future
        # Handled, or, if the owner has stopped or stops first, decided ``cancelled``.
        handle.tell(SubmitLeaf(job, self._gone))
        return future


@dataclass(frozen=True, slots=True)
class _Cancelled:
    job: LeafJob


@dataclass(frozen=True, slots=True)
class _PermitsGranted:
    job: LeafJob


@dataclass(frozen=True, slots=True)
class _PermitWaitOver:
    job: LeafJob


@dataclass(frozen=True, slots=True)
class _AbandonCheck:
    job: LeafJob
    worker: LeafWorker


@dataclass(frozen=True, slots=True)
class _AbandonOrphan:
    """Timer target: gives up a worker left running a cancelled job after its owner stopped."""

    worker: LeafWorker
    grace: float
    running: str

    def tell(self, _message: object) -> None:
        """Abandon the worker unless it has ended (its tool returned within the grace)."""
        if not self.worker.has_ended:
            self.worker.system.abandon(self.worker, self.grace, running=self.running)


def _running(job: LeafJob) -> str:
    """What a stuck worker runs, for its abandonment's report: the job's step name."""
    return job.label or job.task.name


def _env(job: LeafJob, system: ActorSystem) -> LeafEnv:
    return LeafEnv(
        job.scope,
        job.call_id,
        job.task.name,
        system.resources,
        system,
        cancellation_timeout=job.cancellation_timeout,
        memory_limit=job.memory_limit,
    )


# -- status helpers -----------------------------------------------------------------------


def _status_for_cancel(scope: CancelScope) -> Status:
    return Status.TIMEOUT if scope.reason is CancelReason.DEADLINE else Status.CANCELLED


def _cancel_error(scope: CancelScope) -> ErrorInfo:
    if scope.reason is CancelReason.DEADLINE:
        return ErrorInfo(type="castflow.Timeout", message="the deadline passed")
    reason = scope.reason.value if scope.reason is not None else "cancelled"
    return ErrorInfo(type="castflow.Cancelled", message=f"cancelled ({reason})")


def _outcome(job: LeafJob, call: Callable[..., Any], *args: Any) -> None:
    """Run ``call(*args)`` (the task and its output check); record how it ended on ``job``.

    A job its owner has already decided (it was cut) is not described further: its outcome
    is dropped, and formatting a traceback nobody reads would only hold the interpreter lock
    while the cut's result travels to the caller. Work that ends after its scope was cancelled
    (its deadline passed while it ran) ends as that cancellation (see ``_ended_cut``).
    """
    try:
        job.value = call(*args)
    except BaseException as exc:  # noqa: BLE001 - a tool's failure is a result, never a crash
        _failed(job, exc)
    else:
        if _ended_cut(job):
            return
        job.status = Status.OK
        if job.decided:
            job.value = None  # cut: nobody reads it, and a stopped owner must not keep it


def _failed(job: LeafJob, exc: BaseException) -> None:
    """Record on ``job`` that its work raised ``exc`` (see ``_outcome``)."""
    if isinstance(exc, CancelledError | asyncio.CancelledError):
        if job.scope.cancelled:
            # The cancellation itself, not a fault: described as the owner describes a cut,
            # whichever of the two decides the job.
            job.status = _status_for_cancel(job.scope)
            if not job.decided:
                job.error = _cancel_error(job.scope)
            return
        job.status = Status.ERROR
        job.error = ErrorInfo.from_exception(exc)
        return
    if _ended_cut(job):
        return
    job.status = Status.ERROR
    if not job.decided:
        job.error = ErrorInfo.from_exception(exc)


def _ended_cut(job: LeafJob) -> bool:
    """Whether ``job``'s scope was cancelled before its work ended; if so, record that instead.

    Asked on the thread that ran the work, as it ends. The owner decides a job by whichever
    reaches it first, the completion or the cancellation; a deadline reaches it from the
    timer thread, which a loaded machine may hold up for longer than the work overruns. The
    scope, asked here, reads the deadline on its clock, so work that ran past its deadline is
    a ``timeout`` (its value or error dropped) however late the timer is.
    """
    scope = job.scope
    if not scope.cancelled:
        return False
    job.status = _status_for_cancel(scope)
    job.value = None
    if not job.decided:
        job.error = _cancel_error(scope)
    return True


def _execute(job: LeafJob, env: LeafEnv | None) -> Any:
    """Run a sync job's task (unless it was cancelled before it began) and check its output."""
    job.scope.raise_if_cancelled()
    task = job.task
    return task.complete(task.execute(env))


def _run_prepared(job: LeafJob) -> LeafJob:
    """Run a job prepared in a lane (see ``lane_job``): sync, in its parent's scope, with no
    env and no permits, its task a ``PreparedTask``. One is run per branch of a fan-out."""
    job.started_at = _monotonic()
    job.started_wall = _now(UTC)
    task: Any = job.task  # a PreparedTask (no cast: a call per branch)
    scope = job.scope
    # As ``_outcome``, with a success's checks inline.
    try:
        scope.raise_if_cancelled()  # cut before it began: it does not run
        value = job.context.run(task.run)
    except BaseException as exc:  # noqa: BLE001 - a tool's failure is a result, never a crash
        _failed(job, exc)
        return job
    if scope.cancelled:
        _ended_cut(job)
    elif not job.decided:
        job.status = Status.OK
        job.value = value
    else:
        job.status = Status.OK  # cut: nobody reads its value
    return job


def _complete(job: LeafJob, finished: asyncio.Task[Any]) -> Any:
    """Check the output of an async job's finished task (raising what the task raised)."""
    value = finished.result()
    if isinstance(value, _Escaped):
        raise value.error
    return job.task.complete(value)


class _Escaped:
    """What an async tool raised that asyncio would let out of the event loop's thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _contained(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an async tool's coroutine so that ``SystemExit`` or ``KeyboardInterrupt`` in it
    fails its call, as in a sync tool, instead of ending the system's event loop."""
    try:
        return await coro
    except (KeyboardInterrupt, SystemExit) as exc:
        return _Escaped(exc)


def _conclude(job: LeafJob, status: Status, value: Any, error: ErrorInfo | None) -> StepResult:
    """The result of ``job``, just decided: its cancel callback removed, its scope closed."""
    if job.remove_callback is not None:
        job.remove_callback()
    result = trusted_result(
        job.label or job.task.name,
        status,
        value,
        error,
        started_at=job.started_at,
        started_wall=job.started_wall,
    )
    if job.own_scope:
        job.scope.close()
    return result


def _claim(job: LeafJob, queue: _WorkQueue) -> bool:
    """Mark ``job`` decided unless it is already; whether this caller decides it.

    A job its worker may decide (``worker_decides``) is claimed under ``queue``'s lock, which
    the owner and the worker both take; any other is decided on its owner's thread alone.
    """
    if job.decided:
        return False
    if not job.worker_decides:
        job.decided = True
        return True
    with queue.lock:
        if job.decided:
            return False
        job.decided = True
        return True


def _decide_on_worker(job: LeafJob, queue: _WorkQueue) -> None:
    """Decide ``job`` (see ``new_job``'s ``worker_decides``) on the worker that ran it, unless
    its owner decided it first; the owner accounts for it when the job is handed in."""
    if not _claim(job, queue):
        return
    status = job.status
    assert status is not None
    assert job.on_decided is not None
    value, job.value = job.value, None  # the result holds it; the owner takes the job in later
    job.on_decided(_conclude(job, status, value, job.error))


# -- the worker ---------------------------------------------------------------------------


class LeafWorker(Actor):
    """A pooled actor that runs sync leaf tasks in its own thread, one at a time.

    Started by one ``_Wake``, it takes jobs from its pool's queue until the queue is empty,
    then parks until its pool queues more work, until it is stopped or abandoned. Its thread
    is borrowed from the system's reservoir of idle threads when one is parked there, and
    goes back to it when the worker ends (unless the worker was abandoned). A worker of a
    per-run owner outlives it as a spare the next owner adopts (see ``_SpareWorkers``).
    """

    reuse_thread = True
    _fenced_when_abandoned = False  # its late work is a tool's, whose results are fenced by job

    def __init__(self, queue: _WorkQueue) -> None:
        super().__init__()
        self._queue = queue  # whose jobs it takes; changes as it moves between owners
        self._signal = threading.Lock()
        self._signal.acquire()  # held while the worker runs: a parked worker waits for it

    def on_start(self) -> None:
        """Have a stop or an abandonment (both cancel the scope) wake the parked worker."""
        self.scope.add_callback(self._unpark)

    def _unpark(self, _scope: CancelScope) -> None:
        self._queue.unpark(self)

    def on_receive(self, message: Any) -> Any:
        """Run queued jobs, parking while there are none, until this worker is stopping."""
        if not isinstance(message, _Wake):
            return super().on_receive(message)
        signal = self._signal
        done: LeafJob | None = None  # handed in with the next take (one lock for both)
        try:
            # Once abandoned, the job it ran was decided long ago: nothing is handed in.
            while not self.abandoned:
                queue = self._queue
                if self.scope.cancelled:
                    if done is not None:
                        queue.complete(done)
                    break
                job = queue.take(self, done)
                done = None
                if job is None:
                    if queue.park(self, signal):
                        signal.acquire()  # then it may work for another queue (adopted)
                    continue
                if job.lane is not None:
                    done = _run_prepared(job)
                    continue
                done = self._run(job)
                if job.worker_decides and not self.system.events.has_subscribers:
                    _decide_on_worker(job, queue)
        finally:
            self._queue.leave(self)
        return None

    def _run(self, job: LeafJob) -> LeafJob:
        env = _env(job, self.system) if job.uses_env else None
        job.started_at = time.monotonic()
        job.started_wall = datetime.now(UTC)
        try:
            _outcome(job, job.context.run, _execute, job, env)
        finally:
            # Permits come back only when the work has really ended, even if this thread was
            # abandoned meanwhile: the resource behind them was in use until now.
            job.release_permits()
        return job


# -- the dispatcher -----------------------------------------------------------------------


class LeafDispatcher:
    """Runs leaf jobs for an owning actor: permits, workers, decisions, abandonment.

    Not an actor itself: every method runs on the owner's thread, and the owner passes the
    dispatcher's messages to :meth:`handle`. Each job is decided exactly once, by the first of
    its result, its deadline and its cancellation, through ``job.on_decided`` (a job made with
    ``worker_decides`` may be decided on the worker that ran it: see ``new_job``). A sync job
    whose worker ignores cancellation for ``job.cancellation_timeout`` seconds gets its worker
    abandoned and replaced. Workers are spawned on demand, up to ``max_workers`` (``None``:
    as many as jobs running at once), reused, and take queued jobs themselves while busy.

    Args:
        owner: the actor whose thread runs the dispatcher and whose handle gets its messages.
        name: names the worker actors.
        max_workers: the most worker threads at once, or ``None`` for no fixed cap.
        share_workers: the owner lives as long as a run: it adopts the system's spare
            workers before it spawns any (renamed after it), and its idle workers become spares
            when it stops.
    """

    def __init__(
        self,
        owner: Actor,
        name: str,
        max_workers: int | None,
        *,
        share_workers: bool = False,
    ) -> None:
        self._owner = owner
        self._name = name
        self._max_workers = max_workers
        self._spares = spare_workers(owner.system) if share_workers else None
        self._queue = _WorkQueue(owner)
        self._workers: set[LeafWorker] = set()
        self._waiting: set[LeafJob] = set()
        self._running: set[LeafJob] = set()
        self._sync_jobs = 0
        self._worker_names = itertools.count(1)
        self._handoff: list[LeafJob] = []
        self._depth = 0
        self._lanes: set[Lane] = set()

    @classmethod
    def for_run(cls, owner: Actor) -> LeafDispatcher:
        """The dispatcher of an actor that lives as long as its run (a branch supervisor, a
        stream coordinator): workers as many as its running jobs, named after it, and shared
        with later runs as spares."""
        return cls(owner, owner.handle.name, None, share_workers=True)

    @property
    def work_queue(self) -> _WorkQueue:
        """The queue the workers take jobs from."""
        return self._queue

    @property
    def workers(self) -> int:
        """Worker threads owned now (idle or busy; abandoned ones are not counted)."""
        return len(self._workers)

    @property
    def running(self) -> int:
        """Jobs queued for or running on a worker, or running on the event loop, now."""
        return len(self._running)

    def handle(self, message: Any) -> bool:
        """Process one of the dispatcher's messages; False if ``message`` is not one."""
        with self.holding():
            match message:
                case _Drain():
                    self._take_in()
                case SubmitLeaf(job=job):
                    self.admit(job)
                case _Cancelled(job):
                    self._cancelled(job)
                case _PermitsGranted(job):
                    self._granted(job)
                case _PermitWaitOver(job):
                    self._permit_wait_over(job)
                case _AbandonCheck(job, worker):
                    self._abandon_if_stuck(job, worker)
                case _:
                    return False
            return True

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the jobs made ready inside the block; queue them together when it ends.

        The owner wraps the handling of one message in it, so that the jobs a drain of many
        completions starts cost one lock and one wake-up pass. Blocks may nest.
        """
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._hand_off()

    # admission

    def admit(self, job: LeafJob) -> None:
        """Start ``job``: permits first, then a worker (or the event loop for async tasks)."""
        if job.decided:
            return
        if job.own_scope and job.remove_callback is None:  # not watched already (``direct``)
            owner = self._owner.handle
            job.remove_callback = job.scope.add_callback(lambda _s: owner.tell(_Cancelled(job)))
            if job.decided:
                return
        if self._owner.system.events.has_subscribers:
            self._publish_started(job)
        if job.semaphores:
            self._request_permits(job)
            return
        self._ready(job)

    def _request_permits(self, job: LeafJob) -> None:
        owner = self._owner.handle
        system = self._owner.system
        system_permits = system.permits
        run_permits = job.run_permits

        def registry(scope: str) -> PermitRegistry:
            if scope == "run" and run_permits is not None:
                return run_permits
            return system_permits

        inline = [True]

        def on_granted() -> None:
            # While request_permits runs, a grant is seen below through ``granted``.
            if not inline[0]:
                owner.tell(_PermitsGranted(job))

        try:
            job.permits = request_permits(job.semaphores, registry, on_granted)
        except Exception as exc:  # noqa: BLE001 - a clashing definition fails the job
            self._decide(job, Status.ERROR, None, ErrorInfo.from_exception(exc))
            return
        inline[0] = False
        if job.permits.granted:
            self._ready(job)
            return
        self._waiting.add(job)
        wait = min(sem.timeout for sem in job.semaphores)
        job.permit_timer = system.timers.schedule(wait, owner, _PermitWaitOver(job))

    def _granted(self, job: LeafJob) -> None:
        if job not in self._waiting:
            return  # started inline, or already decided
        self._waiting.discard(job)
        if job.permit_timer is not None:
            job.permit_timer.cancel()
        if job.decided:
            job.release_permits()
            return
        self._ready(job)

    def _permit_wait_over(self, job: LeafJob) -> None:
        if job.decided or job not in self._waiting or job.permits is None:
            return
        waiting_for = job.permits.waiting_for
        if waiting_for is None:
            return  # granted: the _PermitsGranted message is on its way
        self._waiting.discard(job)
        job.permits.cancel()
        msg = (
            f"{job.task.name!r} waited {waiting_for.timeout} s for a permit of semaphore "
            f"{waiting_for.name!r} ({waiting_for.permits} permits, all held)"
        )
        self._decide(job, Status.ERROR, None, ErrorInfo.from_exception(PermitTimeoutError(msg)))

    def _take_in(self) -> None:
        """Take in what the workers handed in: finished jobs, and jobs started from lanes."""
        direct, started, finished = self._queue.take_done()
        if direct:
            self._running.update(direct)
            self._sync_jobs += len(direct)
        if started:
            self._lane_started(started, taken=True)
        if finished:
            self._finished_all(finished)
        # ``dry`` is set under the queue lock before the worker tells the owner. The lanes are
        # listed first: a notice's handling may close lanes, which leaves ``_lanes``.
        dry = [lane for lane in self._lanes if lane.dry]
        for lane in dry:
            lane.dry = False
            if lane.on_dry is not None:
                lane.on_dry()

    def _finished_all(self, jobs: list[LeafJob]) -> None:
        """Decide the jobs workers finished, in the order they were handed in."""
        plain = not self._owner.system.events.has_subscribers
        running = self._running
        for job in jobs:
            lane = job.lane
            if lane is None or not plain:
                self._finished(job)
                continue
            # A lane job (see ``lane_job``: sync, in its parent's scope, nothing to remove or
            # close) decided as ``_finished`` decides it, without its three calls: one of these
            # ends per branch of a fan-out.
            job.finished = True
            if job in running:
                running.discard(job)
                self._sync_jobs -= 1
            value, job.value = job.value, None  # the result holds it; a job outlives its run
            if job.decided:
                continue
            job.decided = True
            status = job.status
            assert status is not None
            assert job.label is not None
            lane.on_decided(
                job,
                trusted_result(
                    job.label,
                    status,
                    value,
                    job.error,
                    started_at=job.started_at,
                    started_wall=job.started_wall,
                ),
            )

    # lanes

    def open_lane(
        self,
        limit: int,
        admit: Callable[[int], bool | None],
        on_start: Callable[[list[LeafJob]], None],
        on_decided: Callable[[LeafJob, StepResult], None],
        *,
        coalesce: bool = False,
        on_dry: Callable[[], None] | None = None,
    ) -> Lane:
        """A lane for jobs prepared ahead (see ``Lane``); close it with :meth:`close_lane`."""
        lane = Lane(limit, admit, on_start, on_decided, coalesce=coalesce, on_dry=on_dry)
        self._lanes.add(lane)
        return lane

    def stand_by(self, lane: Lane, jobs: list[LeafJob]) -> None:
        """Queue ``jobs`` (made by ``lane_job``) in ``lane``, in order; each starts when it fits."""
        if not jobs:
            return
        with self._queue.lock:
            lane.standby.extend(jobs)
            started = lane.start_locked()
        self._started_here(started)

    def reserve_slot(self, lane: Lane) -> bool:
        """Take a slot of ``lane`` for work run otherwise, if one is free and nothing waits."""
        with self._queue.lock:
            if lane.closed or lane.standby or lane.running >= lane.limit:
                return False
            lane.running += 1
            return True

    def release_slot(self, lane: Lane) -> None:
        """Give back a slot taken with :meth:`reserve_slot`; what waits may start."""
        with self._queue.lock:
            lane.running -= 1
            started = lane.start_locked()
            last = lane.sealed and lane.running == 0
        self._started_here(started)
        if last:
            # The successes of a sealed lane's last jobs wait for every slot to be free; the
            # last one was this slot, and no completion of the lane's will follow.
            self._queue.drain_due()

    def start_waiting(self, lane: Lane) -> None:
        """Start what waits in ``lane`` and fits (after ``admit`` said "not now")."""
        with self._queue.lock:
            started = lane.start_locked()
        self._started_here(started)

    def take_standby(self, lane: Lane) -> list[LeafJob]:
        """Remove and return the jobs waiting in ``lane`` (they never started)."""
        with self._queue.lock:
            jobs = list(lane.standby)
            lane.standby.clear()
        return jobs

    def notify_when_taken(self, lane: Lane) -> None:
        """Call ``lane.on_dry`` once workers have taken every job queued so far."""
        with self._queue.lock:
            lane.dry_notice = True

    def seal_lane(self, lane: Lane) -> None:
        """Say that nothing more will be queued in ``lane`` (see ``Lane.coalesce``)."""
        with self._queue.lock:
            lane.sealed = True

    def close_lane(self, lane: Lane) -> None:
        """Start nothing more from ``lane``; the jobs waiting in it are dropped (never started)."""
        with self._queue.lock:
            lane.closed = True
            lane.standby.clear()
        self._lanes.discard(lane)

    def _started_here(self, jobs: list[LeafJob]) -> None:
        if jobs:
            self._lane_started(jobs, taken=False)
            if not self._depth:
                self._hand_off()

    def _lane_started(self, jobs: list[LeafJob], *, taken: bool) -> None:
        """Account for lane jobs that started; queue them unless workers have ``taken`` them.

        Each lane's owner hears of its own jobs, in the order they started.
        """
        publish = self._owner.system.events.has_subscribers
        running = self._running
        lane = jobs[0].lane
        one_lane = True
        for job in jobs:
            if publish:
                self._publish_started(job)
            job.dispatched = True
            running.add(job)
            one_lane = one_lane and job.lane is lane
        self._sync_jobs += len(jobs)
        if not taken:
            self._handoff.extend(jobs)
        if one_lane:  # the usual case: no grouping
            assert lane is not None
            lane.on_start(jobs)
            return
        by_lane: dict[Lane | None, list[LeafJob]] = {}  # workers serve several batches
        for job in jobs:
            by_lane.setdefault(job.lane, []).append(job)
        for each, started in by_lane.items():
            assert each is not None
            each.on_start(started)

    def _ready(self, job: LeafJob) -> None:
        job.dispatched = True
        self._running.add(job)
        if job.is_async:
            self._start_async(job)
            return
        self._sync_jobs += 1
        self._handoff.append(job)
        if not self._depth:
            self._hand_off()

    def _hand_off(self) -> None:
        """Queue the sync jobs made ready, waking parked workers or spawning new ones."""
        jobs, self._handoff = self._handoff, []
        if not jobs:
            return
        unwoken = self._queue.put(jobs)
        # A worker per sync job at most: a busy worker takes the next queued job itself.
        cap = self._sync_jobs if self._max_workers is None else self._max_workers
        self._add_workers(min(unwoken, cap - len(self._workers)))

    def _add_workers(self, count: int) -> None:
        """Put ``count`` more workers on the queue: adopted spares first, then new ones.

        The spares are adopted together and renamed, then parked on the queue, which wakes
        one: each that takes a job wakes the next while jobs wait. Woken all at once, they
        would each cost this thread a wake-up call, then queue for the interpreter lock.
        """
        if count <= 0:
            return
        adopted = [] if self._spares is None else self._spares.adopt(self._queue, count)
        for worker, _signal in adopted:
            name = f"{self._name}-leaf-{next(self._worker_names)}"
            self._owner.system._rename(worker, name)  # before it runs a job of this owner
            self._workers.add(worker)
        for _ in range(count - len(adopted)):
            self._spawn_worker()
        if adopted:
            self._queue.park_adopted(adopted)

    def _spawn_worker(self) -> None:
        name = f"{self._name}-leaf-{next(self._worker_names)}"
        handle = self._owner.system.spawn(LeafWorker, self._queue, name=name, wait=False)
        spawned = handle._actor
        assert spawned is not None
        self._workers.add(spawned)
        self._queue.expect(spawned)  # before it can take a job
        handle.tell(_Wake())

    def _start_async(self, job: LeafJob) -> None:
        job.started_at = time.monotonic()
        job.started_wall = datetime.now(UTC)
        system = self._owner.system
        env = _env(job, system) if job.uses_env else None
        try:
            coro: Coroutine[Any, Any, Any] = job.context.run(job.task.execute, env)
        except BaseException as exc:  # noqa: BLE001
            job.release_permits()
            self._forget(job)
            self._decide(job, Status.ERROR, None, ErrorInfo.from_exception(exc))
            return
        loop = system.loop
        queue = self._queue

        def start() -> None:
            task = loop.create_task(_contained(coro), context=job.context)

            def cancel_task(_scope: CancelScope) -> None:
                loop.call_soon_threadsafe(task.cancel)

            cancel = job.scope.add_callback(cancel_task)

            def done(finished: asyncio.Task[Any]) -> None:
                cancel()
                _outcome(job, _complete, job, finished)
                job.release_permits()
                queue.complete(job)

            task.add_done_callback(done)

        loop.call_soon_threadsafe(start)

    # decisions

    def _finished(self, job: LeafJob) -> None:
        job.finished = True
        self._forget(job)
        assert job.status is not None
        value, job.value = job.value, None  # the result holds it now; a job outlives its run
        self._decide(job, job.status, value, job.error)

    def _forget(self, job: LeafJob) -> None:
        """``job`` no longer needs a worker (it ended, was abandoned, or was never taken)."""
        if job in self._running:
            self._running.discard(job)
            if not job.is_async:
                self._sync_jobs -= 1

    def cancel(self, job: LeafJob) -> None:
        """Cancel ``job`` (one in its parent's scope: see ``new_job``) as its scope would be.

        It is decided ``timeout`` if the parent's deadline has passed, else ``cancelled``; a
        worker that runs on past the job's grace is abandoned.
        """
        self._cancelled(job)

    def _cancelled(self, job: LeafJob) -> None:
        if not self._decide(job, _status_for_cancel(job.scope), None, _cancel_error(job.scope)):
            return  # decided already: it ended, or was cut otherwise
        if not job.dispatched:
            # It never got past its permits: nothing runs, so they come back now.
            self._waiting.discard(job)
            if job.permit_timer is not None:
                job.permit_timer.cancel()
            job.release_permits()
            return
        with self._queue.lock:
            worker = job.worker  # set by the worker that took it, under this lock
        if worker is None:
            # Still queued: the worker that takes it skips it (and gives back its permits).
            self._forget(job)
            return
        if not job.finished:
            self._owner.system.timers.schedule(
                job.cancellation_timeout, self._owner.handle, _AbandonCheck(job, worker)
            )

    def _abandon_if_stuck(self, job: LeafJob, worker: LeafWorker) -> None:
        # Take in what workers finished first: a job that ended right at its grace may have
        # been handed in (its worker parked or running another job) and not drained yet.
        self._take_in()
        if job.finished or worker not in self._workers:
            return
        self._workers.discard(worker)
        self._forget(job)
        self._owner.system.abandon(worker, job.cancellation_timeout, running=_running(job))
        queue = self._queue
        with queue.lock:
            replace = bool(queue.ready) and not queue.parked
        if replace:
            # The freed capacity lets a queued job start on a fresh worker.
            self._add_workers(1)

    def _decide(self, job: LeafJob, status: Status, value: Any, error: ErrorInfo | None) -> bool:
        """Decide ``job`` with this outcome unless it was decided already; whether it was now."""
        if not _claim(job, self._queue):
            return False
        result = _conclude(job, status, value, error)
        system = self._owner.system
        events = system.events
        if events.has_subscribers:
            events.publish(
                StepFinished(
                    system=system.name,
                    step=job.task.name,
                    call_id=job.call_id,
                    status=status,
                    duration=result.duration,
                )
            )
        if job.lane is not None:
            job.lane.on_decided(job, result)
        else:
            assert job.on_decided is not None  # only a lane job has none
            job.on_decided(result)
        return True

    def _publish_started(self, job: LeafJob) -> None:
        system = self._owner.system
        events = system.events
        if events.has_subscribers:
            events.publish(StepStarted(system=system.name, step=job.task.name, call_id=job.call_id))

    def _close_lanes_locked(self) -> None:
        """Under the queue lock: close every lane; count the jobs workers started from them."""
        queue = self._queue
        for lane in self._lanes:
            lane.closed = True
            lane.standby.clear()
        self._lanes.clear()
        # Started from a lane and not taken in yet: they run, so they are cut like the others.
        for job in queue.started:
            job.dispatched = True
            self._running.add(job)
        queue.started = []

    def stop(self) -> None:
        """Decide every pending job as cancelled and stop the workers (the owner is ending)."""
        queue = self._queue
        with queue.lock:
            queue.closed = True
            never_taken = list(queue.ready)
            queue.ready.clear()
            # Queued by callers straight to workers and not accounted yet: decided below.
            self._running.update(queue.direct)
            queue.direct = []
            queue.cancel_deferred_locked()
            self._close_lanes_locked()
        for job in [*self._running, *self._waiting]:
            if not job.decided:
                if job.own_scope:
                    job.scope.cancel(CancelReason.SHUTDOWN)
                    error = _cancel_error(job.scope)
                else:
                    error = ErrorInfo(type="castflow.Cancelled", message="cancelled (shutdown)")
                self._decide(job, Status.CANCELLED, None, error)
            if not job.dispatched:
                if job.permit_timer is not None:
                    job.permit_timer.cancel()
                job.release_permits()
        for job in never_taken:
            job.release_permits()
        with queue.lock:
            busy = [
                (job.worker, job.cancellation_timeout, _running(job))
                for job in self._running
                if job.worker is not None and not job.finished
            ]
        self._waiting.clear()
        self._running.clear()
        self._sync_jobs = 0
        spares = self._spares
        kept: set[LeafWorker] = set()
        if spares is not None:
            # An idle worker of a per-run owner serves the next one; the others end. One that
            # ran a job this owner did not see finish ends too: its abandon check is pending.
            running = {worker for worker, _grace, _step in busy}
            idle = [worker for worker in self._workers if worker not in running]
            kept = queue.hand_over(idle[: spares.room()], spares)
        for worker in list(self._workers):
            if worker not in kept:
                worker.handle.stop()
        # A busy worker's abandon check would come to this owner, which is ending: the system's
        # timer gives up the ones whose tool ignores its cancellation past the grace.
        for worker, grace, step in busy:
            try:
                orphan = _AbandonOrphan(worker, grace, step)
                self._owner.system.timers.schedule(grace, orphan, None)
            except TimerServiceStoppedError:
                return  # the system is shutting down: it abandons the threads still running


# -- the pool -------------------------------------------------------------------------------


class _PoolManager(Actor):
    """The system pool's actor: a ``LeafDispatcher`` with a fixed number of workers."""

    _fenced_when_abandoned = False

    def __init__(self, pool_name: str, max_workers: int) -> None:
        super().__init__()
        self._dispatcher = LeafDispatcher(self, pool_name, max_workers)

    @property
    def work_queue(self) -> _WorkQueue:
        """The queue its workers take jobs from (callers may queue to idle workers directly)."""
        return self._dispatcher.work_queue

    def on_receive(self, message: Any) -> Any:
        """Pass one pool message to the dispatcher."""
        if not self._dispatcher.handle(message):
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        """Decide every job still pending as cancelled (the pool is going away)."""
        self._dispatcher.stop()

    def on_failure(self, *_: object) -> None:
        """Decide every job still pending as cancelled, as a stop does: no caller is left
        waiting (a worker it could not start as the system shut down, say)."""
        self._dispatcher.stop()


class LeafPool:
    """A bounded pool of leaf workers, driven by a manager actor.

    Args:
        system: the owning system.
        max_workers: the most worker threads that run sync tasks at once.
        name: names the manager and worker actors.
    """

    def __init__(self, system: ActorSystem, *, max_workers: int, name: str) -> None:
        self.system = system
        self.name = name
        self._manager = system.spawn(
            _PoolManager, name, max_workers, name=f"{name}-leaves", wait=False
        )
        # Its callers wait on futures: a call goes straight to an idle worker, and its result
        # from the worker to the caller, two handoffs fewer than through the manager's thread.
        manager = self._manager._actor
        assert manager is not None  # made by spawn, which returns once it exists
        self._executor = OwnerExecutor(
            system, self._manager, gone="the pool has stopped", direct=manager.work_queue
        )

    def submit(
        self,
        task: LeafTask,
        *,
        parent: CancelScope,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
        semaphores: tuple[Semaphore, ...] = (),
        run_permits: PermitRegistry | None = None,
    ) -> ActorFuture[StepResult]:
        """Run ``task`` on the pool; the future resolves with its ``StepResult``.

        Args:
            task: the prepared leaf task.
            parent: the scope the call's scope is a child of (cancelling it cancels the call).
            timeout: seconds until the call's deadline.
            cancellation_timeout: grace after cancellation before a stuck sync worker's thread
                is abandoned; the system default if omitted.
            semaphores: semaphores the call holds a permit of while it runs.
            run_permits: the run's registry, for semaphores scoped to one run.

        Raises:
            ValueError: ``timeout`` is negative.
        """
        return self._executor.submit(
            task,
            parent=parent,
            timeout=timeout,
            cancellation_timeout=cancellation_timeout,
            semaphores=semaphores,
            run_permits=run_permits,
        )

    def close(self) -> None:
        """Stop admitting; pending jobs are decided as cancelled."""
        self._manager.stop("pool closed")

    def join(self, deadline: float) -> None:
        """Wait until the manager has stopped, at most until ``deadline`` (monotonic)."""
        self._manager.join(max(0.0, deadline - time.monotonic()))
