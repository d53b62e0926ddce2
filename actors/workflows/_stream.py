"""What every stream kind shares: stages, failed items, the error policies and the options.

``StreamingWorkflow`` and ``WindowedWorkflow`` are definitions of this shape: an input stream
flows through a chain of stages (:class:`Stage`), each a step with its own concurrency and
its own bound of items held; the outputs are collected, counted or handed to a sink; failed
items are handled by an :data:`ErrorPolicy`. The coordinator that runs them is in
``_stream_run``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from actors.runtime.results import StepResult
from actors.workflows._coordinator import Workflow
from actors.workflows._spec import StepSpec, to_spec, unique_specs
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["DeadLetterSink", "ErrorPolicy", "FailedItem", "Stage", "StreamWorkflow"]

ErrorPolicy = Literal["fail", "skip", "dead_letter"]
"""What a failed item does to a stream: fail it, skip it (recorded), or go to dead letters."""


@dataclass(frozen=True, slots=True)
class FailedItem:
    """An item that failed in a stage, as the dead-letter sink receives it.

    Attributes:
        index: the item's position in the stream (a window's number for windowed streams).
        item: the item as it entered the stream (the window's list for windowed streams).
        stage: the name of the stage it failed in.
        input: the value that stage received (after the stages before it).
        result: the stage's result: its status (``error`` or ``timeout``) and error.
    """

    index: int
    item: Any
    stage: str
    input: Any
    result: StepResult


DeadLetterSink = Callable[[FailedItem], object] | queue.Queue[FailedItem]
"""Where failed items go under ``error_policy="dead_letter"``: a callable or a queue."""


class Stage:
    """One stage of a stream: a step, how many items it runs at once, how many it holds.

    A stage *holds* an item from the moment it takes it until the next stage takes it (or,
    for the last stage, until it is emitted): waiting to run, running, or finished and waiting
    for the next stage to have room. It never holds more than ``max_in_flight``, so a slow
    stage stops the stages before it, and finally the input, instead of piling items up.

    Args:
        target: the step: a tool, a workflow, a function, or ``step(...)`` (for a name, an
            input mapping, a per-item timeout or semaphores).
        concurrency: how many items run in this stage at once.
        max_in_flight: how many items the stage holds at once (at least ``concurrency``;
            ``concurrency`` by default).

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.
    """

    __slots__ = ("concurrency", "max_in_flight", "spec")

    spec: StepSpec
    concurrency: int
    max_in_flight: int

    def __init__(
        self, target: object, *, concurrency: int = 1, max_in_flight: int | None = None
    ) -> None:
        where = "Stage"
        spec = to_spec(target, where)
        _check_count(concurrency, f"stage {spec.name!r}: concurrency")
        if max_in_flight is None:
            max_in_flight = concurrency
        _check_count(max_in_flight, f"stage {spec.name!r}: max_in_flight")
        if max_in_flight < concurrency:
            msg = (
                f"stage {spec.name!r}: max_in_flight ({max_in_flight}) must be at least its "
                f"concurrency ({concurrency})"
            )
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "concurrency", concurrency)
        object.__setattr__(self, "max_in_flight", max_in_flight)

    @property
    def name(self) -> str:
        """The stage's name (its step's, or the one given with ``step(..., name=)``)."""
        return self.spec.name

    def renamed(self, name: str) -> Stage:
        """The same stage under another name."""
        spec = self.spec
        renamed = StepSpec(spec.step, name, spec.input, spec.timeout, spec.semaphores)
        return Stage(renamed, concurrency=self.concurrency, max_in_flight=self.max_in_flight)

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"stage {self.spec.name!r} is immutable: cannot set {name!r}"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        return (
            f"Stage({self.spec.name!r}, concurrency={self.concurrency}, "
            f"max_in_flight={self.max_in_flight})"
        )


def to_stages(items: Iterable[object], where: str) -> tuple[Stage, ...]:
    """Stages of ``items`` (steps, specs or ``Stage`` objects), with unique names.

    Raises:
        WorkflowDefinitionError: there is none, or one is not a step.
    """
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        msg = f"{where}: stages must be a list of steps, got {items!r}"
        raise WorkflowDefinitionError(msg)
    stages = [
        item if isinstance(item, Stage) else Stage(to_spec(item, f"{where}: stage {i}"))
        for i, item in enumerate(items, 1)
    ]
    if not stages:
        msg = f"{where}: stages is empty; a stream needs at least one stage"
        raise WorkflowDefinitionError(msg)
    specs = unique_specs((stage.spec for stage in stages), where)
    return tuple(
        stage if spec is stage.spec else stage.renamed(spec.name)
        for stage, spec in zip(stages, specs, strict=True)
    )


class StreamWorkflow(Workflow):
    """Base of the stream kinds: the stages and what happens to outputs and failures.

    See ``StreamingWorkflow`` for the meaning of each option.

    Raises:
        WorkflowDefinitionError: an option is invalid; the message names it.
    """

    __slots__ = (
        "collect",
        "dead_letters",
        "error_policy",
        "keep_results",
        "max_in_flight",
        "on_output",
        "ordered",
        "stages",
    )

    stages: tuple[Stage, ...]
    ordered: bool
    error_policy: ErrorPolicy
    dead_letters: DeadLetterSink | None
    max_in_flight: int
    collect: bool
    on_output: Callable[[Any], object] | None
    keep_results: int

    def __init__(
        self,
        *,
        name: str,
        timeout: float | None,
        stages: tuple[Stage, ...],
        ordered: bool,
        error_policy: ErrorPolicy,
        dead_letters: DeadLetterSink | None,
        max_in_flight: int | None,
        collect: bool | None,
        on_output: Callable[[Any], object] | None,
        keep_results: int,
    ) -> None:
        super().__init__(name=name, timeout=timeout)
        where = f"{self.kind} {name!r}"
        if not isinstance(ordered, bool):
            msg = f"{where}: ordered must be a bool, got {ordered!r}"
            raise WorkflowDefinitionError(msg)
        if error_policy not in ("fail", "skip", "dead_letter"):
            msg = (
                f"{where}: error_policy must be 'fail', 'skip' or 'dead_letter', "
                f"got {error_policy!r}"
            )
            raise WorkflowDefinitionError(msg)
        _check_dead_letters(dead_letters, error_policy, where)
        if on_output is not None and not callable(on_output):
            msg = f"{where}: on_output must be a function of one output, got {on_output!r}"
            raise WorkflowDefinitionError(msg)
        if collect is None:
            collect = on_output is None
        if not isinstance(collect, bool):
            msg = f"{where}: collect must be a bool, got {collect!r}"
            raise WorkflowDefinitionError(msg)
        if max_in_flight is None:
            max_in_flight = sum(stage.max_in_flight for stage in stages)
        _check_count(max_in_flight, f"{where}: max_in_flight")
        if isinstance(keep_results, bool) or not isinstance(keep_results, int) or keep_results < 0:
            msg = f"{where}: keep_results must be an int >= 0, got {keep_results!r}"
            raise WorkflowDefinitionError(msg)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "ordered", ordered)
        object.__setattr__(self, "error_policy", error_policy)
        object.__setattr__(self, "dead_letters", dead_letters)
        object.__setattr__(self, "max_in_flight", max_in_flight)
        object.__setattr__(self, "collect", collect)
        object.__setattr__(self, "on_output", on_output)
        object.__setattr__(self, "keep_results", keep_results)

    def children(self) -> tuple[StepSpec, ...]:
        """The stages' steps, in order."""
        return tuple(stage.spec for stage in self.stages)


def _check_dead_letters(sink: object, policy: str, where: str) -> None:
    if policy == "dead_letter":
        if sink is None:
            msg = f"{where}: error_policy='dead_letter' needs dead_letters= (a callable or a queue)"
            raise WorkflowDefinitionError(msg)
        if not (isinstance(sink, queue.Queue) or callable(sink)):
            msg = f"{where}: dead_letters must be a callable or a queue.Queue, got {sink!r}"
            raise WorkflowDefinitionError(msg)
    elif sink is not None:
        msg = f"{where}: dead_letters is only used with error_policy='dead_letter' (got {policy!r})"
        raise WorkflowDefinitionError(msg)


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{what} must be an int >= 1, got {value!r}"
        raise WorkflowDefinitionError(msg)
