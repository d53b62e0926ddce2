"""The blocking API for code outside castflow threads: start supervisors, ask them things.

Every call sends a request and waits for the answer with one deadline. Inside an actor use
the request messages of ``supervisors.messages`` with ``reply_to=self.handle`` instead: the
futures used here refuse to block a castflow thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from actors.runtime.errors import StartError
from actors.runtime.futures import ActorFuture
from actors.runtime.handle import ActorHandle
from actors.runtime.reasons import ExitReason
from actors.runtime.system import ActorSystem, _install_supervise
from supervisors.dynamic import DynamicSupervisor
from supervisors.errors import ChildNotFoundError, ChildSpecError
from supervisors.messages import (
    ChildCounts,
    ChildInfo,
    CountChildren,
    DeleteChild,
    GetChildSpec,
    Request,
    RestartChild,
    StartChild,
    TerminateChild,
    WhichChildren,
)
from supervisors.spec import ChildSpec, SupervisorFlags, validate_children
from supervisors.supervisor import Supervisor, start_ack

__all__ = ["SupervisorClient", "start_dynamic_supervisor", "start_supervisor", "supervise"]

DEFAULT_TIMEOUT = 5.0


class SupervisorClient:
    """Blocking access to a running ``Supervisor`` or ``DynamicSupervisor``.

    Args:
        handle: the supervisor's handle.
        timeout: default seconds each call waits for its answer; ``None`` waits forever.
    """

    def __init__(
        self, handle: ActorHandle[Supervisor], *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        self.handle = handle
        self.timeout = timeout

    def _call(self, make: Callable[[ActorFuture[Any]], Request], timeout: float | None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        reply: ActorFuture[Any] = ActorFuture()
        # The ask fails at once with ActorDeadError if the supervisor is not running.
        self.handle.ask(make(reply)).result(_remaining(deadline))
        return reply.result(_remaining(deadline))

    def which_children(self, *, timeout: float | None = None) -> list[ChildInfo]:
        """Every child in start order, with its handle and state (answered in any state).

        Raises:
            ActorDeadError: the supervisor is not running.
            TimeoutError: no answer within the timeout.
        """
        result: list[ChildInfo] = self._call(lambda r: WhichChildren(reply_to=r), timeout)
        return result

    def count_children(self, *, timeout: float | None = None) -> ChildCounts:
        """How many children are known, active, supervisors and workers."""
        result: ChildCounts = self._call(lambda r: CountChildren(reply_to=r), timeout)
        return result

    def get_child_spec(self, child_id: str, *, timeout: float | None = None) -> ChildSpec:
        """The spec of child ``child_id``.

        Raises:
            ChildNotFoundError: no such child.
        """
        result: ChildSpec = self._call(
            lambda r: GetChildSpec(child_id=child_id, reply_to=r), timeout
        )
        return result

    def start_child(
        self, spec: ChildSpec, *, timeout: float | None = None
    ) -> ActorHandle[Any] | None:
        """Add ``spec`` and start it; returns once it has started.

        Returns:
            The child's handle, or ``None`` if its start factory returned ``IGNORE`` (a
            static supervisor then keeps the spec, stopped, unless it is temporary; a dynamic
            one keeps nothing).

        Raises:
            ChildAlreadyStartedError: a running child has this id.
            ChildAlreadyPresentError: a stopped child with this id is kept.
            MaxChildrenError: a dynamic supervisor is full.
            ChildStartError: the child failed to start (its spec is not kept).
        """
        result: ActorHandle[Any] | None = self._call(
            lambda r: StartChild(spec=spec, reply_to=r), timeout
        )
        return result

    def terminate_child(
        self, child: str | ActorHandle[Any], *, timeout: float | None = None
    ) -> None:
        """Stop a child per its shutdown spec; keep its spec unless it is temporary.

        Idempotent for a stopped child; a restarting child's restart is cancelled.

        Raises:
            ChildNotFoundError: no such child.
        """
        self._call(lambda r: TerminateChild(child=child, reply_to=r), timeout)

    def restart_child(
        self, child_id: str, *, timeout: float | None = None
    ) -> ActorHandle[Any] | None:
        """Start again a stopped child whose spec is kept (does not count toward intensity).

        Returns:
            The child's handle, or ``None`` if its start factory returned ``IGNORE``.

        Raises:
            ChildNotFoundError: no such child.
            ChildRunningError: it is running.
            ChildRestartingError: it is waiting to restart.
            ChildStartError: it failed to start (its spec is kept).
        """
        result: ActorHandle[Any] | None = self._call(
            lambda r: RestartChild(child_id=child_id, reply_to=r), timeout
        )
        return result

    def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Forget a stopped child.

        Raises:
            ChildNotFoundError: no such child.
            ChildRunningError: it is running.
            ChildRestartingError: it is waiting to restart.
        """
        self._call(lambda r: DeleteChild(child_id=child_id, reply_to=r), timeout)

    def child(self, child_id: str, *, timeout: float | None = None) -> SupervisorClient:
        """A client for the child supervisor ``child_id`` (its handle survives its restarts).

        Raises:
            ChildNotFoundError: no such child, or it has never started.
            ChildSpecError: the child is not a supervisor.
        """
        for info in self.which_children(timeout=timeout):
            if info.id != child_id or info.handle is None:
                continue
            if info.kind != "supervisor":
                msg = f"child {child_id!r} of {self.handle.name!r} is not a supervisor"
                raise ChildSpecError(msg)
            return SupervisorClient(info.handle, timeout=self.timeout)
        msg = f"supervisor {self.handle.name!r} has no started child {child_id!r}"
        raise ChildNotFoundError(msg)

    def stop(self, *, timeout: float | None = None) -> ExitReason | None:
        """Stop the supervisor: its children stop in reverse order, then it ends.

        Returns:
            Its exit reason, or ``None`` if it had not ended after ``timeout`` seconds.
        """
        if not self.handle.is_alive():
            return self.handle.join(0)
        self.handle.stop()
        return self.handle.join(timeout)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _await_ready(
    system: ActorSystem, handle: ActorHandle[Supervisor], timeout: float | None
) -> SupervisorClient:
    actor = handle._actor
    assert isinstance(actor, Supervisor)
    try:
        start_ack(actor).result(timeout)
    except TimeoutError:
        system.stop(handle, timeout=timeout)
        msg = f"supervisor {handle.name!r} did not start its children within {timeout} s"
        raise StartError(msg) from None
    except StartError:
        handle.join(timeout)
        raise
    return SupervisorClient(handle)


