"""``Supervisor``: starts children, watches them, restarts them by OTP's rules.

The supervisor is a state machine and never blocks. It spawns a child with ``wait=False`` and
learns that it started from a message sent by the child's start future; it learns of every end
from the ``Down`` the child's handle sends. Stopping a child is a stop request plus a timer for
its shutdown time, after which the child's thread is abandoned. Sequences ("stop these in
reverse order, then start those in order") are plans carried out one step per message, so
``which_children`` is answered at any time, also while the supervisor restarts or shuts down.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pykka._envelope import Envelope

from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason
from actors.runtime.errors import StartError
from actors.runtime.futures import ActorFuture
from actors.runtime.reasons import Down, Escalated, ExitReason, Shutdown, StartFailed
from actors.runtime.results import ErrorInfo
from actors.runtime.timers import TimerServiceStoppedError
from supervisors._child import (
    Ack,
    Begin,
    Child,
    Decide,
    Plan,
    ResetAttempts,
    RestartDue,
    StartTimeout,
    Step,
    StopSupervisor,
    StopTimeout,
    TryAgain,
    needs_restart,
)
from supervisors.errors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildSpecError,
    ChildStartError,
    MaxChildrenError,
    SupervisorStoppingError,
)
from supervisors.events import (
    AutoShutdownTriggered,
    ChildAbandoned,
    ChildExited,
    ChildIgnored,
    ChildRestarting,
    ChildRestartsExhausted,
    ChildStarted,
    ChildStartFailed,
    ChildTerminated,
    SupervisionEvent,
    SupervisorEscalated,
    SupervisorStopped,
)
from supervisors.messages import (
    ChildCounts,
    ChildInfo,
    CountChildren,
    DeleteChild,
    GetChildSpec,
    Request,
    RestartChild,
    StartChild,
    TerminateChild,
    WhichChildren,
    answer,
)
from supervisors.spec import (
    IGNORE,
    AutoShutdown,
    ChildSpec,
    Ignore,
    RestartStrategy,
    RestartType,
    SupervisorFlags,
    check_significant,
    validate_children,
)

if TYPE_CHECKING:
    import concurrent.futures

    from actors.runtime.handle import ActorHandle
    from actors.runtime.timers import TimerHandle

__all__ = ["Supervisor", "start_ack"]

_epochs = itertools.count(1)

_ACTIVE = frozenset({"starting", "running", "stopping"})


def start_ack(actor: Actor) -> concurrent.futures.Future[None]:
    """The future that says a child has started: a supervisor's ``ready``, else ``started``."""
    if isinstance(actor, Supervisor):
        return actor.ready
    return actor.started


