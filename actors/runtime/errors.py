"""Typed errors of the castflow runtime.

Every error castflow raises derives from :class:`CastflowError`, so a service can catch
castflow's failures without catching its own.
"""

from __future__ import annotations

__all__ = [
    "ActorDeadError",
    "BlockingCallError",
    "CancelledError",
    "CastflowError",
    "CodecError",
    "StartError",
    "SystemShutDownError",
]


class CastflowError(Exception):
    """Base class of every error castflow raises."""


class CodecError(CastflowError):
    """A value could not be encoded, or a frame could not be decoded.

    The message names the problem: the unsupported type and where it was, a truncated or
    oversized frame, an unknown ext type.
    """


class BlockingCallError(CastflowError):
    """A castflow actor thread tried to block on a future.

    Actors coordinate by messages; blocking on another actor's reply from inside a handler
    can deadlock the two actors. Use ``tell`` and handle the reply as a message. A sync tool
    that needs another step's result takes it as input: make that step run before it in the
    workflow. An async tool may ``await system.run_async(...)``.
    """


class ActorDeadError(CastflowError):
    """The actor a message or request was meant for has stopped."""


class StartError(CastflowError):
    """An actor failed to start: its ``on_start`` raised or did not finish in time."""


class SystemShutDownError(CastflowError):
    """The ``ActorSystem`` has been shut down and accepts no more work."""


class CancelledError(BaseException):
    """Raised inside cancelled work by ``CancelScope.raise_if_cancelled()``.

    It derives from ``BaseException`` (like ``asyncio.CancelledError`` and trio's
    ``Cancelled``) so that a tool's broad ``except Exception`` does not swallow it.

    Attributes:
        reason: why the scope was cancelled (a ``CancelReason``), or ``None``.
    """

    def __init__(self, message: str = "cancelled", reason: object | None = None) -> None:
        super().__init__(message)
        self.reason = reason
