"""The stream coordinator: one actor per stream node per run, a state machine per instance.

Each instance is a pipeline. *Units* (the input's items, or windows of them) enter the first
stage and move from stage to stage; a stage takes a unit only while it holds fewer than its
``max_in_flight`` (its credit), runs at most ``concurrency`` at once, and keeps a finished
unit until the next stage has credit. The input is pulled only when the first stage has
credit, nothing waits in front of it, and fewer than the stream's ``max_in_flight`` units
are between the input and the output (that bound covers the reorder buffer of an ordered
stream too). Memory and threads therefore stay flat however long the input is.

Stage steps that are leaves (tools) run as jobs on the coordinator's own pooled workers
(``LeafDispatcher``: at most one thread per unit running at once, reused across units); any
other step is started through ``Step.start`` with those workers as the executor of the leaves
beneath it. Nothing here blocks: completions, async pulls and timers arrive as messages (or
as job decisions on this actor's thread).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from actors.runtime.cancel import CancelScope
from actors.runtime.leaves import Leaf, LeafDispatcher, OwnerExecutor, new_job
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import cancelled_result
from actors.workflows._coordinator import Coordinator, Instance, failure, why_cut
from actors.workflows._spec import StepSpec
from actors.workflows._stream import FailedItem, Stage, StreamWorkflow
from actors.workflows._stream_source import END, Source, open_source

__all__ = ["Pipeline", "StreamCoordinator", "Unit"]

_DROPPED: Any = object()
"""Stands in the reorder buffer for a unit that failed and was skipped or dead-lettered."""

_PULLS_PER_MESSAGE = 256
"""Items pulled from a sync input per message handled, before the mailbox gets its turn.

Credit bounds pulling for plain streams; items that only join an open window take none, so
without this a fast input could keep the coordinator from its mailbox (cancellation, timers)
for a whole window's duration."""


# -- state --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Unit:
    """One item (or window) on its way through the stages."""

    index: int
    item: Any
    value: Any
    stage: int = 0
    token: int = 0
    scope: CancelScope | None = None


@dataclass(slots=True, eq=False)
class _StageState:
    """What one stage of one instance holds: units waiting, running, and finished."""

    stage: Stage
    leaf: Leaf | None
    waiting: deque[Unit] = field(default_factory=deque)
    running: dict[int, Unit] = field(default_factory=dict)
    finished: deque[Unit] = field(default_factory=deque)

    @property
    def held(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.finished)

    @property
    def has_credit(self) -> bool:
        return self.held < self.stage.max_in_flight


@dataclass(slots=True, eq=False)
class Pipeline:
    """One instance of a stream node: its input, its stages' units, its outputs and counts."""

    instance: Instance
    source: Source
    stages: list[_StageState]
    outputs: list[Any] | None
    backlog: deque[Unit] = field(default_factory=deque)
    reorder: dict[int, Any] = field(default_factory=dict)
    next_out: int = 0
    produced: int = 0
    in_flight: int = 0
    emitted: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[StepResult] = field(default_factory=list)
    exhausted: bool = False
    closed: bool = False
    pumping: bool = False
    again: bool = False
    resuming: bool = False


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _UnitReplied:
    """Fact: the step running unit ``index`` in stage ``stage`` of ``instance`` replied."""

    instance: int
    stage: int
    index: int
    token: int
    result: StepResult


@dataclass(frozen=True, slots=True)
class _Resume:
    """Request to self: go on pulling the input of ``instance`` (after other messages)."""

    instance: int


@dataclass(frozen=True, slots=True)
class _Pulled:
    """Fact: a pull of ``instance``'s async input resolved."""

    instance: int
    outcome: concurrent.futures.Future[Any]


# -- the coordinator ----------------------------------------------------------------------


