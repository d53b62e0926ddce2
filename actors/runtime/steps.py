"""Steps and runs: the protocol every step kind implements, and the handle of a running step.

The runtime does not know what a workflow or a tool is. It knows the :class:`Step` protocol:
``start(call)`` begins one execution of the step without blocking and, exactly once and from
any thread, hands a :class:`~actors.runtime.results.StepResult` to ``call.reply``;
``present(result, run_id)`` turns the top-level result into what ``ActorSystem.run`` returns.
Tools and every workflow implement it, and so can users' own step kinds.

A *run* is one top-level execution started by ``ActorSystem.start``. It owns a cancel scope
(its deadline), and a :class:`RunEnv` through which steps find the coordinator actors of the
run (one per definition node, shared by every instance of that node in the run). When the run
is decided its result is delivered first; only then are its coordinators asked to stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.errors import BlockingCallError, CastflowError
from actors.runtime.futures import ActorFuture, in_castflow_thread
from actors.runtime.partials import PartialSink, PartialStream
from actors.runtime.permits import PermitRegistry, Semaphore
from actors.runtime.reasons import Down
from actors.runtime.results import ErrorInfo, Status, StepResult

if TYPE_CHECKING:
    from actors.runtime.actor import Actor
    from actors.runtime.handle import ActorHandle
    from actors.runtime.leaves import Leaf, LeafExecutor
    from actors.runtime.system import ActorSystem

__all__ = [
    "ForgetOnDown",
    "Run",
    "RunEnv",
    "RunFinishedError",
    "Step",
    "StepCall",
    "cancelled_result",
    "start_leaf",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
A = TypeVar("A", bound="Actor")

_NO_OUTPUTS: Mapping[str, Any] = MappingProxyType({})


class RunFinishedError(CastflowError):
    """A step tried to start work for a run whose result has already been decided."""


class RunEnv:
    """What every step of one run shares: the system, the run's id and input, its coordinators.

    Steps reach the coordinator actor of a definition node through :meth:`actor_for`; the
    first request spawns it, later ones (any instance, any depth, any iteration) reuse it, so
    a run adds one thread per definition node, never one per item or iteration. ``close``
    (called once the run is decided) asks every coordinator to stop, without waiting.

    ``partials`` is ``None`` until someone streams the run (``Run.stream()``); then it is the
    run's ``PartialSink``, to which steps push the results of their branches as they are
    decided. Steps test it for ``None`` before building anything for it.

    Args:
        system: the system running the run.
        run_id: the run's unique id.
        input: the run's input, as given.
        stream: give the run its ``PartialSink`` now, replaying to the first stream what was
            decided before it.
    """

    __slots__ = (
        "_actors",
        "_closed",
        "_lock",
        "_shared",
        "input",
        "partials",
        "permits",
        "run_id",
        "system",
    )

    def __init__(
        self, system: ActorSystem, run_id: str, input: object, *, stream: bool = False
    ) -> None:
        self.system = system
        self.run_id = run_id
        self.input = input
        self.permits = PermitRegistry("run")
        self._lock = threading.Lock()
        self._actors: dict[int, tuple[object, ActorHandle[Any]]] = {}
        self._shared: dict[str, dict[int, tuple[object, Any]]] = {}
        self._closed = False
        self.partials: PartialSink | None = PartialSink(replay=True) if stream else None

    @property
    def closed(self) -> bool:
        """Whether the run has been decided and its coordinators told to stop."""
        return self._closed

    def actor_for(
        self, key: object, actor_class: type[A], *args: Any, **kwargs: Any
    ) -> ActorHandle[A]:
        """The run's actor for ``key`` (a definition node), spawned on first request.

        Never blocks: the actor is spawned with ``wait=False``.

        Args:
            key: the object the actor serves; compared by identity.
            actor_class: the actor class to spawn when there is none yet.
            *args: passed to ``actor_class`` on spawn.
            **kwargs: passed to ``actor_class`` on spawn.

        Returns:
            The actor's handle.

        Raises:
            RunFinishedError: the run has already been decided.
        """
        with self._lock:
            if self._closed:
                msg = f"run {self.run_id!r} has finished: no new work is started for it"
                raise RunFinishedError(msg)
            found = self._actors.get(id(key))
            if found is not None:
                return found[1]
            name = getattr(key, "name", type(key).__name__)
            handle: ActorHandle[A] = self.system.spawn(
                actor_class,
                *args,
                name=f"{self.run_id}/{name}#{len(self._actors) + 1}",
                wait=False,
                **kwargs,
            )
            # The key is kept alive with the handle, so its id cannot be reused meanwhile.
            self._actors[id(key)] = (key, handle)
            return handle

    def shared(self, key: object, group: str, factory: Callable[[], R]) -> R:
        """The run's state for ``key`` (a definition object) within ``group``, made on first use.

        Synchronisation steps keep their per-instance state here: one barrier definition gets
        one state per instance of the parallel step that encloses it.

        Args:
            key: the definition object; compared by identity.
            group: the instance it belongs to (``StepCall.group``).
            factory: makes the state on first request.
        """
        with self._lock:
            states = self._shared.setdefault(group, {})
            found = states.get(id(key))
            if found is None:
                found = states[id(key)] = (key, factory())
            state: R = found[1]
            return state

    def drop_group(self, group: str) -> None:
        """Forget every shared state of ``group`` (its instance has finished)."""
        with self._lock:
            self._shared.pop(group, None)

    def close(self) -> None:
        """Ask every actor of the run to stop (without waiting); refuse new ones. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [handle for _key, handle in self._actors.values()]
        for handle in handles:
            handle._request_stop("run finished")

    def __len__(self) -> int:
        return len(self._actors)

    def __repr__(self) -> str:
        return f"RunEnv({self.run_id!r}, {len(self._actors)} actors)"


