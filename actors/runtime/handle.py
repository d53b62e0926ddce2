"""Stable handles: the address of an actor that survives its restarts."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pykka import messages as pykka_messages
from pykka._envelope import Envelope

from actors.runtime.errors import ActorDeadError
from actors.runtime.futures import ActorFuture, sent_by_abandoned
from actors.runtime.reasons import Down, ExitReason

if TYPE_CHECKING:
    from actors.runtime.actor import Actor
    from actors.runtime.system import ActorSystem
    from actors.runtime.timers import Receiver

__all__ = ["ActorHandle"]

A = TypeVar("A", bound="Actor")

_FROM_ABANDONED = "was not asked: the asking actor's thread was abandoned"


class ActorHandle(Generic[A]):
    """The stable address of an actor.

    Messages sent through a handle go to the actor's current incarnation. When an incarnation
    ends, every watcher receives one ``Down(handle, incarnation, reason)``. A supervisor that
    restarts the actor binds the new incarnation to the same handle, so holders of the handle
    never need a new one.

    Handles are created by ``ActorSystem.spawn``; do not construct them yourself.
    """

    __slots__ = (
        "__weakref__",
        "_actor",
        "_incarnation",
        "_lock",
        "_stash",
        "_stash_capacity",
        "_watchers",
        "name",
        "system",
    )

    def __init__(self, name: str, system: ActorSystem) -> None:
        self.name = name
        self.system = system
        self._actor: A | None = None
        self._incarnation = 0
        self._lock = threading.Lock()
        self._watchers: tuple[Receiver, ...] = ()
        # While a supervisor restarts the actor, undeliverable messages wait here (bounded)
        # for the next incarnation instead of becoming dead letters. None: no stashing.
        self._stash: deque[Envelope[Any]] | None = None
        self._stash_capacity = 0

    # -- messaging -----------------------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Send ``message`` without waiting.

        While a supervisor restarts the actor, the message waits in the handle's bounded
        stash for the next incarnation; otherwise undeliverable messages become dead letters.
        Messages still queued when a supervised actor crashes are kept the same way. A
        message sent by an abandoned actor's thread is dropped as a dead letter.
        """
        envelope: Envelope[Any] = Envelope(message)
        if sent_by_abandoned():
            self._reject(envelope, _FROM_ABANDONED)
        elif not self._send(envelope):
            self._reject(envelope)

    def ask(self, message: Any) -> ActorFuture[Any]:
        """Send ``message`` and return a future of the actor's reply.

        The future fails with ``ActorDeadError`` if the actor stops before answering, and
        with the handler's exception if it raised. ``future.result(timeout)`` only stops
        waiting; it cancels nothing. Asked from an abandoned actor's thread, it fails at once.
        """
        future: ActorFuture[Any] = ActorFuture()
        envelope: Envelope[Any] = Envelope(message, reply_to=future)  # type: ignore[arg-type]
        if sent_by_abandoned():
            self._reject(envelope, _FROM_ABANDONED)
        elif not self._send(envelope):
            self._reject(envelope)
        return future

    def _send(self, envelope: Envelope[Any]) -> bool:
        while True:
            actor = self._actor
            if actor is not None and actor._deliver(envelope):
                return True
            with self._lock:
                if self._actor is not actor:
                    continue  # a new incarnation was bound meanwhile: deliver to it
                stash = self._stash
                if stash is None or len(stash) >= self._stash_capacity:
                    return False
                stash.append(envelope)
                return True

    def _reject(self, envelope: Envelope[Any], why: str = "is not running") -> None:
        reply_to: Any = envelope.reply_to
        if reply_to is None:
            self.system._dead_letter(self, envelope.message)
        elif not reply_to.done():
            reply_to.set_exception(ActorDeadError(f"actor {self.name!r} {why}"))

    def stop(self, info: object = None) -> ActorFuture[ExitReason]:
        """Ask the current incarnation to stop after its current message.

        The request overtakes queued messages (they are then failed or dead-lettered), and the
        actor's cancel scope is cancelled so cooperative work inside it ends early.

        Returns:
            A future of the incarnation's exit reason (done at once if it is not running).
        """
        actor = self._actor
        future: ActorFuture[ExitReason] = ActorFuture()
        if actor is None:
            future.set_exception(ActorDeadError(f"actor {self.name!r} is not running"))
            return future
        actor._request_stop(info)
        actor.terminated.add_done_callback(lambda done: future.set_result(done.result()))
        return future

    def drain_and_stop(self) -> ActorFuture[ExitReason]:
        """Stop the current incarnation once it has handled what was sent to it before.

        The stop queues behind the mailbox like any message (Akka's ``PoisonPill``), where
        ``stop`` overtakes it; messages sent after it fail or become dead letters. The
        incarnation ends with ``Shutdown()``.

        Returns:
            A future of the incarnation's exit reason; it fails with ``ActorDeadError`` if
            the actor is not running.
        """
        actor = self._actor
        future: ActorFuture[ExitReason] = ActorFuture()
        if actor is None or not actor._deliver(Envelope(pykka_messages._ActorStop())):
            future.set_exception(ActorDeadError(f"actor {self.name!r} is not running"))
            return future
        actor.terminated.add_done_callback(lambda done: future.set_result(done.result()))
        return future

    def _request_stop(self, info: object = None) -> None:
        """``stop`` for a caller that does not wait for the end: no future is made."""
        actor = self._actor
        if actor is not None:
            actor._request_stop(info)

    # -- state ---------------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        """The number of the current (or last) incarnation, 1 for the first."""
        return self._incarnation

    def is_alive(self) -> bool:
        """Whether an incarnation is running and takes messages."""
        actor = self._actor
        return actor is not None and actor._accepting

    def join(self, timeout: float | None = None) -> ExitReason | None:
        """Wait (from outside castflow threads) until the current incarnation has ended.

        Returns:
            Its exit reason, or ``None`` if it was still running after ``timeout`` seconds.
        """
        actor = self._actor
        if actor is None:
            return None
        future: ActorFuture[ExitReason] = ActorFuture()
        actor.terminated.add_done_callback(lambda done: future.set_result(done.result()))
        try:
            return future.result(timeout)
        except TimeoutError:
            return None

    # -- watchers --------------------------------------------------------------------------

    def watch(self, watcher: Receiver) -> None:
        """Send ``watcher`` a ``Down`` whenever an incarnation of this actor ends."""
        with self._lock:
            if watcher not in self._watchers:
                self._watchers = (*self._watchers, watcher)

    def unwatch(self, watcher: Receiver) -> None:
        """Stop sending ``watcher`` ``Down`` messages."""
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w is not watcher)

    # -- incarnations (system and supervisors only) ---------------------------------------

    def _bind(self, actor: A) -> int:
        with self._lock:
            self._incarnation += 1
            stash = self._stash
            # The stash goes first, before anyone can reach the new incarnation: order is kept.
            while stash:
                actor._deliver(stash.popleft())
            self._actor = actor
            return self._incarnation

    def _enable_stash(self, capacity: int) -> None:
        """Keep up to ``capacity`` undeliverable messages for the next incarnation.

        Supervisors call this for the children they may restart (Akka's stash while
        restarting or backing off).
        """
        with self._lock:
            self._stash_capacity = capacity
            if self._stash is None:
                self._stash = deque()

    def _carry_over(self, actor: A, envelopes: list[Envelope[Any]]) -> list[Envelope[Any]]:
        """Put the messages queued in ``actor``, which crashed, at the front of the stash.

        They are older than anything stashed since the crash, so they go first, in order, up
        to the stash's capacity (decision D4: the mailbox is kept across a restart).

        Returns:
            The envelopes not kept: all of them if ``actor`` is no longer the current
            incarnation or nothing stashes for this handle, else those over the capacity.
        """
        with self._lock:
            stash = self._stash
            if stash is None or self._actor is not actor:
                return envelopes
            room = max(0, self._stash_capacity - len(stash))
            stash.extendleft(reversed(envelopes[:room]))
            return envelopes[room:]

    def _disable_stash(self) -> None:
        """Stop stashing; the messages kept so far become dead letters (asks fail)."""
        with self._lock:
            stash, self._stash = self._stash, None
        for envelope in stash or ():
            self._reject(envelope)

    def _notify_down(self, actor: A, reason: ExitReason) -> None:
        down = Down(self, actor.incarnation, reason)
        for watcher in self._watchers:
            try:
                watcher.tell(down)
            except Exception:  # noqa: BLE001 - a dead watcher must not hide others
                self.system._dead_letter(self, down)

    def __repr__(self) -> str:
        return f"ActorHandle({self.name!r}, incarnation={self._incarnation})"
