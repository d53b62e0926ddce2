"""What a step reports: its status, its value or its error, and when it ran."""

from __future__ import annotations

import traceback as _traceback
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorInfo", "Status", "StepResult"]


class Status(StrEnum):
    """How a step ended. A status is fixed when it is decided."""

    OK = "ok"
    """The step returned a value."""
    ERROR = "error"
    """The step raised, or its output was invalid."""
    TIMEOUT = "timeout"
    """The step's deadline passed before it returned."""
    CANCELLED = "cancelled"
    """The step was cancelled before it returned (by a caller, a sibling's failure, shutdown)."""
    ABANDONED = "abandoned"
    """The step's thread was given up without an earlier decision (it ignored cancellation)."""
    SKIPPED = "skipped"
    """The step never ran (an earlier step failed, or its branch was not chosen)."""


class ErrorInfo(BaseModel):
    """A typed record of an exception, safe to serialise and to show.

    Attributes:
        type: the exception's qualified type name, e.g. ``"builtins.ValueError"``.
        message: ``str(exception)``.
        traceback: the formatted traceback, when there was one.
        exception: the original exception object, kept in-process only (never serialised).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    type: str
    message: str
    traceback: str | None = None
    exception: BaseException | None = Field(default=None, exclude=True, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
        """Record ``exc``: its qualified type, message and (optionally) formatted traceback."""
        exc_type = type(exc)
        tb = None
        if with_traceback and exc.__traceback__ is not None:
            tb = "".join(_traceback.format_exception(exc))
        return cls(
            type=f"{exc_type.__module__}.{exc_type.__qualname__}",
            message=_message(exc),
            traceback=tb,
            exception=exc,
        )

    @property
    def short_type(self) -> str:
        """The type name without its module, e.g. ``"ValueError"``."""
        return self.type.rsplit(".", 1)[-1]

    def __str__(self) -> str:
        return f"{self.short_type}: {self.message}" if self.message else self.short_type


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in if the exception cannot describe itself."""
    try:
        return str(exc)
    except Exception as failure:  # noqa: BLE001 - a broken __str__ must not lose the result
        return f"<{type(exc).__qualname__}.__str__ raised {type(failure).__qualname__}>"


class StepResult(BaseModel):
    """The outcome of one step: a tool call, a workflow node or a parallel branch.

    Attributes:
        name: the step's name.
        status: how it ended.
        value: its output when ``status`` is ``ok``, else ``None``.
        error: what went wrong, when ``status`` is not ``ok`` and there was an exception or a
            reason to record.
        attempts: how many times it was tried (retries count).
        started_at: ``time.monotonic()`` when it started, if it started.
        finished_at: ``time.monotonic()`` when its status was decided.
        started_wall: wall-clock start, for logs.
        finished_wall: wall-clock end, for logs.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    status: Status
    value: Any = None
    error: ErrorInfo | None = None
    attempts: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    started_wall: datetime | None = None
    finished_wall: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the step returned a value."""
        return self.status is Status.OK

    @property
    def duration(self) -> float | None:
        """Seconds between start and decision, if both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def __str__(self) -> str:
        took = "" if self.duration is None else f" in {self.duration * 1000:.1f} ms"
        if self.ok:
            return f"{self.name}: ok{took} -> {self.value!r}"
        detail = f" ({self.error})" if self.error is not None else ""
        return f"{self.name}: {self.status.value}{took}{detail}"
