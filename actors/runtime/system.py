"""``ActorSystem``: an embedded home for actors, with its own registry, timers and loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from actors.runtime._threads import LoopThread, ThreadReservoir
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.clock import MONOTONIC, Clock
from actors.runtime.errors import BlockingCallError, StartError, SystemShutDownError
from actors.runtime.events import (
    ActorAbandoned,
    ActorFailed,
    ActorStarted,
    ActorStopped,
    DeadLetter,
    EventBus,
)
from actors.runtime.futures import ActorFuture, in_castflow_thread
from actors.runtime.handle import ActorHandle
from actors.runtime.inbox import Awaited
from actors.runtime.permits import PermitRegistry
from actors.runtime.reasons import Abandoned, ExitReason
from actors.runtime.steps import ForgetOnDown, Run, RunEnv, Step, StepCall, cancelled_result
from actors.runtime.timers import Receiver, TimerService

if TYPE_CHECKING:
    from actors.runtime._workqueue import _SpareWorkers
    from actors.runtime.actor import Actor
    from actors.runtime.leaves import Leaf, LeafPool
    from actors.runtime.results import StepResult

__all__ = ["AbandonedThread", "ActorSystem", "KilledProcess", "ShutdownReport", "SystemService"]

logger = logging.getLogger("castflow.system")

# Seconds castflow's own threads (parked, timer, event loop, services) get to end at shutdown
# when the actors have used up its deadline.
_OWN_THREADS_GRACE = 0.5

A = TypeVar("A", bound="Actor")
T = TypeVar("T")
S = TypeVar("S", bound="SystemService")

DEFAULT_START_TIMEOUT = 5.0
DEFAULT_CANCELLATION_TIMEOUT = 1.0
DEFAULT_IDLE_THREAD_TIMEOUT = 5.0
DEFAULT_MAX_IDLE_THREADS = 256


def _noop() -> None:
    return None


@dataclass(slots=True)
class _Abandonment:
    """A thread given up on: its thread until it has ended, then only its name."""

    thread: threading.Thread | None
    name: str
    owner: str
    waited: float
    running: str | None


class AbandonedThread(BaseModel):
    """A thread castflow gave up on because it did not stop in time.

    Attributes:
        thread: the thread's name.
        owner: the actor or leaf that ran on it.
        waited: seconds castflow waited before giving up.
        alive: whether the thread was still running when the report was made.
        running: the step a leaf worker was stuck in (its name in its parent), if any.
    """

    model_config = ConfigDict(frozen=True)

    thread: str
    owner: str
    waited: float
    alive: bool
    running: str | None = None


class KilledProcess(BaseModel):
    """A worker process the system had to kill at shutdown (it was busy or did not exit).

    Attributes:
        pid: the process id.
        owner: the pool that ran it.
        signal: the last signal sent (``"SIGTERM"`` or ``"SIGKILL"``).
        alive: whether it was still running (not reaped) when the report was made.
    """

    model_config = ConfigDict(frozen=True)

    pid: int
    owner: str
    signal: str
    alive: bool = False


class ShutdownReport(BaseModel):
    """What ``ActorSystem.shutdown`` did.

    Attributes:
        system: the system's name.
        stopped: how many actors stopped within the deadline.
        abandoned: threads given up during the system's life (including at shutdown).
        duration: seconds the shutdown took.
        killed: worker processes that had to be killed at shutdown.
    """

    model_config = ConfigDict(frozen=True)

    system: str
    stopped: int
    abandoned: list[AbandonedThread]
    duration: float
    killed: list[KilledProcess] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether no thread and no process was left running."""
        return not any(t.alive for t in self.abandoned) and not any(p.alive for p in self.killed)


class SystemService(Protocol):
    """Something a system owns and closes at shutdown (the pool of isolated workers, say)."""

    def close(self, deadline: float) -> list[KilledProcess]:
        """Stop by ``deadline`` (``time.monotonic()``); return the processes it had to kill."""
        ...


_live_systems: weakref.WeakSet[ActorSystem] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _shutdown_live_systems() -> None:
    for system in list(_live_systems):
        try:
            system.shutdown(timeout=5.0)
        except Exception:
            logger.exception("shutting down %s at exit failed", system.name)


