"""``DynamicSupervisor``: children added at run time, stopped all at once.

The equivalent of OTP's ``simple_one_for_one`` and Elixir's ``DynamicSupervisor``: it starts
with no children, ``start_child`` adds them, each restarts on its own (one_for_one), a child
that ends and is not restarted is removed, and on shutdown every child is asked to stop at the
same moment, so the whole stop takes at most the longest shutdown time instead of their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.runtime.actor import Actor
from supervisors.errors import ChildSpecError, MaxChildrenError
from supervisors.spec import (
    IGNORE,
    AutoShutdown,
    ChildSpec,
    Ignore,
    RestartStrategy,
    SupervisorFlags,
    check_significant,
)
from supervisors.supervisor import Supervisor

__all__ = ["DynamicSupervisor"]


class DynamicSupervisor(Supervisor):
    """A one_for_one supervisor whose children are added with ``start_child``.

    As in OTP and Elixir, a child that ends on its own and is not restarted (a transient child
    that finished, any temporary child, a child past its backoff's ``max_restarts``) is
    removed, and so is a child whose start returned ``IGNORE``: a service can start millions
    over its life. ``terminate_child`` keeps the spec (``restart_child`` brings it back).

    Args:
        flags: intensity and period (strategy must be ``ONE_FOR_ONE`` and auto_shutdown
            ``NEVER``); the defaults if omitted.
        max_children: the most children alive or restarting at once; ``None`` for no limit.
        extra_args: positional arguments put before each actor child's own ``args`` (a child
            that runs a step takes none).

    Raises:
        ChildSpecError: the flags are not allowed for a dynamic supervisor.
    """

    concurrent_shutdown = True
    keeps_ended_children = False

    def __init__(
        self,
        flags: SupervisorFlags | None = None,
        *,
        max_children: int | None = None,
        extra_args: Sequence[Any] = (),
    ) -> None:
        flags = flags if flags is not None else SupervisorFlags()
        if flags.strategy is not RestartStrategy.ONE_FOR_ONE:
            msg = f"a dynamic supervisor restarts one_for_one, got strategy {flags.strategy}"
            raise ChildSpecError(msg)
        if flags.auto_shutdown is not AutoShutdown.NEVER:
            msg = "a dynamic supervisor does not support auto_shutdown"
            raise ChildSpecError(msg)
        if max_children is not None and max_children < 0:
            msg = f"max_children must be >= 0, got {max_children}"
            raise ChildSpecError(msg)
        super().__init__((), flags)
        self.max_children = max_children
        self.extra_args = tuple(extra_args)

    def _check_can_add(self, spec: ChildSpec) -> None:
        check_significant(spec, self.flags)
        if self.max_children is None:
            return
        # Count children that hold or will hold an incarnation, never start calls: a count of
        # calls drifts when children restart (Elixir issue 7655).
        alive = sum(1 for child in self._children.values() if child.state != "stopped")
        if alive >= self.max_children:
            msg = f"supervisor {self.handle.name!r} already runs {alive} children (max_children)"
            raise MaxChildrenError(msg)

    def _start_arguments(
        self, spec: ChildSpec
    ) -> tuple[type[Actor], tuple[Any, ...], dict[str, Any]] | Ignore:
        started = spec.resolve()
        if started is IGNORE or spec.runs_step:
            return started  # a run takes its step and input only
        actor_class, args, kwargs = started
        return actor_class, (*self.extra_args, *args), kwargs
