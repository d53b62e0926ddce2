"""``Backoff``: how long to wait before the n-th restart in a row.

The formula is Akka's: ``min(max, min * factor**n)``, then multiplied by
``1 + U[0, 1) * jitter``. The cap comes first, so with jitter the delay can exceed ``max`` by
up to ``jitter * max``; the jitter keeps siblings that fail together from restarting in step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Backoff"]


class Backoff(BaseModel):
    """Exponential backoff between restarts of one child (or retries of one branch).

    Args:
        min: the delay before the first restart, in seconds (> 0).
        max: the cap of the exponential part, in seconds (>= ``min``).
        factor: the growth per restart in a row (>= 1).
        jitter: the random factor in [0, 1]: the delay is multiplied by
            ``1 + random() * jitter``.
        reset_after: seconds a restarted child must run without failing before the count of
            restarts in a row returns to 0; ``(min + max) / 2`` by default.
        max_restarts: the most restarts in a row (failed restart attempts included; only
            the reset clears the count); one more and the supervisor gives up on the child,
            which then stays stopped, as Akka's ``withMaxRestarts``. ``None``: no limit
            besides the supervisor's intensity. Branch retries ignore it (``RetryPolicy``
            has ``max_attempts``).
        random: the source of uniform numbers in [0, 1); inject one to make delays
            deterministic.

    Example:
        >>> Backoff(min=3.0, max=30.0).delay(3)
        24.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float = Field(gt=0, allow_inf_nan=False)
    max: float = Field(gt=0, allow_inf_nan=False)
    factor: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0)
    reset_after: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_restarts: int | None = Field(default=None, ge=0, strict=True)
    random: Callable[[], float] = Field(default=random.random, repr=False)

    @model_validator(mode="after")
    def _check_range(self) -> Backoff:
        if self.max < self.min:
            msg = f"backoff max ({self.max} s) must not be less than min ({self.min} s)"
            raise ValueError(msg)
        return self

    @property
    def reset_delay(self) -> float:
        """Seconds of stability after which the restart count resets."""
        return self.reset_after if self.reset_after is not None else (self.min + self.max) / 2

    def base_delay(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (0 for the first), without jitter.

        Raises:
            ValueError: ``attempt`` is negative.
        """
        if attempt < 0:
            msg = f"attempt must be >= 0, got {attempt}"
            raise ValueError(msg)
        try:
            grown = self.min * self.factor**attempt
        except OverflowError:
            return self.max
        return self.max if not math.isfinite(grown) else min(self.max, grown)

    def delay(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (0 for the first), jitter included."""
        base = self.base_delay(attempt)
        if self.jitter == 0.0:
            return base
        return base * (1.0 + self.random() * self.jitter)

    def exhausted(self, restarts: int) -> bool:
        """Whether restart number ``restarts`` in a row (1 for the first) is one too many."""
        return self.max_restarts is not None and restarts > self.max_restarts

    def _key(self) -> tuple[float, float, float, float, float | None, int | None]:
        return (self.min, self.max, self.factor, self.jitter, self.reset_after, self.max_restarts)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
