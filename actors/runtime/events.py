"""The system's event bus and the lifecycle events published on it.

Publishing costs almost nothing when no one listens. Callbacks run in the publishing thread
(often an actor's): they must be quick and must not block. A slow consumer subscribes a
``queue.Queue`` instead and drains it in its own thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.reasons import ExitReason
from actors.runtime.results import Status

__all__ = [
    "ActorAbandoned",
    "ActorFailed",
    "ActorStarted",
    "ActorStopped",
    "DeadLetter",
    "Event",
    "EventBus",
    "EventSink",
    "StepFinished",
    "StepProgress",
    "StepStarted",
    "Subscription",
]

logger = logging.getLogger("castflow.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        system: the name of the system that published it.
        at: ``time.monotonic()`` when it was created.
    """

    system: str
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStarted(Event):
    """An actor incarnation finished ``on_start`` and takes messages."""

    actor: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStopped(Event):
    """An actor incarnation ended for a normal-class reason."""

    actor: str
    incarnation: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorFailed(Event):
    """An actor incarnation ended for an abnormal reason (crash, failed start, ...)."""

    actor: str
    incarnation: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorAbandoned(Event):
    """A thread was given up because it did not stop in time; it may still be running.

    ``running`` names the step a leaf worker was stuck in (``None`` for other actors).
    """

    actor: str
    thread: str
    waited: float
    running: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter(Event):
    """A message could not be delivered because its recipient had stopped."""

    recipient: str
    message: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Event):
    """A step (a tool call, a workflow node) started."""

    step: str
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepProgress(Event):
    """A running step reported progress (``ToolContext.report_progress``)."""

    step: str
    call_id: str
    fraction: float | None
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFinished(Event):
    """A step's status was decided."""

    step: str
    call_id: str
    status: Status
    duration: float | None


EventSink = Callable[[Event], object] | queue.Queue[Event]


class Subscription:
    """A handle on one subscription; ``cancel()`` (or leaving a ``with`` block) ends it."""

    __slots__ = ("_bus", "_entry")

    def __init__(self, bus: EventBus, entry: _Entry) -> None:
        self._bus = bus
        self._entry = entry

    def cancel(self) -> None:
        """Stop receiving events. Idempotent."""
        self._bus._remove(self._entry)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    deliver: Callable[[Event], object]
    kinds: tuple[type[Event], ...] | None


class EventBus:
    """Fan-out of events to subscribers; thread-safe.

    Args:
        system: the owning system's name, stamped on nothing but logs.

    Attributes:
        has_subscribers: whether anyone listens (lets publishers skip building events).
    """

    def __init__(self, system: str = "castflow") -> None:
        self.system = system
        self._lock = threading.Lock()
        # Copy-on-write: publish reads the tuple without taking the lock.
        self._entries: tuple[_Entry, ...] = ()
        # An attribute, not a property: publishers on hot paths read it once per job.
        self.has_subscribers = False

    def subscribe(
        self, sink: EventSink, *, kinds: tuple[type[Event], ...] | None = None
    ) -> Subscription:
        """Receive every event (or only those of ``kinds``) from now on.

        Args:
            sink: a callable taking the event, or a ``queue.Queue`` the events are put in.
            kinds: event classes to receive (subclasses included); ``None`` for all.

        Returns:
            The subscription; cancel it to stop receiving.
        """
        deliver: Callable[[Event], object]
        deliver = sink.put_nowait if isinstance(sink, queue.Queue) else sink
        entry = _Entry(deliver, kinds)
        with self._lock:
            self._entries = (*self._entries, entry)
            self.has_subscribers = True
        return Subscription(self, entry)

    def _remove(self, entry: _Entry) -> None:
        with self._lock:
            self._entries = tuple(e for e in self._entries if e is not entry)
            self.has_subscribers = bool(self._entries)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber; a failing subscriber is logged."""
        for entry in self._entries:
            if entry.kinds is not None and not isinstance(event, entry.kinds):
                continue
            try:
                entry.deliver(event)
            except Exception:
                logger.exception("event subscriber %r failed on %r", entry.deliver, event)