class StreamCoordinator(Coordinator[StreamWorkflow]):
    """Drives every instance of one stream node in a run. See the module docstring.

    Kinds that turn input items into other units (windows) override :meth:`arrive` and
    :meth:`input_ended`.
    """

    def __init__(self, node: StreamWorkflow) -> None:
        super().__init__(node)
        self._pipes: dict[int, Pipeline] = {}
        self._where = f"{node.kind} {node.name!r}"

    def on_start(self) -> None:
        """Set up the pooled workers the stages' leaves run on."""
        self._leaves = LeafDispatcher.for_run(self)
        self._executor = OwnerExecutor(self.system, self.handle)

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message: unit replies, async pulls, worker news, instance requests."""
        match message:
            case _UnitReplied(instance_id, stage, index, token, result):
                pipe = self._pipes.get(instance_id)
                if pipe is not None:
                    unit = pipe.stages[stage].running.get(index)
                    if unit is not None:
                        self._unit_done(pipe, unit, token, result)
            case _Pulled(instance_id, outcome):
                pipe = self._pipes.get(instance_id)
                if pipe is not None and pipe.source.took(outcome):
                    self._pulled(pipe, outcome)
            case _Resume(instance_id):
                pipe = self._pipes.get(instance_id)
                if pipe is not None:
                    pipe.resuming = False
                    self.pump(pipe)
            case _:
                if not self._leaves.handle(message):
                    return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        """Decide every instance as cancelled, then stop the workers (the run has ended)."""
        super().on_stop()
        self._leaves.stop()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Decide every instance as failed, then stop the workers (nothing is left running)."""
        super().on_failure(exception_type, exception_value, traceback)
        self._leaves.stop()

    # -- hooks for the kinds --------------------------------------------------------------

    def arrive(self, pipe: Pipeline, item: Any) -> None:
        """An input item arrived: it becomes a unit (a kind may group items first)."""
        self.add_unit(pipe, item)

    def input_ended(self, pipe: Pipeline) -> None:
        """The input has no more items (a kind may flush what it grouped)."""

    def add_unit(self, pipe: Pipeline, item: Any) -> None:
        """Queue ``item`` as the next unit, in front of the first stage."""
        unit = Unit(pipe.produced, item, item)
        pipe.produced += 1
        pipe.in_flight += 1
        pipe.backlog.append(unit)

    def pump(self, pipe: Pipeline) -> None:
        """Move units on as far as credit allows, pull the input, finish when all is done."""
        if pipe.pumping:
            pipe.again = True  # a decision made while pumping: the running pump goes round
            return
        pipe.pumping = True
        try:
            while not pipe.closed:
                pipe.again = False
                self._flow(pipe)
                if not pipe.again:
                    break
            if not pipe.closed and pipe.exhausted and pipe.in_flight == 0:
                self._succeed(pipe)
        finally:
            pipe.pumping = False

    # -- instances ------------------------------------------------------------------------

    def begin(self, instance: Instance) -> None:
        """Open the input and start pulling."""
        node = self.node
        source = open_source(instance.call.input, self._where)
        pipe = Pipeline(
            instance=instance,
            source=source,
            stages=[_StageState(stage, _leaf_of(stage.spec)) for stage in node.stages],
            outputs=[] if node.collect else None,
        )
        self._pipes[instance.id] = pipe
        self.on_open(pipe)
        self.pump(pipe)

    def on_open(self, pipe: Pipeline) -> None:
        """A new instance's pipeline exists (a kind may set up its own state)."""

    def pipe_of(self, instance_id: int) -> Pipeline | None:
        """The pipeline of a running instance."""
        return self._pipes.get(instance_id)

    def _succeed(self, pipe: Pipeline) -> None:
        value: Any = pipe.outputs if pipe.outputs is not None else pipe.emitted
        pipe.instance.records = list(pipe.failures)
        self.finish(pipe.instance, Status.OK, value, None, counts=dict(pipe.counts))

    def _fail_stream(self, pipe: Pipeline, error: ErrorInfo, failed_step: str | None) -> None:
        """Fail the instance: cancel what runs and record it (counts and first records)."""
        why = "cancelled: the stream failed before this item finished"
        records = self._cut_units(pipe, Status.CANCELLED, why)
        pipe.instance.records = pipe.failures + records
        self.finish(
            pipe.instance, Status.ERROR, None, error, failed_step=failed_step, counts=pipe.counts
        )

    def _cancel(self, instance: Instance, running: StepResult | None = None) -> None:
        """The instance's scope was cancelled or timed out: report what was in flight."""
        pipe = self._pipes.get(instance.id)
        if pipe is None:
            super()._cancel(instance, running)
            return
        why = why_cut(instance.scope)
        cut = cancelled_result(self.node.name, instance.scope, why)
        records = self._cut_units(pipe, cut.status, why)
        instance.records = pipe.failures + records
        self.finish(instance, cut.status, None, cut.error, counts=pipe.counts)

    def finish(
        self,
        instance: Instance,
        status: Status,
        value: Any,
        error: ErrorInfo | None,
        *,
        failed_step: str | None = None,
        iterations: int | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        """Decide ``instance``: stop its input and every unit still running, then reply."""
        pipe = self._pipes.pop(instance.id, None)
        if pipe is not None:
            pipe.closed = True
            pipe.source.close(self.system)
            for state in pipe.stages:
                for unit in state.running.values():
                    if unit.scope is not None:
                        unit.scope.cancel()
            self.on_close(pipe)
        super().finish(
            instance,
            status,
            value,
            error,
            failed_step=failed_step,
            iterations=iterations,
            counts=dict(counts) if counts is not None else None,
        )

    def on_close(self, pipe: Pipeline) -> None:
        """An instance has been decided (a kind may drop its own state)."""

    def _cut_units(self, pipe: Pipeline, status: Status, why: str) -> list[StepResult]:
        """Count every unit still in flight as ``status``; records of the first few."""
        names = [state.stage.name for state in pipe.stages]
        units: list[tuple[int, str]] = [(unit.index, names[0]) for unit in pipe.backlog]
        for position, state in enumerate(pipe.stages):
            held = [*state.waiting, *state.running.values(), *state.finished]
            units.extend((unit.index, names[position]) for unit in held)
        units.extend(
            (unit.index, names[-1]) for unit in pipe.reorder.values() if unit is not _DROPPED
        )
        if units:
            pipe.counts[status.value] = pipe.counts.get(status.value, 0) + len(units)
        kind = "castflow.Timeout" if status is Status.TIMEOUT else "castflow.Cancelled"
        return [
            StepResult(
                name=f"{name}[{index}]", status=status, error=ErrorInfo(type=kind, message=why)
            )
            for index, name in sorted(units)[: self.node.keep_results]
        ]

    # -- the flow -------------------------------------------------------------------------

    def _flow(self, pipe: Pipeline) -> None:
        stages = pipe.stages
        # From the back, so credit freed downstream is passed upstream in one sweep.
        for position in range(len(stages) - 2, -1, -1):
            state, after = stages[position], stages[position + 1]
            while state.finished and after.has_credit:
                unit = state.finished.popleft()
                unit.stage = position + 1
                after.waiting.append(unit)
            self._start_waiting(pipe, position + 1)
            if pipe.closed:
                return
        first = stages[0]
        pulls = 0
        while True:
            while pipe.backlog and first.has_credit:
                first.waiting.append(pipe.backlog.popleft())
            self._start_waiting(pipe, 0)
            if pipe.closed or not self._may_pull(pipe, first):
                return
            if pulls == _PULLS_PER_MESSAGE:
                if not pipe.resuming:
                    pipe.resuming = True
                    self.handle.tell(_Resume(pipe.instance.id))
                return
            pulls += 1
            self._pull(pipe)

    def _may_pull(self, pipe: Pipeline, first: _StageState) -> bool:
        return (
            not pipe.exhausted
            and not pipe.resuming
            and pipe.source.pending is None
            and not pipe.backlog
            and first.has_credit
            and pipe.in_flight < self.node.max_in_flight
        )

    def _pull(self, pipe: Pipeline) -> None:
        source = pipe.source
        if source.is_async:
            instance_id = pipe.instance.id
            handle = self.handle

            def deliver(outcome: concurrent.futures.Future[Any]) -> None:
                handle.tell(_Pulled(instance_id, outcome))

            try:
                source.pull_async(self.system, deliver)
            except Exception as exc:  # noqa: BLE001 - the loop is gone: the input has failed
                self._input_failed(pipe, ErrorInfo.from_exception(exc))
            return
        try:
            item = source.next()
        except StopIteration:
            self._end_of_input(pipe)
            return
        except BaseException as exc:  # noqa: BLE001 - a failing input fails the stream
            self._input_failed(pipe, ErrorInfo.from_exception(exc))
            return
        self.arrive(pipe, item)

    def _pulled(self, pipe: Pipeline, outcome: concurrent.futures.Future[Any]) -> None:
        error = outcome.exception()
        if error is not None:
            self._input_failed(pipe, ErrorInfo.from_exception(error))
            return
        item = outcome.result()
        if item is END:
            self._end_of_input(pipe)
        else:
            self.arrive(pipe, item)
        self.pump(pipe)

    def _end_of_input(self, pipe: Pipeline) -> None:
        pipe.exhausted = True
        self.input_ended(pipe)

    def _input_failed(self, pipe: Pipeline, error: ErrorInfo) -> None:
        pipe.exhausted = True
        message = (
            f"{self._where}: reading the input failed after {pipe.source.pulled} items: {error}"
        )
        info = ErrorInfo(
            type=error.type, message=message, traceback=error.traceback, exception=error.exception
        )
        self._fail_stream(pipe, info, None)

    def _start_waiting(self, pipe: Pipeline, position: int) -> None:
        state = pipe.stages[position]
        while state.waiting and len(state.running) < state.stage.concurrency and not pipe.closed:
            unit = state.waiting.popleft()
            state.running[unit.index] = unit
            self._run(pipe, state, unit)

    def _run(self, pipe: Pipeline, state: _StageState, unit: Unit) -> None:
        spec = state.stage.spec
        unit.token += 1
        token = unit.token
        label = f"{spec.name}[{unit.index}]"
        instance = pipe.instance
        call = instance.call
        try:
            value = spec.map_input(unit.value)
            if state.leaf is not None:
                job = new_job(
                    state.leaf.prepare(value),
                    parent=instance.scope,
                    timeout=spec.timeout,
                    cancellation_timeout=self.system.cancellation_timeout,
                    on_decided=lambda result: self._unit_done(pipe, unit, token, result),
                    semaphores=call.semaphores + spec.semaphores,
                    run_permits=call.env.permits,
                    label=label,
                )
                unit.scope = job.scope
                self._leaves.admit(job)
                return
            unit.scope = instance.scope.child(timeout=spec.timeout, name=f"{call.path}/{label}")
            handle = self.handle
            reply_to = (instance.id, unit.stage, unit.index, token)

            def reply(result: StepResult) -> None:
                handle.tell(_UnitReplied(*reply_to, result))

            child = call.child(
                input=value,
                name=label,
                reply=reply,
                scope=unit.scope,
                outputs=self.visible(instance),
                semaphores=spec.semaphores,
            )
            spec.step.start(dataclasses.replace(child, leaves=self._executor))
        except BaseException as exc:  # noqa: BLE001 - a bad input is this unit's failure
            result = StepResult(
                name=label, status=Status.ERROR, error=ErrorInfo.from_exception(exc)
            )
            self._unit_done(pipe, unit, token, result)

    def _unit_done(self, pipe: Pipeline, unit: Unit, token: int, result: StepResult) -> None:
        if pipe.closed or token != unit.token:
            return
        state = pipe.stages[unit.stage]
        if state.running.get(unit.index) is not unit:
            return
        if not result.ok and pipe.instance.scope.cancelled:
            # Cut by the instance's own cancellation: decided as such, with this unit in flight.
            self._cancel(pipe.instance)
            return
        del state.running[unit.index]
        if unit.scope is not None:
            unit.scope.close()
            unit.scope = None
        if not result.ok:
            self._failed(pipe, state, unit, result)
        elif unit.stage == len(pipe.stages) - 1:
            unit.value = result.value
            self._completed(pipe, unit)
        else:
            unit.value = result.value
            state.finished.append(unit)
        self.pump(pipe)

    # -- outputs and failures -------------------------------------------------------------

    def _completed(self, pipe: Pipeline, unit: Unit) -> None:
        if not self.node.ordered:
            pipe.in_flight -= 1
            self._emit(pipe, unit)
            return
        pipe.reorder[unit.index] = unit
        self._release(pipe)

    def _release(self, pipe: Pipeline) -> None:
        reorder = pipe.reorder
        while pipe.next_out in reorder and not pipe.closed:
            unit = reorder.pop(pipe.next_out)
            pipe.next_out += 1
            pipe.in_flight -= 1
            if unit is not _DROPPED:
                self._emit(pipe, unit)

    def _emit(self, pipe: Pipeline, unit: Unit) -> None:
        node = self.node
        value = unit.value
        pipe.emitted += 1
        pipe.counts["ok"] = pipe.counts.get("ok", 0) + 1
        if pipe.outputs is not None:
            pipe.outputs.append(value)
        call = pipe.instance.call
        partials = call.env.partials
        if partials is not None:
            name = f"{node.stages[-1].name}[{unit.index}]"
            partials.push(call.path, StepResult(name=name, status=Status.OK, value=value))
        if node.on_output is not None:
            try:
                node.on_output(value)
            except BaseException as exc:  # noqa: BLE001 - a failing sink fails the stream
                self._sink_failed(pipe, "on_output", unit, exc)

    def _failed(self, pipe: Pipeline, state: _StageState, unit: Unit, result: StepResult) -> None:
        node = self.node
        name = f"{state.stage.name}[{unit.index}]"
        record = result if result.name == name else result.model_copy(update={"name": name})
        status = record.status.value
        pipe.counts[status] = pipe.counts.get(status, 0) + 1
        if len(pipe.failures) < node.keep_results:
            pipe.failures.append(record)
        call = pipe.instance.call
        if call.env.partials is not None:
            call.env.partials.push(call.path, record)
        if node.error_policy == "fail":
            self._fail_stream(pipe, failure(name, record), name)
            return
        if node.error_policy == "dead_letter":
            failed = FailedItem(unit.index, unit.item, state.stage.name, unit.value, record)
            try:
                sink = node.dead_letters
                if isinstance(sink, queue.Queue):
                    sink.put_nowait(failed)
                elif sink is not None:
                    sink(failed)
            except BaseException as exc:  # noqa: BLE001 - a failing sink fails the stream
                self._sink_failed(pipe, "dead_letters", unit, exc)
                return
        self._drop(pipe, unit)

    def _drop(self, pipe: Pipeline, unit: Unit) -> None:
        if not self.node.ordered:
            pipe.in_flight -= 1
            return
        pipe.reorder[unit.index] = _DROPPED
        self._release(pipe)

    def _sink_failed(self, pipe: Pipeline, sink: str, unit: Unit, exc: BaseException) -> None:
        if pipe.closed:
            return
        info = ErrorInfo.from_exception(exc)
        message = f"{self._where}: {sink} raised on item {unit.index}: {info}"
        error = ErrorInfo(type=info.type, message=message, traceback=info.traceback, exception=exc)
        self._fail_stream(pipe, error, None)


_leaf_kinds: dict[type[Any], bool] = {}


def _leaf_of(spec: StepSpec) -> Leaf | None:
    """``spec``'s step if it runs as a leaf (cached per type: protocol checks are slow)."""
    step = spec.step
    kind = type(step)
    found = _leaf_kinds.get(kind)
    if found is None:
        found = _leaf_kinds[kind] = isinstance(step, Leaf)
    return cast("Leaf", step) if found else None
