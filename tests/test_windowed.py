"""WindowedWorkflow: count and time windows, tumbling and sliding, against a reference."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    FailedItem,
    ManualClock,
    SequentialWorkflow,
    Stage,
    Status,
    ToolContext,
    WindowedWorkflow,
    WorkflowDefinitionError,
    tool,
)
from tests.helpers import WAIT


@tool
def same(window: list[int]) -> list[int]:
    """Return the window as it is."""
    return window


@tool
def total(window: list[int]) -> int:
    """Sum a window."""
    return sum(window)


def reference(positions: list[float], length: float, step: float, limit: float) -> list[list[int]]:
    """The windows of items ``0..n-1`` at ``positions``, as documented, computed directly.

    Window ``k`` covers ``[k*step, k*step + length)``; a window whose end is at most
    ``limit`` is complete and emitted; the incomplete ones are flushed at the end, each only
    if it holds an item no emitted window held. Empty windows never appear.
    """
    windows: dict[int, list[int]] = {}
    for item, position in enumerate(positions):
        k = 0
        while k * step <= position:
            if position < k * step + length:
                windows.setdefault(k, []).append(item)
            k += 1
    out: list[list[int]] = []
    covered = -1
    for k in sorted(windows):
        members = windows[k]
        if k * step + length <= limit or members[-1] > covered:
            out.append(members)
            covered = max(covered, members[-1])
    return out


# -- count windows --------------------------------------------------------------------------


def test_tumbling_count_windows_flush_the_last_partial_window(system: ActorSystem) -> None:
    result = system.run(WindowedWorkflow(same, size=3), range(10), timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "windowed"
    assert result.value == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert result.counts == {"ok": 4}


def test_sliding_count_windows_overlap_and_do_not_repeat_the_tail(system: ActorSystem) -> None:
    flow = WindowedWorkflow(same, size=4, every=2)
    assert system.run(flow, range(10), timeout=WAIT).value == [
        [0, 1, 2, 3],
        [2, 3, 4, 5],
        [4, 5, 6, 7],
        [6, 7, 8, 9],
    ]
    assert system.run(flow, range(11), timeout=WAIT).value[-1] == [8, 9, 10]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 40),
    size=st.integers(1, 6),
    every=st.none() | st.integers(1, 8),
)
def test_count_windows_match_the_reference(
    system: ActorSystem, n: int, size: int, every: int | None
) -> None:
    flow = WindowedWorkflow(same, size=size, every=every)
    result = system.run(flow, range(n), timeout=WAIT)
    step = size if every is None else every
    assert result.value == reference([float(i) for i in range(n)], size, step, n)


# -- time windows ---------------------------------------------------------------------------

QUARTERS = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
"""Gaps between items: multiples of 1/4 keep every window bound exact in binary floats."""


def _timed(clock: ManualClock, gaps: list[float]) -> Iterator[int]:
    """Items 0, 1, ...: before each, the clock moves on by its gap (it is read on arrival)."""
    for item, gap in enumerate(gaps):
        clock.advance(gap)
        yield item


@settings(max_examples=25, deadline=None)
@given(
    gaps=st.lists(QUARTERS, max_size=25),
    duration=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]),
    slide=st.none() | st.sampled_from([0.25, 0.5, 1.0, 2.5]),
)
def test_time_windows_match_the_reference(
    gaps: list[float], duration: float, slide: float | None
) -> None:
    clock = ManualClock()
    with ActorSystem("windows", clock=clock) as system:
        run = system.start(
            WindowedWorkflow(same, duration=duration, slide=slide), _timed(clock, gaps)
        )
        result = run.result(WAIT)
    positions = list(itertools.accumulate(gaps))
    step = duration if slide is None else slide
    limit = positions[-1] if positions else 0.0
    assert result.value == reference(positions, duration, step, limit)


def test_tumbling_time_windows_group_items_by_arrival_time() -> None:
    clock = ManualClock()
    with ActorSystem("windows", clock=clock) as timed:
        gaps = [0.1, 0.2, 0.8, 0.5, 1.5, 0.1]  # items at 0.1, 0.3, 1.1, 1.6, 3.1, 3.2
        run = timed.start(WindowedWorkflow(total, duration=1.0), _timed(clock, gaps))
        assert run.result(WAIT).value == [0 + 1, 2 + 3, 4 + 5]


def test_a_time_window_closes_on_the_timer_while_the_input_is_quiet() -> None:
    clock = ManualClock()
    waiting = threading.Event()
    window_out = threading.Event()
    resume: list[asyncio.Event] = []

    async def two_then_quiet() -> AsyncIterator[int]:
        yield 1
        yield 2
        resume.append(asyncio.Event())
        waiting.set()
        await resume[0].wait()
        yield 3

    outputs: list[list[int]] = []

    def record(window: list[int]) -> None:
        outputs.append(window)
        window_out.set()

    with ActorSystem("windows", clock=clock) as system:
        flow = WindowedWorkflow(same, duration=1.0, collect=True, on_output=record)
        run = system.start(flow, two_then_quiet())
        try:
            assert waiting.wait(WAIT)
            assert not window_out.is_set()
            # No item arrives: only the timer service can see the window's end pass.
            clock.advance(1.0)
            assert window_out.wait(WAIT)
            assert outputs == [[1, 2]]
        finally:
            system.loop.call_soon_threadsafe(resume[0].set)
        assert run.result(WAIT).value == [[1, 2], [3]]


# -- policies, cancellation, nesting ------------------------------------------------------


def test_a_failing_window_follows_the_error_policy(system: ActorSystem) -> None:
    @tool
    def no_sevens(window: list[int]) -> int:
        """Refuse windows holding a 7."""
        if 7 in window:
            msg = "seven"
            raise ValueError(msg)
        return sum(window)

    skipping = WindowedWorkflow(no_sevens, size=3, error_policy="skip")
    result = system.run(skipping, range(10), timeout=WAIT)
    assert result.value == [3, 12, 9]
    assert result.counts == {"ok": 3, "error": 1}
    assert result.steps[0].name == "no_sevens[2]"

    dead: queue.Queue[FailedItem] = queue.Queue()
    lettered = WindowedWorkflow(no_sevens, size=3, error_policy="dead_letter", dead_letters=dead)
    assert system.run(lettered, range(10), timeout=WAIT).value == [3, 12, 9]
    letter = dead.get_nowait()
    assert (letter.index, letter.item, letter.stage) == (2, [6, 7, 8], "no_sevens")

    failing = system.run(WindowedWorkflow(no_sevens, size=3), range(10), timeout=WAIT)
    assert failing.status is Status.ERROR
    assert failing.failed_step == "no_sevens[2]"


def test_cancelling_a_windowed_run_stops_its_endless_input(system: ActorSystem) -> None:
    started = threading.Event()
    cancelled = threading.Event()
    closed = threading.Event()
    pulled = [0]

    @tool
    def hold(window: list[int], ctx: ToolContext) -> int:
        """Wait to be cancelled."""
        started.set()
        if ctx.scope.wait(WAIT):
            cancelled.set()
        ctx.raise_if_cancelled()
        return sum(window)

    def endless() -> Iterator[int]:
        try:
            for i in itertools.count():
                pulled[0] += 1
                yield i
        finally:
            closed.set()

    run = system.start(WindowedWorkflow(hold, size=2, collect=False), endless())
    assert started.wait(WAIT)
    run.cancel()
    result = run.result(WAIT)
    assert result.status is Status.CANCELLED
    assert result.counts == {"cancelled": 1}
    assert [r.name for r in result.steps] == ["hold[0]"]
    assert cancelled.wait(WAIT)
    assert closed.is_set()
    # One window in flight (the stage's only credit) held the input back after two items.
    assert pulled[0] == 2


def test_a_fast_input_filling_a_long_time_window_can_still_be_cancelled(
    system: ActorSystem,
) -> None:
    busy = threading.Event()
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            for i in itertools.count():
                if i == 5_000:
                    busy.set()
                yield i
        finally:
            closed.set()

    # Items joining an open window take no credit: only the coordinator's own fairness lets
    # it see the cancellation before the minute-long window ends.
    run = system.start(WindowedWorkflow(total, duration=60.0), endless())
    assert busy.wait(WAIT)
    run.cancel()
    result = run.result(WAIT)
    assert result.status is Status.CANCELLED
    assert result.counts == {}
    assert closed.is_set()


def test_window_functions_may_be_workflows_with_their_own_concurrency(
    system: ActorSystem,
) -> None:
    def spread(window: list[int]) -> int:
        return max(window) - min(window)

    per_window = SequentialWorkflow([same, spread], name="per_window")
    flow = SequentialWorkflow(
        [WindowedWorkflow(Stage(per_window, concurrency=3), size=5, every=5), sum]
    )
    result = system.run(flow, list(range(23)), timeout=WAIT)
    assert result.value == 4 * 4 + 2


def test_windowed_definition_errors_name_the_part() -> None:
    with pytest.raises(WorkflowDefinitionError, match="exactly one"):
        WindowedWorkflow(same)
    with pytest.raises(WorkflowDefinitionError, match="exactly one"):
        WindowedWorkflow(same, size=2, duration=1.0)
    with pytest.raises(WorkflowDefinitionError, match="size must be an int"):
        WindowedWorkflow(same, size=0)
    with pytest.raises(WorkflowDefinitionError, match="slide= goes with duration"):
        WindowedWorkflow(same, size=2, slide=1.0)
    with pytest.raises(WorkflowDefinitionError, match="every= goes with size"):
        WindowedWorkflow(same, duration=1.0, every=2)
    with pytest.raises(WorkflowDefinitionError, match="duration must be a positive"):
        WindowedWorkflow(same, duration=float("nan"))


def test_streaming_a_windowed_run_yields_each_window_result(system: ActorSystem) -> None:
    run = system.start(WindowedWorkflow(total, size=2, name="w"), range(5), stream=True)
    results: list[Any] = [(r.name, r.value) for r in run.stream(timeout=WAIT)]
    assert results == [
        ("w/total[0]", 1),
        ("w/total[1]", 5),
        ("w/total[2]", 4),
        ("w", [1, 5, 4]),
    ]
