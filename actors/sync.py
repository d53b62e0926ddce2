"""Synchronisation for workflow authors: barriers, rendezvous and named semaphores.

:class:`Barrier` and :class:`Rendezvous` are *steps*: place the same object inside several
branches of one parallel step (``ParallelWorkflow``, ``ForkJoinWorkflow``,
``ScatterGatherWorkflow``, the workers of a ``FanOutWorkflow``), typically as
``SequentialWorkflow([fetch, barrier, use])``. The branches of one instance of that parallel
step form a *group* (``StepCall.group``); a barrier's parties are the members of one group
that reach it. Waiting is a state, never a blocked thread: an arriving party's reply is kept
and sent once every party has arrived (or the wait has failed), so a waiting branch costs no
thread and no leaf slot, only its place among the parallel step's in-flight branches.

Every wait has a deadline (``timeout``, counted from the first arrival of each round): when it
passes, every waiting party fails with :class:`BarrierTimeoutError`. A waiting party whose own
scope is cancelled (its branch timed out, a sibling failed under ``FAIL_FAST``, the run was
cancelled) leaves with a ``cancelled``/``timeout`` result and *breaks* the point: the other
waiting parties, and any later arrival in that group, fail with :class:`BrokenBarrierError`.

A point whose parties can never all arrive, or never all run at once under the enclosing
step's ``max_concurrency``, is rejected when that step is constructed (and, for a fan-out whose
item count is known only at run time, when the run is planned).

:class:`Semaphore` (from the runtime) limits how many leaf executions run at once across a run
or the whole system; it is re-exported here so every synchronisation tool has one home.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from actors.runtime.errors import CastflowError
from actors.runtime.permits import PermitTimeoutError, Semaphore
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.snapshot import snapshot
from actors.runtime.steps import RunEnv, StepCall, cancelled_result
from actors.runtime.timers import TimerHandle
from actors.workflows.errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from actors.workflows.result import WorkflowResult

__all__ = [
    "Barrier",
    "BarrierTimeoutError",
    "BrokenBarrierError",
    "PermitTimeoutError",
    "Rendezvous",
    "Semaphore",
    "SyncError",
    "SyncPoint",
]


class SyncError(CastflowError):
    """Base of the errors a barrier or rendezvous fails its parties with."""


class BarrierTimeoutError(SyncError):
    """A barrier or rendezvous did not get all its parties before its timeout.

    Attributes:
        point: the barrier's (or rendezvous') name.
        arrived: how many parties had arrived.
        expected: how many it waits for.
    """

    def __init__(self, message: str, *, point: str, arrived: int, expected: int) -> None:
        super().__init__(message)
        self.point = point
        self.arrived = arrived
        self.expected = expected

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_timeout, (str(self), self.point, self.arrived, self.expected))


def _rebuild_timeout(message: str, point: str, arrived: int, expected: int) -> BarrierTimeoutError:
    return BarrierTimeoutError(message, point=point, arrived=arrived, expected=expected)


class BrokenBarrierError(SyncError):
    """A barrier or rendezvous was broken: a party left (cancelled, timed out) or it timed out.

    Attributes:
        point: the barrier's (or rendezvous') name.
    """

    def __init__(self, message: str, *, point: str) -> None:
        super().__init__(message)
        self.point = point

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_broken, (str(self), self.point))


def _rebuild_broken(message: str, point: str) -> BrokenBarrierError:
    return BrokenBarrierError(message, point=point)


# -- state ------------------------------------------------------------------------------------


def _noop() -> None:
    return None


@dataclass(slots=True, eq=False)
class _Party:
    """One waiting arrival: the call whose reply is held, and when it arrived."""

    call: StepCall
    started_at: float
    started_wall: datetime
    done: bool = False
    remove_cancel: Callable[[], None] = _noop


@dataclass(slots=True, eq=False)
class _State:
    """One sync point's state in one group (one instance of the enclosing parallel step)."""

    parties: int | None
    where: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    round: int = 0
    waiting: list[_Party] = field(default_factory=list)
    timer: TimerHandle | None = None
    broken: str | None = None


