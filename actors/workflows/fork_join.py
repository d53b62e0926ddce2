"""``ForkJoinWorkflow``: named branches, each its own sub-workflow, joined into a dict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from actors.gather import Aggregation, ErrorMode, GatherOutcome, GatherPolicy
from actors.runtime.results import Status
from actors.workflows._coordinator import Instance
from actors.workflows._fan import CopyMode, FanCoordinator, FanWorkflow
from actors.workflows._spec import StepSpec, to_spec
from actors.workflows.errors import WorkflowDefinitionError
from actors.workflows.parallel import plan_specs
from supervisors.batches import (
    Branch,
)
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = ["ForkJoinWorkflow"]


class ForkJoinWorkflow(FanWorkflow):
    """Fork named branches on the same input and join their values into a dict by name.

    Each branch is its own sub-workflow (a workflow, a tool, a function or a ``step(...)``
    spec) and gets its own copy of the input. The join needs every branch (``ALL_SUCCESS``):
    the output is ``{name: value}`` in the order the branches were given. With
    ``ErrorMode.FAIL_FAST`` (default) the first failure cancels the other branches; with
    ``FAIL_SLOW`` every branch finishes and every error is reported. The record lists the
    branches by name, each with its status.

    Branches that must wait for each other between phases put the same
    :class:`~actors.sync.Barrier` in each (``SequentialWorkflow([phase1, barrier, phase2])``);
    two that exchange values use a :class:`~actors.sync.Rendezvous`.

    Args:
        branches: ``{name: step}``; at least one. Names must be non-empty and contain no ``/``.
        name: the workflow's name.
        error_mode: ``ErrorMode.FAIL_FAST`` (default) or ``FAIL_SLOW``.
        max_concurrency: the most branches in flight at once (10 by default).
        limits: ``ResourceLimits`` (per-branch execution timeout, cancellation grace, ...).
        retry: a ``RetryPolicy`` for failed branches.
        timeout: seconds until a run of this step is cut (the overall timeout).
        copy_input: ``"branch"`` (default) copies the input for each branch; ``"none"``
            shares it.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.

    Example:
        >>> flow = ForkJoinWorkflow({"size": len, "text": repr})
        >>> flow.names
        ('size', 'text')
    """

    __slots__ = ("branches",)

    kind = "fork_join"

    branches: tuple[StepSpec, ...]

    def __init__(
        self,
        branches: Mapping[str, object],
        *,
        name: str = "fork_join",
        error_mode: ErrorMode = ErrorMode.FAIL_FAST,
        max_concurrency: int | None = None,
        limits: ResourceLimits | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        copy_input: CopyMode = "branch",
    ) -> None:
        super().__init__(
            name=name,
            timeout=timeout,
            aggregation=Aggregation.ALL_SUCCESS,
            error_mode=error_mode,
            limits=limits,
            max_concurrency=max_concurrency,
            retry=retry,
            copy_input=copy_input,
        )
        where = f"fork_join {name!r}"
        if not isinstance(branches, Mapping):
            msg = f"{where}: branches must be a mapping of names to steps, got {branches!r}"
            raise WorkflowDefinitionError(msg)
        if not branches:
            msg = f"{where}: branches is empty; a fork-join needs at least one branch"
            raise WorkflowDefinitionError(msg)
        specs = []
        for key, target in branches.items():
            if not isinstance(key, str):
                msg = f"{where}: branch names must be strings, got {key!r}"
                raise WorkflowDefinitionError(msg)
            specs.append(to_spec(target, f"{where}: branch {key!r}", name=key))
        object.__setattr__(self, "branches", tuple(specs))
        self.check_memory_limits(spec.step for spec in specs)
        self.check_synchronisation(specs)

    @property
    def names(self) -> tuple[str, ...]:
        """The branch names, in order."""
        return tuple(spec.name for spec in self.branches)

    def children(self) -> tuple[StepSpec, ...]:
        """The branches, in order."""
        return self.branches


class ForkJoinCoordinator(FanCoordinator[ForkJoinWorkflow]):
    """Drives every instance of one ``ForkJoinWorkflow`` node in a run."""

    def plan(self, instance: Instance) -> tuple[GatherPolicy, Iterator[Branch]]:
        """One branch per name, each with its own copy of the input."""
        return plan_specs(self.node, self.node.branches, instance.call.input)

    def conclude(self, instance: Instance, outcome: GatherOutcome) -> None:
        """Join the branch values into ``{name: value}``; a failure passes as it is."""
        verdict = outcome.verdict
        value: Any = None
        if verdict.status is Status.OK:
            value = {record.name: record.value for record in outcome.records if record.ok}
        self.finish(instance, verdict.status, value, verdict.error, failed_step=verdict.failed_step)


ForkJoinWorkflow.coordinator = ForkJoinCoordinator