class Supervisor(Actor):
    """An actor that starts, watches and restarts its children (OTP's ``supervisor``).

    Children start in list order, each after the previous one acknowledged its start; they stop
    in reverse order, each within its shutdown time. When a child ends on its own, its restart
    type decides whether it restarts and the strategy decides which children restart with it.
    More than ``flags.intensity`` restarts within ``flags.period`` seconds make the supervisor
    stop every child and end with ``Escalated``, which its own supervisor sees as a failure.

    Start one with ``start_supervisor`` (blocking until every child has started) or as the
    child of another supervisor with ``ChildSpec.supervisor(...)``. Talk to it with
    ``SupervisorClient`` from outside, or with the request messages from inside an actor.

    Args:
        children: the child specs, in start order.
        flags: strategy, intensity, period and auto-shutdown; the defaults if omitted.

    Attributes:
        ready: done when every initial child has started; fails with ``ChildStartError``
            (after the started ones were stopped) if one could not.

    Raises:
        ChildSpecError: the children are invalid together with the flags.
    """

    concurrent_shutdown = False
    """Whether children stop all at once (dynamic supervisors) rather than in reverse order."""

    keeps_ended_children = True
    """Whether a non-temporary child that ends (or is ignored) and is not restarted keeps its
    spec, stopped (static supervisors), rather than being removed (dynamic supervisors)."""
    _fenced_when_abandoned = False  # its stop hook stops the children it leaves behind

    def __init__(
        self, children: Iterable[ChildSpec] = (), flags: SupervisorFlags | None = None
    ) -> None:
        super().__init__()
        self.flags = flags if flags is not None else SupervisorFlags()
        self.ready: ActorFuture[None] = ActorFuture()
        self._epoch = next(_epochs)
        self._children: dict[str, Child] = {
            spec.id: Child(spec) for spec in validate_children(children, self.flags)
        }
        self._restarts: list[float] = []
        self._plan: Plan | None = None
        self._deferred: deque[object] = deque()
        self._waiting_requests: list[Request] = []
        self._final_reason: ExitReason | None = None
        self._shutdown_started = False
        self._tokens = itertools.count(1)
        self._by_handle: dict[str, Child] = {}
        self._init_error: ChildStartError | None = None

    # -- lifecycle hooks -------------------------------------------------------------------

    def on_start(self) -> None:
        """Queue the start of the initial children (the supervisor itself never blocks)."""
        self.handle.tell(Begin(self._epoch))

    def on_stop(self) -> None:
        """Ask any child still running to stop (only if this supervisor was cut short)."""
        self._cut_short()

    def on_failure(self, *_: object) -> None:
        """Ask any child still running to stop: a crashed supervisor leaves no orphans."""
        self._cut_short()

    def _request_stop(self, info: object = None) -> None:
        # A supervisor stops its children first: the request becomes a message it handles.
        self.scope.cancel(CancelReason.SHUTDOWN)
        if self._accepting:
            self.actor_inbox.put(Envelope(StopSupervisor(info)))

    # -- dispatch --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle a child's ``Down``, a request, or one of the supervisor's own messages."""
        if isinstance(message, Down):
            self._on_down(message)
        elif isinstance(message, StopSupervisor):
            self._begin_shutdown(Shutdown(message.info))
        elif isinstance(message, WhichChildren | CountChildren | GetChildSpec):
            self._answer_query(message)
        elif getattr(message, "epoch", self._epoch) != self._epoch:
            pass  # from an earlier incarnation of this supervisor
        else:
            self._dispatch(message)
        return None

    def _dispatch(self, message: object) -> None:
        if isinstance(message, Ack):
            self._on_ack(message)
        elif isinstance(message, StopTimeout):
            self._on_stop_timeout(message)
        elif isinstance(message, StartTimeout):
            self._on_start_timeout(message)
        elif isinstance(message, ResetAttempts):
            child = self._children.get(message.child_id)
            if child is not None and child.incarnation == message.incarnation:
                child.attempt = 0
                child.reset_timer = None
        elif isinstance(message, Begin):
            self._begin()
        else:
            self._dispatch_when_idle(message)

    def _dispatch_when_idle(self, message: object) -> None:
        if self._final_reason is not None:
            if isinstance(message, Request):
                self._refuse(message)
        elif self._plan is not None:
            self._deferred.append(message)
        elif isinstance(message, Decide):
            self._decide(message)
        elif isinstance(message, TryAgain):
            self._try_again(message)
        elif isinstance(message, RestartDue):
            self._restart_due(message)
        elif isinstance(message, Request):
            self._on_request(message)

    # -- starting --------------------------------------------------------------------------

    def _begin(self) -> None:
        ids = list(self._children)

        def failed(child_id: str, reason: ExitReason) -> None:
            error = ChildStartError(child_id, reason)
            self._final_reason = StartFailed(ErrorInfo.from_exception(error))
            self._init_error = error
            self._plan = None
            self._start_shutdown_plan()

        self._run(Plan("init", deque(("start", (i,)) for i in ids), self._ready_done, failed))

    def _ready_done(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _child_name(self, spec: ChildSpec) -> str:
        return f"{self.handle.name}/{spec.id}"

    def _start_arguments(
        self, spec: ChildSpec
    ) -> tuple[type[Actor], tuple[Any, ...], dict[str, Any]] | Ignore:
        return spec.resolve()

    def _start_child(self, child: Child) -> ExitReason | Ignore | None:
        """Start one incarnation (``None``); ``IGNORE``, or the failure if none was created."""
        if child.restart_timer is not None:
            child.restart_timer.cancel()
            child.restart_timer = None
        child.ignored = False
        try:
            started = self._start_arguments(child.spec)
            if started is IGNORE:
                child.ignored = True
                return IGNORE
            actor_class, args, kwargs = started
            handle = child.handle
            if handle is None:
                name = self._child_name(child.spec)
                handle = self.system.lookup(name) or self.system._register(name)
                child.handle = handle
                self._by_handle[handle.name] = child
            if handle.is_alive():
                msg = f"an earlier incarnation of {handle.name!r} is still running"
                raise RuntimeError(msg)
            handle.watch(self.handle)
            handle._enable_stash(child.spec.stash_capacity)
            actor = self.system.start_incarnation(handle, actor_class, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to create the child is a start failure
            child.state = "stopped"
            child.last_reason = StartFailed(ErrorInfo.from_exception(exc))
            return child.last_reason
        child.actor = actor
        child.incarnation = actor.incarnation
        child.state = "starting"
        child.start_timed_out = False
        child.pending = None
        if child.spec.start_timeout is not None:
            child.timer = self._schedule(
                child.spec.start_timeout,
                StartTimeout(self._epoch, child.id, child.incarnation),
            )
        ack = Ack(self._epoch, child.id, child.incarnation)
        me = self.handle

        def acknowledge(future: concurrent.futures.Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                me.tell(ack)

        start_ack(actor).add_done_callback(acknowledge)
        return None

    def _on_ack(self, message: Ack) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.incarnation != message.incarnation:
            return
        if child.state != "starting" or child.start_timed_out:
            return
        self._mark_started(child)

    def _mark_started(self, child: Child) -> None:
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        child.state = "running"
        self._publish(ChildStarted, child=child.id, incarnation=child.incarnation)
        if child.attempt:
            backoff = child.spec.backoff
            delay = backoff.reset_delay if backoff is not None else self.flags.period
            child.reset_timer = self._schedule(
                delay, ResetAttempts(self._epoch, child.id, child.incarnation)
            )
        self._step_done(child.id)

    def _on_start_timeout(self, message: StartTimeout) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.incarnation != message.incarnation:
            return
        if child.state != "starting" or child.actor is None:
            return
        child.timer = None
        child.start_timed_out = True
        self._send_stop(child)

    def _start_failed(self, child: Child, reason: ExitReason) -> None:
        child.last_reason = reason
        self._publish(ChildStartFailed, child=child.id, reason=reason)
        plan = self._plan
        if plan is None:
            return
        plan.waiting.discard(child.id)
        plan.on_start_failed(child.id, reason)
        self._advance()

    # -- stopping ----------------------------------------------------------------------------

    def _stop_child(self, child: Child) -> bool:
        """Ask a live child to stop; False if it is not running (nothing to wait for)."""
        child.pending = None
        if child.actor is None:
            return False
        child.state = "stopping"
        self._send_stop(child)
        return True

    def _send_stop(self, child: Child) -> None:
        actor = child.actor
        assert actor is not None
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        child.stop_requested_at = self.system.clock.now()
        seconds = child.spec.shutdown_seconds
        if seconds == 0.0:
            self._abandon(child, 0.0)
            return
        actor._request_stop()
        if seconds is not None:
            child.timer = self._schedule(
                seconds, StopTimeout(self._epoch, child.id, child.incarnation)
            )

    def _on_stop_timeout(self, message: StopTimeout) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.incarnation != message.incarnation or child.actor is None:
            return
        child.timer = None
        self._abandon(child, self.system.clock.now() - child.stop_requested_at)

    def _abandon(self, child: Child, waited: float) -> None:
        actor = child.actor
        assert actor is not None
        self._publish(ChildAbandoned, child=child.id, incarnation=child.incarnation, waited=waited)
        # The Down (reason Abandoned) comes back through the mailbox like any other.
        self.system.abandon(actor, waited)

    # -- a child ended -----------------------------------------------------------------------

    def _on_down(self, down: Down) -> None:
        child = self._child_of(down.handle)
        actor = child.actor if child is not None else None
        if child is None or child.incarnation != down.incarnation or actor is None:
            return
        if child.state == "starting" and not child.start_timed_out and _acknowledged(actor):
            # It started and ended before its Ack got here: it started all the same (the Ack
            # that follows is ignored), and its end is an exit like any other.
            self._mark_started(child)
        child.actor = None
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        reason = down.reason
        if child.state == "starting":
            if child.start_timed_out:
                timeout = StartError(
                    f"child {child.id!r} did not start within {child.spec.start_timeout} s"
                )
                reason = StartFailed(ErrorInfo.from_exception(timeout))
            child.state = "stopped"
            self._start_failed(child, reason)
        elif child.state == "stopping":
            child.state = "stopped"
            child.last_reason = reason
            self._publish(
                ChildTerminated, child=child.id, incarnation=down.incarnation, reason=reason
            )
            self._step_done(child.id)
        else:
            child.state = "stopped"
            child.last_reason = reason
            self._publish(ChildExited, child=child.id, incarnation=down.incarnation, reason=reason)
            if self._final_reason is not None:
                return  # children ending during the shutdown are not restarted
            child.pending = reason
            self._dispatch(Decide(child.id, down.incarnation))

    def _child_of(self, handle: ActorHandle[Any]) -> Child | None:
        child = self._by_handle.get(handle.name)
        return child if child is not None and child.handle is handle else None

    def _decide(self, message: Decide) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.incarnation != message.incarnation or child.pending is None:
            return  # restarted, terminated or deleted since
        reason = child.pending
        child.pending = None
        if needs_restart(child.spec.restart, reason):
            self._schedule_restart(child)
            return
        self._stays_down(child)

    def _stays_down(self, child: Child) -> None:
        """A child that ended on its own is not restarted: keep or remove it, maybe auto-stop."""
        self._keep_or_delete(child)
        if child.spec.significant:
            self._auto_shutdown(child)

    def _keep_or_delete(self, child: Child) -> None:
        if child.spec.restart is RestartType.TEMPORARY or not self.keeps_ended_children:
            self._delete(child)
        else:
            self._park(child)

    def _ignored(self, child: Child) -> None:
        """A start returned ``IGNORE``: the child has no incarnation (OTP's pid undefined)."""
        self._publish(ChildIgnored, child=child.id)
        self._keep_or_delete(child)

    def _auto_shutdown(self, child: Child) -> None:
        mode = self.flags.auto_shutdown
        if mode is AutoShutdown.NEVER:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            other.spec.significant and other.state != "stopped" for other in self._children.values()
        ):
            return
        self._publish(AutoShutdownTriggered, child=child.id)
        self._begin_shutdown(Shutdown("auto_shutdown"))

    # -- restarts ----------------------------------------------------------------------------

    def _schedule_restart(self, child: Child) -> None:
        if self.system.is_shut_down:
            self._begin_shutdown(Shutdown("system shutdown"))
            return
        child.attempt += 1
        child.token = next(self._tokens)
        backoff = child.spec.backoff
        if backoff is not None and backoff.exhausted(child.attempt):
            child.attempt -= 1
            reason = child.last_reason if child.last_reason is not None else Shutdown()
            self._publish(
                ChildRestartsExhausted, child=child.id, restarts=child.attempt, reason=reason
            )
            self._stays_down(child)
            return
        delay = backoff.delay(child.attempt - 1) if backoff is not None else 0.0
        child.state = "restarting"
        if child.reset_timer is not None:
            child.reset_timer.cancel()
            child.reset_timer = None
        self._publish(ChildRestarting, child=child.id, attempt=child.attempt, delay=delay)
        due = RestartDue(self._epoch, child.id, child.token)
        if delay > 0:
            child.restart_timer = self._schedule(delay, due)
        else:
            self._restart_due(due)

    def _try_again(self, message: TryAgain) -> None:
        child = self._children.get(message.child_id)
        if child is not None and child.state == "restarting" and child.token == message.token:
            self._schedule_restart(child)

    def _restart_due(self, message: RestartDue) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.state != "restarting" or child.token != message.token:
            return  # terminated, deleted or rescheduled meanwhile
        child.restart_timer = None
        if not self._add_restart():
            self._escalate(child)
            return
        group = self._restart_group(child)
        steps: deque[Step] = deque()
        for other in reversed(group):
            if other is not child and other.live:
                steps.append(("stop", (other.id,)))
        for member in group:
            if member is child or member.spec.restart is not RestartType.TEMPORARY:
                steps.append(("start", (member.id,)))

        def done() -> None:
            for member in group:
                if member.spec.restart is RestartType.TEMPORARY and member is not child:
                    self._delete(member)  # bystanders that are temporary do not come back

        def failed(child_id: str, reason: ExitReason) -> None:
            assert self._plan is not None
            self._plan.steps.clear()
            failed_child = self._children[child_id]
            failed_child.state = "restarting"
            failed_child.token = next(self._tokens)
            self.handle.tell(TryAgain(self._epoch, child_id, failed_child.token))

        self._run(Plan("restart", steps, done, failed))

    def _restart_group(self, child: Child) -> list[Child]:
        ordered = list(self._children.values())
        strategy = self.flags.strategy
        if strategy is RestartStrategy.ONE_FOR_ALL:
            return ordered
        if strategy is RestartStrategy.REST_FOR_ONE:
            return ordered[ordered.index(child) :]
        return [child]

    def _add_restart(self) -> bool:
        now = self.system.clock.now()
        period = self.flags.period
        self._restarts = [t for t in (now, *self._restarts) if now - t <= period]
        return len(self._restarts) <= self.flags.intensity

    def _escalate(self, child: Child) -> None:
        reason = child.last_reason if child.last_reason is not None else Shutdown()
        self._publish(
            SupervisorEscalated, child=child.id, reason=reason, restarts=len(self._restarts)
        )
        if child.spec.restart is RestartType.TEMPORARY:
            self._delete(child)
        else:
            self._park(child)
        self._begin_shutdown(Escalated(child.id, reason))

    # -- plans -------------------------------------------------------------------------------

    def _run(self, plan: Plan) -> None:
        self._plan = plan
        self._advance()

    def _step_done(self, child_id: str) -> None:
        plan = self._plan
        if plan is not None and child_id in plan.waiting:
            plan.waiting.discard(child_id)
            self._advance()

    def _advance(self) -> None:
        while (plan := self._plan) is not None and not plan.waiting:
            if not plan.steps:
                self._plan = None
                plan.on_done()
                self._after_plan()
                return
            action, ids = plan.steps.popleft()
            if self._final_reason is not None and plan.kind != "shutdown" and action == "start":
                plan.steps.clear()
                continue
            for child_id in ids:
                child = self._children.get(child_id)
                if child is None:
                    continue
                if action == "stop":
                    if self._stop_child(child):
                        plan.waiting.add(child_id)
                    continue
                outcome = self._start_child(child)
                if outcome is None:
                    plan.waiting.add(child_id)
                elif outcome is IGNORE:
                    self._ignored(child)
                else:
                    self._publish(ChildStartFailed, child=child_id, reason=outcome)
                    plan.on_start_failed(child_id, outcome)
                    break

    def _after_plan(self) -> None:
        if self._final_reason is not None:
            if not self._shutdown_started:
                self._start_shutdown_plan()
            return
        while self._plan is None and self._deferred and self._final_reason is None:
            self._dispatch(self._deferred.popleft())

    # -- shutting down -----------------------------------------------------------------------

    def _begin_shutdown(self, reason: ExitReason) -> None:
        if self._final_reason is not None:
            return
        self._final_reason = reason
        for child in self._children.values():
            child.pending = None
            if child.state == "restarting":
                self._park(child)  # no restart happens any more
        for item in self._deferred:
            if isinstance(item, Request):
                self._refuse(item)
        self._deferred.clear()
        if self._plan is None:
            self._start_shutdown_plan()
        elif self._plan.kind == "init":
            self._plan.on_done = lambda: None  # ready fails in _finish
        # Otherwise the running step finishes first (a start acknowledges or fails, a stop
        # ends within its shutdown time) and the shutdown plan follows.

    def _start_shutdown_plan(self) -> None:
        self._shutdown_started = True
        live = [c.id for c in reversed(self._children.values()) if c.live]
        steps: deque[Step]
        if self.concurrent_shutdown:
            steps = deque([("stop", tuple(live))]) if live else deque()
        else:
            steps = deque(("stop", (i,)) for i in live)
        self._run(Plan("shutdown", steps, self._finish, lambda *_: None))

    def _finish(self) -> None:
        reason = self._final_reason
        assert reason is not None
        for child in list(self._children.values()):
            # Every child stays down; a dynamic supervisor's are removed (it starts again
            # empty), so their names are free.
            self._keep_or_delete(child)
        self._publish(SupervisorStopped, reason=reason)
        for request in self._waiting_requests:
            self._refuse(request)
        self._waiting_requests.clear()
        if not self.ready.done():
            self.ready.set_exception(
                self._init_error
                or StartError(f"supervisor {self.handle.name!r} stopped while starting")
            )
        self.exit(reason)

    def _cut_short(self) -> None:
        for child in self._children.values():
            child.cancel_timers()
            if child.actor is not None:
                child.actor._request_stop("supervisor ended")
        for request in self._waiting_requests:
            self._refuse(request)
        self._waiting_requests.clear()
        if not self.ready.done():
            self.ready.set_exception(StartError(f"supervisor {self.handle.name!r} ended"))

    def _refuse(self, request: Request) -> None:
        answer(
            request,
            error=SupervisorStoppingError(f"supervisor {self.handle.name!r} is shutting down"),
        )

    # -- requests ----------------------------------------------------------------------------

    def _answer_query(self, request: WhichChildren | CountChildren | GetChildSpec) -> None:
        if isinstance(request, WhichChildren):
            answer(request, self._which_children())
        elif isinstance(request, CountChildren):
            answer(request, self._count_children())
        else:
            child = self._children.get(request.child_id)
            if child is None:
                answer(request, error=self._not_found(request.child_id))
            else:
                answer(request, child.spec)

    def _which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(c.id, c.handle, c.state, c.spec.kind, c.incarnation)
            for c in self._children.values()
        ]

    def _count_children(self) -> ChildCounts:
        children = list(self._children.values())
        supervisors = sum(1 for c in children if c.spec.kind == "supervisor")
        return ChildCounts(
            specs=len(children),
            active=sum(1 for c in children if c.state in _ACTIVE),
            supervisors=supervisors,
            workers=len(children) - supervisors,
        )

    def _not_found(self, child: object) -> ChildNotFoundError:
        return ChildNotFoundError(f"supervisor {self.handle.name!r} has no child {child!r}")

    def _on_request(self, request: Request) -> None:
        try:
            if isinstance(request, StartChild):
                self._request_start(request)
            elif isinstance(request, TerminateChild):
                self._request_terminate(request)
            elif isinstance(request, RestartChild):
                self._request_restart(request)
            elif isinstance(request, DeleteChild):
                self._request_delete(request)
        except (ChildSpecError, ChildNotFoundError, LookupError, ValueError) as exc:
            answer(request, error=exc)

    def _admin(self, request: Request, steps: Iterable[Step], on_done: Callable[[], Any]) -> None:
        self._waiting_requests.append(request)

        def done() -> None:
            self._waiting_requests.remove(request)
            answer(request, on_done())

        def failed(child_id: str, reason: ExitReason) -> None:
            self._waiting_requests.remove(request)
            child = self._children.get(child_id)
            if request_is_start and child is not None:
                self._delete(child)  # a child that failed start_child is not kept
            answer(request, error=ChildStartError(child_id, reason))
            assert self._plan is not None
            self._plan.steps.clear()
            self._plan.on_done = lambda: None

        request_is_start = isinstance(request, StartChild)
        self._run(Plan("admin", deque(steps), done, failed))

    def _check_can_add(self, spec: ChildSpec) -> None:
        """Raise if ``spec`` cannot be added (overridden by dynamic supervisors)."""
        check_significant(spec, self.flags)

    def _request_start(self, request: StartChild) -> None:
        spec = request.spec
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.live:
                msg = f"child {spec.id!r} is already started"
                answer(request, error=ChildAlreadyStartedError(msg, existing.handle))
            else:
                msg = f"child {spec.id!r} is already present; restart_child or delete_child it"
                answer(request, error=ChildAlreadyPresentError(msg))
            return
        try:
            self._check_can_add(spec)
        except (ChildSpecError, MaxChildrenError) as exc:
            answer(request, error=exc)
            return
        child = Child(spec)
        self._children[spec.id] = child
        self._admin(request, [("start", (spec.id,))], lambda: _started_handle(child))

    def _request_terminate(self, request: TerminateChild) -> None:
        target = request.child
        child = self._children.get(target) if isinstance(target, str) else self._child_of(target)
        if child is None:
            answer(request, error=self._not_found(target))
            return

        def done() -> None:
            if child.spec.restart is RestartType.TEMPORARY:
                self._delete(child)
            else:
                self._park(child)

        child.pending = None
        if child.live:
            self._admin(request, [("stop", (child.id,))], done)
            return
        child.cancel_timers()
        done()
        answer(request, None)

    def _request_restart(self, request: RestartChild) -> None:
        child = self._existing(request, request.child_id)
        if child is None:
            return
        try:
            self._check_can_add(child.spec)  # a dynamic supervisor's max_children counts it
        except MaxChildrenError as exc:
            answer(request, error=exc)
            return
        child.attempt = 0  # a manual restart begins a new series (backoff, max_restarts)
        self._admin(request, [("start", (child.id,))], lambda: _started_handle(child))

    def _request_delete(self, request: DeleteChild) -> None:
        child = self._existing(request, request.child_id)
        if child is None:
            return
        self._delete(child)
        answer(request, None)

    def _existing(self, request: Request, child_id: str) -> Child | None:
        """The stopped child ``child_id``, or None after answering why it cannot be used."""
        child = self._children.get(child_id)
        if child is None:
            answer(request, error=self._not_found(child_id))
        elif child.state == "restarting":
            answer(request, error=ChildRestartingError(f"child {child_id!r} is restarting"))
        elif child.live:
            answer(request, error=ChildRunningError(f"child {child_id!r} is running"))
        else:
            return child
        return None

    # -- bookkeeping -------------------------------------------------------------------------

    def _park(self, child: Child) -> None:
        """Keep the spec of a child that stays down; its handle stops stashing."""
        child.state = "stopped"
        child.cancel_timers()
        if child.handle is not None:
            child.handle._disable_stash()

    def _delete(self, child: Child) -> None:
        self._park(child)
        if self._children.get(child.id) is child:
            del self._children[child.id]
        if child.handle is not None:
            if self._by_handle.get(child.handle.name) is child:
                del self._by_handle[child.handle.name]
            self.system._unregister(child.handle)

    def _schedule(self, delay: float, message: object) -> TimerHandle | None:
        try:
            return self.system.timers.schedule(delay, self.handle, message)
        except TimerServiceStoppedError:
            return None  # the system is shutting down; its own deadline takes over

    def _publish(self, kind: type[SupervisionEvent], **fields: Any) -> None:
        events = self.system.events
        if events.has_subscribers:
            events.publish(kind(system=self.system.name, supervisor=self.handle.name, **fields))

    @property
    def children(self) -> Sequence[str]:
        """The ids of the children, in start order (for subclasses and debugging)."""
        return tuple(self._children)


def _acknowledged(actor: Actor) -> bool:
    """Whether ``actor`` finished starting (its Ack may still be on its way)."""
    ack = start_ack(actor)
    return ack.done() and not ack.cancelled() and ack.exception() is None


def _started_handle(child: Child) -> ActorHandle[Any] | None:
    """What ``start_child``/``restart_child`` answer: the handle, or None if ignored."""
    return None if child.ignored else child.handle
