"""``SequentialWorkflow``: steps one after another, each output the next step's input."""

from __future__ import annotations

from collections.abc import Iterable

from actors.runtime.results import Status, StepResult
from actors.workflows._coordinator import (
    Coordinator,
    Instance,
    Workflow,
    failure,
    signalled,
    skipped,
)
from actors.workflows._spec import StepSpec, to_spec, unique_specs
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["SequentialWorkflow"]


class SequentialWorkflow(Workflow):
    """Run steps in order; each step's output is the next step's input.

    A step's input can be reshaped with ``step(target, input=fn_or_key)``. When a step fails
    the workflow stops, records the remaining steps ``skipped`` and fails, naming the step
    (``failed_step``). With ``continue_on_error=True`` it records the failure and goes on: the
    next step receives the input the failed step received, and the workflow ends ``ok`` with
    the last successful output. A ``Break`` from a step stops the sequence and passes up to the
    nearest enclosing loop, whatever ``continue_on_error`` says.

    Args:
        steps: workflows, tools, functions (made tools) or ``step(...)`` specs; at least one.
        name: the workflow's name in records, events and paths.
        timeout: seconds until each run of this node is cut (never later than its parent's).
        continue_on_error: go on after a failed step instead of stopping.

    Raises:
        WorkflowDefinitionError: ``steps`` is empty or not a list, a step is not a step, a
            name or timeout is invalid; the message names the part.
    """

    __slots__ = ("continue_on_error", "steps")

    kind = "sequential"

    steps: tuple[StepSpec, ...]
    continue_on_error: bool

    def __init__(
        self,
        steps: Iterable[object],
        *,
        name: str = "sequential",
        timeout: float | None = None,
        continue_on_error: bool = False,
    ) -> None:
        super().__init__(name=name, timeout=timeout)
        where = f"sequential {name!r}"
        if isinstance(steps, str | bytes) or not isinstance(steps, Iterable):
            msg = f"{where}: steps must be a list of steps, got {steps!r}"
            raise WorkflowDefinitionError(msg)
        items = list(steps)
        if not items:
            msg = f"{where}: steps is empty; a sequence needs at least one step"
            raise WorkflowDefinitionError(msg)
        if not isinstance(continue_on_error, bool):
            msg = f"{where}: continue_on_error must be a bool, got {continue_on_error!r}"
            raise WorkflowDefinitionError(msg)
        specs = unique_specs(
            (to_spec(item, f"{where}: step {i}") for i, item in enumerate(items, 1)), where
        )
        object.__setattr__(self, "steps", specs)
        object.__setattr__(self, "continue_on_error", continue_on_error)

    def children(self) -> tuple[StepSpec, ...]:
        """The steps, in order."""
        return self.steps


class SequentialCoordinator(Coordinator[SequentialWorkflow]):
    """Drives every instance of one ``SequentialWorkflow`` node in a run."""

    def begin(self, instance: Instance) -> None:
        """Feed the input to the first step."""
        instance.value = instance.call.input
        self._advance(instance)

    def _advance(self, instance: Instance) -> None:
        steps = self.node.steps
        if instance.position >= len(steps):
            self.finish(instance, Status.OK, instance.value, None)
            return
        spec = steps[instance.position]
        self.start_child(instance, spec, instance.value, spec.name)

    def on_child(self, instance: Instance, result: StepResult) -> None:
        """Record the step; go on, stop on failure, or pass a ``Break`` up."""
        instance.records.append(result)
        name = result.name
        signal = signalled(result)
        if signal is not None:
            instance.position += 1
            why = f"step {name!r} signalled Break"
            instance.records.extend(skipped(n, why) for n in self.pending(instance))
            self.finish(instance, Status.OK, signal, None)
            return
        if result.ok:
            instance.outputs[name] = result.value
            instance.value = result.value
        elif not self.node.continue_on_error:
            instance.position += 1
            why = f"step {name!r} failed"
            instance.records.extend(skipped(n, why) for n in self.pending(instance))
            self.finish(instance, Status.ERROR, None, failure(name, result), failed_step=name)
            return
        instance.position += 1
        self._advance(instance)

    def pending(self, instance: Instance) -> list[str]:
        """The steps after the current one (the running one is recorded separately)."""
        start = instance.position + (1 if instance.running is not None else 0)
        return [spec.name for spec in self.node.steps[start:]]


SequentialWorkflow.coordinator = SequentialCoordinator