def start_supervisor(
    system: ActorSystem,
    children: Iterable[ChildSpec],
    flags: SupervisorFlags | None = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    supervisor_class: type[Supervisor] = Supervisor,
) -> SupervisorClient:
    """Start a supervisor and wait until every child has started, in order.

    Args:
        system: where it runs.
        children: the child specs, in start order.
        flags: strategy, intensity, period, auto_shutdown.
        name: the supervisor's name (its children are ``"<name>/<id>"``).
        timeout: seconds to wait for all children; ``None`` relies on each child's
            ``start_timeout``.
        supervisor_class: a ``Supervisor`` subclass to start.

    Returns:
        A client for the running supervisor.

    Raises:
        ChildSpecError: the specs are invalid (nothing was started).
        ChildStartError: a child failed to start; the ones started before it were stopped in
            reverse order and the supervisor has ended. The error names the child.
    """
    flags = flags if flags is not None else SupervisorFlags()
    specs = validate_children(children, flags)
    handle = system.spawn(supervisor_class, specs, flags, name=name, wait=False)
    return _await_ready(system, handle, timeout)


def supervise(
    system: ActorSystem,
    children: Iterable[ChildSpec],
    *,
    strategy: str | None = None,
    intensity: int | None = None,
    period: float | None = None,
    auto_shutdown: str | None = None,
    name: str = "root",
    timeout: float | None = None,
) -> SupervisorClient:
    """Start a root ``Supervisor`` of ``system``; what ``ActorSystem.supervise`` does.

    A root is stopped first when the system shuts down, before any other actor, so its tree
    stops in order (reverse start order, each child within its shutdown time) and runs under
    it are cancelled by their children rather than cut.

    Args:
        system: where it runs.
        children: the child specs, in start order.
        strategy: ``"one_for_one"`` (default), ``"one_for_all"`` or ``"rest_for_one"``.
        intensity: restarts allowed within ``period`` (default 3).
        period: the intensity's window in seconds (default 5).
        auto_shutdown: ``"never"`` (default), ``"any_significant"`` or ``"all_significant"``.
        name: the root's name (its children are ``"<name>/<id>"``).
        timeout: seconds to wait for all children; ``None`` relies on their start timeouts.

    Returns:
        A client for the running root supervisor.

    Raises:
        ChildSpecError: the specs are invalid (nothing was started).
        ChildStartError: a child failed to start; the root has ended.
        pydantic.ValidationError: a flag is invalid.
    """
    given = {
        "strategy": strategy,
        "intensity": intensity,
        "period": period,
        "auto_shutdown": auto_shutdown,
    }
    flags = SupervisorFlags.model_validate({k: v for k, v in given.items() if v is not None})
    specs = validate_children(children, flags)
    handle = system.spawn(Supervisor, specs, flags, name=name, wait=False)
    system._adopt_root(handle)
    return _await_ready(system, handle, timeout)


def start_dynamic_supervisor(
    system: ActorSystem,
    flags: SupervisorFlags | None = None,
    *,
    max_children: int | None = None,
    extra_args: Sequence[Any] = (),
    name: str | None = None,
) -> SupervisorClient:
    """Start a ``DynamicSupervisor`` (no children yet) and return a client for it.

    Raises:
        ChildSpecError: the flags are not allowed for a dynamic supervisor.
    """
    handle: ActorHandle[Supervisor] = system.spawn(
        DynamicSupervisor,
        flags,
        max_children=max_children,
        extra_args=extra_args,
        name=name,
        wait=False,
    )
    return _await_ready(system, handle, None)


_install_supervise(supervise)
