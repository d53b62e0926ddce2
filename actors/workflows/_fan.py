"""What every parallel kind shares: the definition's limits and the coordinator of the protocol.

A parallel kind's coordinator plans each instance as a gather policy and a lazy iterator of
branches, then runs the parallel protocol: it tells the node's ``GatherActor`` to expect the
batch and the node's ``BranchSupervisor`` to run it (both spawned once per node per run), and
finishes the instance when the gather reports its outcome. If the instance's scope is
cancelled or its deadline passes, the coordinator asks the gather to decide at once with what
it has; the branch scopes, children of the instance's, are cancelled with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from actors.gather import (
    Aggregation,
    ErrorMode,
    ExpectBatch,
    GatherActor,
    GatherOutcome,
    GatherPolicy,
)
from actors.runtime.cancel import CancelReason
from actors.runtime.handle import ActorHandle
from actors.runtime.leaves import Leaf
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import Step, cancelled_result
from actors.workflows._coordinator import Coordinator, Instance, Workflow, why_cut
from actors.workflows._spec import StepSpec
from actors.workflows._sync_check import SyncPlan, plan_sync
from actors.workflows.errors import WorkflowDefinitionError
from supervisors.batches import (
    AdmissionGate,
    Branch,
    BranchBatch,
    CancelRemaining,
    CutBranches,
    StartBatch,
)
from supervisors.branch import (
    BranchSupervisor,
)
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = ["CopyMode", "FanCoordinator", "FanWorkflow", "Gathered"]

CopyMode = Literal["branch", "none"]
"""``"branch"``: each branch gets its own copy of its input; ``"none"``: inputs are shared."""

F = TypeVar("F", bound="FanWorkflow")


class FanWorkflow(Workflow):
    """Base of the parallel kinds: limits, retries, input copying, aggregation, error mode.

    Args:
        name: the workflow's name.
        timeout: seconds until each run of this node is cut (the overall timeout).
        aggregation: how branch results become the node's result.
        error_mode: when failure is decided.
        limits: the resource limits; ``ResourceLimits()`` by default.
        max_concurrency: shorthand for ``limits.max_concurrent_executions``.
        retry: how failed branches are retried; no retry if ``None``.
        copy_input: ``"branch"`` (default) copies each branch's input; ``"none"`` shares it.
    """

    __slots__ = ("aggregation", "copy_input", "error_mode", "limits", "retry", "sync_points")

    aggregation: Aggregation
    error_mode: ErrorMode
    limits: ResourceLimits
    retry: RetryPolicy | None
    copy_input: CopyMode
    sync_points: SyncPlan

    def __init__(
        self,
        *,
        name: str,
        timeout: float | None,
        aggregation: Aggregation,
        error_mode: ErrorMode,
        limits: ResourceLimits | None,
        max_concurrency: int | None,
        retry: RetryPolicy | None,
        copy_input: CopyMode,
    ) -> None:
        super().__init__(name=name, timeout=timeout)
        where = f"{self.kind} {name!r}"
        if not isinstance(aggregation, Aggregation):
            msg = f"{where}: aggregation must be an Aggregation, got {aggregation!r}"
            raise WorkflowDefinitionError(msg)
        try:
            mode = ErrorMode(error_mode)
        except ValueError:
            msg = f"{where}: error_mode must be an ErrorMode, got {error_mode!r}"
            raise WorkflowDefinitionError(msg) from None
        if limits is not None and not isinstance(limits, ResourceLimits):
            msg = f"{where}: limits must be ResourceLimits, got {limits!r}"
            raise WorkflowDefinitionError(msg)
        limits = limits if limits is not None else ResourceLimits()
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
                msg = f"{where}: max_concurrency must be an int >= 1, got {max_concurrency!r}"
                raise WorkflowDefinitionError(msg)
            if max_concurrency < 1:
                msg = f"{where}: max_concurrency must be >= 1, got {max_concurrency}"
                raise WorkflowDefinitionError(msg)
            if "max_concurrent_executions" in limits.model_fields_set and (
                limits.max_concurrent_executions != max_concurrency
            ):
                msg = (
                    f"{where}: max_concurrency={max_concurrency} contradicts "
                    f"limits.max_concurrent_executions={limits.max_concurrent_executions}"
                )
                raise WorkflowDefinitionError(msg)
            limits = limits.model_copy(update={"max_concurrent_executions": max_concurrency})
        if retry is not None and not isinstance(retry, RetryPolicy):
            msg = f"{where}: retry must be a RetryPolicy, got {retry!r}"
            raise WorkflowDefinitionError(msg)
        if copy_input not in ("branch", "none"):
            msg = f"{where}: copy_input must be 'branch' or 'none', got {copy_input!r}"
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "aggregation", aggregation)
        object.__setattr__(self, "error_mode", mode)
        object.__setattr__(self, "limits", limits)
        object.__setattr__(self, "retry", retry)
        object.__setattr__(self, "copy_input", copy_input)
        object.__setattr__(self, "sync_points", ())

    @property
    def max_concurrency(self) -> int:
        """The most branches of one run of this node in flight at once."""
        return self.limits.max_concurrent_executions

    def outer_children(self) -> tuple[StepSpec, ...]:
        """Children that run in the enclosing parallel step's group, not as branches of this one.

        Barriers and rendezvous under them synchronise with the enclosing step's branches;
        those under the branches form this node's own group. None by default.
        """
        return ()

    def check_synchronisation(self, specs: Sequence[StepSpec]) -> None:
        """Check the barriers and rendezvous under the branches ``specs`` and keep their plan.

        A sync point with ``parties=None`` waits for every branch that contains it. The plan
        (each point with its number of parties) is kept in ``sync_points``; every instance of
        this node gets its own state of each point.

        Raises:
            WorkflowDefinitionError: a point's parties could never all arrive or never all run
                at once under ``max_concurrency``; the message names the point, this step and
                the numbers.
        """
        object.__setattr__(self, "sync_points", plan_sync(self, specs))

    def check_memory_limits(self, steps: Iterable[Step[Any]]) -> None:
        """Refuse memory limits when a leaf under ``steps`` runs in a thread.

        Raises:
            WorkflowDefinitionError: a memory limit is set and a thread tool is found.
        """
        if not self.limits.limits_memory:
            return
        for leaf in _thread_leaves(steps):
            msg = (
                f"{self.kind} {self.name!r}: max_memory_per_branch/max_total_memory can only "
                f"be enforced for process-isolated tools, but tool {leaf.name!r} runs in a "
                "thread; isolate it or drop the memory limits"
            )
            raise WorkflowDefinitionError(msg)


def _thread_leaves(steps: Iterable[Step[Any]]) -> Iterator[Step[Any]]:
    for step in steps:
        if isinstance(step, Workflow):
            yield from _thread_leaves(spec.step for spec in step.children())
        elif isinstance(step, Leaf) and not getattr(step, "isolated", False):
            yield step


@dataclass(frozen=True, slots=True)
class Gathered:
    """Fact: the gather decided the batch of ``instance``."""

    instance: int
    outcome: GatherOutcome


@dataclass(frozen=True, slots=True)
class _Part:
    """Names one of a node's helper actors in the run (keys ``RunEnv.actor_for`` by identity)."""

    name: str


