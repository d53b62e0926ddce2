"""``MapReduceWorkflow``: one step over every item of a collection, reduced as results arrive.

Items are pulled from the input lazily, one as each slot frees up, so a generator of a
million items never sits in memory; each mapped value is folded into the accumulator the
moment it arrives and then dropped. The record keeps counts per status and the first
``keep_results`` failures, never one record per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from actors.gather import (
    Aggregation,
    ErrorMode,
    GatherPolicy,
    Verdict,
    failure_verdict,
)
from actors.runtime.errors import CastflowError
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.snapshot import snapshot
from actors.workflows._coordinator import Instance
from actors.workflows._fan import CopyMode, FanCoordinator, FanWorkflow
from actors.workflows._spec import StepSpec, to_spec
from actors.workflows.errors import WorkflowDefinitionError
from supervisors.batches import (
    Branch,
)
from supervisors.limits import ResourceLimits, RetryPolicy

__all__ = ["MapReduceWorkflow", "Reducer", "ReducerError"]

Reducer = Callable[[Any, Any], Any]
"""``reducer(accumulator, value) -> accumulator``."""


class ReducerError(CastflowError):
    """The reducer raised while folding a mapped value; the run fails with it as the cause."""


class MapReduceWorkflow(FanWorkflow):
    """Map a step over a collection with bounded concurrency; reduce values as they arrive.

    The run's input is the collection (any iterable: a list, a range, a generator), or
    ``items(input)`` selects it. Each item is one branch running ``mapper`` on its own copy of
    the item; at most ``max_concurrency`` run at once and the next item is taken from the
    iterable only when a slot frees up. Each successful value is folded into the accumulator
    with ``reducer(acc, value)`` on arrival (completion order, so use an order-insensitive
    reducer, or fold ``(index, value)`` pairs: with ``indexed=True`` the mapper's values
    arrive as ``(index, value)``). Without a reducer the output is the list of values in input
    order (which holds every value: give a reducer for large inputs).

    ``aggregation`` says what failures mean: ``ALL_SUCCESS`` (default) fails the run on a
    failed item (at once under ``FAIL_FAST``, after every item under ``FAIL_SLOW``);
    ``PARTIAL_SUCCESS`` folds the successful values and succeeds if any item succeeded (or
    there were none). The record has ``counts`` per status and the first ``keep_results``
    failed items.

    Args:
        mapper: the step run once per item (a tool, workflow, function or ``step(...)``).
        reducer: ``reducer(acc, value) -> acc``; ``None`` collects the values in input order.
        initial: the accumulator's start value (copied per run if it is mutable).
        items: selects the collection from the run's input (a function or key); the input
            itself if ``None``.
        name: the workflow's name.
        aggregation: ``Aggregation.ALL_SUCCESS`` or ``PARTIAL_SUCCESS``.
        error_mode: ``ErrorMode.FAIL_FAST`` (default) or ``FAIL_SLOW``.
        max_concurrency: the most items in flight at once.
        limits: ``ResourceLimits`` (per-item execution timeout, cancellation grace, ...).
        retry: a ``RetryPolicy`` for failed items.
        timeout: seconds until a run is cut (the overall timeout).
        copy_input: ``"branch"`` (default) copies each item for its branch; ``"none"``
            shares it.
        keep_results: how many failed items to keep records of.
        indexed: pass ``(index, value)`` pairs to the reducer.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.
    """

    __slots__ = ("indexed", "initial", "items", "keep_results", "mapper", "reducer")

    kind = "map_reduce"

    mapper: StepSpec
    reducer: Reducer | None
    initial: Any
    items: Callable[[Any], Any] | str | int | None
    keep_results: int
    indexed: bool

    def __init__(
        self,
        mapper: object,
        reducer: Reducer | None = None,
        *,
        initial: Any = None,
        items: Callable[[Any], Any] | str | int | None = None,
        name: str = "map_reduce",
        aggregation: Aggregation = Aggregation.ALL_SUCCESS,
        error_mode: ErrorMode = ErrorMode.FAIL_FAST,
        max_concurrency: int | None = None,
        limits: ResourceLimits | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        copy_input: CopyMode = "branch",
        keep_results: int = 10,
        indexed: bool = False,
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
        where = f"map_reduce {name!r}"
        if aggregation.kind not in ("all_success", "partial_success"):
            msg = (
                f"{where}: aggregation must be ALL_SUCCESS or PARTIAL_SUCCESS (the reducer "
                f"combines the values), got {aggregation}"
            )
            raise WorkflowDefinitionError(msg)
        if reducer is not None and not callable(reducer):
            msg = f"{where}: reducer must be a function (acc, value) -> acc, got {reducer!r}"
            raise WorkflowDefinitionError(msg)
        if items is not None and not (isinstance(items, str | int) or callable(items)):
            msg = f"{where}: items must be a function or a key, got {items!r}"
            raise WorkflowDefinitionError(msg)
        if isinstance(keep_results, bool) or not isinstance(keep_results, int) or keep_results < 0:
            msg = f"{where}: keep_results must be an int >= 0, got {keep_results!r}"
            raise WorkflowDefinitionError(msg)
        spec = to_spec(mapper, f"{where}: mapper")
        object.__setattr__(self, "mapper", spec)
        object.__setattr__(self, "reducer", reducer)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "keep_results", keep_results)
        object.__setattr__(self, "indexed", bool(indexed))
        self.check_memory_limits([spec.step])

    def children(self) -> tuple[StepSpec, ...]:
        """The mapper."""
        return (self.mapper,)


class MapReduceCoordinator(FanCoordinator[MapReduceWorkflow]):
    """Drives every instance of one ``MapReduceWorkflow`` node in a run."""

    def plan(self, instance: Instance) -> tuple[GatherPolicy, Iterator[Branch]]:
        """A reducing policy, and one lazily made branch per item."""
        node = self.node
        where = f"map_reduce {node.name!r}"
        source = instance.call.input
        select = node.items
        if select is not None:
            source = source[select] if isinstance(select, str | int) else select(source)
        if isinstance(source, str | bytes) or not isinstance(source, Iterable):
            msg = f"{where}: the input must be an iterable of items, got {type(source).__name__}"
            raise TypeError(msg)
        initial = snapshot(node.initial, what=f"the initial value of {where}")()
        policy = ReducePolicy(node, initial, where)
        return policy, _item_branches(node, iter(source))


def _item_branches(node: MapReduceWorkflow, items: Iterator[Any]) -> Iterator[Branch]:
    spec = node.mapper
    copy = node.copy_input == "branch"
    what = f"an item of map_reduce {node.name!r}"
    try:
        for index, item in enumerate(items):
            make = snapshot(item, copy=copy, what=what)
            # By position (index, name, step, input, timeout, semaphores): one is built per item.
            yield Branch(
                index,
                f"{spec.name}[{index}]",
                spec.step,
                _mapped(spec, make),
                spec.timeout,
                spec.semaphores,
            )
    finally:
        # A run that stops early (a failure, a cancel, its deadline) closes the user's
        # generator now, so its own cleanup (a cursor, a file) runs at once, on this thread.
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _mapped(spec: StepSpec, make: Callable[[], Any]) -> Callable[[], Any]:
    if spec.input is None:
        return make
    return lambda: spec.map_input(make())


class ReducePolicy:
    """Folds each mapped value into the accumulator on arrival; keeps counts and few failures.

    Args:
        node: the definition.
        initial: the accumulator's start value (already this run's own copy).
        where: names the step in errors.
    """

    def __init__(self, node: MapReduceWorkflow, initial: Any, where: str) -> None:
        self._node = node
        self._where = where
        self._collect: dict[int, Any] | None = {} if node.reducer is None else None
        self._acc = initial
        self._fast = node.error_mode is ErrorMode.FAIL_FAST
        self._partial = node.aggregation.kind == "partial_success"
        self._counts: dict[str, int] = {}
        self._failures: list[StepResult] = []
        self._done = 0
        self._ok = 0
        self._total: int | None = None
        # A success is folded; only the last one decides (see GatherPolicy).
        self.successes_can_wait = True
        self.runs_code_per_result = node.reducer is not None

    def add(self, index: int, result: StepResult) -> Verdict | None:
        """Count the item; fold its value or keep its failure; decide if the run can."""
        self._done += 1
        status = result.status.value
        self._counts[status] = self._counts.get(status, 0) + 1
        if result.ok:
            self._ok += 1
            failed = self._fold(index, result.value)
            if failed is not None:
                return failed
        else:
            if len(self._failures) < self._node.keep_results:
                self._failures.append(result)
            if self._fast and not self._partial:
                return self._failure()
        return self._maybe_done()

    def _fold(self, index: int, value: Any) -> Verdict | None:
        if self._collect is not None:
            self._collect[index] = value
            return None
        reducer = self._node.reducer
        assert reducer is not None
        try:
            self._acc = reducer(self._acc, (index, value) if self._node.indexed else value)
        except BaseException as exc:  # noqa: BLE001 - the user's reducer failing fails the run
            error = ReducerError(f"{self._where}: the reducer raised on item {index}: {exc!r}")
            error.__cause__ = exc
            info = ErrorInfo.from_exception(error)
            return Verdict(Status.ERROR, error=info, counts=self._counts)
        return None

    def exhausted(self, total: int, error: ErrorInfo | None) -> Verdict | None:
        """All items are known: decide once each has a result."""
        if error is not None:
            message = f"{self._where}: reading the items failed after {total}: {error}"
            info = ErrorInfo(
                type=error.type,
                message=message,
                traceback=error.traceback,
                exception=error.exception,
            )
            return Verdict(Status.ERROR, error=info, counts=self._counts)
        self._total = total
        return self._maybe_done()

    def _maybe_done(self) -> Verdict | None:
        if self._total is None or self._done < self._total:
            return None
        failed = self._done - self._ok
        if failed and not (self._partial and (self._ok or self._total == 0)):
            return self._failure()
        return Verdict(Status.OK, self._value(), counts=self._counts)

    def _value(self) -> Any:
        if self._collect is None:
            return self._acc
        return [self._collect[i] for i in sorted(self._collect)]

    def _failure(self) -> Verdict:
        failed = [(r.name, r) for r in self._failures]
        total = self._total if self._total is not None else self._done
        verdict = failure_verdict(
            failed,
            total,
            str(self._node.aggregation),
            self._where,
            failed_count=self._done - self._ok,
        )
        return Verdict(
            verdict.status,
            error=verdict.error,
            failed_step=verdict.failed_step,
            counts=self._counts,
        )

    def cut(self, status: Status, error: ErrorInfo) -> Verdict:
        """The run's scope ended it: keep the counts so far."""
        return Verdict(status, error=error, counts=self._counts)

    def settle(self, admitted: int, why: str) -> Verdict:
        """Never asked for (this policy never returns ``CANCEL_REST``): a plain cut."""
        return self.cut(Status.CANCELLED, ErrorInfo(type="castflow.Cancelled", message=why))

    def records(self, admitted: int, why: str, unfinished: Status) -> list[StepResult]:
        """The first failures only (counts are in the verdict)."""
        # Items admitted and cut before their result count as ``unfinished`` in the verdict's
        # counts (the same dict: the batch is decided, nothing else is added to it).
        missing = admitted - self._done
        if missing > 0:
            self._counts[unfinished.value] = self._counts.get(unfinished.value, 0) + missing
        return list(self._failures)


MapReduceWorkflow.coordinator = MapReduceCoordinator