class ForgetOnDown:
    """A watcher that removes an actor's name from its system once the actor has ended.

    ``ActorSystem.spawn`` gives it to every actor it starts (nothing restarts those), so a
    long-running system does not keep their names forever and a name can be used again.
    """

    __slots__ = ("_system",)

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    def tell(self, message: Any) -> None:
        """Forget the actor whose ``Down`` this is."""
        if isinstance(message, Down):
            self._system._unregister(message.handle)


@dataclass(frozen=True, slots=True)
class StepCall:
    """One requested execution of a step, as its parent (or the run) hands it over.

    Attributes:
        env: the run's shared environment.
        input: the step's input.
        scope: the scope the step runs inside; the step makes its own child scope of it
            (with its own timeout), so cancelling this one cancels the step.
        path: the step's path from the run's root, names joined by ``/``.
        outputs: outputs of the steps finished so far that this step may see, by name.
        reply: receives the step's ``StepResult``; call it exactly once, from any thread. It
            must not block (it usually tells a coordinator).
        outputs: outputs of the steps finished so far that this step may see, by name.
        leaves: where leaf tasks under this step run; the system's pool if ``None``. A
            parallel step hands its branches its own pooled workers.
        semaphores: semaphores every leaf under this step holds a permit of while it runs.
        group: the instance of the nearest enclosing parallel step, which synchronisation
            steps (barriers, rendezvous) use to find their partners.
    """

    env: RunEnv
    input: Any
    scope: CancelScope
    path: str
    reply: Callable[[StepResult], None]
    outputs: Mapping[str, Any] = field(default_factory=lambda: _NO_OUTPUTS)
    leaves: LeafExecutor | None = None
    semaphores: tuple[Semaphore, ...] = ()
    group: str = ""

    def child(
        self,
        *,
        input: object,
        name: str,
        reply: Callable[[StepResult], None],
        scope: CancelScope | None = None,
        outputs: Mapping[str, Any] | None = None,
        semaphores: tuple[Semaphore, ...] = (),
    ) -> StepCall:
        """The call for a child step named ``name`` under this one.

        ``semaphores`` are added to the ones inherited from this call.
        """
        return replace(
            self,
            input=input,
            path=f"{self.path}/{name}",
            reply=reply,
            scope=self.scope if scope is None else scope,
            outputs=self.outputs if outputs is None else outputs,
            semaphores=self.semaphores + semaphores if semaphores else self.semaphores,
        )


