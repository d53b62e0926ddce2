"""The hardened actor base: every failure path ends in exactly one ``Down``.

pykka's own loop kills an actor silently on an exception under ``tell``, lets a failing
``on_start`` leave a ref that looks alive, and turns ``SystemExit`` in any actor into
``ActorRegistry.stop_all()``. castflow replaces the loop: whatever happens — an exception
under tell or ask, a failing ``on_start`` or ``on_stop``, ``SystemExit`` or
``KeyboardInterrupt`` raised by user code — the incarnation ends with one exit reason, its
watchers get one ``Down``, and no other actor is touched.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import pykka
from pykka import messages as pykka_messages
from pykka._envelope import Envelope

from actors.runtime._lazy_future import LazyFuture
from actors.runtime._threads import LoopThread
from actors.runtime.cancel import CancelReason
from actors.runtime.errors import ActorDeadError, StartError
from actors.runtime.futures import GuardedThreadingFuture, mark_castflow_thread, note_fenced
from actors.runtime.inbox import ControlMessage, PriorityInbox
from actors.runtime.reasons import Crashed, ExitReason, Normal, Shutdown, StartFailed
from actors.runtime.results import ErrorInfo

if TYPE_CHECKING:
    from actors.runtime.cancel import CancelScope
    from actors.runtime.handle import ActorHandle
    from actors.runtime.system import ActorSystem

__all__ = ["Actor", "StopRequest"]

logger = logging.getLogger("castflow.actor")


class StopRequest(ControlMessage):
    """Control message: end this incarnation with ``Shutdown(info)`` after the current message."""

    __slots__ = ("info",)

    def __init__(self, info: object = None) -> None:
        self.info = info


class Actor(pykka.ThreadingActor):
    """Base class of every castflow actor. Subclass it and implement ``on_receive``.

    Actors are started by ``ActorSystem.spawn(ActorClass, *args, **kwargs)``, never by
    ``ActorClass.start()``: castflow actors live in their system's registry, not in pykka's
    global one. Inside the actor, ``self.handle`` is its stable handle, ``self.system`` its
    system, ``self.scope`` its cancel scope (cancelled when it is asked to stop), and
    ``self.exit()`` ends it normally after the current message.

    Class attributes:
        reply_errors: exception types that, raised while answering an ``ask``, are returned to
            the asker without crashing the actor. Any other exception crashes the actor (and
            is returned to the asker as well).
        reuse_thread: run the loop on an idle thread of the system's reservoir when there is
            one, and park the thread there when the loop ends (for actors started in numbers
            for every run, whose threads hold no state of their own once the loop ends).

    An incarnation that is abandoned (it did not stop within its shutdown time) is treated as
    OTP treats a killed process: the ask it was handling fails with ``ActorDeadError`` at
    once, its ``on_stop``/``on_failure`` never run (its replacement may already be running),
    and whatever its thread sends through a handle afterwards is dropped as a dead letter.
    """

    use_daemon_thread: ClassVar[bool] = True
    reply_errors: ClassVar[tuple[type[Exception], ...]] = ()
    reuse_thread: ClassVar[bool] = False
    # The runtime's own actors keep their stop hooks and sends once abandoned: those are how
    # they decide what they still owe (results, permits, their children's stop), never user
    # code racing a replacement.
    _fenced_when_abandoned: ClassVar[bool] = True

    handle: ActorHandle[Any]
    system: ActorSystem
    scope: CancelScope
    incarnation: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepting = True
        # Decided when the incarnation stops taking mail: whether its queued messages are
        # handed to the next incarnation (after a crash) or failed (after a stop).
        self._carry = False
        self._carried = False
        self._drain_lock = threading.Lock()
        self._exit_request: ExitReason | None = None
        self._end_lock = threading.Lock()
        self._ended = False
        self._started: LazyFuture[None] = LazyFuture()
        self._terminated: LazyFuture[ExitReason] = LazyFuture()
        self.loop_thread: LoopThread | None = None
        self.abandoned = False
        self._handling: Envelope[Any] | None = None  # the message a handler is running on

    # -- pykka hooks -------------------------------------------------------------------

    @staticmethod
    def _create_actor_inbox() -> PriorityInbox:
        return PriorityInbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return GuardedThreadingFuture()

    def _start_actor_loop(self) -> None:
        context = contextvars.copy_context()

        def run() -> bool:
            context.run(self._actor_loop)
            # An abandoned incarnation's thread ends with its stuck work, never reused.
            return not self.abandoned

        loop = LoopThread(f"{self.system.name}/{self.handle.name}#{self.incarnation}", run)
        self.loop_thread = loop
        if self.reuse_thread and self.use_daemon_thread:
            self.system._thread_reservoir.start(loop)
        else:
            loop.start(daemon=self.use_daemon_thread)

    @property
    def started(self) -> concurrent.futures.Future[None]:
        """Done when ``on_start`` returned; its exception (``StartError``) if it failed."""
        return self._started.future()

    @property
    def terminated(self) -> concurrent.futures.Future[ExitReason]:
        """Done with the exit reason once this incarnation has ended."""
        return self._terminated.future()

    @property
    def has_ended(self) -> bool:
        """Whether this incarnation has ended (``terminated`` is done), without making it."""
        return self._terminated.done()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running (or that ran) this incarnation's loop."""
        loop = self.loop_thread
        return loop.thread if loop is not None else None

    # -- user API ------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``. Override this."""
        logger.warning("%s got a message it does not handle: %r", self, message)
        return None

    def exit(self, reason: ExitReason | None = None) -> None:
        """End this incarnation after the current message, with ``Normal()`` by default."""
        self._exit_request = reason if reason is not None else Normal()

    # -- the loop ------------------------------------------------------------------------

    def _actor_loop(self) -> None:
        mark_castflow_thread(self)
        reason: ExitReason
        try:
            try:
                self.on_start()
            except BaseException as exc:  # noqa: BLE001 - every start failure is reported
                reason = StartFailed(ErrorInfo.from_exception(exc))
                self._started.set_exception(
                    StartError(f"actor {self.handle.name!r} failed to start: {exc!r}")
                )
            else:
                self._started.set_result(None)
                self.system._actor_started(self)
                reason = self._process_messages()
                reason = self._run_stop_hooks(reason)
        except BaseException as exc:  # noqa: BLE001 - a failure of the loop itself
            reason = Crashed(ErrorInfo.from_exception(exc))
            self._started.set_exception(StartError(str(exc)))  # unless it had started
        finally:
            self._end(reason)
            mark_castflow_thread(None)

    def _process_messages(self) -> ExitReason:
        get = self.actor_inbox.get
        while True:
            envelope = get()
            message = envelope.message
            if isinstance(message, StopRequest):
                _reply(envelope, None, None)
                return Shutdown(message.info)
            if isinstance(message, pykka_messages._ActorStop):
                _reply(envelope, None, None)
                return Shutdown()
            self._handling = envelope
            try:
                response = self._handle_receive(message)
            except BaseException as exc:  # noqa: BLE001 - SystemExit must not stop others
                self._handling = None
                if envelope.reply_to is not None:
                    _reply(envelope, None, exc)
                    if isinstance(exc, self.reply_errors):
                        continue
                return Crashed(ErrorInfo.from_exception(exc))
            self._handling = None
            if envelope.reply_to is not None:
                _reply(envelope, response, None)
            if self._exit_request is not None:
                return self._exit_request

    def _run_stop_hooks(self, reason: ExitReason) -> ExitReason:
        self._stop_accepting(reason)
        if self.abandoned and self._fenced_when_abandoned:
            return reason  # given up on, as if killed: no cleanup races the replacement
        if reason.is_normal:
            try:
                self.on_stop()
            except BaseException as exc:  # noqa: BLE001
                return Crashed(ErrorInfo.from_exception(exc))
        elif isinstance(reason, Crashed) and reason.error.exception is not None:
            error = reason.error.exception
            try:
                self.on_failure(type(error), error, error.__traceback__)
            except BaseException:
                logger.exception("on_failure of %s raised", self)
        return reason

    # -- delivery and the end ------------------------------------------------------------

    def _deliver(self, envelope: Envelope[Any]) -> bool:
        """Put ``envelope`` in the inbox; False if this incarnation no longer takes mail."""
        if not self._accepting:
            return False
        self.actor_inbox.put(envelope)
        if not self._accepting:
            # Lost the race with the teardown's drain: drain again so nothing is stranded.
            self._drain()
        return True

    def _request_stop(self, info: object = None) -> None:
        self.scope.cancel(CancelReason.SHUTDOWN)
        if self._accepting:
            self.actor_inbox.put(Envelope(StopRequest(info)))

    def _stop_accepting(self, reason: ExitReason) -> None:
        """Take no more mail; after an abnormal end the queued mail goes to the next incarnation."""
        if self._accepting:
            self._carry = not reason.is_normal
            self._accepting = False

    def _fence(self) -> None:
        """Stop taking mail and leave the loop as soon as the running handler returns.

        Used when the incarnation is abandoned (its end is reported as ``Abandoned``): its
        thread only has to finish quietly. What was queued for it fails now, as after a stop,
        rather than waiting behind a handler that may never return.
        """
        self.abandoned = True
        if self._fenced_when_abandoned:
            note_fenced()
        self._accepting = False
        self._drain()
        self.scope.cancel(CancelReason.ABANDONED)
        self.actor_inbox.put(Envelope(StopRequest("abandoned")))
        handling = self._handling
        if handling is not None:
            # Its asker stops waiting now; the handler's late answer finds the future done.
            message = handling.message
            error = ActorDeadError(
                f"actor {self.handle.name!r} was abandoned while handling {message!r}"
            )
            _reply(handling, None, error)

    def _drain(self) -> None:
        """Empty the inbox of an incarnation that takes no more mail.

        After a stop, asks left in the inbox fail with ``ActorDeadError`` and tells become dead
        letters. After a crash (decision D4) they are handed to the handle's stash, in order,
        for the next incarnation; whatever the stash does not keep is failed the same way.
        """
        inbox = self.actor_inbox
        assert isinstance(inbox, PriorityInbox)
        with self._drain_lock:
            envelopes: list[Envelope[Any]] = []
            while True:
                try:
                    envelopes.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if not self._carry:
                for envelope in envelopes:
                    self._fail(envelope)
                return
            kept = []
            for envelope in envelopes:
                if isinstance(envelope.message, ControlMessage | pykka_messages._ActorStop):
                    _reply(envelope, None, None)
                else:
                    kept.append(envelope)
            if not self._carried:
                # The first drain holds the oldest messages: they go before anything sent
                # to the handle since this incarnation stopped taking mail.
                self._carried = True
                kept = self.handle._carry_over(self, kept)
            # Later drains only hold messages that lost the race with the first one; like
            # any message sent now, they go through the handle (stash or next incarnation).
            for envelope in kept:
                if not self.handle._send(envelope):
                    self.handle._reject(envelope)

    def _fail(self, envelope: Envelope[Any]) -> None:
        message = envelope.message
        if isinstance(message, StopRequest | pykka_messages._ActorStop):
            _reply(envelope, None, None)
        elif envelope.reply_to is not None:
            _reply(
                envelope,
                None,
                ActorDeadError(f"actor {self.handle.name!r} stopped before handling {message!r}"),
            )
        else:
            self.system._dead_letter(self.handle, message)

    def _end(self, reason: ExitReason) -> None:
        """Mark this incarnation ended and report it, once, whatever path got here."""
        self._stop_accepting(reason)
        self.actor_stopped.set()
        self.scope.close()
        self._drain()
        self._report_end(reason)

    def _report_end(self, reason: ExitReason) -> bool:
        with self._end_lock:
            if self._ended:
                return False
            self._ended = True
        self.system._actor_ended(self, reason)
        self._terminated.set_result(reason)  # unless it had ended
        return True

    def __str__(self) -> str:
        name = self.handle.name if hasattr(self, "handle") else type(self).__name__
        return f"{type(self).__name__}({name!r})"


def _reply(envelope: Envelope[Any], value: object, exc: BaseException | None) -> None:
    reply_to = envelope.reply_to
    if reply_to is None:
        return
    if isinstance(reply_to, concurrent.futures.Future):
        try:
            if exc is None:
                reply_to.set_result(value)
            else:
                reply_to.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass  # answered already: an abandoned handler's late reply
        return
    try:
        if exc is None:
            reply_to.set(value)
        else:
            reply_to.set_exception((type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - queue.Full: someone already answered
        logger.debug("reply to %r dropped: already set", envelope.message)