@dataclass(frozen=True, slots=True)
class _Expired:
    """Fact (from the timer): round ``round`` of a point's state ran out of time."""

    round: int


class _Expiry:
    """The timer's receiver for one state: fails the round's waiting parties (no blocking)."""

    __slots__ = ("_point", "_state")

    def __init__(self, point: SyncPoint, state: _State) -> None:
        self._point = point
        self._state = state

    def tell(self, message: Any) -> None:
        """Expire the round named by ``message`` if it is still waiting."""
        if isinstance(message, _Expired):
            self._point._expire(self._state, message.round)


_Reply = tuple[_Party, StepResult]


# -- the steps --------------------------------------------------------------------------------


class SyncPoint:
    """Base of :class:`Barrier` and :class:`Rendezvous`: a step where branches meet.

    Implements the runtime's ``Step`` protocol. Subclasses say what each party gets when the
    round completes (:meth:`outputs`). Definitions are immutable and compared by identity: the
    same object placed in several branches is one meeting point.
    """

    __slots__ = ("name", "parties", "timeout")

    kind: ClassVar[str] = "sync"

    name: str
    parties: int | None
    timeout: float

    def __init__(self, name: str, *, parties: int | None, timeout: float) -> None:
        where = f"{self.kind} {name!r}"
        if not isinstance(name, str) or not name or "/" in name:
            msg = f"{self.kind}: name must be a non-empty string without '/', got {name!r}"
            raise WorkflowDefinitionError(msg)
        if parties is not None and (
            isinstance(parties, bool) or not isinstance(parties, int) or parties < 1
        ):
            msg = f"{where}: parties must be an int >= 1 or None, got {parties!r}"
            raise WorkflowDefinitionError(msg)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            msg = f"{where}: timeout must be a finite number of seconds > 0, got {timeout!r}"
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "parties", parties)
        object.__setattr__(self, "timeout", float(timeout))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = f"{self.kind} {self.name!r} is immutable: cannot set {name!r}"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> NoReturn:
        msg = f"{self.kind} {self.name!r} is immutable: cannot delete {name!r}"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, parties={self.parties!r}, "
            f"timeout={self.timeout!r})"
        )

    # -- for the parallel kinds -------------------------------------------------------------

    def open_group(self, env: RunEnv, group: str, parties: int, where: str) -> None:
        """Make this point's state for ``group`` with ``parties`` (before any party arrives).

        Called by a parallel step as it starts a batch of branches, with the number of parties
        it planned (``parties=None`` resolved to the branches that contain the point).

        Args:
            env: the run's environment.
            group: the batch (``StepCall.group`` of its branches).
            parties: how many parties each round waits for.
            where: names the parallel step in error messages.
        """
        env.shared(self, group, lambda: _State(parties, f"{self.kind} {self.name!r} in {where}"))

    # -- the Step protocol --------------------------------------------------------------------

    def outputs(self, inputs: list[Any]) -> list[Any]:
        """What each party of a completed round gets, from their inputs in arrival order."""
        raise NotImplementedError

    def start(self, call: StepCall) -> None:
        """Arrive: wait (without a thread) until the round is complete, then reply to all."""
        party = _Party(call, time.monotonic(), datetime.now(UTC))
        where = "" if not call.group else " in its parallel step"
        state = call.env.shared(
            self, call.group, lambda: _State(self.parties, f"{self.kind} {self.name!r}{where}")
        )
        replies: list[_Reply] = []
        released: list[_Party] = []
        with state.lock:
            if state.parties is None:
                replies.append((party, self._undeclared(party)))
            elif state.broken is not None:
                replies.append((party, self._broken(party, state)))
            else:
                state.waiting.append(party)
                if len(state.waiting) >= state.parties:
                    released = self._take_round_locked(state)
                elif len(state.waiting) == 1:
                    self._arm_locked(call, state)
        if released:
            replies.extend(self._complete(released))
        self._send(replies)
        if party.done:
            return
        remove = call.scope.add_callback(lambda _scope: self._leave(state, party))
        with state.lock:
            if not party.done:
                party.remove_cancel = remove
                return
        remove()

    def present(self, result: StepResult, run_id: str) -> WorkflowResult:
        """A one-step run's result (a lone sync point with ``parties=1`` passes at once)."""
        from actors.workflows.result import WorkflowResult  # noqa: PLC0415 - avoids a cycle

        return WorkflowResult.from_step(result, run_id, kind=self.kind)

    # -- rounds ---------------------------------------------------------------------------

    def _arm_locked(self, call: StepCall, state: _State) -> None:
        try:
            state.timer = call.env.system.timers.schedule(
                self.timeout, _Expiry(self, state), _Expired(state.round)
            )
        except Exception:  # noqa: BLE001 - e.g. the timer service stopped: the run is ending
            state.timer = None

    def _take_round_locked(self, state: _State) -> list[_Party]:
        """End the current round: its parties, in arrival order; the next round starts empty."""
        parties, state.waiting = state.waiting, []
        for party in parties:
            party.done = True
        state.round += 1
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        return parties

    def _complete(self, parties: list[_Party]) -> list[_Reply]:
        try:
            values = self.outputs([party.call.input for party in parties])
        except Exception as exc:  # noqa: BLE001 - e.g. a value cannot be copied across
            info = ErrorInfo.from_exception(exc)
            return [(party, self._result(party, Status.ERROR, error=info)) for party in parties]
        return [
            (party, self._result(party, Status.OK, value=value))
            for party, value in zip(parties, values, strict=True)
        ]

    def _expire(self, state: _State, round_: int) -> None:
        """The timer fired: fail every party still waiting in ``round_``; break the point."""
        with state.lock:
            if state.round != round_ or not state.waiting:
                return
            arrived = len(state.waiting)
            expected = state.parties or 0
            state.timer = None
            parties = self._take_round_locked(state)
            state.broken = (
                f"it timed out after {self.timeout:g} s with {arrived} of {expected} parties"
            )
        message = (
            f"{state.where}: timed out after {self.timeout:g} s waiting for its parties: "
            f"{arrived} of {expected} arrived"
        )
        error = BarrierTimeoutError(message, point=self.name, arrived=arrived, expected=expected)
        info = ErrorInfo.from_exception(error)
        self._send([(party, self._result(party, Status.ERROR, error=info)) for party in parties])

    def _leave(self, state: _State, leaver: _Party) -> None:
        """``leaver``'s scope was cancelled while it waited: it leaves and breaks the point."""
        with state.lock:
            if leaver.done:
                return
            parties = self._take_round_locked(state)
            state.broken = f"party {leaver.call.path!r} left it ({_why(leaver)})"
        replies: list[_Reply] = []
        for party in parties:
            scope = party.call.scope
            if party is leaver or scope.cancelled:
                cut = cancelled_result(self.name, scope, f"{state.where}: {_why(party)}")
                replies.append((party, self._stamped(party, cut)))
            else:
                replies.append((party, self._broken(party, state)))
        self._send(replies)

    # -- results --------------------------------------------------------------------------

    def _undeclared(self, party: _Party) -> StepResult:
        party.done = True
        msg = (
            f"{self.kind} {self.name!r} has parties=None but no enclosing parallel step "
            "declared it: put it in the branches of a ParallelWorkflow, ForkJoinWorkflow, "
            "ScatterGatherWorkflow or FanOutWorkflow, or give parties="
        )
        info = ErrorInfo.from_exception(WorkflowDefinitionError(msg))
        return self._result(party, Status.ERROR, error=info)

    def _broken(self, party: _Party, state: _State) -> StepResult:
        party.done = True
        message = f"{state.where} is broken: {state.broken}"
        info = ErrorInfo.from_exception(BrokenBarrierError(message, point=self.name))
        return self._result(party, Status.ERROR, error=info)

    def _result(
        self, party: _Party, status: Status, *, value: Any = None, error: ErrorInfo | None = None
    ) -> StepResult:
        return StepResult(
            name=self.name,
            status=status,
            value=value,
            error=error,
            started_at=party.started_at,
            finished_at=time.monotonic(),
            started_wall=party.started_wall,
            finished_wall=datetime.now(UTC),
        )

    def _stamped(self, party: _Party, result: StepResult) -> StepResult:
        return result.model_copy(
            update={
                "started_at": party.started_at,
                "finished_at": time.monotonic(),
                "started_wall": party.started_wall,
                "finished_wall": datetime.now(UTC),
            }
        )

    @staticmethod
    def _send(replies: list[_Reply]) -> None:
        for party, result in replies:
            party.remove_cancel()
            party.call.reply(result)