@runtime_checkable
class Step(Protocol[R_co]):
    """Something that can run as a step of a workflow or as a whole run.

    Tools and every workflow implement it. To write a new step kind, implement the three
    members below; ``start`` must never block (a coordinator actor calls it).
    """

    @property
    def name(self) -> str:
        """The step's name, used in results, events and paths."""
        ...

    def start(self, call: StepCall) -> None:
        """Begin one execution; ``call.reply`` gets its result exactly once.

        Raises:
            Exception: the input or the definition is invalid (nothing was started).
        """
        ...

    def present(self, result: StepResult, run_id: str) -> R_co:
        """Turn this step's top-level result into what ``ActorSystem.run`` returns."""
        ...


def start_leaf(leaf: Leaf, call: StepCall, *, timeout: float | None = None) -> None:
    """Start ``leaf`` as the step of ``call``, on ``call.leaves`` or the system's leaf pool.

    Args:
        leaf: the leaf (a tool).
        call: the step call; its scope is the parent of the leaf call's scope.
        timeout: seconds until the leaf call's own deadline.

    Raises:
        Exception: whatever ``leaf.prepare`` raises for a bad input (nothing runs).
    """
    task = leaf.prepare(call.input)
    executor = call.leaves if call.leaves is not None else call.env.system.leaf_pool
    future = executor.submit(
        task,
        parent=call.scope,
        timeout=timeout,
        semaphores=call.semaphores,
        run_permits=call.env.permits,
    )
    reply = call.reply
    future.add_done_callback(lambda done: reply(done.result()))


