"""Running tools through ``ActorSystem.call``: results, errors, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from actors.runtime._workqueue import _WorkQueue
from actors.runtime.errors import CancelledError
from actors.runtime.events import Event, StepFinished, StepProgress, StepStarted
from actors.runtime.results import Status
from actors.runtime.system import ActorSystem
from actors.tools import ToolContext, ToolInputError, ToolOutputError, tool
from tests.helpers import WAIT

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@tool
def add(a: int, b: int = 1) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode(reason: str) -> None:
    """Always fails."""
    raise RuntimeError(reason)


@tool(output=int)
def lies() -> Any:
    """Declares an int and returns text."""
    return "not a number"


@tool
async def async_add(a: int, b: int) -> int:
    """Add two numbers after yielding to the loop."""
    await asyncio.sleep(0)
    return a + b


@tool
def whoami() -> str:
    """Reads a context variable of the caller."""
    return request_id.get()


def test_a_sync_tool_call_returns_an_ok_step_result(system: ActorSystem) -> None:
    result = system.call(add, {"a": 2, "b": 3})
    assert result.status is Status.OK
    assert result.value == 5
    assert result.name == "add"
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.finished_at >= result.started_at
    assert result.started_wall is not None


def test_a_single_value_binds_to_a_single_required_parameter(system: ActorSystem) -> None:
    assert system.call(add, 41).value == 42


def test_invalid_input_raises_before_the_tool_runs_and_names_the_field(
    system: ActorSystem,
) -> None:
    ran = threading.Event()

    @tool
    def guarded(count: int) -> int:
        ran.set()
        return count

    with pytest.raises(ToolInputError, match="field 'count'") as info:
        system.call(guarded, {"count": "many"})
    assert [e.field for e in info.value.errors] == ["count"]
    assert not ran.is_set()


def test_an_exception_in_a_tool_is_an_error_result_not_a_crash(system: ActorSystem) -> None:
    result = system.call(explode, {"reason": "disk full"})
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.short_type == "RuntimeError"
    assert result.error.message == "disk full"
    assert result.error.traceback is not None
    assert "disk full" in result.error.traceback
    # The worker survived and takes the next call.
    assert system.call(add, {"a": 1}).value == 2


class _Abort(BaseException):
    """A BaseException of the user's own."""


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise AttributeError("no request_id")


