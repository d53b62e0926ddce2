"""How a workflow holds its children: ``StepSpec`` (a step with a name, an input mapping and a
timeout), the ``step()`` helper that builds one, and the checks every definition runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actors.runtime.permits import Semaphore
from actors.runtime.steps import Step
from actors.tools import ToolDefinitionError, as_tool
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["InputMap", "StepSpec", "step"]

InputMap = Callable[[Any], Any] | str | int
"""A mapping function ``fn(value) -> input``, or a key selecting ``value[key]``."""


@dataclass(frozen=True, slots=True, eq=False)
class StepSpec:
    """A child of a workflow: the step, its name there, its input mapping and its timeout.

    Build one with :func:`step`; a bare step given to a workflow gets a spec with its own
    name, no mapping and no timeout.

    Attributes:
        step: the step (a workflow, a tool, or any ``Step``).
        name: its name inside the parent (records, outputs and paths use it).
        input: applied to the value the step receives: a function, or a key to select.
        timeout: seconds until the step's own deadline (never later than its parent's).
        semaphores: semaphores every leaf execution under the step holds a permit of.
    """

    step: Step[Any]
    name: str
    input: InputMap | None = None
    timeout: float | None = None
    semaphores: tuple[Semaphore, ...] = ()

    def map_input(self, value: Any) -> Any:
        """The step's input for ``value``, after the mapping or key selection.

        Raises:
            Exception: whatever the mapping raises; ``KeyError``/``IndexError``/``TypeError``
                for a key that cannot be selected.
        """
        select = self.input
        if select is None:
            return value
        if isinstance(select, str | int):
            return value[select]
        return select(value)


def step(
    target: object,
    *,
    name: str | None = None,
    input: InputMap | None = None,
    timeout: float | None = None,
    semaphores: Iterable[Semaphore] = (),
) -> StepSpec:
    """Wrap a step with a name, an input mapping or key selection, a timeout and semaphores.

    Args:
        target: a workflow, a tool, a ``Step``, or a plain function (made a tool).
        name: the step's name inside its workflow; defaults to the step's own name.
        input: ``fn(value)`` computing the step's input from what it receives, or a key:
            ``input="text"`` passes ``value["text"]``.
        timeout: seconds until the step's deadline; the earlier of this and the enclosing
            deadline applies.
        semaphores: ``Semaphore``s every leaf execution under the step (the tool itself, or
            each tool of a nested workflow) holds a permit of while it runs.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.
    """
    return to_spec(target, "step()", name=name, input=input, timeout=timeout, semaphores=semaphores)


def to_step(obj: object, where: str) -> Step[Any]:
    """``obj`` as a ``Step``: steps as they are, functions and tool objects through ``as_tool``."""
    if isinstance(obj, StepSpec):
        return obj.step
    if isinstance(obj, Step):
        return obj
    if not callable(obj) and not hasattr(obj, "as_tool"):
        raise WorkflowDefinitionError(
            f"{where}: {obj!r} ({type(obj).__name__}) is not a step: expected a workflow, "
            "a tool, a function or a Step"
        )
    try:
        return as_tool(obj)
    except ToolDefinitionError as exc:
        raise WorkflowDefinitionError(f"{where}: cannot be made a tool: {exc}") from exc


def to_spec(
    obj: object,
    where: str,
    *,
    name: str | None = None,
    input: InputMap | None = None,
    timeout: float | None = None,
    semaphores: Iterable[Semaphore] = (),
) -> StepSpec:
    """Normalise a child given to a workflow into a ``StepSpec``."""
    sems = _check_semaphores(semaphores, where)
    if (
        isinstance(obj, StepSpec)
        and name is None
        and input is None
        and timeout is None
        and not sems
    ):
        return obj
    target = to_step(obj, where)
    if isinstance(obj, StepSpec):
        # Renaming a spec (a fork-join branch, ``step(spec, ...)``) keeps what it did not set.
        input = obj.input if input is None else input
        timeout = obj.timeout if timeout is None else timeout
    if name is None:
        name = obj.name if isinstance(obj, StepSpec) else target.name
    check_name(name, where)
    if input is not None and not (isinstance(input, str | int) or callable(input)):
        raise WorkflowDefinitionError(
            f"{where}: input must be a function or a key (str or int), got {input!r}"
        )
    if isinstance(obj, StepSpec):
        sems = obj.semaphores + sems
    return StepSpec(target, name, input, check_timeout(timeout, where), sems)


def _check_semaphores(semaphores: Iterable[Semaphore], where: str) -> tuple[Semaphore, ...]:
    if isinstance(semaphores, Semaphore):
        return (semaphores,)
    items = tuple(semaphores)
    for item in items:
        if not isinstance(item, Semaphore):
            raise WorkflowDefinitionError(
                f"{where}: semaphores must be Semaphore objects, got {item!r}"
            )
    return items


def unique_specs(specs: Iterable[StepSpec], where: str) -> tuple[StepSpec, ...]:
    """Make names unique within one workflow: repeats get a suffix (``add``, ``add_2``)."""
    seen: dict[str, int] = {}
    out: list[StepSpec] = []
    for spec in specs:
        name = spec.name
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
            while name in seen:
                name = f"{name}_"
        seen.setdefault(name, 1)
        out.append(
            spec
            if name == spec.name
            else StepSpec(spec.step, name, spec.input, spec.timeout, spec.semaphores)
        )
    return tuple(out)


def check_name(name: object, where: str) -> str:
    """``name`` if it is a usable step name."""
    if not isinstance(name, str) or not name or "/" in name:
        raise WorkflowDefinitionError(
            f"{where}: name must be a non-empty string without '/', got {name!r}"
        )
    return name


def check_timeout(timeout: object, where: str) -> float | None:
    """``timeout`` as seconds, if it is a usable timeout."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise WorkflowDefinitionError(
            f"{where}: timeout must be a non-negative number of seconds, got {timeout!r}"
        )
    return float(timeout)
