"""``ConditionalWorkflow``: the first branch whose predicate holds runs, else the default."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import cancelled_result
from actors.workflows._coordinator import (
    Coordinator,
    Instance,
    Workflow,
    failure,
    skipped,
    why_cut,
)
from actors.workflows._spec import StepSpec, to_spec, unique_specs
from actors.workflows.context import RunContext
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["ConditionalWorkflow", "Predicate"]

Predicate = Callable[[Any, RunContext], object]
"""``predicate(input, ctx)``: truthy to choose its branch. Must be quick and must not block."""


class ConditionalWorkflow(Workflow):
    """Run the first branch whose predicate holds for the input, or the default.

    Predicates are tried in order with ``(input, ctx)`` where ``ctx`` is a read-only
    :class:`RunContext`; the chosen branch runs with the same input and its output is the
    workflow's. The chosen branch's name is recorded (``branch``); the others are recorded
    ``skipped``. Without a matching branch and without a default the input passes through
    unchanged and ``branch`` is ``None``. A predicate that raises fails the workflow.

    Args:
        branches: ``(predicate, step)`` pairs, tried in order.
        default: the step to run when no predicate holds.
        name: the workflow's name.
        timeout: seconds until each run of this node is cut.

    Raises:
        WorkflowDefinitionError: no branches and no default, a branch that is not a pair, a
            predicate that is not callable, a step that is not a step.
    """

    __slots__ = ("branches", "default")

    kind = "conditional"

    branches: tuple[tuple[Predicate, StepSpec], ...]
    default: StepSpec | None

    def __init__(
        self,
        branches: Iterable[tuple[Predicate, object]],
        *,
        default: object = None,
        name: str = "conditional",
        timeout: float | None = None,
    ) -> None:
        super().__init__(name=name, timeout=timeout)
        where = f"conditional {name!r}"
        if isinstance(branches, str | bytes) or not isinstance(branches, Iterable):
            msg = f"{where}: branches must be a list of (predicate, step) pairs, got {branches!r}"
            raise WorkflowDefinitionError(msg)
        predicates: list[Predicate] = []
        specs: list[StepSpec] = []
        for i, branch in enumerate(branches, 1):
            if not isinstance(branch, tuple) or len(branch) != 2:
                msg = f"{where}: branch {i} must be a (predicate, step) pair, got {branch!r}"
                raise WorkflowDefinitionError(msg)
            predicate, target = branch
            if not callable(predicate):
                msg = f"{where}: branch {i}: predicate {predicate!r} is not callable"
                raise WorkflowDefinitionError(msg)
            predicates.append(predicate)
            specs.append(to_spec(target, f"{where}: branch {i}"))
        if default is not None:
            specs.append(to_spec(default, f"{where}: default"))
        if not specs:
            msg = f"{where}: no branches and no default; give at least one"
            raise WorkflowDefinitionError(msg)
        unique = unique_specs(specs, where)
        object.__setattr__(self, "branches", tuple(zip(predicates, unique, strict=False)))
        object.__setattr__(self, "default", unique[-1] if default is not None else None)

    def children(self) -> tuple[StepSpec, ...]:
        """The branches' steps in order, then the default."""
        specs = tuple(spec for _predicate, spec in self.branches)
        return specs if self.default is None else (*specs, self.default)


class ConditionalCoordinator(Coordinator[ConditionalWorkflow]):
    """Drives every instance of one ``ConditionalWorkflow`` node in a run."""

    def begin(self, instance: Instance) -> None:
        """Try the predicates in order; start the chosen branch or pass the input through."""
        value = instance.call.input
        ctx = self.context(instance)
        for i, (predicate, spec) in enumerate(self.node.branches, 1):
            try:
                chosen = bool(predicate(value, ctx))
            except BaseException as exc:  # noqa: BLE001 - a predicate's failure is the node's
                why = f"the predicate of branch {i} ({spec.name!r}) raised"
                instance.records.extend(skipped(s.name, why) for s in self.node.children())
                error = ErrorInfo.from_exception(exc)
                error = error.model_copy(update={"message": f"{why}: {error}"})
                self.finish(instance, Status.ERROR, None, error, failed_step=spec.name)
                return
            if chosen:
                self._run(instance, spec)
                return
        if self.node.default is not None:
            self._run(instance, self.node.default)
            return
        instance.records.extend(
            skipped(spec.name, "no predicate held") for spec in self.node.children()
        )
        self.finish(instance, Status.OK, value, None)

    def _run(self, instance: Instance, spec: StepSpec) -> None:
        instance.branch = spec
        self.start_child(instance, spec, instance.call.input, spec.name)

    def on_child(self, instance: Instance, result: StepResult) -> None:
        """Record the chosen branch among the skipped others; its outcome is the node's."""
        self._record(instance, result)
        if result.ok:
            self.finish(instance, Status.OK, result.value, None)
        else:
            self.finish(
                instance, Status.ERROR, None, failure(result.name, result), failed_step=result.name
            )

    def _record(self, instance: Instance, result: StepResult) -> None:
        for spec in self.node.children():
            if spec is instance.branch:
                instance.records.append(result)
            else:
                instance.records.append(skipped(spec.name, "branch not chosen"))

    def _cancel(self, instance: Instance, running: StepResult | None = None) -> None:
        """Decide ``instance`` cut by its scope, keeping the branches in definition order."""
        if instance.running is not None:
            chosen = instance.running
            instance.running = None
            cut = running if running is not None else cancelled_result(chosen, instance.scope, "")
            self._record(instance, cut)
            node = cancelled_result(self.node.name, instance.scope, why_cut(instance.scope))
            self.finish(instance, node.status, None, node.error)
            return
        super()._cancel(instance, running)


ConditionalWorkflow.coordinator = ConditionalCoordinator