@pytest.mark.parametrize(
    "raised", [SystemExit(2), KeyboardInterrupt(), _Abort(), _UnprintableError()]
)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_whatever_a_tool_raises_is_an_error_result_and_the_system_goes_on(
    system: ActorSystem, raised: BaseException, asynchronous: bool
) -> None:
    def throw(x: int) -> int:
        raise raised

    async def throw_async(x: int) -> int:
        raise raised

    broken = tool(throw_async if asynchronous else throw, name="broken")
    result = system.call(broken, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.short_type == type(raised).__name__
    if isinstance(raised, _UnprintableError):
        assert result.error.message == "<_UnprintableError.__str__ raised AttributeError>"
    # Neither the pool's workers nor the event loop were taken down with it.
    assert system.call(async_add, {"a": 1, "b": 2}, timeout=WAIT).value == 3
    assert system.call(add, {"a": 1}, timeout=WAIT).value == 2


def test_invalid_output_is_an_error_result(system: ActorSystem) -> None:
    result = system.call(lies)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.short_type == "ToolOutputError"


def test_an_async_tool_runs_on_the_system_loop(system: ActorSystem) -> None:
    assert system.call(async_add, {"a": 20, "b": 22}).value == 42


def test_a_timeout_really_cancels_an_async_tools_task(system: ActorSystem) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    @tool
    async def slow() -> str:
        started.set()
        try:
            await asyncio.sleep(WAIT * 10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "finished"

    result = system.call(slow, timeout=0.2)
    assert started.is_set()
    assert result.status is Status.TIMEOUT
    assert cancelled.wait(WAIT), "the task was not cancelled"


def test_a_sync_tool_that_watches_its_scope_stops_early_at_the_deadline(
    system: ActorSystem,
) -> None:
    stopped_early = threading.Event()

    @tool
    def patient(ctx: ToolContext) -> str:
        if ctx.scope.wait(WAIT * 10):
            stopped_early.set()
            ctx.raise_if_cancelled()
        return "waited it out"

    begun = time.monotonic()
    result = system.call(patient, timeout=0.1)
    assert result.status is Status.TIMEOUT
    assert stopped_early.wait(WAIT)
    assert time.monotonic() - begun < WAIT
    # The worker came back: another call runs on the same pool.
    assert system.call(add, {"a": 1}).value == 2


@pytest.mark.parametrize("idle_worker_first", [False, True])
def test_a_sync_tool_that_ignores_cancellation_is_abandoned_and_replaced(
    idle_worker_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With an idle worker, the call goes from its caller straight to it, not through the
    # pool's thread: the pool must still see its timeout and abandon the stuck worker.
    gate = threading.Event()
    entered = threading.Event()
    parked = threading.Event()
    park = _WorkQueue.park

    def park_and_say(queue: _WorkQueue, worker: Any, signal: threading.Lock) -> bool:
        if not park(queue, worker, signal):
            return False
        parked.set()
        return True

    monkeypatch.setattr(_WorkQueue, "park", park_and_say)

    @tool
    def stubborn() -> str:
        entered.set()
        gate.wait(WAIT)
        return "too late"

    system = ActorSystem("stubborn", max_leaf_workers=1, cancellation_timeout=0.05)
    try:
        if idle_worker_first:
            assert system.call(add, {"a": 0}).value == 1
            assert parked.wait(WAIT)  # the pool's only worker is idle
        result = system.call(stubborn, timeout=0.05)
        assert entered.is_set()
        assert result.status is Status.TIMEOUT
        assert result.error is not None
        assert result.error.type == "castflow.Timeout"
        # The only worker is stuck; the call after the grace period needs a fresh one.
        assert system.call(add, {"a": 1}, timeout=WAIT).value == 2
        report = system.shutdown(timeout=1.0)
        assert len(report.abandoned) == 1
        assert report.abandoned[0].owner.startswith("call-leaf-")
    finally:
        gate.set()
        system.shutdown()


def test_cancelling_the_system_scope_cancels_a_running_call() -> None:
    entered = threading.Event()
    saw_cancel = threading.Event()

    @tool
    def cooperative(ctx: ToolContext) -> str:
        entered.set()
        try:
            while True:
                ctx.raise_if_cancelled()
                ctx.scope.wait(0.5)
        except CancelledError:
            saw_cancel.set()
            raise

    system = ActorSystem("cancel")
    try:
        future = system.call_future(cooperative)
        assert entered.wait(WAIT)
        system.shutdown(timeout=WAIT)
        assert future.result(WAIT).status is Status.CANCELLED
        assert saw_cancel.wait(WAIT)
    finally:
        system.shutdown()


def test_the_callers_context_variables_reach_a_pooled_worker(system: ActorSystem) -> None:
    token = request_id.set("req-7")
    try:
        assert system.call(whoami).value == "req-7"
    finally:
        request_id.reset(token)
    assert system.call(whoami).value == "none"


def test_step_events_and_progress_are_published(system: ActorSystem) -> None:
    @tool
    def working(ctx: ToolContext) -> int:
        ctx.report_progress(0.5, "half way")
        return 1

    events: list[Event] = []
    system.events.subscribe(events.append, kinds=(StepStarted, StepProgress, StepFinished))
    system.call(working)
    assert [type(e).__name__ for e in events] == ["StepStarted", "StepProgress", "StepFinished"]
    progress = events[1]
    assert isinstance(progress, StepProgress)
    assert (progress.fraction, progress.message) == (0.5, "half way")
    finished = events[2]
    assert isinstance(finished, StepFinished)
    assert finished.status is Status.OK
    assert finished.call_id == events[0].call_id  # type: ignore[attr-defined]


def test_call_async_does_not_block_the_event_loop(system: ActorSystem) -> None:
    release = threading.Event()

    @tool
    def blocking() -> str:
        release.wait(WAIT)
        return "done"

    async def main() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 5:
                    release.set()
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        result = await system.call_async(blocking, timeout=WAIT)
        ticking.cancel()
        return result.value, ticks

    value, ticks = asyncio.run(main())
    assert value == "done"
    assert ticks >= 5


@settings(max_examples=15, deadline=None)
@given(
    workers=st.integers(min_value=1, max_value=4),
    calls=st.integers(min_value=1, max_value=24),
)
def test_concurrent_sync_calls_never_exceed_the_worker_limit(workers: int, calls: int) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    @tool
    def counted(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.001)  # simulated work, not synchronisation
        with lock:
            running -= 1
        return i

    with ActorSystem("limit", max_leaf_workers=workers) as system:
        futures = [system.call_future(counted, i) for i in range(calls)]
        results = [f.result(WAIT) for f in futures]
    assert [r.value for r in results] == list(range(calls))
    assert 1 <= peak <= workers


def _meeting(size: int) -> Any:
    """A tool whose ``size`` calls return only once all of them run at the same time."""
    barrier = threading.Barrier(size, timeout=WAIT)

    @tool
    def meet(i: int) -> int:
        barrier.wait()
        return i

    return meet


@settings(max_examples=20, deadline=None)
@given(
    timeouts=st.lists(
        st.sampled_from([None, 0.0, 0.0005, 0.001, 0.002, 0.005]), min_size=1, max_size=24
    ),
)
def test_calls_racing_their_deadlines_are_decided_once_and_give_their_workers_back(
    timeouts: list[float | None],
) -> None:
    # A call's worker decides it as it ends, while its deadline's cancellation may be deciding
    # it on the pool's thread: exactly one of the two wins, and either way the call's scope is
    # closed and its worker free for the next call.
    @tool
    def work(i: int) -> int:
        time.sleep(0.001)  # work that races its deadline, not synchronisation
        return i

    workers = 3
    with ActorSystem("race", max_leaf_workers=workers) as system:
        futures = [system.call_future(work, i, timeout=t) for i, t in enumerate(timeouts)]
        results = [f.result(WAIT) for f in futures]
        assert [scope for scope in system.scope.children if scope.name == "work"] == []
        for i, (timeout, result) in enumerate(zip(timeouts, results, strict=True)):
            if result.status is Status.OK:
                assert (result.value, result.error) == (i, None)
            else:
                assert timeout is not None
                assert result.status is Status.TIMEOUT
                assert result.value is None
                assert result.error is not None
                assert result.error.type == "castflow.Timeout"
        if None in timeouts:
            assert results[timeouts.index(None)].status is Status.OK
        meet = _meeting(workers)  # every worker takes one: none is held by a raced call
        met = [system.call_future(meet, i) for i in range(workers)]
        assert [f.result(WAIT).value for f in met] == list(range(workers))


def test_blocking_calls_queued_one_by_one_on_parked_workers_each_get_a_worker() -> None:
    # Each call reaches the pool as its own message. A parked worker woken for one call must
    # not be counted again for the next: the third call needs a new worker, or it waits
    # behind two calls that wait for it.
    with ActorSystem("one-by-one", max_leaf_workers=3) as system:
        for round_ in range(5):
            for size in (2, 3):
                meet = _meeting(size)
                futures = [system.call_future(meet, i) for i in range(size)]
                results = [f.result(WAIT) for f in futures]
                assert [r.status for r in results] == [Status.OK] * size, round_


@settings(max_examples=15, deadline=None)
@given(
    callers=st.integers(min_value=1, max_value=4),
    calls=st.integers(min_value=1, max_value=20),
    stop_after=st.integers(min_value=0, max_value=40),
)
def test_calls_racing_the_system_s_shutdown_are_each_decided(
    callers: int, calls: int, stop_after: int
) -> None:
    # A call reaches an idle worker straight from its caller, or the pool's thread when none
    # is idle; a shutdown in between must decide every one of them (none left waiting).
    system = ActorSystem("closing", max_leaf_workers=2)
    futures: list[tuple[int, Any]] = []
    lock = threading.Lock()
    submitted = threading.Semaphore(0)

    def caller() -> None:
        for i in range(calls):
            future = system.call_future(add, {"a": i})
            with lock:
                futures.append((i, future))
            submitted.release()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(min(stop_after, callers * calls)):
            assert submitted.acquire(timeout=WAIT)
        system.shutdown(timeout=WAIT)
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive()
        assert len(futures) == callers * calls
        for i, future in futures:
            result = future.result(WAIT)
            assert result.status in {Status.OK, Status.CANCELLED}
            if result.status is Status.OK:
                assert result.value == i + 1
    finally:
        system.shutdown()


# -- a plain tool's task, run in one call -------------------------------------------------------


def _no_parameters() -> int:
    return 7


def _one_keyword(x: int) -> int:
    return x + 1


def _one_positional(x: int, /) -> int:
    return x * 2


def _mixed(a: int, /, b: str = "b", *, c: float = 1.5) -> str:
    return f"{a}{b}{c}"


@pytest.mark.parametrize(
    ("fn", "data"),
    [
        (_no_parameters, None),
        (_one_keyword, 4),
        (_one_keyword, {"x": "5"}),
        (_one_positional, 3),
        (_mixed, {"a": 1}),
        (_mixed, {"a": 2, "b": "x", "c": 3}),
    ],
)
def test_a_plain_task_runs_as_invoke_then_the_output_check(fn: Any, data: object) -> None:
    plain = tool(fn)
    expected = plain.check_output(plain.invoke(plain.validate_input(data)))
    assert plain.prepare(data).run() == expected


class ValidatedInt(BaseModel):
    """What ``strict`` validates."""

    value: int


def test_a_plain_task_names_an_invalid_output_and_passes_the_tool_s_own_errors_on() -> None:
    with pytest.raises(ToolOutputError, match="lies"):
        lies.prepare(None).run()

    @tool
    def strict(x: int) -> int:
        """Validates something of its own, and fails."""
        return ValidatedInt.model_validate({"value": "not a number"}).value + x

    # A validation error raised by the tool itself is its failure, not a bad output.
    with pytest.raises(ValidationError):
        strict.prepare(1).run()
