"""``BranchSupervisor``: admission, deadlines, cancellation and retries of parallel branches.

One branch supervisor serves one parallel definition node in one run, for every instance of
that node (a *batch* each). It is a state machine: it never blocks, and it knows nothing of
tools or workflows, only the runtime's ``Step`` and ``Leaf`` protocols.

For each batch it pulls branches lazily from the batch's iterator while fewer than
``max_concurrent_executions`` are in flight, so a batch of 100,000 items holds only the
running ones. A branch that is a leaf (a tool) runs on the supervisor's own pooled workers
(spawned on demand, reused across branches, batches and instances); any other step is started
through ``Step.start`` with the supervisor as the executor of every leaf beneath it. Each
attempt gets its own cancel scope and deadline; a failed attempt may be retried after a
backoff (the branch keeps its slot meanwhile). Every final result goes to the batch's
``report`` callback (the gather actor), tagged with the branch's index.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeGuard

from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.errors import CastflowError
from actors.runtime.leaves import (
    Lane,
    Leaf,
    LeafDispatcher,
    LeafJob,
    OwnerExecutor,
    lane_job,
    new_job,
)
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import Step
from actors.runtime.timers import TimerHandle
from supervisors.batches import (
    BatchCut,
    BatchNotice,
    Branch,
    BranchBatch,
    BranchesExhausted,
    BranchReport,
    BranchReports,
    CancelRemaining,
    CutBranches,
    MemoryLimitUnsupportedError,
    StartBatch,
    TooManyAbandonedThreadsError,
)
from supervisors.limits import ResourceLimits

__all__ = ["BranchSupervisor"]

logger = logging.getLogger("castflow.supervisors")


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StepReplied:
    key: str
    index: int
    token: int
    result: StepResult


@dataclass(frozen=True, slots=True)
class _GatherCaughtUp:
    key: str


@dataclass(frozen=True, slots=True)
class _RetryDue:
    key: str
    index: int
    token: int


# -- state --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Attempt:
    branch: Branch
    number: int = 0
    token: int = 0
    scope: CancelScope | None = None  # the running attempt's own scope, if it has one
    job: LeafJob | None = None  # a running leaf in the batch's scope, cancelled by hand
    slot: bool = False  # holds a slot of the batch's lane (an attempt run the usual way)
    retry_timer: TimerHandle | None = None
    first_started_at: float | None = None
    first_started_wall: datetime | None = None


@dataclass(slots=True, eq=False)
class _BatchState:
    batch: BranchBatch
    limit: int
    # A branch started from the lane is its job (``tag``: the branch) until it ends: one record
    # per branch of a fan-out, not an attempt besides.
    running: dict[int, _Attempt | LeafJob] = field(default_factory=dict)
    admitted: int = 0
    exhausted: bool = False
    cancelled: str | None = None
    # A batch of plain leaves prepares its branches ahead in a lane its workers start them
    # from; a branch that cannot wait there is held until a slot frees up after them.
    lane: Lane | None = None
    held: Branch | None = None
    pulled: int = 0
    source_error: ErrorInfo | None = None
    notice_sent: bool = False
    warmed: bool = False  # the lane's first slot's worth has started
    # Whether the step of the last branch prepared is a plain leaf: branches mostly share one.
    last_step: Step[Any] | None = None
    last_plain: bool = False


_Final = tuple[_BatchState, Branch, StepResult, _Attempt | None]
"""A branch's final result (and its attempt, unless it ran from the lane), reported once the
slots it freed are refilled."""


# -- the supervisor -----------------------------------------------------------------------

_MIN_BACKLOG = 64
"""The fewest results a batch may have on their way to its gather before admission waits."""


class BranchSupervisor(Actor):
    """Admits, times, cancels and retries the branches of one parallel node in a run.

    Spawned by the node's coordinator (one per node per run, shared by every instance);
    driven by ``StartBatch`` and ``CancelRemaining`` messages. See the module docstring.

    Its pooled workers are named after it and forgotten by the system when they end.
    """

    reuse_thread = True  # one per parallel node per run: a parked thread saves a thread start
    _fenced_when_abandoned = False

    def __init__(self) -> None:
        super().__init__()
        self._batches: dict[str, _BatchState] = {}
        self._finals: list[_Final] = []
        self._outbox: list[tuple[Callable[[BranchReports], None], list[Any]]] = []

    def on_start(self) -> None:
        """Set up the workers' dispatcher and the executor nested steps use."""
        self._leaves = LeafDispatcher.for_run(self)
        self._executor = OwnerExecutor(self.system, self.handle)

    @property
    def executor(self) -> OwnerExecutor:
        """The leaf executor of every step nested in this supervisor's branches."""
        return self._executor

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message of the branch protocol."""
        # The leaf jobs this message starts reach the workers' queue together.
        with self._leaves.holding():
            match message:
                case _StepReplied(key, index, token, result):
                    self._replied(key, index, token, result)
                case StartBatch(batch):
                    self._start(batch)
                case CancelRemaining(key, why):
                    self._cancel_remaining(key, why)
                case CutBranches(key, why):
                    self._cut(key, why)
                case _RetryDue(key, index, token):
                    self._retry_due(key, index, token)
                case _GatherCaughtUp(key):
                    self._caught_up(key)
                case _:
                    if not self._leaves.handle(message):
                        return super().on_receive(message)
            self._settle()
        # Everything this message produced for the gathers goes out together: a drain of
        # many completed leaves costs the gather one wake-up, not one per branch.
        self._flush()
        return None

    def on_stop(self) -> None:
        """Cancel every branch still running (the run or the system is ending)."""
        for state in list(self._batches.values()):
            self._cancel_remaining(state.batch.key, "the run has ended")
        self._leaves.stop()
        self._settle()
        self._flush()
        for state in self._batches.values():
            _close_source(state.batch)
        # An ended actor is freed by the cyclic collector: it must not keep the batches (and
        # through their calls, the run's result) that long.
        self._batches.clear()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Cut every branch and stop the workers, as a stop does: nothing is left running."""
        self.on_stop()

    # -- admission ----------------------------------------------------------------------

    def _start(self, batch: BranchBatch) -> None:
        state = _BatchState(batch, _admission_limit(batch.limits))
        self._batches[batch.key] = state
        gate = batch.gate
        gate.backlog_limit = max(2 * state.limit, _MIN_BACKLOG) if gate.paced else sys.maxsize
        handle, key = self.handle, batch.key
        gate.on_room = lambda: handle.tell(_GatherCaughtUp(key))
        if _lane_fits(batch):
            state.lane = self._leaves.open_lane(
                state.limit,
                self._lane_admission(batch),
                functools.partial(self._lane_started, state),
                functools.partial(self._lane_done, state),
                coalesce=batch.successes_can_wait,
                on_dry=functools.partial(self._lane_taken, state),
            )
        self._conclude(state, self._admit(state))

    def _caught_up(self, key: str) -> None:
        state = self._batches.get(key)
        if state is not None:
            self._conclude(state, self._admit(state))

    def _settle(self) -> None:
        """Refill the slots of the branches that ended during this message, then report them.

        One admission pass per batch, however many branches a drain brought back. Refilling
        first makes each report's admitted count include the branches that took the freed
        slots: if a result decides the batch, the gather records those as cut (they
        started), never as skipped (which means they never ran). A refill whose branch fails
        at once (a bad input) ends it here too: the loop reports it in its next round.
        """
        while self._finals:
            finals, self._finals = self._finals, []
            states = list({final[0]: None for final in finals})  # each once, in order
            notices = [self._admit(state) for state in states]
            lane_report: BranchReport | None = None  # the last one, while lane results follow
            for state, branch, result, attempt in finals:
                if attempt is not None:
                    lane_report = None
                    self._report(state, branch, result, attempts=attempt.number, attempt=attempt)
                    continue
                # From the lane: its job was named after the branch, and ran once. Results of
                # one batch that follow each other go in one report.
                state.batch.gate.sent += 1
                if lane_report is not None and lane_report.key == state.batch.key:
                    lane_report.indices.append(branch.index)
                    lane_report.results.append(result)
                    continue
                lane_report = BranchReport(
                    state.batch.key, [branch.index], [result], state.admitted
                )
                self._emit(state, lane_report)
            for state, notice in zip(states, notices, strict=True):
                self._conclude(state, notice)

    def _conclude(self, state: _BatchState, notice: BranchesExhausted | None) -> None:
        """Send the notice that the batch's branches ran out, if they did; forget it if done."""
        if notice is not None:
            self._emit(state, notice)
        self._forget_if_done(state)

    def _admit(self, state: _BatchState) -> BranchesExhausted | None:
        """Admit what fits; return the notice that the branches ran out, for the caller to send."""
        if state.lane is not None:
            return self._admit_to_lane(state, state.lane)
        batch = state.batch
        gate = batch.gate
        running = state.running
        if batch.call.scope.cancelled:
            return None  # the coordinator's CutBranches is on its way
        refusal = self._refusal(batch)  # checked once a pass: new abandonments come rarely
        while not state.exhausted and state.cancelled is None and len(running) < state.limit:
            branch = self._pull(state)
            if branch is None:
                if state.exhausted:
                    # Every branch pulled was admitted: their count is the total.
                    return BranchesExhausted(batch.key, state.admitted, state.source_error)
                break
            if not gate.admit():
                break  # the gather has decided: its CancelRemaining is on its way
            state.admitted += 1
            if refusal is not None:
                self._report(state, branch, _refused(branch, refusal), attempts=0)
                continue
            attempt = _Attempt(branch)
            running[branch.index] = attempt
            self._begin_attempt(state, attempt)
        return None

    def _pull(self, state: _BatchState) -> Branch | None:
        """The batch's next branch, or ``None``: the gather lags behind, or the branches ran out
        (``state.exhausted``, with ``state.source_error`` if their source raised)."""
        gate = state.batch.gate
        if gate.sent - gate.taken >= gate.backlog_limit and gate.stall():
            return None  # admission resumes when the gather catches up (_GatherCaughtUp)
        try:
            branch = next(state.batch.branches)
        except StopIteration:
            state.exhausted = True
            return None
        except BaseException as exc:  # noqa: BLE001 - a failing item source ends the batch
            state.exhausted = True
            state.source_error = ErrorInfo.from_exception(exc)
            return None
        state.pulled += 1
        return branch

    # -- lanes: plain leaves prepared ahead, started by the workers ------------------------

    def _lane_admission(self, batch: BranchBatch) -> Callable[[int], bool | None]:
        """What is asked (under the queue lock) before branches of ``batch`` start from its lane."""
        system = self.system
        gate = batch.gate
        cap = batch.limits.max_abandoned_threads

        def admit(count: int) -> bool | None:
            alive = system.abandoned_alive()
            if alive >= cap and alive > 0:
                return None  # the supervisor refuses them on its next pass
            return gate.admit(count)

        return admit

    def _admit_to_lane(self, state: _BatchState, lane: Lane) -> BranchesExhausted | None:
        """Prepare branches ahead into the lane; start a held branch once a slot is its turn."""
        batch = state.batch
        if batch.call.scope.cancelled:
            return None  # the coordinator's CutBranches is on its way
        refusal = self._refusal(batch)
        self._resume_waiting(state, lane, refusal)
        prepared: list[LeafJob] = []  # queued in the lane together, under one lock
        while state.cancelled is None:
            if state.held is not None:
                self._leaves.stand_by(lane, prepared)  # ahead of the held branch, in order
                prepared = []
                if not self._start_held(state, lane, refusal):
                    break
                continue
            if state.exhausted:
                break
            if len(lane.standby) + len(prepared) >= state.limit:
                if not prepared:
                    break  # a slot's worth waits ahead of the running ones
                # Those that fit start now; the next slot's worth is prepared behind them.
                self._leaves.stand_by(lane, prepared)
                prepared = []
                if not state.warmed and not lane.standby:
                    # The first slot's worth starts: the next is prepared once the workers
                    # have taken it, not while they wait for this thread to let them run.
                    state.warmed = True
                    self._leaves.notify_when_taken(lane)
                    break
                continue
            room = state.limit - len(lane.standby) - len(prepared)
            if not self._prepare(state, lane, refusal, prepared, room):
                break
        self._leaves.stand_by(lane, prepared)
        return self._lane_exhausted(state, lane)

    def _resume_waiting(
        self, state: _BatchState, lane: Lane, refusal: CastflowError | None
    ) -> None:
        """What waits in the lane: refused while too many threads are abandoned, else started
        as it fits (it was left waiting while one was)."""
        if refusal is not None:
            self._refuse_waiting(state, lane, refusal)
        else:
            self._leaves.start_waiting(lane)

    def _prepare(
        self,
        state: _BatchState,
        lane: Lane,
        refusal: CastflowError | None,
        prepared: list[LeafJob],
        room: int,
    ) -> bool:
        """Pull up to ``room`` branches and prepare each as a job to wait in the lane, onto
        ``prepared``; stop at one that must be held (``state.held``: not a plain leaf, or its
        input fails to prepare, which it then fails with when started the usual way). False
        if the branches ran out or the gather lags behind."""
        batch = state.batch
        call = batch.call
        for _ in range(room):
            branch = self._pull(state)
            if branch is None:
                return False
            step = branch.step
            if step is not state.last_step:
                state.last_step, state.last_plain = step, _is_plain_leaf(step)
            if (
                refusal is not None
                or not state.last_plain
                or branch.timeout is not None
                or branch.semaphores
            ):
                state.held = branch
                return True
            leaf: Any = step  # a plain leaf: it prepares ``PreparedTask``s (no cast: a call each)
            try:
                task = leaf.prepare(branch.input())
            except Exception:  # noqa: BLE001 - held: started the usual way, it fails then
                state.held = branch
                return True
            prepared.append(
                lane_job(
                    task,
                    lane,
                    parent=call.scope,
                    cancellation_timeout=batch.cancellation_timeout,
                    run_permits=call.env.permits,
                    label=branch.name,
                    tag=branch,
                )
            )
        return True

    def _start_held(self, state: _BatchState, lane: Lane, refusal: CastflowError | None) -> bool:
        """Start the held branch the usual way if a slot is free after the lane's; False if not."""
        branch = state.held
        assert branch is not None
        if not self._leaves.reserve_slot(lane):
            return False
        state.held = None
        if not state.batch.gate.admit():
            self._leaves.release_slot(lane)
            self._leaves.close_lane(lane)
            return False  # the gather has decided: its CancelRemaining is on its way
        state.admitted += 1
        if refusal is not None:
            self._leaves.release_slot(lane)
            self._report(state, branch, _refused(branch, refusal), attempts=0)
            return True
        attempt = _Attempt(branch, slot=True)
        state.running[branch.index] = attempt
        self._begin_attempt(state, attempt)
        return True

    def _refuse_waiting(self, state: _BatchState, lane: Lane, refusal: CastflowError) -> None:
        """Too many abandoned threads: the branches waiting in the lane are refused, in order."""
        for job in self._leaves.take_standby(lane):
            branch = job.tag
            if not state.batch.gate.admit():
                self._leaves.close_lane(lane)
                return  # the gather has decided: these never started
            state.admitted += 1
            self._report(state, branch, _refused(branch, refusal), attempts=0)

    def _lane_started(self, state: _BatchState, jobs: list[LeafJob]) -> None:
        """Branches waiting in the lane started (a worker or this supervisor admitted them)."""
        state.admitted += len(jobs)
        running = state.running
        for job in jobs:
            running[job.tag.index] = job
        if state.cancelled is not None:
            for job in jobs:
                self._leaves.cancel(job)  # started just before the lane closed: cut it too

    def _lane_done(self, state: _BatchState, job: LeafJob, result: StepResult) -> None:
        """A branch started from the lane is decided: its only attempt (no retry, no own scope,
        no slot besides the lane's)."""
        branch: Branch = job.tag
        if state.running.get(branch.index) is not job:
            return  # never taken in as started (its lane closed first): nothing reports it
        del state.running[branch.index]
        self._finals.append((state, branch, result, None))

    def _lane_taken(self, state: _BatchState) -> None:
        """The workers took the lane's first slot's worth: prepare the next behind it."""
        if self._batches.get(state.batch.key) is state:
            self._conclude(state, self._admit(state))

    def _lane_exhausted(self, state: _BatchState, lane: Lane) -> BranchesExhausted | None:
        """The notice that the branches ran out, once every branch pulled has started."""
        if not state.exhausted or state.notice_sent or lane.closed or not _lane_idle(state, lane):
            return None  # closed: branches were dropped unstarted, so the total is not theirs
        state.notice_sent = True
        self._leaves.seal_lane(lane)
        return BranchesExhausted(state.batch.key, state.pulled, state.source_error)

    def _refusal(self, batch: BranchBatch) -> CastflowError | None:
        cap = batch.limits.max_abandoned_threads
        alive = self.system.abandoned_alive()
        if alive >= cap and alive > 0:
            return TooManyAbandonedThreadsError(
                f"{alive} abandoned threads are still alive in system {self.system.name!r} "
                f"(max_abandoned_threads={cap}); no new branch is admitted until they end"
            )
        return None

    def _begin_attempt(self, state: _BatchState, attempt: _Attempt) -> None:
        batch = state.batch
        branch = attempt.branch
        attempt.number += 1
        attempt.token += 1
        token = attempt.token
        if attempt.first_started_at is None and batch.retry is not None:
            # Only a retried branch reports its first attempt's start.
            attempt.first_started_at = time.monotonic()
            attempt.first_started_wall = datetime.now(UTC)
        timeout = _earliest(branch.timeout, batch.limits.execution_timeout)
        step = branch.step
        try:
            if _is_leaf(step):
                # A leaf's job scope is the attempt's scope: no step call, no extra scope.
                self._start_leaf(state, attempt, token, step, timeout)
            else:
                self._start_step(state, attempt, token, timeout)
        except Exception as exc:  # noqa: BLE001 - a bad input is the branch's failure
            if attempt.scope is not None:
                attempt.scope.close()
            self._attempt_done(state, attempt, token, _failed(branch, exc))

    def _start_leaf(
        self,
        state: _BatchState,
        attempt: _Attempt,
        token: int,
        leaf: Leaf,
        timeout: float | None,
    ) -> None:
        batch = state.batch
        branch = attempt.branch
        task = leaf.prepare(branch.input())
        isolated = getattr(task, "isolated", False)
        if batch.limits.limits_memory and not isolated:
            msg = (
                f"branch {branch.name!r}: tool {task.name!r} runs in a thread, where a "
                "memory limit cannot be enforced; run it process-isolated or drop the limit"
            )
            raise MemoryLimitUnsupportedError(msg)
        call = batch.call
        job: LeafJob = new_job(
            task,
            parent=call.scope,
            timeout=timeout,
            cancellation_timeout=batch.cancellation_timeout,
            on_decided=functools.partial(self._attempt_done, state, attempt, token),
            semaphores=call.semaphores + branch.semaphores
            if branch.semaphores
            else call.semaphores,
            run_permits=call.env.permits,
            label=branch.name,
            memory_limit=batch.limits.branch_memory if isolated else None,
            # _cancel_remaining cancels it, also when the batch's scope is cut (CutBranches).
            cancelled_by_owner=True,
        )
        if job.own_scope:
            attempt.scope = job.scope
        else:
            attempt.job = job
        self._leaves.admit(job)

    def _start_step(
        self, state: _BatchState, attempt: _Attempt, token: int, timeout: float | None
    ) -> None:
        batch = state.batch
        branch = attempt.branch
        attempt.scope = batch.call.scope.child(
            timeout=timeout, name=f"{batch.call.path}/{branch.name}"
        )
        handle = self.handle
        key = batch.key
        index = branch.index
        budget = batch.limits.branch_memory

        def reply(result: StepResult) -> None:
            handle.tell(_StepReplied(key, index, token, result))

        call = dataclasses.replace(
            batch.call.child(
                input=branch.input(),
                name=branch.name,
                reply=reply,
                scope=attempt.scope,
                semaphores=branch.semaphores,
            ),
            leaves=self._executor
            if budget is None
            else OwnerExecutor(self.system, self.handle, memory_limit=budget),
            group=key,
        )
        branch.step.start(call)

    # -- results ------------------------------------------------------------------------

    def _replied(self, key: str, index: int, token: int, result: StepResult) -> None:
        state = self._batches.get(key)
        if state is None:
            return
        attempt = state.running.get(index)
        if isinstance(attempt, _Attempt):
            self._attempt_done(state, attempt, token, result)

    def _attempt_done(
        self, state: _BatchState, attempt: _Attempt, token: int, result: StepResult
    ) -> None:
        if token != attempt.token or state.running.get(attempt.branch.index) is not attempt:
            return  # a late reply of an attempt already decided
        if attempt.scope is not None:
            attempt.scope.close()
            attempt.scope = None
        attempt.job = None
        if attempt.slot:
            attempt.slot = False
            assert state.lane is not None
            self._leaves.release_slot(state.lane)
        retry = state.batch.retry
        if (
            retry is not None
            and state.cancelled is None
            and not state.batch.call.scope.cancelled
            and retry.should_retry(result, attempt.number)
        ):
            delay = retry.delay(attempt.number)
            attempt.token += 1
            message = _RetryDue(state.batch.key, attempt.branch.index, attempt.token)
            attempt.retry_timer = self.system.timers.schedule(delay, self.handle, message)
            return
        del state.running[attempt.branch.index]
        self._finals.append((state, attempt.branch, result, attempt))

    def _retry_due(self, key: str, index: int, token: int) -> None:
        state = self._batches.get(key)
        if state is None:
            return
        attempt = state.running.get(index)
        if not isinstance(attempt, _Attempt) or attempt.token != token:
            return
        attempt.retry_timer = None
        self._begin_attempt(state, attempt)

    def _report(
        self,
        state: _BatchState,
        branch: Branch,
        result: StepResult,
        *,
        attempts: int,
        attempt: _Attempt | None = None,
    ) -> None:
        final = result
        if result.name != branch.name or result.attempts != attempts:
            update: dict[str, Any] = {"name": branch.name, "attempts": attempts}
            if attempt is not None and attempt.number > 1:
                update["started_at"] = attempt.first_started_at
                update["started_wall"] = attempt.first_started_wall
            final = result.model_copy(update=update)
        state.batch.gate.sent += 1
        self._emit(state, BranchReport(state.batch.key, [branch.index], [final], state.admitted))

    def _emit(self, state: _BatchState, item: BatchNotice) -> None:
        """Queue ``item`` for the batch's gather; sent in one message per handled message."""
        outbox = self._outbox
        if outbox and outbox[-1][0] is state.batch.report:
            outbox[-1][1].append(item)
        else:
            outbox.append((state.batch.report, [item]))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        for report, items in outbox:
            report(BranchReports(tuple(items)))

    # -- cancellation ---------------------------------------------------------------------

    def _cut(self, key: str, why: str) -> None:
        state = self._batches.get(key)
        if state is None:
            return  # every branch has reported: the gather decides from those
        self._emit(state, BatchCut(key, state.admitted, why))
        self._cancel_remaining(key, why)

    def _cancel_remaining(self, key: str, why: str) -> None:
        state = self._batches.get(key)
        if state is None or state.cancelled is not None:
            return
        state.cancelled = why
        if state.lane is not None:
            self._leaves.close_lane(state.lane)  # what waits there never started
            state.held = None
        for attempt in list(state.running.values()):
            if isinstance(attempt, LeafJob):
                self._leaves.cancel(attempt)  # started from the lane
            elif attempt.retry_timer is not None:
                # Waiting for a retry: nothing runs, so the branch ends here.
                attempt.retry_timer.cancel()
                attempt.retry_timer = None
                del state.running[attempt.branch.index]
                cut = StepResult(
                    name=attempt.branch.name,
                    status=Status.CANCELLED,
                    error=ErrorInfo(type="castflow.Cancelled", message=why),
                )
                self._report(state, attempt.branch, cut, attempts=attempt.number)
            elif attempt.scope is not None:
                attempt.scope.cancel(CancelReason.CANCELLED)
            elif attempt.job is not None:
                self._leaves.cancel(attempt.job)
        self._forget_if_done(state)

    def _forget_if_done(self, state: _BatchState) -> None:
        if state.running or self._batches.get(state.batch.key) is not state:
            return  # still running, or forgotten already
        lane = state.lane
        # A lane batch has started every branch it pulled once it has sent that notice.
        all_started = state.exhausted and (lane is None or state.notice_sent)
        if all_started or state.cancelled is not None or state.batch.call.scope.cancelled:
            if lane is not None:
                self._leaves.close_lane(lane)
            if not all_started:
                # Branches were never admitted, so no report will end the batch: tell the gather
                # it is over. A cut that arrives after this (or arrived before the batch started)
                # finds no batch here and would otherwise be lost; a decided gather ignores it.
                why = state.cancelled or "the step was cancelled before it finished"
                self._emit(state, BatchCut(state.batch.key, state.admitted, why))
            self._batches.pop(state.batch.key, None)
            _close_source(state.batch)
            # The lane's callbacks hold the state: without this cycle the batch (its call, the
            # run's reply and result) goes as soon as nothing else holds it.
            state.lane = None


