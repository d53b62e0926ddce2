"""Supervision events, published on the system's event bus.

Every lifecycle change of a supervised child is one event, published by the supervisor in the
order it happened, so tests and services can assert on exact sequences. Subscribe with
``kinds=(SupervisionEvent,)`` to receive only these.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.runtime.events import Event
from actors.runtime.reasons import ExitReason

__all__ = [
    "AutoShutdownTriggered",
    "ChildAbandoned",
    "ChildExited",
    "ChildIgnored",
    "ChildRestarting",
    "ChildRestartsExhausted",
    "ChildStartFailed",
    "ChildStarted",
    "ChildTerminated",
    "SupervisionEvent",
    "SupervisorEscalated",
    "SupervisorStopped",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionEvent(Event):
    """Base of every supervision event.

    Attributes:
        supervisor: the supervisor's name.
    """

    supervisor: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted(SupervisionEvent):
    """A child incarnation finished starting and takes messages."""

    child: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStartFailed(SupervisionEvent):
    """A child failed to start (its ``on_start`` raised, it died or it timed out)."""

    child: str
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildIgnored(SupervisionEvent):
    """A child's start factory returned ``IGNORE``: nothing was started."""

    child: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildExited(SupervisionEvent):
    """A child ended on its own (not because its supervisor stopped it)."""

    child: str
    incarnation: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRestarting(SupervisionEvent):
    """The supervisor decided to restart a child.

    Attributes:
        attempt: restarts of this child in a row, 1 for the first (backoff resets it).
        delay: seconds until the restart is performed (0 without backoff).
    """

    child: str
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRestartsExhausted(SupervisionEvent):
    """A child needed one restart more than its backoff's ``max_restarts``: it stays down.

    Attributes:
        restarts: the restarts in a row already performed (the backoff's ``max_restarts``).
        reason: the child's last exit reason.
    """

    child: str
    restarts: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildTerminated(SupervisionEvent):
    """A child the supervisor stopped has ended (shutdown, group restart, terminate_child)."""

    child: str
    incarnation: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildAbandoned(SupervisionEvent):
    """A child did not stop within its shutdown time; its thread was given up."""

    child: str
    incarnation: int
    waited: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorEscalated(SupervisionEvent):
    """The supervisor exceeded its restart intensity and gives up (its exit is ``Escalated``).

    Attributes:
        child: the child whose exit exceeded the intensity.
        reason: that child's exit reason.
        restarts: the restarts counted in the window, the one refused included.
    """

    child: str
    reason: ExitReason
    restarts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoShutdownTriggered(SupervisionEvent):
    """A significant child's own end makes the supervisor stop (see ``AutoShutdown``)."""

    child: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStopped(SupervisionEvent):
    """The supervisor stopped all its children and ends with ``reason``."""

    reason: ExitReason