class FanCoordinator(Coordinator[F]):
    """Runs the parallel protocol for every instance of one parallel node in a run.

    Subclasses implement :meth:`plan`; they may override :meth:`conclude`.
    """

    def __init__(self, node: F) -> None:
        super().__init__(node)
        self._gather_key = _Part(f"{node.name}.gather")
        self._branches_key = _Part(f"{node.name}.branches")
        self._supervisor: ActorHandle[BranchSupervisor] | None = None
        self._batches: dict[int, str] = {}
        self._groups: dict[int, list[str]] = {}

    def plan(self, instance: Instance) -> tuple[GatherPolicy, Iterator[Branch]]:
        """The gather policy and the (lazy) branches of a new instance.

        Raises:
            Exception: the instance cannot run (its input cannot be copied, say); it fails.
        """
        raise NotImplementedError

    def conclude(self, instance: Instance, outcome: GatherOutcome) -> None:
        """Finish ``instance`` with the gather's outcome."""
        verdict = outcome.verdict
        self.finish(
            instance,
            verdict.status,
            verdict.value,
            verdict.error,
            failed_step=verdict.failed_step,
            counts=verdict.counts,
        )

    def begin(self, instance: Instance) -> None:
        """Plan the instance and hand it to the node's gather and branch supervisor."""
        policy, branches = self.plan(instance)
        self.start_batch(instance, policy, branches)

    def start_batch(
        self,
        instance: Instance,
        policy: GatherPolicy,
        branches: Iterator[Branch],
        *,
        sync_points: SyncPlan | None = None,
        key: str | None = None,
    ) -> None:
        """Run ``branches`` for ``instance`` through the node's gather and branch supervisor.

        Usable at any point of an instance (a kind with phases runs its branch phase with it);
        the gather's outcome arrives as :meth:`conclude`, its records appended to the
        instance's. One batch runs at a time per instance.

        Args:
            instance: the instance the branches belong to (their scope is its scope).
            policy: the gather's strategy state for this batch.
            branches: the (lazy) branches.
            sync_points: the barriers and rendezvous the branches synchronise on, with their
                parties; the node's ``sync_points`` if ``None``. Each gets its state for this
                batch (the branches' ``StepCall.group``).
            key: the batch's id (its group); the instance's call id if ``None``. A later batch
                of the same instance needs a key of its own.
        """
        env = instance.call.env
        gather = env.actor_for(self._gather_key, GatherActor)
        supervisor = self._supervisor = env.actor_for(self._branches_key, BranchSupervisor)
        key = instance.call_id if key is None else key
        self._batches[instance.id] = key
        self._groups.setdefault(instance.id, []).append(key)
        where = f"{self.node.kind} {self.node.name!r}"
        for point, parties in self.node.sync_points if sync_points is None else sync_points:
            point.open_group(env, key, parties, where)
        handle = self.handle
        instance_id = instance.id

        def decided(outcome: GatherOutcome) -> None:
            handle.tell(Gathered(instance_id, outcome))

        def cancel_rest(why: str) -> None:
            supervisor.tell(CancelRemaining(key, why))

        gate = AdmissionGate(paced=True)  # the gather takes each report through it
        gather.tell(
            ExpectBatch(
                key,
                policy,
                instance.scope,
                decided,
                cancel_rest,
                env=env,
                path=instance.call.path,
                gate=gate,
            )
        )
        node = self.node
        limits = node.limits
        grace = limits.cancellation_timeout
        batch = BranchBatch(
            key=key,
            call=dataclasses.replace(
                instance.call, scope=instance.scope, outputs=self.visible(instance)
            ),
            branches=branches,
            limits=limits,
            retry=node.retry,
            report=gather.tell,
            cancellation_timeout=self.system.cancellation_timeout if grace is None else grace,
            gate=gate,
            successes_can_wait=bool(getattr(policy, "successes_can_wait", False))
            and env.partials is None,
        )
        supervisor.tell(StartBatch(batch))

    def on_receive(self, message: Any) -> Any:
        """Take the gather's outcome; everything else as every coordinator does."""
        if isinstance(message, Gathered):
            instance = self._instances.get(message.instance)
            if instance is not None:
                self._batches.pop(instance.id, None)
                instance.records.extend(message.outcome.records)
                self.guarded(instance, self.conclude, message.outcome)
            return None
        return super().on_receive(message)

    def _cancel(self, instance: Instance, running: StepResult | None = None) -> None:
        key = self._batches.get(instance.id)
        if key is None or self._supervisor is None:
            super()._cancel(instance, running)
            return
        # The gather holds the branch records and decides now, with the scope's status; the
        # supervisor tells it first which branches had started.
        self._supervisor.tell(CutBranches(key, why_cut(instance.scope)))

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
        """Decide ``instance`` and forget its synchronisation state."""
        self._batches.pop(instance.id, None)
        env = instance.call.env
        for group in self._groups.pop(instance.id, ()):
            env.drop_group(group)
        super().finish(
            instance,
            status,
            value,
            error,
            failed_step=failed_step,
            iterations=iterations,
            counts=counts,
        )

    def on_stop(self) -> None:
        """Decide every instance still running as cancelled, without waiting for the gather."""
        for instance in list(self._instances.values()):
            instance.scope.cancel(CancelReason.SHUTDOWN)
            cut = cancelled_result(self.node.name, instance.scope, why_cut(instance.scope))
            self.finish(instance, cut.status, None, cut.error)


def branches_of(specs: Iterable[StepSpec], make_input: Any, *, start: int = 0) -> Iterator[Branch]:
    """Branches for ``specs``, each input made by ``make_input()`` then the spec's mapping."""
    for index, spec in enumerate(specs, start):
        # Without a mapping the branch takes ``make_input`` itself: no wrapper per branch. By
        # position (index, name, step, input, timeout, semaphores): one is built per branch.
        yield Branch(
            index,
            spec.name,
            spec.step,
            make_input if spec.input is None else _mapped(spec, make_input),
            spec.timeout,
            spec.semaphores,
        )


def _mapped(spec: StepSpec, make_input: Any) -> Any:
    def make() -> Any:
        return spec.map_input(make_input())

    return make