def _close_source(batch: BranchBatch) -> None:
    """Close the batch's branches (a generator, say over a user's items) once it is over."""
    close = getattr(batch.branches, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.exception("closing the branches of batch %r failed", batch.key)


def _lane_fits(batch: BranchBatch) -> bool:
    """Whether a batch's plain leaves may be prepared ahead and started by its workers.

    Not with retries, a per-attempt timeout, semaphores or memory limits: those need the
    supervisor at each start.
    """
    limits = batch.limits
    return (
        batch.retry is None
        and limits.execution_timeout is None
        and not limits.limits_memory
        and not batch.call.semaphores
    )


def _lane_idle(state: _BatchState, lane: Lane) -> bool:
    """Whether nothing of the batch waits to start (read without the lock: it only shrinks)."""
    return state.held is None and not lane.standby


_leaf_kinds: dict[type[Any], bool] = {}


def _is_leaf(step: Step[Any]) -> TypeGuard[Leaf]:
    """Whether ``step`` runs as a leaf (cached per type: protocol checks are slow)."""
    kind = type(step)
    found = _leaf_kinds.get(kind)
    if found is None:
        found = _leaf_kinds[kind] = isinstance(step, Leaf)
    return found


def _is_plain_leaf(step: Step[Any]) -> bool:
    """Whether ``step`` is a leaf whose tasks are ``PreparedTask``s (its ``plain`` says so)."""
    return bool(getattr(step, "plain", False)) and _is_leaf(step)


def _admission_limit(limits: ResourceLimits) -> int:
    """The most branches of a batch in flight at once: its slots, and its memory.

    Every branch of a batch with memory limits runs isolated leaves (thread tools are refused)
    and is charged the same budget, so "admitted while the sum of the budgets fits in
    ``max_total_memory``" is "at most ``total // budget`` at once".
    """
    limit = limits.max_concurrent_executions
    budget, total = limits.branch_memory, limits.max_total_memory
    if budget is not None and total is not None:
        limit = min(limit, total // budget)
    return limit


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _failed(branch: Branch, exc: BaseException) -> StepResult:
    return StepResult(name=branch.name, status=Status.ERROR, error=ErrorInfo.from_exception(exc))


def _refused(branch: Branch, exc: BaseException) -> StepResult:
    return StepResult(
        name=branch.name,
        status=Status.ERROR,
        error=ErrorInfo.from_exception(exc, with_traceback=False),
    )
