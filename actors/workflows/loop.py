"""``LoopWorkflow``: run a body repeatedly, each output the next input, until told to stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.workflows._coordinator import Coordinator, Instance, Workflow, failure, signalled
from actors.workflows._spec import StepSpec, to_spec
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["LoopWorkflow"]


class LoopWorkflow(Workflow):
    """Run ``body`` again and again; each iteration's output is the next one's input.

    The loop ends ``ok`` with the last output when ``until(output)`` holds or after
    ``max_iterations`` iterations, and with ``Break.value`` when a step inside the body raises
    or returns :class:`Break` — only the nearest enclosing loop catches it. A failed
    iteration fails the loop (``failed_step`` is e.g. ``"body[2]"``). Iterations are messages
    to the same coordinators, never new threads.

    Args:
        body: the step run each iteration (a workflow, a tool, a function, a ``step(...)``).
        max_iterations: the most iterations (at least 1).
        until: ``until(output) -> bool``, checked after each iteration; quick and pure.
        name: the workflow's name.
        timeout: seconds until each run of this node is cut.

    Raises:
        WorkflowDefinitionError: neither ``max_iterations`` nor ``until`` is given,
            ``max_iterations`` is not a positive int, ``until`` is not callable, ``body`` is
            not a step.
    """

    __slots__ = ("body", "max_iterations", "until")

    kind = "loop"

    body: StepSpec
    max_iterations: int | None
    until: Callable[[Any], object] | None

    def __init__(
        self,
        body: object,
        *,
        max_iterations: int | None = None,
        until: Callable[[Any], object] | None = None,
        name: str = "loop",
        timeout: float | None = None,
    ) -> None:
        super().__init__(name=name, timeout=timeout)
        where = f"loop {name!r}"
        if max_iterations is None and until is None:
            msg = f"{where}: give max_iterations or until (or both), or it could never end"
            raise WorkflowDefinitionError(msg)
        if max_iterations is not None and (
            isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or max_iterations < 1
        ):
            msg = f"{where}: max_iterations must be an int >= 1, got {max_iterations!r}"
            raise WorkflowDefinitionError(msg)
        if until is not None and not callable(until):
            msg = f"{where}: until must be callable, got {until!r}"
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "body", to_spec(body, f"{where}: body"))
        object.__setattr__(self, "max_iterations", max_iterations)
        object.__setattr__(self, "until", until)

    def children(self) -> tuple[StepSpec, ...]:
        """The body."""
        return (self.body,)


class LoopCoordinator(Coordinator[LoopWorkflow]):
    """Drives every instance (and every iteration) of one ``LoopWorkflow`` node in a run."""

    def begin(self, instance: Instance) -> None:
        """Start the first iteration with the loop's input."""
        instance.value = instance.call.input
        self._iterate(instance)

    def _iterate(self, instance: Instance) -> None:
        body = self.node.body
        self.start_child(instance, body, instance.value, f"{body.name}[{instance.iteration}]")

    def on_child(self, instance: Instance, result: StepResult) -> None:
        """Record the iteration; stop on Break, failure, ``until`` or the limit; else go on."""
        instance.records.append(result)
        instance.iteration += 1
        done = instance.iteration
        signal = signalled(result)
        if signal is not None:
            self.finish(instance, Status.OK, signal.value, None, iterations=done)
            return
        if not result.ok:
            self.finish(
                instance,
                Status.ERROR,
                None,
                failure(result.name, result),
                failed_step=result.name,
                iterations=done,
            )
            return
        instance.value = result.value
        instance.outputs[self.node.body.name] = result.value
        until = self.node.until
        try:
            stop = until is not None and bool(until(result.value))
        except BaseException as exc:  # noqa: BLE001 - the predicate's failure is the loop's
            error = ErrorInfo.from_exception(exc)
            error = error.model_copy(
                update={"message": f"until raised after iteration {done - 1}: {error}"}
            )
            self.finish(instance, Status.ERROR, None, error, iterations=done)
            return
        limit = self.node.max_iterations
        if stop or (limit is not None and done >= limit):
            self.finish(instance, Status.OK, result.value, None, iterations=done)
            return
        self._iterate(instance)

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
        """Decide the instance; a loop always reports how many iterations finished."""
        super().finish(
            instance,
            status,
            value,
            error,
            failed_step=failed_step,
            iterations=instance.iteration if iterations is None else iterations,
            counts=counts,
        )


LoopWorkflow.coordinator = LoopCoordinator
