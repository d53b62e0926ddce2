"""Why an actor incarnation ended, and the ``Down`` message that says so.

The taxonomy follows OTP's exit reasons: ``Normal`` and ``Shutdown`` are the normal class
(a transient child is not restarted after them); everything else is abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.runtime.results import ErrorInfo

if TYPE_CHECKING:
    from actors.runtime.handle import ActorHandle

__all__ = [
    "Abandoned",
    "Crashed",
    "Down",
    "Escalated",
    "ExitReason",
    "Killed",
    "Normal",
    "Shutdown",
    "StartFailed",
]


@dataclass(frozen=True, slots=True)
class ExitReason:
    """Base of every exit reason."""

    @property
    def is_normal(self) -> bool:
        """Whether this reason is of the normal class (``Normal`` or ``Shutdown``)."""
        return False

    def describe(self) -> str:
        """A short human description."""
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True)
class Normal(ExitReason):
    """The actor finished on its own (it called ``exit()``)."""

    @property
    def is_normal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Shutdown(ExitReason):
    """The actor stopped because it was asked to.

    Attributes:
        info: optional detail given with the stop request.
    """

    info: Any = None

    @property
    def is_normal(self) -> bool:
        return True

    def describe(self) -> str:
        return "shutdown" if self.info is None else f"shutdown ({self.info})"


@dataclass(frozen=True, slots=True)
class Crashed(ExitReason):
    """An exception escaped a handler or a lifecycle hook.

    Attributes:
        error: the exception's record (the original exception is in ``error.exception``).
    """

    error: ErrorInfo

    def describe(self) -> str:
        return f"crashed: {self.error}"


@dataclass(frozen=True, slots=True)
class StartFailed(ExitReason):
    """``on_start`` raised, so the actor never processed a message.

    Attributes:
        error: the exception's record.
    """

    error: ErrorInfo

    def describe(self) -> str:
        return f"start failed: {self.error}"


@dataclass(frozen=True, slots=True)
class Abandoned(ExitReason):
    """A thread actor did not stop within its shutdown time and was given up.

    Threads cannot be killed: the thread may still be running. It is fenced (anything it sends
    later is dropped) and reported in the system's shutdown report.

    Attributes:
        waited: seconds the stop waited before giving up.
    """

    waited: float = 0.0

    def describe(self) -> str:
        return f"abandoned after {self.waited:.3f} s"


@dataclass(frozen=True, slots=True)
class Killed(ExitReason):
    """A process-isolated actor was killed."""


@dataclass(frozen=True, slots=True)
class Escalated(ExitReason):
    """A supervisor exceeded its restart intensity and gave up.

    Abnormal on purpose (unlike OTP's ``shutdown``), so that a transient supervisor child is
    restarted by its parent too.

    Attributes:
        child_id: the child whose exit exceeded the intensity.
        last_reason: that child's exit reason.
    """

    child_id: str
    last_reason: ExitReason

    def describe(self) -> str:
        return f"escalated: child {self.child_id!r} {self.last_reason.describe()}"


@dataclass(frozen=True, slots=True)
class Down:
    """Sent to an actor's watchers when one incarnation of it has ended. Sent exactly once.

    Attributes:
        handle: the stable handle of the actor that ended.
        incarnation: which incarnation ended (1 for the first).
        reason: why it ended.
    """

    handle: ActorHandle[Any]
    incarnation: int
    reason: ExitReason
