"""``ParallelWorkflow``: the same input to several steps at once, gathered by a strategy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Self

from actors.gather import Aggregation, ErrorMode, GatherPolicy, StrategyPolicy
from actors.runtime.permits import Semaphore
from actors.runtime.snapshot import snapshot
from actors.workflows._coordinator import Instance
from actors.workflows._fan import CopyMode, FanCoordinator, FanWorkflow, branches_of
from actors.workflows._spec import InputMap, StepSpec, to_spec, unique_specs
from actors.workflows.errors import WorkflowDefinitionError
from supervisors.batches import (
    Branch,
)
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = ["ParallelBuilder", "ParallelWorkflow", "plan_specs"]


class ParallelWorkflow(FanWorkflow):
    """Run several steps at once on the same input and gather their results.

    Each step is a *branch*. At most ``max_concurrency`` branches of one run of this step are in
    flight at once; the others wait their turn, in order. Each branch gets its own copy of the
    input, its own cancel scope and (with ``limits.execution_timeout``) its own deadline per
    attempt. Tools run on pooled worker actors that are reused across branches; nested
    workflows run as they would anywhere, their tools on the same pooled workers.

    The ``aggregation`` decides the result the moment it can (``ALL_SUCCESS`` by default:
    the list of values in input order) and the branches still running are then cancelled.
    With ``ErrorMode.FAIL_FAST`` (the default) failure is decided as soon as the strategy can
    no longer succeed; with ``FAIL_SLOW`` every branch finishes first and every error is
    reported. The node's record lists every branch in input order with its status.

    Args:
        steps: the branches: workflows, tools, functions or ``step(...)`` specs; at least one.
        name: the workflow's name.
        aggregation: ``Aggregation.ALL_SUCCESS`` (default), ``FIRST_SUCCESS``,
            ``PARTIAL_SUCCESS``, ``quorum(k)`` or ``custom(fn)``.
        error_mode: ``ErrorMode.FAIL_FAST`` (default) or ``FAIL_SLOW``.
        max_concurrency: the most branches in flight at once (10 by default).
        limits: ``ResourceLimits`` (execution timeout, cancellation grace, ...).
        retry: a ``RetryPolicy`` for failed branches.
        timeout: seconds until a run of this step is cut (the overall timeout).
        copy_input: ``"branch"`` (default) copies the input for each branch; ``"none"``
            shares it.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.

    Example:
        >>> from actors import ParallelWorkflow, Aggregation
        >>> flow = ParallelWorkflow([len, str.upper], aggregation=Aggregation.FIRST_SUCCESS)
        >>> flow.max_concurrency
        10
    """

    __slots__ = ("steps",)

    kind = "parallel"

    steps: tuple[StepSpec, ...]

    def __init__(
        self,
        steps: Iterable[object],
        *,
        name: str = "parallel",
        aggregation: Aggregation = Aggregation.ALL_SUCCESS,
        error_mode: ErrorMode = ErrorMode.FAIL_FAST,
        max_concurrency: int | None = None,
        limits: ResourceLimits | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        copy_input: CopyMode = "branch",
    ) -> None:
        super().__init__(
            name=name,
            timeout=timeout,
            aggregation=aggregation,
            error_mode=error_mode,
            limits=limits,
            max_concurrency=max_concurrency,
            retry=retry,
            copy_input=copy_input,
        )
        where = f"{self.kind} {name!r}"
        if isinstance(steps, str | bytes) or not isinstance(steps, Iterable):
            msg = f"{where}: steps must be a list of steps, got {steps!r}"
            raise WorkflowDefinitionError(msg)
        items = list(steps)
        if not items:
            msg = f"{where}: steps is empty; a parallel step needs at least one branch"
            raise WorkflowDefinitionError(msg)
        specs = unique_specs(
            (to_spec(item, f"{where}: step {i}") for i, item in enumerate(items, 1)), where
        )
        k = aggregation.k
        if k is not None and k > len(specs):
            msg = f"{where}: quorum({k}) can never be reached with {len(specs)} branches"
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "steps", specs)
        self.check_memory_limits(spec.step for spec in specs)
        self.check_synchronisation(specs)

    def children(self) -> tuple[StepSpec, ...]:
        """The branches, in input order."""
        return self.steps

    @classmethod
    def builder(cls) -> ParallelBuilder:
        """A fluent builder: ``ParallelWorkflow.builder().add_step(a).add_step(b).build()``."""
        return ParallelBuilder(cls)


def plan_specs(
    node: FanWorkflow, specs: Sequence[StepSpec], value: Any
) -> tuple[GatherPolicy, Iterator[Branch]]:
    """The plan of an instance of ``node`` running ``specs`` on ``value``: one branch each.

    Each branch gets its own copy of ``value`` (unless ``node.copy_input`` is ``"none"``),
    then its spec's input mapping; the gather uses ``node``'s aggregation and error mode.

    Raises:
        InputNotCopyableError: ``value`` cannot be copied for the branches.
    """
    where = f"{node.kind} {node.name!r}"
    make_input = snapshot(value, copy=node.copy_input == "branch", what=f"the input of {where}")
    names = [spec.name for spec in specs]
    policy = StrategyPolicy(names, node.aggregation, node.error_mode, where)
    return policy, branches_of(specs, make_input)


class ParallelCoordinator(FanCoordinator[ParallelWorkflow]):
    """Drives every instance of one ``ParallelWorkflow`` node in a run."""

    def plan(self, instance: Instance) -> tuple[GatherPolicy, Iterator[Branch]]:
        """One branch per step, each with its own copy of the input."""
        return plan_specs(self.node, self.node.steps, instance.call.input)


ParallelWorkflow.coordinator = ParallelCoordinator


class ParallelBuilder:
    """Builds a ``ParallelWorkflow`` step by step; every ``with_`` method returns the builder.

    ``SomeKind.builder()`` builds that kind (a ``ScatterGatherWorkflow`` keeps its defaults).

    Example:
        >>> from actors import ParallelWorkflow, Aggregation, ErrorMode
        >>> flow = (
        ...     ParallelWorkflow.builder()
        ...     .add_step(len)
        ...     .add_step(str.upper)
        ...     .with_max_concurrency(3)
        ...     .with_aggregation(Aggregation.ALL_SUCCESS)
        ...     .with_error_mode(ErrorMode.FAIL_FAST)
        ...     .with_timeout(30)
        ...     .build()
        ... )
        >>> [spec.name for spec in flow.steps]
        ['len', 'upper']
    """

    def __init__(self, workflow: type[ParallelWorkflow] = ParallelWorkflow) -> None:
        self._workflow = workflow
        self._steps: list[object] = []
        self._options: dict[str, Any] = {}

    def add_step(
        self,
        target: object,
        *,
        name: str | None = None,
        input: InputMap | None = None,
        timeout: float | None = None,
        semaphores: Iterable[Semaphore] = (),
    ) -> Self:
        """Add a branch (with an optional name, input mapping, timeout and semaphores)."""
        self._steps.append(
            to_spec(
                target,
                f"builder: step {len(self._steps) + 1}",
                name=name,
                input=input,
                timeout=timeout,
                semaphores=semaphores,
            )
        )
        return self

    def with_name(self, name: str) -> Self:
        """Name the workflow."""
        self._options["name"] = name
        return self

    def with_max_concurrency(self, n: int) -> Self:
        """Admit at most ``n`` branches at once."""
        self._options["max_concurrency"] = n
        return self

    def with_aggregation(self, aggregation: Aggregation) -> Self:
        """Gather with ``aggregation``."""
        self._options["aggregation"] = aggregation
        return self

    def with_error_mode(self, error_mode: ErrorMode) -> Self:
        """Decide failure per ``error_mode``."""
        self._options["error_mode"] = error_mode
        return self

    def with_timeout(self, seconds: float) -> Self:
        """Cut each run of the workflow after ``seconds`` (the overall timeout)."""
        self._options["timeout"] = seconds
        return self

    def with_limits(self, limits: ResourceLimits) -> Self:
        """Use ``limits`` (an explicit ``with_max_concurrency`` must agree with them)."""
        self._options["limits"] = limits
        return self

    def with_execution_timeout(self, seconds: float) -> Self:
        """Cut each attempt of a branch after ``seconds``."""
        return self._limit(execution_timeout=seconds)

    def with_cancellation_timeout(self, seconds: float) -> Self:
        """Abandon a branch thread that ignores cancellation for ``seconds``."""
        return self._limit(cancellation_timeout=seconds)

    def with_retry(self, retry: RetryPolicy) -> Self:
        """Retry failed branches per ``retry``."""
        self._options["retry"] = retry
        return self

    def with_copy_input(self, mode: CopyMode) -> Self:
        """``"branch"`` copies the input per branch; ``"none"`` shares it."""
        self._options["copy_input"] = mode
        return self

    def _limit(self, **update: float) -> Self:
        limits = self._options.get("limits") or ResourceLimits()
        self._options["limits"] = ResourceLimits.model_validate(
            {**limits.model_dump(exclude_unset=True), **update}
        )
        return self

    def build(self) -> ParallelWorkflow:
        """The workflow.

        Raises:
            WorkflowDefinitionError: the definition is invalid; the message names the part.
        """
        return self._workflow(self._steps, **self._options)
