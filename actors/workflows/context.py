"""``RunContext``: what a predicate may read about the run it decides for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.runtime.cancel import CancelScope

__all__ = ["RunContext"]


@dataclass(frozen=True, slots=True)
class RunContext:
    """A read-only view of a running workflow node, handed to predicates.

    Steps share no mutable state: the context is rebuilt for each decision from immutable
    snapshots.

    Attributes:
        run_id: the run's id.
        path: the deciding node's path from the run's root.
        scope: the node instance's cancel scope (its deadline included).
        inputs: the run's input (a mapping is given as a read-only view).
        outputs: outputs of the steps finished so far and visible here, by step name.
    """

    run_id: str
    path: str
    scope: CancelScope
    inputs: Any
    outputs: Mapping[str, Any]

    @property
    def deadline(self) -> float | None:
        """The effective deadline on the system clock, or ``None``."""
        return self.scope.deadline

    @property
    def cancelled(self) -> bool:
        """Whether the node instance has been cancelled."""
        return self.scope.cancelled

    def remaining(self) -> float | None:
        """Seconds left until the deadline, or ``None``."""
        return self.scope.remaining()
