"""An actor inbox with a priority lane for control messages.

pykka's inbox is a FIFO ``queue.Queue``: a stop request waits behind every queued message.
castflow's control envelopes (stop requests) jump the queue so that a stop is seen as soon
as the current handler returns.

The inbox is also lighter than a ``queue.Queue``: it is unbounded and read by one loop, so it
needs one lock and, only while its reader waits, a lock that reader blocks on. A
``queue.Queue`` makes three condition variables per inbox and takes two of them for every
message; every actor of every run pays for that in its start and in each message.
"""

from __future__ import annotations

import queue
from _thread import LockType, allocate_lock
from collections import deque
from typing import Any

from pykka._envelope import Envelope

__all__ = ["Awaited", "ControlMessage", "PriorityInbox"]


class ControlMessage:
    """Base class of messages that travel in the control lane."""

    __slots__ = ()


class Awaited:
    """Base class of told messages whose sender waits for what handling them decides.

    When one becomes a dead letter (its recipient stopped before handling it, or was not
    running), :meth:`undelivered` is called on the thread that found it undeliverable, so
    that the wait ends instead of lasting forever.
    """

    __slots__ = ()

    def undelivered(self) -> None:
        """End the sender's wait: the message will never be handled."""


class PriorityInbox:
    """An unbounded FIFO of envelopes whose control envelopes are delivered first.

    Any thread may ``put``; ``get`` blocks until an envelope arrives. Implements pykka's
    ``ActorInbox`` protocol, plus ``get_nowait`` and ``qsize``.
    """

    __slots__ = ("_control", "_lock", "_user", "_waiters")

    def __init__(self) -> None:
        self._control: deque[Envelope[Any]] = deque()
        self._user: deque[Envelope[Any]] = deque()
        self._lock = allocate_lock()
        self._waiters: deque[LockType] = deque()  # each held, released by a put to wake its reader

    def put(self, envelope: Envelope[Any], /) -> None:
        """Queue ``envelope``; wake a reader waiting in ``get``, if one is."""
        lane = self._control if isinstance(envelope.message, ControlMessage) else self._user
        with self._lock:
            lane.append(envelope)
            if not self._waiters:
                return
            waiter = self._waiters.popleft()
        waiter.release()

    def get(self) -> Envelope[Any]:
        """The next envelope, control envelopes first; block until there is one."""
        lock = self._lock
        while True:
            with lock:
                envelope = self._pop_locked()
                if envelope is not None:
                    return envelope
                waiter = allocate_lock()
                waiter.acquire()
                self._waiters.append(waiter)
            # Released by the put that pops it. Another reader (a drain's ``get_nowait``) may
            # take that envelope first: the loop then waits again.
            waiter.acquire()

    def get_nowait(self) -> Envelope[Any]:
        """The next envelope, control envelopes first.

        Raises:
            queue.Empty: the inbox is empty.
        """
        with self._lock:
            envelope = self._pop_locked()
        if envelope is None:
            raise queue.Empty
        return envelope

    def _pop_locked(self) -> Envelope[Any] | None:
        if self._control:
            return self._control.popleft()
        if self._user:
            return self._user.popleft()
        return None

    def empty(self) -> bool:
        """Whether no envelope waits (a snapshot: another thread may put one right after)."""
        return not (self._control or self._user)

    def qsize(self) -> int:
        """How many envelopes wait (a snapshot)."""
        return len(self._control) + len(self._user)