class Run(Generic[R]):
    """The handle of a started run (``ActorSystem.start``).

    ``result(timeout)`` only stops waiting; ``cancel()`` cancels the run's scope, which reaches
    every nested step (a sync leaf sees its scope cancelled, an async leaf's task is
    cancelled). ``await run`` waits without blocking the event loop. ``run.stream()`` and
    ``async for result in run`` yield partial results as they are decided, then the final one.

    Handles are created by ``ActorSystem.start``; do not construct them yourself.
    """

    __slots__ = ("_env", "_future", "_lock", "_presented", "run_id", "scope", "step")

    def __init__(
        self,
        step: Step[R],
        run_id: str,
        scope: CancelScope,
        future: ActorFuture[StepResult],
        env: RunEnv | None = None,
    ) -> None:
        self.step = step
        self.run_id = run_id
        self.scope = scope
        self._future = future
        self._env = env
        sink = None if env is None else env.partials
        if sink is not None:
            future.add_done_callback(lambda done: sink.close(done.result()))
        self._lock = threading.Lock()
        self._presented: list[R] = []

    @property
    def status(self) -> Status | None:
        """The run's status once decided, else ``None`` (still running)."""
        if not self._future.done():
            return None
        return self._future.result().status

    def done(self) -> bool:
        """Whether the run's result has been decided."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the result; return whether it is decided."""
        try:
            self._future.result(timeout)
        except TimeoutError:
            return False
        return True

    def result(self, timeout: float | None = None) -> R:
        """Wait for the run's result and return it (the step's ``present``-ation).

        Args:
            timeout: the most seconds to wait. Waiting stops; the run goes on.

        Raises:
            TimeoutError: the run was not decided within ``timeout``.
            BlockingCallError: called on a castflow thread before the run was decided.
        """
        return self._present(self.step_result(timeout))

    def step_result(self, timeout: float | None = None) -> StepResult:
        """Wait for the run's raw ``StepResult`` (how the top step ended, before ``present``).

        Raises:
            TimeoutError: the run was not decided within ``timeout``.
            BlockingCallError: called on a castflow thread before the run was decided.
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            msg = f"run {self.run_id!r} was not decided within {timeout} s; it goes on"
            raise TimeoutError(msg) from None

    def cancel(self) -> bool:
        """Cancel the run: its scope and every nested step's. Returns False if already done."""
        if self._future.done():
            return False
        return self.scope.cancel(CancelReason.CANCELLED)

    def add_done_callback(self, fn: Callable[[Run[R]], object]) -> None:
        """Call ``fn(run)`` once the run is decided (at once if it is); ``fn`` must not block."""
        self._future.add_done_callback(lambda _done: fn(self))

    def _present(self, raw: StepResult) -> R:
        with self._lock:
            if not self._presented:
                self._presented.append(self.step.present(raw, self.run_id))
            return self._presented[0]

    async def wait_async(self, *, cancel_on_exit: bool = False) -> R:
        """Await the result without blocking the event loop.

        Args:
            cancel_on_exit: cancel the run if the awaiting task is cancelled.
        """
        try:
            raw = await asyncio.wrap_future(_chained(self._future))
        except asyncio.CancelledError:
            if cancel_on_exit:
                self.cancel()
            raise
        return self._present(raw)

    def __await__(self) -> Generator[Any, None, R]:
        return self.wait_async().__await__()

    def stream(self, timeout: float | None = None) -> Iterator[StepResult]:
        """Iterate over the run's partial results as they are decided, then its final result.

        Yields the ``StepResult`` of every branch of a parallel step (at any depth) and of
        every item of a streaming step, in the order they are decided, from the moment of
        this call (from the start of the run for the first stream of a run started with
        ``system.start(..., stream=True)``); each is named by its path from the run's root
        (``"outer/inner/fetch"``). The last item is the run's final ``StepResult`` (named as
        the top step, the only name without a ``/``); then the iteration ends. Called once
        the run is decided, it yields only the final result. Runs nobody streams pay nothing.

        Args:
            timeout: the most seconds to wait, from this call, for the run to be decided.
                Waiting stops with ``TimeoutError``; the run goes on.

        Raises:
            BlockingCallError: called on a castflow thread before the run was decided.
            TimeoutError: while iterating, the run was not decided within ``timeout``.
        """
        if not self._future.done() and in_castflow_thread():
            msg = "Run.stream() would block a castflow thread; stream runs from outside"
            raise BlockingCallError(msg)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._iterate(self._subscribe(), deadline)

    def _iterate(self, stream: PartialStream, deadline: float | None) -> Iterator[StepResult]:
        try:
            while (item := stream.get(deadline)) is not None:
                yield item
        finally:
            self._unsubscribe(stream)

    def __aiter__(self) -> AsyncIterator[StepResult]:
        """``async for result in run``: ``stream()`` for async callers (never blocks the loop)."""
        return self._aiterate(self._subscribe())

    async def _aiterate(self, stream: PartialStream) -> AsyncIterator[StepResult]:
        try:
            while (item := await stream.get_async()) is not None:
                yield item
        finally:
            self._unsubscribe(stream)

    def _subscribe(self) -> PartialStream:
        env = self._env
        with self._lock:
            sink = None if env is None else env.partials
            created = sink is None
            if sink is None:
                sink = PartialSink()
                if env is not None:
                    env.partials = sink
        stream = sink.subscribe()
        if created:
            self._future.add_done_callback(lambda done: sink.close(done.result()))
        return stream

    def _unsubscribe(self, stream: PartialStream) -> None:
        sink = None if self._env is None else self._env.partials
        if sink is not None:
            sink.unsubscribe(stream)
        else:
            stream.close()

    def __repr__(self) -> str:
        status = self.status
        state = "running" if status is None else status.value
        return f"Run({self.run_id!r}, {self.step.name!r}, {state})"


def _chained(source: ActorFuture[StepResult]) -> concurrent.futures.Future[StepResult]:
    """A private future that follows ``source``, so an awaiter cannot cancel the run's own."""
    target: concurrent.futures.Future[StepResult] = concurrent.futures.Future()

    def copy(done: concurrent.futures.Future[StepResult]) -> None:
        if not target.cancelled():
            try:
                target.set_result(done.result())
            except concurrent.futures.InvalidStateError:
                return

    source.add_done_callback(copy)
    return target


def cancelled_result(name: str, scope: CancelScope, why: str) -> StepResult:
    """A ``StepResult`` for a step cut by ``scope``'s cancellation: timeout or cancelled."""
    if scope.reason is CancelReason.DEADLINE:
        return StepResult(
            name=name,
            status=Status.TIMEOUT,
            error=ErrorInfo(type="castflow.Timeout", message=why or "the deadline passed"),
        )
    reason = scope.reason.value if scope.reason is not None else "cancelled"
    return StepResult(
        name=name,
        status=Status.CANCELLED,
        error=ErrorInfo(type="castflow.Cancelled", message=why or f"cancelled ({reason})"),
    )
