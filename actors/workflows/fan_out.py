"""``FanOutWorkflow``: split the input into items, run a worker per item, aggregate the values.

Three phases in one coordinator: the *splitter* runs as the instance's child and turns the
input into a list of items; the *workers* run through the parallel protocol (one branch per
item, at most ``max_concurrency`` at once, on the node's pooled workers); the *aggregator*
runs as a child again and turns the workers' values into the output (fan-in).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actors.gather import Aggregation, ErrorMode, GatherOutcome, StrategyPolicy
from actors.runtime.errors import CastflowError
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.snapshot import snapshot
from actors.workflows._coordinator import Instance, failure, signalled, skipped
from actors.workflows._fan import CopyMode, FanCoordinator, FanWorkflow
from actors.workflows._spec import StepSpec, to_spec, unique_specs
from actors.workflows._sync_check import check_item_sync, sync_points_in
from actors.workflows.errors import WorkflowDefinitionError
from supervisors.batches import (
    Branch,
)
from supervisors.limits import ResourceLimits, RetryPolicy

if TYPE_CHECKING:
    from actors.sync import SyncPoint

__all__ = ["FanOutWorkflow", "SplitterOutputError"]


class SplitterOutputError(CastflowError, TypeError):
    """A fan-out's splitter returned something that is not a list of items."""


_SPLIT, _WORK, _AGGREGATE = 0, 1, 2


class FanOutWorkflow(FanWorkflow):
    """Split the input into items, run ``worker`` on each item in parallel, then aggregate.

    The ``splitter`` turns the input into a list of items (any iterable but a string, bytes or
    a mapping). Each item becomes one branch running ``worker`` on its own copy of the item,
    named ``"<worker>[0]"``, ``"<worker>[1]"``, ... (give the worker a name with
    ``step(fn, name="worker")``); at most ``max_concurrency`` run at once. The workers are
    gathered by ``aggregation`` (``ALL_SUCCESS`` by default: the list of values in item
    order) and the ``aggregator`` turns that value into the output; without one the output is
    the gathered value itself. The record lists the splitter, every worker branch and the
    aggregator.

    FanOut holds every item and one record per item: it is meant for modest item counts. For
    huge or unbounded collections use ``MapReduceWorkflow``, which never materialises them.

    Args:
        splitter: a step or function turning the input into the list of items.
        worker: the step run once per item (a tool, workflow, function or ``step(...)``).
        aggregator: a step or function receiving the gathered value (for ``ALL_SUCCESS``,
            ``PARTIAL_SUCCESS`` and ``quorum(k)`` the list of values in item order; for
            ``FIRST_SUCCESS`` the winner's value; for ``custom(fn)`` what ``fn`` returns) and
            producing the output; ``None`` passes the gathered value through.
        name: the workflow's name.
        max_concurrency: the most workers in flight at once (10 by default).
        error_mode: ``ErrorMode.FAIL_FAST`` (default) or ``FAIL_SLOW``.
        aggregation: how the workers' results are gathered (``ALL_SUCCESS`` by default).
        limits: ``ResourceLimits`` (per-item execution timeout, cancellation grace, ...).
        retry: a ``RetryPolicy`` for failed workers.
        timeout: seconds until a run of this step is cut (the overall timeout).
        copy_input: ``"branch"`` (default) gives each worker its own copy of its item;
            ``"none"`` passes the splitter's items as they are.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.

    Examples:
        >>> flow = FanOutWorkflow(sorted, len, sum, name="lengths")
        >>> [spec.name for spec in flow.children()]
        ['sorted', 'len', 'sum']
    """

    __slots__ = ("aggregator", "splitter", "worker", "worker_sync")

    kind = "fan_out"

    splitter: StepSpec
    worker: StepSpec
    aggregator: StepSpec | None
    worker_sync: tuple[SyncPoint, ...]

    def __init__(
        self,
        splitter: object,
        worker: object,
        aggregator: object | None = None,
        *,
        name: str = "fan_out",
        max_concurrency: int | None = None,
        error_mode: ErrorMode = ErrorMode.FAIL_FAST,
        aggregation: Aggregation = Aggregation.ALL_SUCCESS,
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
        where = f"fan_out {name!r}"
        parts = [
            to_spec(splitter, f"{where}: splitter"),
            to_spec(worker, f"{where}: worker"),
        ]
        if aggregator is not None:
            parts.append(to_spec(aggregator, f"{where}: aggregator"))
        specs = unique_specs(parts, where)
        object.__setattr__(self, "splitter", specs[0])
        object.__setattr__(self, "worker", specs[1])
        object.__setattr__(self, "aggregator", specs[2] if aggregator is not None else None)
        self.check_memory_limits([specs[1].step])
        points = tuple(sync_points_in(specs[1].step))
        limit = self.max_concurrency
        for point in points:
            if point.kind == "rendezvous" or point.parties is None:
                continue  # their parties are the items, known only when a run is planned
            if point.parties > limit:
                msg = (
                    f"{where}: {point.kind} {point.name!r} in the worker waits for "
                    f"{point.parties} parties but max_concurrency is {limit}; its parties "
                    "could never all run at once"
                )
                raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "worker_sync", points)

    def children(self) -> tuple[StepSpec, ...]:
        """The splitter, the worker and the aggregator (if any)."""
        if self.aggregator is None:
            return (self.splitter, self.worker)
        return (self.splitter, self.worker, self.aggregator)

    def outer_children(self) -> tuple[StepSpec, ...]:
        """The splitter and the aggregator: they run in the enclosing step's group."""
        if self.aggregator is None:
            return (self.splitter,)
        return (self.splitter, self.aggregator)


