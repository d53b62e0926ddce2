"""A supervisor's record of one child, and the messages a supervisor sends itself."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from actors.runtime.inbox import ControlMessage
from actors.runtime.reasons import ExitReason
from supervisors.messages import ChildState
from supervisors.spec import ChildSpec, RestartType

if TYPE_CHECKING:
    from actors.runtime.actor import Actor
    from actors.runtime.handle import ActorHandle
    from actors.runtime.timers import TimerHandle

__all__: list[str] = []


@dataclass(slots=True, eq=False)
class Child:
    spec: ChildSpec
    handle: ActorHandle[Any] | None = None
    actor: Actor | None = None
    state: ChildState = "stopped"
    incarnation: int = 0
    attempt: int = 0
    token: int = 0
    timer: TimerHandle | None = None
    restart_timer: TimerHandle | None = None
    reset_timer: TimerHandle | None = None
    stop_requested_at: float = 0.0
    start_timed_out: bool = False
    ignored: bool = False
    pending: ExitReason | None = None
    last_reason: ExitReason | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def live(self) -> bool:
        return self.actor is not None

    def cancel_timers(self) -> None:
        for timer in (self.timer, self.restart_timer, self.reset_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.restart_timer = self.reset_timer = None


def needs_restart(restart: RestartType, reason: ExitReason) -> bool:
    """The table of OTP's restart types: permanent always, transient on abnormal exits."""
    if restart is RestartType.PERMANENT:
        return True
    if restart is RestartType.TRANSIENT:
        return not reason.is_normal
    return False


# -- messages to itself (every one carries the supervisor instance's epoch) ----------------


@dataclass(frozen=True, slots=True)
class Begin:
    epoch: int


@dataclass(frozen=True, slots=True)
class Ack:
    epoch: int
    child_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class StartTimeout:
    epoch: int
    child_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class StopTimeout:
    epoch: int
    child_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class ResetAttempts:
    epoch: int
    child_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class TryAgain:
    """A failed restart is retried through the mailbox (decision D7), never in a loop."""

    epoch: int
    child_id: str
    token: int


@dataclass(frozen=True, slots=True)
class RestartDue:
    epoch: int
    child_id: str
    token: int


@dataclass(frozen=True, slots=True)
class Decide:
    """A child's own exit whose consequence waits until the running plan is finished."""

    child_id: str
    incarnation: int


class StopSupervisor(ControlMessage):
    """The supervisor's stop request: it stops its children before it ends."""

    __slots__ = ("info",)

    def __init__(self, info: object = None) -> None:
        self.info = info


Step = tuple[Literal["start", "stop"], tuple[str, ...]]


@dataclass(slots=True, eq=False)
class Plan:
    """A sequence of starts and stops the supervisor carries out one step at a time."""

    kind: Literal["init", "restart", "admin", "shutdown"]
    steps: deque[Step]
    on_done: Callable[[], None]
    on_start_failed: Callable[[str, ExitReason], None]
    waiting: set[str] = field(default_factory=set)
