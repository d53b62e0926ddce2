"""``ScatterGatherWorkflow``: the same request to several sources, gathered by a strategy."""

from __future__ import annotations

from collections.abc import Iterable

from actors.gather import Aggregation, ErrorMode
from actors.workflows._fan import CopyMode
from actors.workflows._spec import StepSpec
from actors.workflows.parallel import ParallelWorkflow
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = ["ScatterGatherWorkflow"]


class ScatterGatherWorkflow(ParallelWorkflow):
    """Send the same request to several sources at once; gather the answers by a strategy.

    A ``ParallelWorkflow`` whose default is ``Aggregation.FIRST_SUCCESS``: the typical use is
    several search sources (or replicas, or models) of which the first answer wins, or
    ``Aggregation.quorum(k)`` answers are enough. The moment the strategy decides, the result
    is returned and the sources still running are cancelled (their scopes are cancelled; a
    sync tool sees ``ctx.scope.cancelled``, an async tool's task is cancelled). Every other
    aggregation, error mode and limit works as for ``ParallelWorkflow``; the record lists every
    source in input order with its status (losers ``cancelled``).

    Args:
        sources: the sources: workflows, tools, functions or ``step(...)`` specs; at least one.
        name: the workflow's name.
        aggregation: ``Aggregation.FIRST_SUCCESS`` (default), ``quorum(k)``,
            ``ALL_SUCCESS``, ``PARTIAL_SUCCESS`` or ``custom(fn)``.
        error_mode: ``ErrorMode.FAIL_FAST`` (default) or ``FAIL_SLOW``.
        max_concurrency: the most sources in flight at once (10 by default).
        limits: ``ResourceLimits`` (per-source execution timeout, cancellation grace, ...).
        retry: a ``RetryPolicy`` for failed sources.
        timeout: seconds until a run of this step is cut (the overall timeout).
        copy_input: ``"branch"`` (default) copies the request for each source; ``"none"``
            shares it.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.

    Example:
        >>> from actors import Aggregation
        >>> flow = ScatterGatherWorkflow([len, repr], name="search")
        >>> flow.kind, flow.aggregation == Aggregation.FIRST_SUCCESS
        ('scatter_gather', True)
    """

    __slots__ = ()

    kind = "scatter_gather"

    def __init__(
        self,
        sources: Iterable[object],
        *,
        name: str = "scatter_gather",
        aggregation: Aggregation = Aggregation.FIRST_SUCCESS,
        error_mode: ErrorMode = ErrorMode.FAIL_FAST,
        max_concurrency: int | None = None,
        limits: ResourceLimits | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        copy_input: CopyMode = "branch",
    ) -> None:
        super().__init__(
            sources,
            name=name,
            aggregation=aggregation,
            error_mode=error_mode,
            max_concurrency=max_concurrency,
            limits=limits,
            retry=retry,
            timeout=timeout,
            copy_input=copy_input,
        )

    @property
    def sources(self) -> tuple[StepSpec, ...]:
        """The sources, in input order (the same as ``steps``)."""
        return self.steps
