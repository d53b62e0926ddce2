"""``StreamingWorkflow``: an input stream through a chain of stages, with credit-based flow control.

The run's input is the stream: any iterable (a list, a generator, an endless iterator) or an
async iterable. Items flow through the stages in order; each stage runs at most its
``concurrency`` items at once and holds at most its ``max_in_flight`` (running, waiting, or
finished and waiting for the next stage), and the input is pulled only when the first stage
has room, so a fast producer in front of a slow stage never piles items up. One coordinator
actor drives every instance; tools run on its pooled workers (one thread per item running
at once, reused), never one thread per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from actors.workflows._stream import (
    DeadLetterSink,
    ErrorPolicy,
    FailedItem,
    Stage,
    StreamWorkflow,
    to_stages,
)
from actors.workflows._stream_run import StreamCoordinator

__all__ = ["DeadLetterSink", "ErrorPolicy", "FailedItem", "Stage", "StreamingWorkflow"]


class StreamingWorkflow(StreamWorkflow):
    """Run every item of an input stream through a chain of stages, with bounded memory.

    Each stage is a step (a tool, a workflow, a function, ``step(...)``) or a
    ``Stage(step, concurrency=..., max_in_flight=...)``; a bare step runs one item at a time.
    An item's output of one stage is its input to the next. Flow control is by credit: a
    stage holds at most its ``max_in_flight`` items; a finished item waits in its stage until
    the next one has room; the input is pulled only when the first stage has room and fewer
    than ``max_in_flight`` items are between the input and the output. A sync input is pulled
    on the coordinator's thread (it must not block for long: give an async iterable for a
    source that waits for events, it is pulled on the system's event loop).

    Outputs (the last stage's values) are emitted in input order (``ordered=True``, the
    reorder buffer counts toward ``max_in_flight``) or as they complete. Each goes to
    ``on_output`` (called on the coordinator's thread: it must be quick and must not block)
    and, with ``collect``, into the run's value, the list of outputs. Without ``collect`` the
    value is the number of outputs: that is how an endless or huge stream runs in flat memory.

    A failed item (its stage raised, timed out, or got a bad input) is handled by
    ``error_policy``: ``"fail"`` (default) fails the run at once and cancels what runs;
    ``"skip"`` records it and goes on; ``"dead_letter"`` also hands a ``FailedItem`` to
    ``dead_letters`` (a callable, or a ``queue.Queue`` it is ``put_nowait`` on). The record
    keeps ``counts`` per status and the first ``keep_results`` failures, never a record per
    item. Cancelling the run (or its ``timeout``) stops the input and every stage at once;
    the items in flight are counted ``cancelled`` (or ``timeout``) and the first of them
    recorded. While someone streams the run (``run.stream()``), each output and each failure
    is streamed as it is decided.

    Args:
        stages: the stages, in order; at least one.
        name: the workflow's name.
        ordered: emit outputs in input order (default) or as they complete.
        error_policy: ``"fail"``, ``"skip"`` or ``"dead_letter"``.
        dead_letters: where failed items go under ``"dead_letter"``.
        max_in_flight: the most items between the input and the output at once; the sum of
            the stages' ``max_in_flight`` by default.
        timeout: seconds until a run of this step is cut.
        collect: keep the outputs as the run's value; by default only when there is no
            ``on_output``.
        on_output: called with each output, in emission order.
        keep_results: how many failed (and, when cut, in-flight) items to keep records of.

    Raises:
        WorkflowDefinitionError: a part is invalid; the message names it.

    Example:
        >>> from actors import Stage, StreamingWorkflow
        >>> flow = StreamingWorkflow([str.strip, Stage(str.upper, concurrency=4)])
        >>> [stage.concurrency for stage in flow.stages], flow.max_in_flight
        ([1, 4], 5)
    """

    __slots__ = ()

    kind = "streaming"

    def __init__(
        self,
        stages: Iterable[object],
        *,
        name: str = "streaming",
        ordered: bool = True,
        error_policy: ErrorPolicy = "fail",
        dead_letters: DeadLetterSink | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        collect: bool | None = None,
        on_output: Callable[[Any], object] | None = None,
        keep_results: int = 10,
    ) -> None:
        super().__init__(
            name=name,
            timeout=timeout,
            stages=to_stages(stages, f"{self.kind} {name!r}"),
            ordered=ordered,
            error_policy=error_policy,
            dead_letters=dead_letters,
            max_in_flight=max_in_flight,
            collect=collect,
            on_output=on_output,
            keep_results=keep_results,
        )


StreamingWorkflow.coordinator = StreamCoordinator