_supervise: Callable[..., Any] | None = None


def _install_supervise(starter: Callable[..., Any]) -> None:
    """Install what ``ActorSystem.supervise`` calls.

    The runtime does not import supervision (it sits on the floor above); the ``supervisors``
    package installs its root-supervisor starter here when it is imported.
    """
    global _supervise
    _supervise = starter


def _register_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if _atexit_registered:
            return
        # Runs before the interpreter joins non-daemon threads (plain atexit runs after).
        threading._register_atexit(_shutdown_live_systems)  # type: ignore[attr-defined]
        _atexit_registered = True


class ActorSystem:
    """An embedded actor system. Use it as a context manager, or call ``shutdown()``.

    It owns everything it starts: its actors (in its own registry, invisible to other systems
    and to pykka's global registry), one timer thread, an asyncio loop thread started on first
    need, the pools of leaf workers that run tools, and an event bus. After ``shutdown`` no
    thread it started is alive, except threads the report lists as abandoned.

    Args:
        name: names the system's threads and events.
        clock: the clock for deadlines and timers (inject a ``ManualClock`` in tests).
        resources: shared clients and pools handed to tools as ``ToolContext.resources``.
        max_leaf_workers: the most threads that run sync tools for ``call``.
        start_timeout: default seconds ``spawn`` waits for ``on_start``.
        cancellation_timeout: default grace, after a leaf is cancelled, before its thread
            is abandoned and replaced (or its worker process killed).
        max_isolated_workers: the size of the pool of worker processes that run
            process-isolated tools (started on the first isolated call); ``min(4, cpus)`` if
            ``None``.
        idle_thread_timeout: seconds a thread that ran a leaf worker stays parked for reuse
            by a later worker before it ends.
        max_idle_threads: the most threads parked for reuse at once.
    """

    def __init__(
        self,
        name: str = "castflow",
        *,
        clock: Clock | None = None,
        resources: Mapping[str, Any] | None = None,
        max_leaf_workers: int = 32,
        start_timeout: float | None = DEFAULT_START_TIMEOUT,
        cancellation_timeout: float = DEFAULT_CANCELLATION_TIMEOUT,
        max_isolated_workers: int | None = None,
        idle_thread_timeout: float = DEFAULT_IDLE_THREAD_TIMEOUT,
        max_idle_threads: int = DEFAULT_MAX_IDLE_THREADS,
    ) -> None:
        if idle_thread_timeout < 0:
            msg = f"idle_thread_timeout must be >= 0 seconds, got {idle_thread_timeout}"
            raise ValueError(msg)
        if max_idle_threads < 0:
            msg = f"max_idle_threads must be >= 0, got {max_idle_threads}"
            raise ValueError(msg)
        if max_isolated_workers is not None and max_isolated_workers < 1:
            msg = f"max_isolated_workers must be at least 1, got {max_isolated_workers}"
            raise ValueError(msg)
        if max_leaf_workers < 1:
            msg = f"max_leaf_workers must be at least 1, got {max_leaf_workers}"
            raise ValueError(msg)
        if cancellation_timeout < 0:
            msg = f"cancellation_timeout must be >= 0 seconds, got {cancellation_timeout}"
            raise ValueError(msg)
        self.name = name
        self.clock: Clock = clock if clock is not None else MONOTONIC
        self.resources: Mapping[str, Any] = MappingProxyType(dict(resources or {}))
        self.start_timeout = start_timeout
        self.cancellation_timeout = cancellation_timeout
        self.max_leaf_workers = max_leaf_workers
        self.max_isolated_workers = (
            min(4, os.cpu_count() or 1) if max_isolated_workers is None else max_isolated_workers
        )
        self.events = EventBus(name)
        self.permits = PermitRegistry("system")
        self.timers = TimerService(
            self.clock, name=f"{name}/timers", on_undeliverable=self._undeliverable_timer
        )
        self.scope = CancelScope(clock=self.clock, timers=self.timers, name=name)
        self._lock = threading.RLock()
        self._names = itertools.count(1)
        self._handles: dict[str, ActorHandle[Any]] = {}
        self._forget_on_down = ForgetOnDown(self)
        self._live: dict[int, Actor] = {}
        self.idle_thread_timeout = idle_thread_timeout
        self.max_idle_threads = max_idle_threads
        self._spare_leaf_workers: _SpareWorkers | None = None
        self._thread_reservoir = ThreadReservoir(
            name, idle_timeout=idle_thread_timeout, max_idle=max_idle_threads
        )
        # Loops of actors that ended and are still unwinding (publishing their Down):
        # shutdown waits for them too, so none outlives it.
        self._ending: list[LoopThread] = []
        self._roots: list[ActorHandle[Any]] = []
        self._abandoned: list[_Abandonment] = []  # every one, for the shutdown report
        self._abandoned_live: list[_Abandonment] = []  # those whose thread may still run
        self._dead_letters = 0
        self._closed = False
        self._shutdown_report: ShutdownReport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._leaf_pool: LeafPool | None = None
        self._services: dict[str, SystemService] = {}
        self._run_ids = itertools.count(1)
        _live_systems.add(self)
        _register_atexit()

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"{len(self._live)} actors"
        return f"ActorSystem({self.name!r}, {state})"

    # -- actors --------------------------------------------------------------------------

    def spawn(
        self,
        actor_class: type[A],
        *args: Any,
        name: str | None = None,
        watchers: tuple[Receiver, ...] = (),
        wait: bool = True,
        start_timeout: float | None = None,
        **kwargs: Any,
    ) -> ActorHandle[A]:
        """Start an actor of ``actor_class(*args, **kwargs)`` and return its handle.

        Args:
            actor_class: a subclass of ``actors.Actor``.
            name: a name unique among this system's actors; generated from the class name if
                omitted. It is free again once the actor has ended.
            watchers: receivers of a ``Down`` whenever an incarnation ends.
            wait: block until ``on_start`` finished (not allowed on castflow threads; actors
                that spawn pass ``wait=False`` and learn of failure through ``Down``).
            start_timeout: seconds to wait for ``on_start``; the system default if omitted.

        Raises:
            StartError: ``on_start`` raised or did not finish in time (the actor is stopped).
            ValueError: the name is taken.
            SystemShutDownError: the system has been shut down.
        """
        handle: ActorHandle[A] = self._register(name or self._fresh_name(actor_class))
        # Nothing restarts a spawned actor: its name is free again once it ends, as in OTP
        # (first, so that a watcher may spawn another under the same name).
        handle.watch(self._forget_on_down)
        for watcher in watchers:
            handle.watch(watcher)
        try:
            self.start_incarnation(handle, actor_class, *args, **kwargs)
        except BaseException:
            self._unregister(handle)
            raise
        if wait:
            self._await_start(handle, start_timeout)
        return handle

    def start_incarnation(
        self, handle: ActorHandle[A], actor_class: type[A], *args: Any, **kwargs: Any
    ) -> A:
        """Start a new incarnation of ``actor_class`` behind an existing ``handle``.

        Supervisors use this to restart a child; it does not wait for ``on_start``.
        """
        self._check_open()
        actor = actor_class(*args, **kwargs)
        if not hasattr(actor, "_end_lock"):
            msg = f"{actor_class.__name__}.__init__ did not call super().__init__()"
            raise TypeError(msg)
        actor.system = self
        actor.handle = handle
        actor.scope = self.scope.child(name=handle.name)
        with self._lock:
            # Checked again and started under the lock: shutdown either sees this actor with
            # its thread running, or refuses it (no thread it never joins, none half-started).
            self._check_open()
            actor.incarnation = handle._bind(actor)
            self._live[id(actor)] = actor
            actor._start_actor_loop()
        return actor

    def _await_start(self, handle: ActorHandle[Any], start_timeout: float | None) -> None:
        actor = handle._actor
        if actor is None:
            return
        if in_castflow_thread():
            msg = "spawn(wait=True) from a castflow thread: pass wait=False and watch for Down"
            raise BlockingCallError(msg)
        timeout = self.start_timeout if start_timeout is None else start_timeout
        try:
            actor.started.result(timeout)
        except concurrent.futures.TimeoutError:
            self.stop(handle, timeout=self.cancellation_timeout)
            msg = f"actor {handle.name!r} did not finish on_start within {timeout} s"
            raise StartError(msg) from None
        except StartError:
            # Its loop ends right after on_start failed: once it has, the name is free again.
            with contextlib.suppress(concurrent.futures.TimeoutError):
                actor.terminated.result(self.cancellation_timeout)
            raise

    def _fresh_name(self, actor_class: type[Any]) -> str:
        return f"{actor_class.__name__}-{next(self._names)}"

    def _register(self, name: str) -> ActorHandle[Any]:
        self._check_open()
        with self._lock:
            if name in self._handles:
                msg = f"an actor named {name!r} already exists in system {self.name!r}"
                raise ValueError(msg)
            handle: ActorHandle[Any] = ActorHandle(name, self)
            self._handles[name] = handle
            return handle

    def _rename(self, actor: Actor, name: str) -> None:
        """Give a running actor a new name: in the registry, its loop and its thread.

        A leaf worker adopted by another owner takes a name after it, so threads and events
        name the run they serve.

        Raises:
            ValueError: another actor has that name.
        """
        handle = actor.handle
        with self._lock:
            if name in self._handles:
                msg = f"an actor named {name!r} already exists in system {self.name!r}"
                raise ValueError(msg)
            if self._handles.get(handle.name) is handle:
                del self._handles[handle.name]
            handle.name = name
            self._handles[name] = handle
        loop = actor.loop_thread
        if loop is not None:
            loop.name = f"{self.name}/{name}#{actor.incarnation}"
            if loop.thread is not None:
                loop.thread.name = loop.name

    def _unregister(self, handle: ActorHandle[Any]) -> None:
        with self._lock:
            if self._handles.get(handle.name) is handle:
                del self._handles[handle.name]

    def supervise(
        self,
        children: Iterable[Any],
        *,
        strategy: str | None = None,
        intensity: int | None = None,
        period: float | None = None,
        auto_shutdown: str | None = None,
        name: str = "root",
        timeout: float | None = None,
    ) -> Any:
        """Start a root supervisor of ``children`` and wait until every child has started.

        The root is stopped first when the system shuts down, so its tree stops in order
        (reverse start order, each child within its shutdown time) before anything else.

        Args:
            children: ``supervisors.ChildSpec``s, in start order.
            strategy: ``"one_for_one"`` (default), ``"one_for_all"`` or ``"rest_for_one"``.
            intensity: restarts allowed within ``period`` (default 3).
            period: the intensity's window in seconds (default 5).
            auto_shutdown: ``"never"`` (default), ``"any_significant"`` or
                ``"all_significant"``.
            name: the root's name; its children are ``"<name>/<id>"``.
            timeout: seconds to wait for all children; ``None`` relies on their start
                timeouts.

        Returns:
            A ``supervisors.SupervisorClient`` for the root (annotate it as one).

        Raises:
            ChildStartError: a child failed to start; the root has ended.
            RuntimeError: the ``supervisors`` package has not been imported.
        """
        if _supervise is None:
            msg = "system.supervise needs the supervisors package: import supervisors first"
            raise RuntimeError(msg)
        return _supervise(
            self,
            children,
            strategy=strategy,
            intensity=intensity,
            period=period,
            auto_shutdown=auto_shutdown,
            name=name,
            timeout=timeout,
        )

    def _adopt_root(self, handle: ActorHandle[Any]) -> None:
        """Stop ``handle``'s actor first at shutdown, before the others (roots of trees)."""
        with self._lock:
            self._roots = [h for h in self._roots if h.is_alive()]
            self._roots.append(handle)

    def lookup(self, name: str) -> ActorHandle[Any] | None:
        """The handle registered under ``name`` in this system, if any."""
        return self._handles.get(name)

    def actors(self) -> list[ActorHandle[Any]]:
        """Handles of the actors running now, in start order."""
        with self._lock:
            return [actor.handle for actor in self._live.values()]

    def stop(self, handle: ActorHandle[Any], *, timeout: float | None = 5.0) -> ExitReason:
        """Stop ``handle``'s current incarnation, waiting up to ``timeout`` seconds.

        A thread actor still running after the timeout is abandoned: it gets the exit reason
        ``Abandoned``, its watchers get their ``Down``, and the thread is reported.

        Returns:
            The incarnation's exit reason.
        """
        actor: Actor | None = handle._actor
        if actor is None:
            msg = f"actor {handle.name!r} has never run"
            raise ValueError(msg)
        if in_castflow_thread():
            msg = "ActorSystem.stop() blocks; inside an actor use handle.stop() and watch Down"
            raise BlockingCallError(msg)
        actor._request_stop()
        try:
            return actor.terminated.result(timeout)
        except concurrent.futures.TimeoutError:
            self.abandon(actor, timeout or 0.0)
            return actor.terminated.result()

    def abandon(self, actor: Actor, waited: float, *, running: str | None = None) -> bool:
        """Give up on ``actor``'s thread: end its incarnation as ``Abandoned``, fence it.

        Args:
            actor: the incarnation.
            waited: seconds waited for it.
            running: the step it is stuck in, for the report (a leaf worker's tool).

        Returns:
            False if the incarnation had already ended.
        """
        actor._fence()
        if not actor._report_end(Abandoned(waited)):
            return False
        thread = actor.thread
        self.record_abandoned(thread, actor.handle.name, waited, running=running)
        return True

    def abandoned_alive(self) -> int:
        """How many threads this system gave up on are still running."""
        if not self._abandoned_live:
            return 0
        with self._lock:
            return len(self._prune_abandoned_locked())

    def _prune_abandoned_locked(self) -> list[_Abandonment]:
        """Forget the threads of abandonments that have ended (a long-lived system gives up
        on many over its life: it keeps their names, not their threads); the others."""
        live = []
        for entry in self._abandoned_live:
            if entry.thread is not None and entry.thread.is_alive():
                live.append(entry)
            else:
                entry.thread = None
        self._abandoned_live = live
        return live

    def record_abandoned(
        self,
        thread: threading.Thread | None,
        owner: str,
        waited: float,
        *,
        running: str | None = None,
    ) -> None:
        """Remember a thread given up on, for the shutdown report, and publish the event."""
        name = thread.name if thread is not None else "?"
        entry = _Abandonment(thread, name, owner, waited, running)
        with self._lock:
            self._abandoned.append(entry)
            self._prune_abandoned_locked()
            if thread is not None:
                self._abandoned_live.append(entry)
        what = owner if running is None else f"{owner}, running {running!r}"
        logger.warning("%s: abandoned thread %s (%s) after %.3f s", self.name, name, what, waited)
        self.events.publish(
            ActorAbandoned(
                system=self.name, actor=owner, thread=name, waited=waited, running=running
            )
        )

    # -- callbacks from actors -------------------------------------------------------------

    def _actor_started(self, actor: Actor) -> None:
        if self.events.has_subscribers:
            self.events.publish(
                ActorStarted(
                    system=self.name, actor=actor.handle.name, incarnation=actor.incarnation
                )
            )

    def _actor_ended(self, actor: Actor, reason: ExitReason) -> None:
        with self._lock:
            self._live.pop(id(actor), None)
            loop = actor.loop_thread
            if loop is not None and loop.thread is threading.current_thread():
                self._ending = [ending for ending in self._ending if not ending.finished]
                self._ending.append(loop)
        actor.handle._notify_down(actor, reason)
        if self.events.has_subscribers:
            event_type = ActorStopped if reason.is_normal else ActorFailed
            self.events.publish(
                event_type(
                    system=self.name,
                    actor=actor.handle.name,
                    incarnation=actor.incarnation,
                    reason=reason,
                )
            )
        if not reason.is_normal:
            logger.debug("%s: %s ended: %s", self.name, actor.handle.name, reason.describe())

    def _dead_letter(self, handle: ActorHandle[Any], message: object) -> None:
        self._dead_letters += 1
        if isinstance(message, Awaited):
            try:
                message.undelivered()
            except Exception:
                logger.exception("%s: ending the wait for %r failed", self.name, message)
        if self.events.has_subscribers:
            self.events.publish(
                DeadLetter(system=self.name, recipient=handle.name, message=message)
            )

    def _undeliverable_timer(self, target: Receiver, message: object, exc: BaseException) -> None:
        logger.debug(
            "%s: timer message %r to %r undeliverable: %r", self.name, message, target, exc
        )

    @property
    def dead_letters(self) -> int:
        """How many messages could not be delivered so far."""
        return self._dead_letters

    # -- asyncio -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The system's asyncio loop (its thread starts on first use)."""
        with self._lock:
            if self._loop is None:
                self._check_open()
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name=f"{self.name}/asyncio", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the system loop; cancelling the future cancels the task."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def _stop_loop(self, deadline: float) -> bool:
        loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return True

        async def close_down() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(
                tasks, timeout=max(0.0, deadline - time.monotonic())
            ) if tasks else None
            await loop.shutdown_asyncgens()

        if loop.is_running():
            done = asyncio.run_coroutine_threadsafe(close_down(), loop)
            try:
                done.result(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a stuck task must not stop the shutdown
                logger.warning("%s: asyncio tasks did not finish cancelling in time", self.name)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self.record_abandoned(thread, "asyncio loop", 0.0)
            return False
        loop.close()
        return True

    # -- tools -----------------------------------------------------------------------------

    @property
    def leaf_pool(self) -> LeafPool:
        """The pool of leaf workers that runs tools for ``call`` (created on first use)."""
        with self._lock:
            if self._leaf_pool is None:
                self._check_open()
                from actors.runtime.leaves import LeafPool  # noqa: PLC0415 - a cycle

                self._leaf_pool = LeafPool(self, max_workers=self.max_leaf_workers, name="call")
            return self._leaf_pool

    def service(self, key: str, factory: Callable[[], S]) -> S:
        """The service registered under ``key``, made by ``factory()`` on first use.

        Services (the pool of isolated worker processes, say) live as long as the system and
        are closed at shutdown, after the actors and before the asyncio loop.

        Raises:
            SystemShutDownError: the system has been shut down.
        """
        with self._lock:
            self._check_open()
            found = self._services.get(key)
            if found is None:
                found = self._services[key] = factory()
            return cast(S, found)

    def _close_services(self, deadline: float) -> list[KilledProcess]:
        with self._lock:
            services = list(self._services.values())
        killed: list[KilledProcess] = []
        for service in services:
            try:
                killed.extend(service.close(deadline))
            except Exception:
                logger.exception("%s: closing a service failed", self.name)
        return killed

    def call(
        self,
        leaf: Leaf,
        input: object = None,
        *,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
    ) -> StepResult:
        """Run one tool on a leaf worker and return its ``StepResult``. Blocking.

        ``timeout`` is a deadline: when it passes the tool's scope is cancelled (an async
        tool's task is cancelled) and the result is ``timeout`` at once. A sync tool that does
        not return within ``cancellation_timeout`` after that has its thread abandoned.

        Raises:
            ToolInputError: the input does not fit the tool's signature (before it runs).
        """
        future = self.call_future(
            leaf, input, timeout=timeout, cancellation_timeout=cancellation_timeout
        )
        return future.result()

    async def call_async(
        self,
        leaf: Leaf,
        input: object = None,
        *,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
    ) -> StepResult:
        """Async twin of ``call``: awaits the result without blocking the event loop."""
        future = self.call_future(
            leaf, input, timeout=timeout, cancellation_timeout=cancellation_timeout
        )
        return await asyncio.wrap_future(future)

    def call_future(
        self,
        leaf: Leaf,
        input: object = None,
        *,
        timeout: float | None = None,
        cancellation_timeout: float | None = None,
    ) -> ActorFuture[StepResult]:
        """Start one tool call and return a future of its ``StepResult``.

        Raises:
            TypeError: ``leaf`` is not a tool, or a timeout is not a number.
            ValueError: a timeout is negative.
        """
        _check_target(leaf, "call", "prepare", "a tool (made with @tool or tool(fn))")
        _check_seconds(timeout, "timeout")
        _check_seconds(cancellation_timeout, "cancellation_timeout")
        return self.leaf_pool.submit(
            leaf.prepare(input),
            parent=self.scope,
            timeout=timeout,
            cancellation_timeout=cancellation_timeout,
        )

    # -- runs ------------------------------------------------------------------------------

    def start(
        self,
        step: Step[T],
        input: object = None,
        *,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Run[T]:
        """Start a run of ``step`` (a workflow or a tool) and return its handle at once.

        Args:
            step: anything implementing the ``Step`` protocol.
            input: the run's input.
            timeout: seconds until the run's deadline; when it passes the run is cancelled
                and ends with status ``timeout``. Nested deadlines are never later.
            stream: keep partial results from the start, so that the first ``run.stream()``
                misses none (they are kept until then).

        Returns:
            The run's handle: ``result(timeout)``, ``cancel()``, ``status``, ``await``.

        Raises:
            ToolInputError: the input does not fit the step (nothing was started).
            SystemShutDownError: the system has been shut down.
            TypeError: ``step`` is not a step.
        """
        _check_target(step, "run/start", "start", "a step (a workflow, a tool or an actors.Step)")
        self._check_open()
        run_id = f"run-{next(self._run_ids)}"
        scope = self.scope.child(timeout=timeout, name=run_id)
        env = RunEnv(self, run_id, input, stream=stream)
        future: ActorFuture[StepResult] = ActorFuture()
        decided = threading.Lock()
        # The run's actors hold ``reply`` and form cycles the cyclic collector frees; once the
        # result is out they must not hold the future too, or the result would wait for it.
        pending: list[ActorFuture[StepResult]] = [future]

        def reply(result: StepResult) -> None:
            with decided:
                if not pending:
                    return
                pending.pop().set_result(result)
            # The result is out first; cleanup never delays it.
            remove_shutdown_hook()
            env.close()
            scope.close()

        def on_shutdown(cancelled: CancelScope) -> None:
            # Coordinators may be stopped before they see the cancellation: decide here.
            if cancelled.reason is CancelReason.SHUTDOWN:
                reply(cancelled_result(step.name, cancelled, "the system shut down"))

        remove_shutdown_hook: Callable[[], None] = _noop
        call = StepCall(env=env, input=input, scope=scope, path=step.name, reply=reply)
        try:
            step.start(call)
        except BaseException:
            env.close()
            scope.close()
            raise
        if not future.done():
            remove_shutdown_hook = scope.add_callback(on_shutdown)
        return Run(step, run_id, scope, future, env)

    def run(self, step: Step[T], input: object = None, *, timeout: float | None = None) -> T:
        """Run ``step`` to its end and return its result. Blocking.

        ``timeout`` is a deadline that cancels the run; the result then has status
        ``timeout``. For a workflow or a tool the result is a ``WorkflowResult``.

        Raises:
            ToolInputError: the input does not fit the step (nothing was started).
            BlockingCallError: called on a castflow thread.
        """
        return self.start(step, input, timeout=timeout).result()

    async def run_async(
        self, step: Step[T], input: object = None, *, timeout: float | None = None
    ) -> T:
        """Async twin of ``run``: awaits without blocking the event loop.

        Cancelling the awaiting task cancels the run.
        """
        return await self.start(step, input, timeout=timeout).wait_async(cancel_on_exit=True)

    # -- shutdown --------------------------------------------------------------------------

    def _stop_roots(self, roots: list[ActorHandle[Any]], deadline: float) -> None:
        for handle in reversed(roots):
            actor = handle._actor
            if actor is None or actor.has_ended:
                continue
            actor._request_stop("system shutdown")
            try:
                actor.terminated.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                return  # the deadline has passed: what is left is stopped (or abandoned) below

    def _check_open(self) -> None:
        if self._closed:
            msg = f"actor system {self.name!r} has been shut down"
            raise SystemShutDownError(msg)

    @property
    def is_shut_down(self) -> bool:
        """Whether ``shutdown`` has been called."""
        return self._closed

    def shutdown(self, timeout: float = 10.0) -> ShutdownReport:
        """Stop everything the system started, within one overall deadline.

        Root supervisors (``supervise``) are stopped first, newest first, each waited for, so
        their trees stop in order. Then every actor's scope is cancelled (reason
        ``shutdown``) and every actor is asked to stop; those still running at the deadline
        are abandoned, and the threads parked for reuse end. Then the leaf pools, the services
        (worker processes of isolated tools are stopped and reaped; those that had to be killed
        are reported), the asyncio loop (tasks cancelled, async generators closed) and the
        timer thread stop. Messages kept for actors that were restarting become dead letters.
        Idempotent: a second call returns the first report.

        Returns:
            What was stopped and which threads were abandoned.
        """
        if in_castflow_thread():
            msg = "ActorSystem.shutdown() blocks; call it from outside the system's threads"
            raise BlockingCallError(msg)
        with self._lock:
            if self._shutdown_report is not None:
                return self._shutdown_report
            self._closed = True
            roots = list(self._roots)
        started = time.monotonic()
        deadline = started + timeout
        self._stop_roots(roots, deadline)
        with self._lock:
            actors = list(self._live.values())
            ending = list(self._ending)
        self.scope.cancel(CancelReason.SHUTDOWN)
        for actor in reversed(actors):
            actor._request_stop("system shutdown")
        stopped = 0
        for actor in reversed(actors):
            try:
                # Its end, or its abandonment meanwhile: a leaf worker whose tool ignores its
                # cancellation is given up on after its grace, not at this deadline.
                actor.terminated.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                self.abandon(actor, time.monotonic() - started)
                continue
            if actor.abandoned:
                continue  # reported when it was given up on
            loop = actor.loop_thread
            if loop is None or loop.join(max(0.0, deadline - time.monotonic())):
                stopped += 1
            else:
                self.record_abandoned(actor.thread, actor.handle.name, time.monotonic() - started)
        for loop in ending:
            loop.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = {e.thread for e in self._prune_abandoned_locked() if e.thread is not None}
        # castflow's own threads end as soon as they are told to, so they get a moment even
        # when the actors used up the deadline: none must outlive shutdown() unreported.
        deadline = max(deadline, time.monotonic() + _OWN_THREADS_GRACE)
        self._thread_reservoir.close(deadline, keep=stuck)
        killed = self._close_services(deadline)
        self._stop_loop(deadline)
        if not self.timers.stop(max(0.0, deadline - time.monotonic())):
            self.record_abandoned(self.timers.thread, "timer service", 0.0)
        for handle in list(self._handles.values()):
            handle._disable_stash()
        report = ShutdownReport(
            system=self.name,
            stopped=stopped,
            abandoned=[
                AbandonedThread(
                    thread=entry.name,
                    owner=entry.owner,
                    waited=entry.waited,
                    alive=entry.thread is not None and entry.thread.is_alive(),
                    running=entry.running,
                )
                for entry in self._abandoned
            ],
            duration=time.monotonic() - started,
            killed=killed,
        )
        with self._lock:
            self._shutdown_report = report
        _live_systems.discard(self)
        return report


def _check_target(target: object, method: str, member: str, expected: str) -> None:
    """Raise a ``TypeError`` naming what ``method`` got, unless ``target`` has ``member``."""
    if not isinstance(target, type) and callable(getattr(target, member, None)):
        return
    if isinstance(target, type):
        got = f"the class {target.__name__}; make one first, e.g. {target.__name__}(...)"
    elif callable(target):
        name = getattr(target, "__name__", type(target).__name__)
        got = f"the plain callable {name!r}; make it a tool first: actors.tool({name})"
    else:
        got = f"{type(target).__name__} {target!r}"
    msg = f"ActorSystem.{method} takes {expected}, got {got}"
    raise TypeError(msg)


def _check_seconds(value: object, name: str) -> None:
    """Raise unless ``value`` is ``None`` or a number of seconds >= 0.

    Raises:
        TypeError: it is not a number (a bool is not one).
        ValueError: it is negative or NaN.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number of seconds, got {value!r}"
        raise TypeError(msg)
    if not value >= 0:  # NaN too
        msg = f"{name} must be >= 0 seconds, got {value!r}"
        raise ValueError(msg)