class FanOutCoordinator(FanCoordinator[FanOutWorkflow]):
    """Drives every instance of one ``FanOutWorkflow`` node in a run, phase by phase."""

    def begin(self, instance: Instance) -> None:
        """Start the splitter on the instance's input."""
        splitter = self.node.splitter
        instance.position = _SPLIT
        self.start_child(instance, splitter, instance.call.input, splitter.name)

    def on_child(self, instance: Instance, result: StepResult) -> None:
        """The splitter or the aggregator replied."""
        instance.records.append(result)
        name = result.name
        signal = signalled(result)
        if signal is not None:
            # A Break passes up to the nearest loop, as from a sequence.
            instance.records.extend(
                skipped(n, f"step {name!r} signalled Break") for n in self.pending(instance)
            )
            self.finish(instance, Status.OK, signal, None)
            return
        if not result.ok:
            instance.records.extend(
                skipped(n, f"step {name!r} failed") for n in self.pending(instance)
            )
            self.finish(instance, Status.ERROR, None, failure(name, result), failed_step=name)
            return
        if instance.position == _SPLIT:
            instance.outputs[name] = result.value
            self._fan_out(instance, result.value)
        else:
            self.finish(instance, Status.OK, result.value, None)

    def pending(self, instance: Instance) -> list[str]:
        """The aggregator, while the splitter runs (the workers are not known yet)."""
        aggregator = self.node.aggregator
        if instance.position == _AGGREGATE or aggregator is None:
            return []
        return [aggregator.name]

    def _fan_out(self, instance: Instance, value: Any) -> None:
        node = self.node
        where = f"fan_out {node.name!r}"
        splitter = node.splitter.name
        try:
            items = _items(value, f"{where}: splitter {splitter!r}")
            names = [f"{node.worker.name}[{i}]" for i in range(len(items))]
            sync = check_item_sync(where, node.worker_sync, names, node.max_concurrency)
            k = node.aggregation.k
            if k is not None and k > len(items):
                msg = f"{where}: quorum({k}) can never be reached with {len(items)} items"
                raise WorkflowDefinitionError(msg)
        except BaseException as exc:  # noqa: BLE001 - a plan that cannot run fails the instance
            instance.records.extend(
                skipped(n, "the items could not be planned") for n in self.pending(instance)
            )
            self.finish(
                instance, Status.ERROR, None, ErrorInfo.from_exception(exc), failed_step=splitter
            )
            return
        instance.position = _WORK
        if not items:
            self._no_items(instance)
            return
        policy = StrategyPolicy(names, node.aggregation, node.error_mode, f"{where} workers")
        branches = _branches(node, items, names)
        self.start_batch(instance, policy, branches, sync_points=sync)

    def _no_items(self, instance: Instance) -> None:
        """No items: no worker runs; the gathered value is what the strategy makes of none."""
        aggregation = self.node.aggregation
        where = f"fan_out {self.node.name!r}"
        if aggregation.kind in ("all_success", "partial_success"):
            self._aggregate(instance, [])
            return
        if aggregation.kind == "custom" and aggregation.fn is not None:
            try:
                value = aggregation.fn([])
            except BaseException as exc:  # noqa: BLE001 - the user's function failing fails it
                self._skip_aggregator(instance, "the aggregation failed")
                self.finish(instance, Status.ERROR, None, ErrorInfo.from_exception(exc))
                return
            self._aggregate(instance, value)
            return
        info = ErrorInfo(
            type="castflow.NoBranches",
            message=f"{where}: the splitter returned no items, so {aggregation} cannot succeed",
        )
        self._skip_aggregator(instance, "no worker succeeded")
        self.finish(instance, Status.ERROR, None, info, failed_step=self.node.splitter.name)

    def conclude(self, instance: Instance, outcome: GatherOutcome) -> None:
        """The workers are gathered: aggregate their value, or fail as the gather decided."""
        verdict = outcome.verdict
        if verdict.status is not Status.OK:
            why = "the workers failed" if verdict.status is Status.ERROR else "it was cut"
            self._skip_aggregator(instance, why)
            self.finish(
                instance, verdict.status, None, verdict.error, failed_step=verdict.failed_step
            )
            return
        if instance.scope.cancelled:
            super()._cancel(instance)  # no batch is left: the plain coordinator's cut
            return
        self._aggregate(instance, verdict.value)

    def _aggregate(self, instance: Instance, value: Any) -> None:
        aggregator = self.node.aggregator
        if aggregator is None:
            self.finish(instance, Status.OK, value, None)
            return
        instance.position = _AGGREGATE
        self.start_child(instance, aggregator, value, aggregator.name)

    def _skip_aggregator(self, instance: Instance, why: str) -> None:
        aggregator = self.node.aggregator
        if aggregator is not None:
            instance.records.append(skipped(aggregator.name, why))


FanOutWorkflow.coordinator = FanOutCoordinator


def _items(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        msg = f"{where} must return a list of items, got {type(value).__name__}: {value!r:.80}"
        raise SplitterOutputError(msg)
    return list(value)


def _branches(node: FanOutWorkflow, items: Sequence[Any], names: Sequence[str]) -> Iterator[Branch]:
    worker = node.worker
    copy = node.copy_input == "branch"
    where = f"fan_out {node.name!r}"
    for index, (item, name) in enumerate(zip(items, names, strict=True)):
        yield Branch(
            index=index,
            name=name,
            step=worker.step,
            input=_item_input(worker, item, copy, f"item {index} of {where}"),
            timeout=worker.timeout,
            semaphores=worker.semaphores,
        )


def _item_input(worker: StepSpec, item: Any, copy: bool, what: str) -> Any:
    def make() -> Any:
        return worker.map_input(snapshot(item, copy=copy, what=what)())

    return make
