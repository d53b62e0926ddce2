"""``WindowedWorkflow``: group a stream's items into count or time windows, one step per window.

Window ``k`` of a windowing with length ``L`` and step ``S`` covers the positions
``[origin + k*S, origin + k*S + L)``; an item belongs to every window covering its position.
Count windows number the items ``0, 1, 2, ...`` (``L = size``, ``S = every``); time windows
use the time each item is taken from the input, on the system's clock (``L = duration``,
``S = slide``, origin: when the run of the step started). Tumbling windows have ``S = L``;
sliding windows ``S < L`` (items are in several windows); ``S > L`` leaves gaps (items there
are in no window).

A window is emitted when it is complete: a count window once its last position has arrived,
a time window once its end has passed (noticed when a later item arrives, or by a timer from
the system's timer service, so a quiet input still closes its windows on time). Windows that
would be empty are never emitted. At the end of the input the windows still open are flushed
in order, each only if it holds an item no emitted window held (so the last partial window
is emitted, and sliding windows do not repeat the tail several times).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.timers import TimerHandle, TimerServiceStoppedError
from actors.workflows._stream import DeadLetterSink, ErrorPolicy, Stage, StreamWorkflow
from actors.workflows._stream_run import Pipeline, StreamCoordinator
from actors.workflows.errors import WorkflowDefinitionError

__all__ = ["WindowedWorkflow"]


class WindowedWorkflow(StreamWorkflow):
    """Feed windows of an input stream's items to a window function, with bounded memory.

    Give ``size`` for count windows (tumbling; with ``every``, sliding: a window of ``size``
    items starts every ``every`` items) or ``duration`` for time windows (tumbling; with
    ``slide``, sliding: a window of ``duration`` seconds starts every ``slide`` seconds).
    Each window is the list of its items, in input order; ``window_fn`` (a tool, a
    workflow, a function, ``step(...)`` or a ``Stage`` for concurrency) runs once per window
    and its outputs are the run's outputs, with the same options as ``StreamingWorkflow``:
    ``collect`` (the value is the list of window results; without it, their number),
    ``on_output``, ``ordered`` (by window), ``error_policy`` and ``dead_letters`` (a
    ``FailedItem`` whose ``item`` is the window), ``max_in_flight`` (windows between the
    input and the output). See the module docstring for when windows are emitted and how the
    end of the input flushes them. Time is read on the system's clock, so a ``ManualClock``
    drives time windows in tests.

    Args:
        window_fn: the step run once per window.
        size: items per count window.
        every: start a count window every ``every`` items (``size`` by default: tumbling).
        duration: seconds per time window.
        slide: start a time window every ``slide`` seconds (``duration`` by default).
        name: the workflow's name.
        ordered: emit window results in window order (default) or as they complete.
        error_policy: ``"fail"``, ``"skip"`` or ``"dead_letter"``.
        dead_letters: where failed windows go under ``"dead_letter"``.
        max_in_flight: the most windows between the input and the output at once.
        timeout: seconds until a run of this step is cut.
        collect: keep the window results as the run's value; by default only when there is
            no ``on_output``.
        on_output: called with each window result, in emission order.
        keep_results: how many failed (and, when cut, in-flight) windows to keep records of.

    Raises:
        WorkflowDefinitionError: a part is invalid (say, both ``size`` and ``duration``).

    Example:
        >>> from actors import WindowedWorkflow
        >>> WindowedWorkflow(sum, size=3, every=1).stages[0].name
        'sum'
    """

    __slots__ = ("origin_by_time", "step_length", "window_length")

    kind = "windowed"

    window_length: float
    step_length: float
    origin_by_time: bool

    def __init__(
        self,
        window_fn: object,
        *,
        size: int | None = None,
        every: int | None = None,
        duration: float | None = None,
        slide: float | None = None,
        name: str = "windowed",
        ordered: bool = True,
        error_policy: ErrorPolicy = "fail",
        dead_letters: DeadLetterSink | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        collect: bool | None = None,
        on_output: Callable[[Any], object] | None = None,
        keep_results: int = 10,
    ) -> None:
        where = f"{self.kind} {name!r}"
        length, step, by_time = _windowing(size, every, duration, slide, where)
        stage = window_fn if isinstance(window_fn, Stage) else Stage(window_fn)
        super().__init__(
            name=name,
            timeout=timeout,
            stages=(stage,),
            ordered=ordered,
            error_policy=error_policy,
            dead_letters=dead_letters,
            max_in_flight=max_in_flight,
            collect=collect,
            on_output=on_output,
            keep_results=keep_results,
        )
        object.__setattr__(self, "window_length", length)
        object.__setattr__(self, "step_length", step)
        object.__setattr__(self, "origin_by_time", by_time)


def _windowing(
    size: object, every: object, duration: object, slide: object, where: str
) -> tuple[float, float, bool]:
    """``(length, step, by_time)`` of the windowing asked for."""
    if (size is None) == (duration is None):
        msg = f"{where}: give size= (count windows) or duration= (time windows), exactly one"
        raise WorkflowDefinitionError(msg)
    if size is not None:
        if slide is not None:
            msg = f"{where}: slide= goes with duration=; count windows slide with every="
            raise WorkflowDefinitionError(msg)
        length = _count(size, f"{where}: size")
        step = length if every is None else _count(every, f"{where}: every")
        return float(length), float(step), False
    if every is not None:
        msg = f"{where}: every= goes with size=; time windows slide with slide="
        raise WorkflowDefinitionError(msg)
    seconds = _seconds(duration, f"{where}: duration")
    step_seconds = seconds if slide is None else _seconds(slide, f"{where}: slide")
    return seconds, step_seconds, True


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{what} must be an int >= 1, got {value!r}"
        raise WorkflowDefinitionError(msg)
    return value


def _seconds(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{what} must be a positive number of seconds, got {value!r}"
        raise WorkflowDefinitionError(msg)
    return float(value)


# -- the windows of one instance ------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Window:
    items: list[Any] = field(default_factory=list)
    last: int = -1


class Windows:
    """The open windows of one run of a windowed step, and when each is due.

    Args:
        length: the windows' length (items or seconds).
        step: the distance between window starts.
        origin: the position of window 0's start.
    """

    __slots__ = ("_covered", "_length", "_open", "_origin", "_seq", "_step")

    def __init__(self, length: float, step: float, origin: float) -> None:
        self._length = length
        self._step = step
        self._origin = origin
        # Open windows by number; created in increasing order, so the first is the oldest.
        self._open: dict[int, _Window] = {}
        self._covered = -1  # the highest item number any emitted window held
        self._seq = 0

    def end(self, k: int) -> float:
        """The position at which window ``k`` ends (exclusive)."""
        return self._origin + k * self._step + self._length

    def add(self, position: float, item: Any) -> None:
        """Put ``item``, at ``position``, in every window covering it."""
        seq = self._seq
        self._seq += 1
        for k in self._covering(position):
            window = self._open.get(k)
            if window is None:
                window = self._open[k] = _Window()
            window.items.append(item)
            window.last = seq

    def due(self, position: float) -> list[list[Any]]:
        """Take the windows that end at or before ``position``, oldest first."""
        out: list[list[Any]] = []
        while self._open:
            k = next(iter(self._open))
            if self.end(k) > position:
                break
            out.append(self._take(k))
        return out

    def flush(self) -> list[list[Any]]:
        """Take the open windows that hold an item no emitted window held, oldest first."""
        out: list[list[Any]] = []
        for k in list(self._open):
            if self._open[k].last > self._covered:
                out.append(self._take(k))
        self._open.clear()
        return out

    def next_end(self) -> float | None:
        """When the oldest open window ends, if any is open."""
        if not self._open:
            return None
        return self.end(next(iter(self._open)))

    def _take(self, k: int) -> list[Any]:
        window = self._open.pop(k)
        self._covered = max(self._covered, window.last)
        return window.items

    def _covering(self, position: float) -> list[int]:
        """The numbers of the windows covering ``position``, in increasing order."""
        step, origin = self._step, self._origin
        k = max(0, math.floor((position - origin) / step))
        # The division may round either way: settle on the last window starting at or
        # before the position, by the same expressions end() uses.
        while k > 0 and origin + k * step > position:
            k -= 1
        while origin + (k + 1) * step <= position:
            k += 1
        found: list[int] = []
        while k >= 0 and origin + k * step <= position < self.end(k):
            found.append(k)
            k -= 1
        found.reverse()
        return found


# -- the coordinator ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WindowDue:
    """Timer message: the oldest open time window of ``instance`` may have ended."""

    instance: int


@dataclass(slots=True, eq=False)
class _WindowState:
    windows: Windows
    timer: TimerHandle | None = None
    deadline: float | None = None


class WindowedCoordinator(StreamCoordinator):
    """Drives every instance of one ``WindowedWorkflow`` node in a run."""

    def __init__(self, node: WindowedWorkflow) -> None:
        super().__init__(node)
        self._windowed = node
        self._states: dict[int, _WindowState] = {}

    def on_receive(self, message: Any) -> Any:
        """Close due time windows on a timer; everything else as every stream does."""
        if isinstance(message, _WindowDue):
            pipe = self.pipe_of(message.instance)
            state = self._states.get(message.instance)
            if pipe is not None and state is not None:
                state.timer = state.deadline = None
                self._take(pipe, state.windows.due(self.system.clock.now()))
                self._schedule(pipe, state)
                self.pump(pipe)
            return None
        return super().on_receive(message)

    def on_open(self, pipe: Pipeline) -> None:
        """Open the instance's windows (time windows start now, on the system's clock)."""
        node = self._windowed
        origin = self.system.clock.now() if node.origin_by_time else 0.0
        self._states[pipe.instance.id] = _WindowState(
            Windows(node.window_length, node.step_length, origin)
        )

    def on_close(self, pipe: Pipeline) -> None:
        """Forget the instance's windows and its timer."""
        state = self._states.pop(pipe.instance.id, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()

    def arrive(self, pipe: Pipeline, item: Any) -> None:
        """Put an item in its windows; windows it completes (or that ended) become units."""
        state = self._states[pipe.instance.id]
        windows = state.windows
        if self._windowed.origin_by_time:
            now = self.system.clock.now()
            self._take(pipe, windows.due(now))
            windows.add(now, item)
            self._schedule(pipe, state)
        else:
            position = pipe.source.pulled - 1
            windows.add(position, item)
            self._take(pipe, windows.due(position + 1))

    def input_ended(self, pipe: Pipeline) -> None:
        """Emit the windows that have ended, then flush the partial ones."""
        state = self._states[pipe.instance.id]
        windows = state.windows
        if self._windowed.origin_by_time:
            self._take(pipe, windows.due(self.system.clock.now()))
        self._take(pipe, windows.flush())
        if state.timer is not None:
            state.timer.cancel()
            state.timer = state.deadline = None

    def _take(self, pipe: Pipeline, windows: list[list[Any]]) -> None:
        for window in windows:
            self.add_unit(pipe, window)

    def _schedule(self, pipe: Pipeline, state: _WindowState) -> None:
        """Keep one timer, at the end of the oldest open time window."""
        deadline = state.windows.next_end()
        if deadline == state.deadline:
            return
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        state.deadline = deadline
        if deadline is not None:
            message = _WindowDue(pipe.instance.id)
            try:
                state.timer = self.system.timers.schedule_at(deadline, self.handle, message)
            except TimerServiceStoppedError:
                state.deadline = None  # the system is shutting down: the run is being cut


WindowedWorkflow.coordinator = WindowedCoordinator
