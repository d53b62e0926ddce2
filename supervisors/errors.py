"""Typed errors of supervision. Each one names the child or the setting that is wrong."""

from __future__ import annotations

from actors.runtime.errors import CastflowError, StartError

__all__ = [
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildNotFoundError",
    "ChildRestartingError",
    "ChildRunningError",
    "ChildSpecError",
    "ChildStartError",
    "MaxChildrenError",
    "SupervisorError",
    "SupervisorStoppingError",
]


class SupervisorError(CastflowError):
    """Base of the answers a supervisor gives when a request cannot be done."""


class ChildSpecError(SupervisorError, ValueError):
    """A list of child specs, or a spec with the supervisor's flags, is invalid."""


class ChildStartError(SupervisorError, StartError):
    """A child failed to start.

    Attributes:
        child_id: the child that failed.
        reason: its exit reason (``StartFailed``, or ``Crashed`` if it died while starting).
    """

    def __init__(self, child_id: str, reason: object) -> None:
        describe = getattr(reason, "describe", None)
        text = describe() if callable(describe) else str(reason)
        super().__init__(f"child {child_id!r} failed to start: {text}")
        self.child_id = child_id
        self.reason = reason


class ChildNotFoundError(SupervisorError, LookupError):
    """No child with this id (OTP's ``not_found``)."""


class ChildAlreadyStartedError(SupervisorError):
    """``start_child`` with the id of a running child (OTP's ``already_started``).

    Attributes:
        handle: the running child's handle.
    """

    def __init__(self, message: str, handle: object) -> None:
        super().__init__(message)
        self.handle = handle


class ChildAlreadyPresentError(SupervisorError):
    """``start_child`` with the id of a child that is kept but not running (``already_present``)."""


class ChildRunningError(SupervisorError):
    """``restart_child`` or ``delete_child`` on a running child (OTP's ``running``)."""


class ChildRestartingError(SupervisorError):
    """``restart_child`` or ``delete_child`` on a child waiting to restart (``restarting``)."""


class MaxChildrenError(SupervisorError):
    """A dynamic supervisor already runs ``max_children`` children."""


class SupervisorStoppingError(SupervisorError):
    """The supervisor is shutting down and takes no more administrative requests."""
