"""Results of workflow nodes and of whole runs (pydantic at the edge)."""

from __future__ import annotations

import reprlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.workflows.errors import Break, WorkflowError

__all__ = ["WorkflowResult", "WorkflowStepResult"]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


class WorkflowStepResult(StepResult):
    """The record of one workflow node inside its parent: a ``StepResult`` with its children.

    Attributes:
        kind: ``"sequential"``, ``"conditional"``, ``"loop"``, ...
        steps: the records of the node's children, in order, each named.
        failed_step: the name of the child whose failure failed the node, if one did.
        branch: for a conditional, the chosen branch's name (``None``: none was chosen).
        iterations: for a loop, how many iterations finished.
        counts: for a step over a collection (MapReduce), how many items ended in each status;
            ``steps`` then holds only the first failures.
    """

    kind: str
    steps: list[SerializeAsAny[StepResult]] = Field(default_factory=list)
    failed_step: str | None = None
    branch: str | None = None
    iterations: int | None = None
    counts: dict[str, int] | None = None

    def step(self, path: str) -> StepResult:
        """The record of the child at ``path`` (names joined by ``/``).

        Raises:
            KeyError: no child has that path.
        """
        return _find(self.steps, path, self.name)


class WorkflowResult(BaseModel):
    """What ``ActorSystem.run`` returns for a workflow or a tool: status, output, every step.

    ``value`` gives the output, or raises :class:`WorkflowError` when the run did not end
    ``ok``. ``str(result)`` is a compact tree, one line per step; ``to_dict()`` and
    ``to_json()`` serialise everything but the original exception objects.

    Attributes:
        run_id: the run's id.
        name: the top step's name.
        kind: the top step's kind (``"tool"`` for a one-tool run).
        status: how the run ended.
        output: the output when ``status`` is ``ok``.
        error: what went wrong otherwise.
        steps: the records of the top step's children (of the tool call, for a tool run).
        failed_step: the name of the child whose failure failed the run, if one did.
        branch: for a conditional at the top, the chosen branch.
        iterations: for a loop at the top, how many iterations finished.
        counts: for a MapReduce at the top, how many items ended in each status.
        started_at: ``time.monotonic()`` at the start.
        finished_at: ``time.monotonic()`` when the status was decided.
        started_wall: wall-clock start.
        finished_wall: wall-clock end.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    name: str
    kind: str
    status: Status
    output: Any = None
    error: ErrorInfo | None = None
    steps: list[SerializeAsAny[StepResult]] = Field(default_factory=list)
    failed_step: str | None = None
    branch: str | None = None
    iterations: int | None = None
    counts: dict[str, int] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    started_wall: datetime | None = None
    finished_wall: datetime | None = None

    @classmethod
    def from_step(cls, result: StepResult, run_id: str, *, kind: str) -> WorkflowResult:
        """The run result of a top step's ``StepResult``.

        A ``Break`` that reaches the top (no loop caught it) fails the run.
        """
        status, output, error = result.status, result.value, result.error
        if isinstance(output, Break) and status is Status.OK:
            status, output = Status.ERROR, None
            error = ErrorInfo(
                type="actors.workflows.Break",
                message=f"{result.name!r} signalled Break outside any LoopWorkflow",
            )
        fields: dict[str, Any] = {}
        if isinstance(result, WorkflowStepResult):
            kind = result.kind
            fields = {
                "steps": list(result.steps),
                "failed_step": result.failed_step,
                "branch": result.branch,
                "iterations": result.iterations,
                "counts": result.counts,
            }
        elif kind == "tool":
            fields = {"steps": [result]}
        return cls(
            run_id=run_id,
            name=result.name,
            kind=kind,
            status=status,
            output=output,
            error=error,
            started_at=result.started_at,
            finished_at=result.finished_at,
            started_wall=result.started_wall,
            finished_wall=result.finished_wall,
            **fields,
        )

    @property
    def ok(self) -> bool:
        """Whether the run ended ``ok``."""
        return self.status is Status.OK

    @property
    def value(self) -> Any:
        """The run's output.

        Raises:
            WorkflowError: the run did not end ``ok``; the original exception is its cause.
        """
        if self.status is Status.OK:
            return self.output
        where = f" at step {self.failed_step!r}" if self.failed_step else ""
        detail = f": {self.error}" if self.error is not None else ""
        error = WorkflowError(
            f"run {self.run_id!r} of {self.kind} {self.name!r} ended "
            f"{self.status.value}{where}{detail}",
            self,
        )
        cause = self.error.exception if self.error is not None else None
        raise error from cause

    @property
    def duration(self) -> float | None:
        """Seconds between start and decision, if both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def step(self, path: str) -> StepResult:
        """The record of the step at ``path`` (names joined by ``/``), e.g. ``"inner/fetch"``.

        Raises:
            KeyError: no step has that path.
        """
        return _find(self.steps, path, self.name)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-compatible data (values without a JSON form become their repr)."""
        return self.model_dump(mode="json", fallback=repr)

    def to_json(self, *, indent: int | None = None) -> str:
        """Everything as a JSON document."""
        return self.model_dump_json(indent=indent, fallback=repr)

    def __str__(self) -> str:
        head = _line(self.name, self.status, self.duration, self.output, self.error)
        lines = [f"{self.kind} {head} [{self.run_id}]"]
        _tree(self.steps, 1, lines)
        return "\n".join(lines)


def _find(steps: list[StepResult], path: str, owner: str) -> StepResult:
    name, _, rest = path.partition("/")
    for record in steps:
        if record.name == name:
            if not rest:
                return record
            if isinstance(record, WorkflowStepResult):
                return _find(record.steps, rest, f"{owner}/{name}")
            break
    msg = f"{owner!r} has no step {path!r}"
    raise KeyError(msg)


def _line(
    name: str, status: Status, duration: float | None, value: Any, error: ErrorInfo | None
) -> str:
    took = "" if duration is None else f" in {duration * 1000:.1f} ms"
    if status is Status.OK:
        return f"{name}: ok{took} -> {_repr.repr(value)}"
    detail = f" ({error})" if error is not None else ""
    return f"{name}: {status.value}{took}{detail}"


def _tree(steps: list[StepResult], depth: int, lines: list[str]) -> None:
    for record in steps:
        line = _line(record.name, record.status, record.duration, record.value, record.error)
        if isinstance(record, WorkflowStepResult) and record.branch is not None:
            line += f" [branch {record.branch!r}]"
        lines.append("  " * depth + line)
        if isinstance(record, WorkflowStepResult):
            _tree(record.steps, depth + 1, lines)
