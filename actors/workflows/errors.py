"""Errors of workflow definitions and failed runs, and the ``Break`` signal of loops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.runtime.errors import CastflowError
from actors.runtime.results import Status, StepResult

if TYPE_CHECKING:
    from actors.workflows.result import WorkflowResult

__all__ = ["Break", "WorkflowDefinitionError", "WorkflowError", "break_of"]


class WorkflowDefinitionError(CastflowError):
    """A workflow definition is invalid; raised by its constructor, naming the offending part.

    Example: ``sequential 'pipeline': step 2: 42 (int) is not a step``.
    """


class WorkflowError(CastflowError):
    """Raised by ``WorkflowResult.value`` when the run did not end ``ok``.

    Attributes:
        result: the whole result, with every step's record.
    """

    def __init__(self, message: str, result: WorkflowResult) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


class Break(Exception):  # noqa: N818 - a signal named for what it does, like StopIteration
    """Raise (or return) this in a step to end the nearest enclosing ``LoopWorkflow``.

    The loop ends ``ok`` with ``value`` as its output. Sequential and conditional workflows in
    between stop where they are and pass the signal up; a loop never passes it to its own
    enclosing loop. Outside any loop, a ``Break`` fails the run.

    Args:
        value: the loop's output.
    """

    def __init__(self, value: object = None) -> None:
        super().__init__(value)
        self.value = value

    def __repr__(self) -> str:
        return f"Break({self.value!r})"


def break_of(result: StepResult) -> Break | None:
    """The ``Break`` a step signalled (raised or returned), if it did."""
    if result.status is Status.OK and isinstance(result.value, Break):
        return result.value
    if (
        result.status is Status.ERROR
        and result.error is not None
        and isinstance(result.error.exception, Break)
    ):
        return result.error.exception
    return None
