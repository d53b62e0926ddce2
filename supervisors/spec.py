"""Child specs and supervisor flags: what a supervisor starts and how it reacts.

The model is OTP's: a child spec is {id, start, restart, shutdown, kind, significant}, the
flags are {strategy, intensity, period, auto_shutdown}. Unknown keys are rejected (a typo must
fail fast), and so are the combinations OTP rejects.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.runtime.actor import Actor
from actors.runtime.steps import Step
from supervisors._run_child import RunChild
from supervisors.backoff import Backoff
from supervisors.errors import ChildSpecError

if TYPE_CHECKING:
    from supervisors.supervisor import Supervisor

__all__ = [
    "IGNORE",
    "AutoShutdown",
    "ChildKind",
    "ChildSpec",
    "Ignore",
    "RestartStrategy",
    "RestartType",
    "ShutdownSpec",
    "StartFactory",
    "SupervisorFlags",
    "validate_children",
]

DEFAULT_WORKER_SHUTDOWN = 5.0
DEFAULT_START_TIMEOUT = 5.0
DEFAULT_STASH_CAPACITY = 1000

RUN_OPTIONS = frozenset({"timeout", "reply_to"})
"""The keyword arguments a child that runs a step accepts (see ``ChildSpec.run``)."""


class Ignore(Enum):
    """What a start factory returns to start nothing this time (OTP's ``ignore``).

    A static supervisor keeps the spec of an ignored child (unless it is temporary) with no
    incarnation, state ``stopped``; a dynamic supervisor keeps nothing. ``start_child`` and
    ``restart_child`` then return ``None``.
    """

    IGNORE = "ignore"


IGNORE: Final = Ignore.IGNORE
"""The only ``Ignore`` value: return it from a start factory to start nothing."""

StartFactory: TypeAlias = Callable[
    [], tuple[type[Actor], tuple[Any, ...], Mapping[str, Any]] | Literal[Ignore.IGNORE]
]
"""A callable returning ``(actor_class, args, kwargs)`` or ``IGNORE``, called at every start."""

ShutdownSpec: TypeAlias = Literal["brutal", "infinity"] | float
"""How a child is stopped: ``"brutal"`` (abandoned at once), seconds to wait, ``"infinity"``."""

ChildKind: TypeAlias = Literal["worker", "supervisor"]
"""Whether a child is a worker or a supervisor."""


class RestartType(StrEnum):
    """When a child that ended on its own is restarted.

    Attributes:
        PERMANENT: always.
        TRANSIENT: only after an abnormal exit (not after ``Normal`` or ``Shutdown``).
        TEMPORARY: never; its spec is deleted once it ends.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class RestartStrategy(StrEnum):
    """Which children restart when one must.

    Attributes:
        ONE_FOR_ONE: only that child.
        ONE_FOR_ALL: every child: the others are stopped in reverse order, then all start in
            order.
        REST_FOR_ONE: that child and the children started after it.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class AutoShutdown(StrEnum):
    """When a supervisor stops by itself because significant children ended (OTP's EEP-56).

    Attributes:
        NEVER: never.
        ANY_SIGNIFICANT: when any significant child ends on its own and is not restarted.
        ALL_SIGNIFICANT: when the last significant child has ended that way.
    """

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class ChildSpec(BaseModel):
    """What a supervisor starts, and how it treats the child when it ends.

    Args:
        id: unique among the supervisor's children; names the child's handle
            (``"<supervisor>/<id>"``).
        start: an ``Actor`` subclass; a factory returning ``(actor_class, args, kwargs)``, or
            ``IGNORE`` to start nothing, called at every start; or a step (a workflow, a
            tool: anything implementing ``actors.Step``), run as the child (see ``run``).
        args: positional arguments for ``start`` (when it is a class).
        kwargs: keyword arguments for ``start`` (when it is a class); for a step, the run
            options ``timeout`` and ``reply_to`` (see ``run``).
        input: the input of each run, when ``start`` is a step.
        restart: when the child is restarted after ending on its own. Defaults to
            ``"permanent"``, and to ``"transient"`` when ``start`` is a step (a finished
            run is done, a failed one is run again).
        shutdown: ``"brutal"``, seconds (> 0) to wait after asking it to stop before
            abandoning its thread, or ``"infinity"``. Defaults to 5 s for workers and
            ``"infinity"`` for supervisors.
        kind: ``"worker"`` or ``"supervisor"``.
        significant: whether its own end may stop the supervisor (see ``AutoShutdown``); only
            for transient and temporary children.
        start_timeout: seconds to wait for its ``on_start``; ``None`` waits forever.
        backoff: delays between its restarts; restarts are immediate without it.
        stash_capacity: messages sent through its handle while it restarts are kept up to
            this number and delivered to the next incarnation; more are dead letters.

    Raises:
        pydantic.ValidationError: a field or a combination is invalid (the message names it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str = Field(min_length=1)
    start: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    restart: RestartType = RestartType.PERMANENT
    shutdown: ShutdownSpec | None = None
    kind: ChildKind = "worker"
    significant: bool = False
    start_timeout: float | None = Field(default=DEFAULT_START_TIMEOUT, gt=0)
    backoff: Backoff | None = None
    stash_capacity: int = Field(default=DEFAULT_STASH_CAPACITY, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _step_default_restart(cls, data: Any) -> Any:
        if isinstance(data, dict) and "restart" not in data and _is_step(data.get("start")):
            return {**data, "restart": RestartType.TRANSIENT}
        return data

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: Any) -> Any:
        if _is_step(value):
            return value
        if isinstance(value, type):
            if not issubclass(value, Actor):
                msg = f"start must be an Actor subclass or a factory, got class {value.__name__}"
                raise ValueError(msg)
            return value
        if not callable(value):
            msg = f"start must be an Actor subclass or a factory, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("shutdown", mode="before")
    @classmethod
    def _check_shutdown(cls, value: Any) -> Any:
        if value is None or value in ("brutal", "infinity"):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"shutdown must be 'brutal', 'infinity' or seconds > 0, got {value!r}"
            raise ValueError(msg)
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            msg = f"shutdown must be a finite number of seconds > 0, got {value!r}"
            raise ValueError(msg)
        return seconds

    @model_validator(mode="after")
    def _defaults_and_combinations(self) -> ChildSpec:
        if self.shutdown is None:
            # Set once, here, so the frozen spec always carries a concrete shutdown.
            default: ShutdownSpec = (
                "infinity" if self.kind == "supervisor" else DEFAULT_WORKER_SHUTDOWN
            )
            object.__setattr__(self, "shutdown", default)
        self._check_run_options()
        if self.significant and self.restart is RestartType.PERMANENT:
            msg = (
                f"child {self.id!r}: a significant child must be transient or temporary "
                "(a permanent child always restarts, so it never ends on its own)"
            )
            raise ValueError(msg)
        return self

    def _check_run_options(self) -> None:
        if not self.runs_step:
            if self.input is not None:
                msg = f"child {self.id!r}: input is only for a step start (a workflow or a tool)"
                raise ValueError(msg)
            return
        if self.args:
            msg = f"child {self.id!r}: a step start takes its input in input=, not args"
            raise ValueError(msg)
        unknown = sorted(set(self.kwargs) - RUN_OPTIONS)
        if unknown:
            msg = (
                f"child {self.id!r}: unknown run options {unknown}; "
                f"a step start accepts {sorted(RUN_OPTIONS)}"
            )
            raise ValueError(msg)

    @property
    def runs_step(self) -> bool:
        """Whether ``start`` is a step (the child runs it) rather than an actor."""
        return _is_step(self.start)

    @classmethod
    def run(
        cls,
        id: str,
        step: Step[Any],
        input: object = None,
        *,
        timeout: float | None = None,
        reply_to: concurrent.futures.Future[Any] | None = None,
        **options: Any,
    ) -> ChildSpec:
        """A spec for a child that runs ``step`` (a workflow or a tool) on ``input``.

        Each incarnation starts one run through the system. The child ends ``Normal`` when
        the run ends ok, ``Crashed`` (with the run's error) when it fails or passes its
        deadline, and ``Shutdown`` when the run is cancelled. Stopping the child cancels
        its run; the child ends once the run has ended, within its shutdown time. The
        restart type defaults to transient: a failed run is run again, a finished one is
        done.

        Args:
            id: the child's id.
            step: anything implementing ``actors.Step``.
            input: the input of each run.
            timeout: seconds until each run's deadline.
            reply_to: a future completed with the result of the child's last run (what
                ``system.run`` returns, e.g. a ``WorkflowResult``): at once for a run that
                ended ok; for a run that failed or was cancelled, once the child is not
                run again (it is not restarted, or its supervisor stops). A child whose
                run cannot start sets the error instead.
            **options: other ``ChildSpec`` fields (restart, backoff, shutdown, ...).
        """
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        if reply_to is not None:
            kwargs["reply_to"] = reply_to
        return cls(id=id, start=step, input=input, kwargs=kwargs, **options)

    @classmethod
    def dynamic_supervisor(
        cls,
        id: str,
        flags: SupervisorFlags | None = None,
        *,
        max_children: int | None = None,
        extra_args: Sequence[Any] = (),
        **options: Any,
    ) -> ChildSpec:
        """A spec for a nested ``DynamicSupervisor`` (it starts with no children).

        Args:
            id: the child's id.
            flags: its intensity and period; the defaults if omitted.
            max_children: the most children it runs at once; ``None`` for no limit.
            extra_args: positional arguments put before each of its children's ``args``.
            **options: other ``ChildSpec`` fields (restart, shutdown, ...).
        """
        from supervisors.dynamic import DynamicSupervisor  # noqa: PLC0415 - a cycle

        return cls(
            id=id,
            start=DynamicSupervisor,
            args=(flags,),
            kwargs={"max_children": max_children, "extra_args": tuple(extra_args)},
            kind="supervisor",
            **options,
        )

    @classmethod
    def supervisor(
        cls,
        id: str,
        children: Iterable[ChildSpec],
        flags: SupervisorFlags | None = None,
        *,
        supervisor_class: type[Supervisor] | None = None,
        **options: Any,
    ) -> ChildSpec:
        """A spec for a nested ``Supervisor`` with its own children and flags.

        Args:
            id: the child's id.
            children: the nested supervisor's child specs.
            flags: its flags; the defaults if omitted.
            supervisor_class: a ``Supervisor`` subclass to start instead of ``Supervisor``.
            **options: other ``ChildSpec`` fields (restart, shutdown, significant, ...).
        """
        if supervisor_class is None:
            from supervisors.supervisor import Supervisor  # noqa: PLC0415 - a cycle

            supervisor_class = Supervisor
        return cls(
            id=id,
            start=supervisor_class,
            args=(tuple(children), flags or SupervisorFlags()),
            kind="supervisor",
            **options,
        )

    def resolve(self) -> tuple[type[Actor], tuple[Any, ...], dict[str, Any]] | Ignore:
        """The class and arguments to start now (calls the factory, if ``start`` is one).

        Returns:
            ``(actor_class, args, kwargs)``, or ``IGNORE`` when the factory returned it.
        """
        if self.runs_step:
            return RunChild, (self.start, self.input), dict(self.kwargs)
        if isinstance(self.start, type):
            return self.start, self.args, dict(self.kwargs)
        started = self.start()
        if started is IGNORE:
            return Ignore.IGNORE
        actor_class, args, kwargs = started
        return actor_class, tuple(args), dict(kwargs)

    @property
    def shutdown_seconds(self) -> float | None:
        """The shutdown time in seconds: 0 for ``"brutal"``, ``None`` for ``"infinity"``."""
        if self.shutdown == "brutal":
            return 0.0
        if self.shutdown is None or self.shutdown == "infinity":
            return None
        return float(self.shutdown)


class SupervisorFlags(BaseModel):
    """How a supervisor reacts to its children's failures.

    Args:
        strategy: which children restart when one must.
        intensity: how many restarts are allowed within ``period`` (an int >= 0); one more
            makes the supervisor give up and escalate.
        period: the window of the intensity, in seconds (> 0).
        auto_shutdown: when significant children's own ends stop the supervisor.

    Raises:
        pydantic.ValidationError: a field is invalid (the message names it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE
    intensity: int = Field(default=3, ge=0, strict=True)
    period: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER


def _is_step(value: object) -> bool:
    return not isinstance(value, type) and isinstance(value, Step)


def validate_children(children: Iterable[ChildSpec], flags: SupervisorFlags) -> list[ChildSpec]:
    """Check a supervisor's children together with its flags.

    Returns:
        The children as a list, in start order.

    Raises:
        ChildSpecError: an item is not a ``ChildSpec``, two children share an id, or a child
            is significant while ``auto_shutdown`` is ``NEVER``.
    """
    specs = list(children)
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            msg = f"children must be ChildSpec instances, got {spec!r}"
            raise ChildSpecError(msg)
        if spec.id in seen:
            msg = f"duplicate child id {spec.id!r}"
            raise ChildSpecError(msg)
        seen.add(spec.id)
        check_significant(spec, flags)
    return specs


def check_significant(spec: ChildSpec, flags: SupervisorFlags) -> None:
    """Reject a significant child under a supervisor whose ``auto_shutdown`` is ``NEVER``.

    Raises:
        ChildSpecError: the combination is invalid.
    """
    if spec.significant and flags.auto_shutdown is AutoShutdown.NEVER:
        msg = (
            f"child {spec.id!r} is significant but the supervisor's auto_shutdown is 'never'; "
            "set auto_shutdown or drop significant"
        )
        raise ChildSpecError(msg)
