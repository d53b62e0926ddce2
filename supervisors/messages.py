"""Requests a supervisor answers, and the shapes of its answers.

Outside castflow threads use ``SupervisorClient``, which sends these and waits. Inside an
actor, send a request with ``reply_to=self.handle`` and handle the ``SupervisorReply`` that
comes back as a message: an actor never blocks on another.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from actors.runtime.timers import Receiver

if TYPE_CHECKING:
    from actors.runtime.handle import ActorHandle
    from supervisors.spec import ChildKind, ChildSpec

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "ChildState",
    "CountChildren",
    "DeleteChild",
    "GetChildSpec",
    "ReplyTo",
    "Request",
    "RestartChild",
    "StartChild",
    "SupervisorReply",
    "TerminateChild",
    "WhichChildren",
    "answer",
]

ChildState: TypeAlias = Literal["starting", "running", "stopping", "restarting", "stopped"]
"""Where a child is: ``stopped`` means its spec is kept but no incarnation runs (OTP's
``undefined``); ``restarting`` means a restart is due (after a backoff or a failed attempt)."""

ReplyTo: TypeAlias = "concurrent.futures.Future[Any] | Receiver | None"
"""Where an answer goes: a future (set with the value or the error), a receiver (told a
``SupervisorReply``) or nowhere."""


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One line of ``which_children``.

    Attributes:
        id: the child's id.
        handle: its stable handle, or ``None`` if it never started.
        state: where it is.
        kind: ``"worker"`` or ``"supervisor"``.
        incarnation: its current (or last) incarnation, 0 if it never started.
    """

    id: str
    handle: ActorHandle[Any] | None
    state: ChildState
    kind: ChildKind
    incarnation: int


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """The answer of ``count_children`` (OTP's four counts).

    Attributes:
        specs: children known, running or not.
        active: children with a live incarnation (restarting ones are not active).
        supervisors: children of kind supervisor.
        workers: children of kind worker.
    """

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """Base of supervisor requests.

    Attributes:
        reply_to: where the answer goes.
    """

    reply_to: ReplyTo = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhichChildren(Request):
    """Ask for a ``list[ChildInfo]`` in start order; answered at once, in any state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CountChildren(Request):
    """Ask for ``ChildCounts``; answered at once, in any state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildSpec(Request):
    """Ask for the ``ChildSpec`` of child ``child_id``."""

    child_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild(Request):
    """Add ``spec`` and start it; the answer is its handle once it has started."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateChild(Request):
    """Stop a child per its shutdown spec and keep its spec (unless it is temporary).

    Attributes:
        child: the child's id or its handle.
    """

    child: str | ActorHandle[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartChild(Request):
    """Start again a child whose spec is kept but which is not running."""

    child_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteChild(Request):
    """Forget a child that is not running."""

    child_id: str


@dataclass(frozen=True, slots=True)
class SupervisorReply:
    """The answer to a request that named a receiver as ``reply_to``.

    Attributes:
        request: the request answered.
        value: the answer, when it succeeded.
        error: the error, when it did not (a ``SupervisorError`` subclass).
    """

    request: Request
    value: Any = None
    error: BaseException | None = None


def answer(request: Request, value: Any = None, error: BaseException | None = None) -> None:
    """Send the answer of ``request`` to its ``reply_to``."""
    target = request.reply_to
    if target is None:
        return
    if isinstance(target, concurrent.futures.Future):
        if target.done():
            return
        if error is None:
            target.set_result(value)
        else:
            target.set_exception(error)
        return
    target.tell(SupervisorReply(request, value, error))
