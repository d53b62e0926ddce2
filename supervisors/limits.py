"""``ResourceLimits`` and ``RetryPolicy``: what a parallel step's branch supervisor enforces.

Both are validated pydantic models, so a bad limit fails where it is written, naming the field.
Time is in seconds (float) and memory in bytes everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.runtime.results import Status, StepResult
from supervisors.backoff import Backoff

__all__ = ["ResourceLimits", "RetryPolicy"]

_TIMEOUT = "castflow.Timeout"
"""The error type of a record cut by a deadline."""


class ResourceLimits(BaseModel):
    """Limits of one parallel step: concurrency, deadlines, cancellation grace, memory.

    Args:
        max_concurrent_executions: the most branches of one run of the step in flight at once
            (a branch that is a nested workflow holds its slot while it runs; slots are never
            shared between nesting levels, so nesting cannot deadlock).
        execution_timeout: seconds each attempt of a branch may take before it is cut with
            status ``timeout``.
        cancellation_timeout: grace, after a branch is cancelled or timed out, before a thread
            that ignores the cancellation is abandoned and its worker replaced; the system's
            default if ``None``.
        max_memory_per_branch: bytes each branch may use. Enforceable only for process-isolated
            tools; with thread tools the step's definition is refused.
        max_total_memory: bytes all running branches of one run of the step may use together
            (the same restriction applies): branches are admitted only while the sum of their
            budgets fits. Each branch's budget is ``max_memory_per_branch``, or this total when
            that is unset; a budget larger than the total is refused here.
        max_abandoned_threads: the most abandoned threads still alive in the system before the
            step stops admitting branches (each then fails with ``TooManyAbandonedThreadsError``).
            Abandoned threads keep running their tool; this keeps a run of hanging tools from
            growing the process without bound.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_executions: int = Field(default=10, ge=1)
    execution_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cancellation_timeout: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_memory_per_branch: int | None = Field(default=None, gt=0)
    max_total_memory: int | None = Field(default=None, gt=0)
    max_abandoned_threads: int = Field(default=100, ge=0)

    @model_validator(mode="after")
    def _check_memory(self) -> ResourceLimits:
        per_branch, total = self.max_memory_per_branch, self.max_total_memory
        if per_branch is not None and total is not None and per_branch > total:
            msg = (
                f"max_memory_per_branch ({per_branch} bytes) is larger than max_total_memory "
                f"({total} bytes): no branch could ever be admitted"
            )
            raise ValueError(msg)
        return self

    @property
    def branch_memory(self) -> int | None:
        """The memory budget of each branch in bytes, or ``None`` when memory is not limited."""
        if self.max_memory_per_branch is not None:
            return self.max_memory_per_branch
        return self.max_total_memory

    @property
    def limits_memory(self) -> bool:
        """Whether a memory limit was asked for."""
        return self.max_memory_per_branch is not None or self.max_total_memory is not None


RetryOn = tuple[type[BaseException], ...] | Callable[[StepResult], bool]
"""Which failed attempts are retried: exception types, or a predicate on the attempt's result."""


class RetryPolicy(BaseModel):
    """How a failed branch is tried again. Retries never count toward a supervisor's intensity.

    Args:
        max_attempts: tries in all, the first included (1: no retry).
        backoff: the delay before each retry (``Backoff.delay(n)`` before retry ``n + 1``);
            no delay if ``None``.
        retry_on: exception types whose failures are retried (a timed-out attempt counts as
            ``TimeoutError``; a failure recorded without its exception object matches by its
            recorded type name, and always matches ``Exception``), or a predicate on the
            failed attempt's ``StepResult``. Cancelled attempts are never retried.

    Example:
        >>> RetryPolicy(max_attempts=3, backoff=Backoff(min=0.1, max=1.0)).max_attempts
        3
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_attempts: int = Field(default=3, ge=1)
    backoff: Backoff | None = None
    retry_on: Any = Field(default=(Exception,))

    @field_validator("retry_on")
    @classmethod
    def _check_retry_on(cls, value: Any) -> RetryOn:
        if isinstance(value, type) and issubclass(value, BaseException):
            return (value,)
        if isinstance(value, tuple | list) and all(
            isinstance(item, type) and issubclass(item, BaseException) for item in value
        ):
            return tuple(value)
        if callable(value):
            return value  # type: ignore[no-any-return]
        msg = f"retry_on must be exception types or a predicate on StepResult, got {value!r}"
        raise ValueError(msg)

    def should_retry(self, result: StepResult, attempt: int) -> bool:
        """Whether the failed ``attempt`` (1 for the first) with ``result`` is tried again."""
        if attempt >= self.max_attempts or result.status in (Status.OK, Status.CANCELLED):
            return False
        if result.status not in (Status.ERROR, Status.TIMEOUT):
            return False
        retry_on = self.retry_on
        if not isinstance(retry_on, tuple):
            return bool(retry_on(result))
        error = result.error.exception if result.error is not None else None
        # A nested workflow cut by a deadline inside it fails with a timeout record and no
        # exception object: that attempt timed out too.
        timed_out = error is None and result.error is not None and result.error.type == _TIMEOUT
        if result.status is Status.TIMEOUT or timed_out:
            return any(issubclass(TimeoutError, kind) for kind in retry_on)
        if error is not None:
            return isinstance(error, retry_on)
        # A failure recorded without its exception object (a worker process's, or a step's own
        # record): matched by the recorded type name, and by the catch-all types.
        recorded = result.error.type if result.error is not None else None
        return any(
            kind in (Exception, BaseException)
            or f"{kind.__module__}.{kind.__qualname__}" == recorded
            for kind in retry_on
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before trying again after failed ``attempt`` (1 for the first)."""
        if self.backoff is None:
            return 0.0
        return self.backoff.delay(attempt - 1)
