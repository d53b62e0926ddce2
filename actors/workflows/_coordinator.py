"""The machinery every workflow kind shares: the definition base class and the coordinator.

A running definition has one coordinator actor per workflow node (spawned on first use through
the run's ``RunEnv``). The coordinator is a state machine keyed by instance id: it reacts to
``StartInstance`` (a parent asks for one execution), ``ChildDone`` (a child step replied) and
``CancelInstance`` (the instance's scope was cancelled), and never blocks. Many instances of
one node (loop iterations, parallel items) share the coordinator and its thread.

On cancellation an instance is decided at once: the running child is recorded ``cancelled``
(or ``timeout``) and the children that never started ``skipped``, each with the reason. The
children's own scopes were cancelled with the instance's, so leaves stop; their late replies
are dropped. A running child that is itself a workflow is cut at the same moment and replies
at once: the instance is decided on that reply, so the child's record keeps its own steps.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from actors.runtime.actor import Actor
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.events import StepFinished, StepStarted
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import RunFinishedError, StepCall, cancelled_result
from actors.workflows._spec import StepSpec, check_name, check_timeout
from actors.workflows.context import RunContext
from actors.workflows.errors import Break, break_of
from actors.workflows.result import WorkflowResult, WorkflowStepResult

__all__ = ["Coordinator", "Instance", "Workflow"]

W = TypeVar("W", bound="Workflow")


def _noop() -> None:
    return None


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartInstance:
    """Request: run one instance of the node for ``call``."""

    call: StepCall


@dataclass(frozen=True, slots=True)
class ChildDone:
    """Fact: the child started as ``token`` of ``instance`` replied with ``result``."""

    instance: int
    token: int
    result: StepResult


@dataclass(frozen=True, slots=True)
class CancelInstance:
    """Fact: the scope of ``instance`` was cancelled."""

    instance: int


# -- definitions ----------------------------------------------------------------------------


class Workflow:
    """Base of every workflow definition: immutable data with a name and a timeout.

    Subclasses set ``kind`` and ``coordinator`` and validate their parts in ``__init__``.
    Implements the runtime's ``Step`` protocol: ``start`` hands the call to the node's
    coordinator in the run; ``present`` makes the ``WorkflowResult``.
    """

    __slots__ = ("name", "timeout")

    kind: ClassVar[str] = "workflow"
    coordinator: ClassVar[type[Coordinator[Any]]]

    name: str
    timeout: float | None

    def __init__(self, *, name: str, timeout: float | None) -> None:
        where = f"{self.kind} {name!r}"
        object.__setattr__(self, "name", check_name(name, where))
        object.__setattr__(self, "timeout", check_timeout(timeout, where))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = f"{self.kind} {self.name!r} is immutable: cannot set {name!r}"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> NoReturn:
        msg = f"{self.kind} {self.name!r} is immutable: cannot delete {name!r}"
        raise AttributeError(msg)

    def children(self) -> tuple[StepSpec, ...]:
        """The node's children, in order."""
        return ()

    def start(self, call: StepCall) -> None:
        """Start one instance for ``call`` on this node's coordinator in the run (never blocks).

        Raises:
            RunFinishedError: the run has already been decided.
        """
        handle = call.env.actor_for(self, self.coordinator, self)
        handle.tell(StartInstance(call))

    def present(self, result: StepResult, run_id: str) -> WorkflowResult:
        """The ``WorkflowResult`` of a run whose top step is this workflow."""
        return WorkflowResult.from_step(result, run_id, kind=self.kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# -- instances ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Instance:
    """One execution of a node, as its coordinator tracks it."""

    id: int
    call: StepCall
    scope: CancelScope
    call_id: str
    started_at: float
    started_wall: datetime
    remove_cancel: Callable[[], None] = _noop
    records: list[StepResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    position: int = 0
    iteration: int = 0
    token: int = 0
    running: str | None = None
    running_decides_cut: bool = False  # the running child is a workflow: see CancelInstance
    child_scope: CancelScope | None = None
    branch: StepSpec | None = None


def skipped(name: str, why: str) -> StepResult:
    """The record of a step that never ran, with the reason."""
    return StepResult(
        name=name, status=Status.SKIPPED, error=ErrorInfo(type="castflow.Skipped", message=why)
    )


def failure(name: str, record: StepResult) -> ErrorInfo:
    """The node's error when its child ``name`` failed: the child's, prefixed with its name."""
    error = record.error
    if record.status is Status.TIMEOUT:
        message = f"step {name!r} timed out"
    elif error is None:
        message = f"step {name!r} ended {record.status.value}"
    else:
        message = f"step {name!r} failed: {error}"
    return ErrorInfo(
        type=error.type if error is not None else "castflow.StepFailed",
        message=message,
        traceback=error.traceback if error is not None else None,
        exception=error.exception if error is not None else None,
    )


def why_cut(scope: CancelScope) -> str:
    reason = scope.reason
    if reason is CancelReason.DEADLINE:
        return "the deadline passed before it finished"
    if reason is CancelReason.SHUTDOWN:
        return "the system shut down before it finished"
    return "the run was cancelled before it finished"


class Coordinator(Actor, Generic[W]):
    """The state machine of one workflow node in one run; subclasses implement the kind.

    Subclasses implement ``begin`` (a new instance), ``on_child`` (its running child replied)
    and optionally ``pending`` (names of children that would still have run).
    """

    reuse_thread = True  # one per workflow node per run: a parked thread saves a thread start
    _fenced_when_abandoned = False

    def __init__(self, node: W) -> None:
        super().__init__()
        self.node = node
        self._instances: dict[int, Instance] = {}
        self._ids = itertools.count(1)

    # -- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message of the coordinator protocol."""
        match message:
            case ChildDone(instance_id, token, result):
                instance = self._instances.get(instance_id)
                if instance is not None and instance.token == token and instance.running:
                    record = _named(result, instance.running)
                    if instance.scope.cancelled:
                        # The child saw the cancellation before this coordinator did.
                        self._cancel(instance, record)
                        return None
                    instance.running = None
                    if instance.child_scope is not None:
                        instance.child_scope.close()
                        instance.child_scope = None
                    self.guarded(instance, self.on_child, record)
            case StartInstance(call):
                self._start(call)
            case CancelInstance(instance_id):
                instance = self._instances.get(instance_id)
                # A running child workflow is cut with this instance (its scope is a child of
                # this one) and replies at once, with the records of its own steps: its
                # ChildDone decides this instance, so what finished inside it is kept.
                if instance is not None and not (instance.running and instance.running_decides_cut):
                    self._cancel(instance)
            case _:
                return super().on_receive(message)
        return None

    def _start(self, call: StepCall) -> None:
        instance_id = next(self._ids)
        call_id = f"{call.env.run_id}:{call.path}#{instance_id}"
        try:
            scope = call.scope.child(timeout=self.node.timeout, name=call.path)
        except Exception as exc:  # noqa: BLE001 - e.g. the timer service stopped: a result
            call.reply(StepResult(name=self.node.name, status=Status.ERROR, error=_info(exc)))
            return
        instance = Instance(
            id=instance_id,
            call=call,
            scope=scope,
            call_id=call_id,
            started_at=time.monotonic(),
            started_wall=datetime.now(UTC),
        )
        self._instances[instance_id] = instance
        events = self.system.events
        if events.has_subscribers:
            events.publish(StepStarted(system=self.system.name, step=call.path, call_id=call_id))
        handle = self.handle
        instance.remove_cancel = scope.add_callback(
            lambda _scope: handle.tell(CancelInstance(instance_id))
        )
        if scope.cancelled:
            return  # the CancelInstance is on its way
        self.guarded(instance, self.begin)

    def guarded(self, instance: Instance, hook: Callable[..., None], *args: Any) -> None:
        """Run ``hook(instance, *args)``; if it raises, decide ``instance``, not the actor.

        A kind's hook fails on a bug in a user's predicate or mapping, or when the run was
        decided while the instance was starting more work (``RunFinishedError``: it is then
        cut). Either way the instance is decided and the coordinator serves the others.
        """
        try:
            hook(instance, *args)
        except RunFinishedError:
            if instance.id in self._instances:
                cut = cancelled_result(
                    self.node.name, instance.scope, "the run ended before it finished"
                )
                self.finish(instance, cut.status, None, cut.error)
        except BaseException as exc:  # noqa: BLE001 - the instance's failure
            if instance.id in self._instances:
                self.finish(instance, Status.ERROR, None, _info(exc))

    def _cancel(self, instance: Instance, running: StepResult | None = None) -> None:
        """Decide ``instance`` cut by its scope; ``running`` is its child's record if known."""
        why = why_cut(instance.scope)
        never_started = self.pending(instance)
        if instance.running is not None:
            if running is None:
                running = cancelled_result(instance.running, instance.scope, why)
            instance.records.append(running)
            instance.running = None
        instance.records.extend(skipped(name, why) for name in never_started)
        cut = cancelled_result(self.node.name, instance.scope, why)
        self.finish(instance, cut.status, None, cut.error)

    def on_stop(self) -> None:
        """Decide every instance still running as cancelled (the run or system is ending)."""
        for instance in list(self._instances.values()):
            instance.scope.cancel(CancelReason.SHUTDOWN)
            self._cancel(instance)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Decide every instance as failed: the coordinator crashed, none of them can go on."""
        where = f"{self.node.kind} {self.node.name!r}"
        info = ErrorInfo(
            type="castflow.CoordinatorCrashed",
            message=f"the coordinator of {where} crashed: {exception_value!r}",
        )
        for instance in list(self._instances.values()):
            instance.scope.cancel(CancelReason.CANCELLED)
            if instance.id in self._instances:
                self.finish(instance, Status.ERROR, None, info)

    # -- for the kinds ----------------------------------------------------------------------

    def begin(self, instance: Instance) -> None:
        """Start a new instance (its input is ``instance.call.input``)."""
        raise NotImplementedError

    def on_child(self, instance: Instance, result: StepResult) -> None:
        """The instance's running child replied with ``result`` (named as in this node)."""
        raise NotImplementedError

    def pending(self, instance: Instance) -> list[str]:
        """Names of children that have not started and would still have run."""
        return []

    def context(self, instance: Instance) -> RunContext:
        """The read-only ``RunContext`` for a decision of ``instance``."""
        inputs = instance.call.env.input
        if isinstance(inputs, Mapping):
            inputs = MappingProxyType(dict(inputs))
        return RunContext(
            run_id=instance.call.env.run_id,
            path=instance.call.path,
            scope=instance.scope,
            inputs=inputs,
            outputs=self.visible(instance),
        )

    def visible(self, instance: Instance) -> Mapping[str, Any]:
        """Outputs a child of ``instance`` may see: its ancestors' and its finished siblings'."""
        if not instance.outputs:
            return instance.call.outputs
        return MappingProxyType({**instance.call.outputs, **instance.outputs})

    def start_child(self, instance: Instance, spec: StepSpec, value: Any, name: str) -> None:
        """Start ``spec``'s step as the running child of ``instance``, recorded as ``name``.

        Its reply (or the failure to start it) arrives later as a ``ChildDone``.
        """
        instance.token += 1
        token = instance.token
        instance.running = name
        instance.running_decides_cut = isinstance(spec.step, Workflow)
        handle = self.handle
        instance_id = instance.id

        def reply(result: StepResult) -> None:
            handle.tell(ChildDone(instance_id, token, result))

        try:
            child_input = spec.map_input(value)
            scope = instance.scope
            if spec.timeout is not None:
                scope = scope.child(timeout=spec.timeout, name=f"{instance.call.path}/{name}")
                instance.child_scope = scope
            call = instance.call.child(
                input=child_input,
                name=name,
                reply=reply,
                scope=scope,
                outputs=self.visible(instance),
                semaphores=spec.semaphores,
            )
            spec.step.start(call)
        except BaseException as exc:  # noqa: BLE001 - a bad input is the child's failure
            reply(StepResult(name=name, status=Status.ERROR, error=_info(exc)))

    def finish(
        self,
        instance: Instance,
        status: Status,
        value: Any,
        error: ErrorInfo | None,
        *,
        failed_step: str | None = None,
        iterations: int | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        """Decide ``instance``: publish, reply to its parent and forget it."""
        del self._instances[instance.id]
        instance.remove_cancel()
        if instance.child_scope is not None:
            instance.child_scope.close()
        instance.scope.close()
        node = self.node
        result = WorkflowStepResult(
            name=node.name,
            kind=node.kind,
            status=status,
            value=value,
            error=error,
            started_at=instance.started_at,
            finished_at=time.monotonic(),
            started_wall=instance.started_wall,
            finished_wall=datetime.now(UTC),
            steps=instance.records,
            failed_step=failed_step,
            branch=instance.branch.name if instance.branch is not None else None,
            iterations=iterations,
            counts=counts,
        )
        events = self.system.events
        if events.has_subscribers:
            events.publish(
                StepFinished(
                    system=self.system.name,
                    step=instance.call.path,
                    call_id=instance.call_id,
                    status=status,
                    duration=result.duration,
                )
            )
        instance.call.reply(result)


def _named(result: StepResult, name: str) -> StepResult:
    """``result`` named ``name``; a ``Break`` a step raised becomes the ``ok`` value it signals."""
    signal = break_of(result)
    update: dict[str, Any] = {}
    if result.name != name:
        update["name"] = name
    if signal is not None and result.status is not Status.OK:
        update.update(status=Status.OK, value=signal, error=None)
    return result.model_copy(update=update) if update else result


def _info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo.from_exception(exc)


def signalled(result: StepResult) -> Break | None:
    """The ``Break`` in a child's (already normalised) record, if any."""
    return result.value if result.ok and isinstance(result.value, Break) else None
