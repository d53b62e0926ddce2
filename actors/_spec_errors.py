"""``SpecError``: what is wrong with a declarative workflow spec, and where."""

from __future__ import annotations

from dataclasses import dataclass

from actors.runtime.errors import CastflowError

__all__ = ["SpecError", "SpecProblem", "join_path"]


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One problem in a spec.

    Attributes:
        path: where in the document, e.g. ``workflow.steps[2].aggregation`` (``""`` for the
            whole document).
        message: what was expected and what was found.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(CastflowError):
    """A workflow spec is invalid: it names the file, the path inside it and what was expected.

    Example: ``research.yaml: workflow.steps[2].aggregation: expected 'all_success',
    'first_success', 'partial_success', {quorum: k} or {custom: 'module:function'} (got 'most')``.

    Attributes:
        source: the file the spec came from (``"<mapping>"`` for a mapping).
        problems: every problem found, in document order.
    """

    __module__ = "actors"  # as users import it: how results (ErrorInfo.type) name it

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  {problem}" for problem in self.problems)
            text = f"{source}: {len(self.problems)} problems\n{lines}"
        super().__init__(text)

    @property
    def path(self) -> str:
        """The path of the first problem."""
        return self.problems[0].path if self.problems else ""


def join_path(parts: tuple[int | str, ...]) -> str:
    """``("workflow", "steps", 2, "aggregation")`` as ``workflow.steps[2].aggregation``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part
    return text