def _why(party: _Party) -> str:
    scope = party.call.scope
    reason = scope.reason.value if scope.reason is not None else "cancelled"
    return f"{party.call.path!r} was cut while waiting ({reason})"


class Barrier(SyncPoint):
    """A point several branches of one parallel step reach before any of them goes on.

    Each arriving party waits (as a state: no thread is held) until ``parties`` parties of its
    group have arrived; then every party's step ends ``ok`` with its own input as its output.
    The barrier is cyclic: once a round completes the next arrival starts a new one, so a
    barrier inside a loop body synchronises every iteration.

    Args:
        name: the step's name in records and paths.
        parties: how many parties each round waits for; ``None`` (the default) means every
            branch of the enclosing parallel step that contains the barrier.
        timeout: the most seconds a round waits, counted from its first arrival; then every
            waiting party fails with :class:`BarrierTimeoutError` and the barrier is broken.

    Raises:
        WorkflowDefinitionError: an argument is invalid; the message names it.

    Example:
        >>> from actors import ParallelWorkflow, SequentialWorkflow
        >>> ready = Barrier("ready")
        >>> flow = ParallelWorkflow(
        ...     [SequentialWorkflow([len, ready], name="a"), SequentialWorkflow([ready], name="b")]
        ... )
        >>> flow.sync_points
        ((Barrier('ready', parties=None, timeout=60.0), 2),)
    """

    __slots__ = ()

    kind = "barrier"

    def __init__(self, name: str, *, parties: int | None = None, timeout: float = 60.0) -> None:
        super().__init__(name, parties=parties, timeout=timeout)

    def outputs(self, inputs: list[Any]) -> list[Any]:
        """Each party passes its own input through."""
        return inputs


class Rendezvous(SyncPoint):
    """A point where exactly two branches of one parallel step exchange values.

    Each party's output is the other party's input (a copy, so the two branches never share
    mutable state; immutable values are shared as they are). It must sit in exactly two
    branches of its parallel step. Like a barrier it is cyclic and every wait has a deadline.

    Args:
        name: the step's name in records and paths.
        timeout: the most seconds a party waits for the other; then it fails with
            :class:`BarrierTimeoutError`.

    Raises:
        WorkflowDefinitionError: an argument is invalid; the message names it.
    """

    __slots__ = ()

    kind = "rendezvous"

    def __init__(self, name: str, *, timeout: float = 60.0) -> None:
        super().__init__(name, parties=2, timeout=timeout)

    def __repr__(self) -> str:
        return f"Rendezvous({self.name!r}, timeout={self.timeout!r})"

    def outputs(self, inputs: list[Any]) -> list[Any]:
        """The two parties swap their inputs (each gets its own copy of the other's)."""
        first, second = inputs
        what = f"the value exchanged at rendezvous {self.name!r}"
        return [snapshot(second, what=what)(), snapshot(first, what=what)()]
