"""Process-isolated tools: hard cancellation, memory budgets, crashes, the wire, shutdown."""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from actors import (
    ActorSystem,
    ErrorMode,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    SequentialWorkflow,
    Status,
    StepProgress,
    ToolDefinitionError,
    _procpool,
    step,
    tool,
)
from actors._procpool import WorkerPool
from actors._worker import CONTROL_FD_ENV
from actors.isolated import (
    IsolatedCallFinished,
    IsolatedWorkerExited,
    IsolationUnsupportedError,
    MemoryLimitExceeded,
    WorkerProtocolError,
    worker_pool,
)
from actors.runtime.codec import FrameDecoder, decode, encode, pack_frame
from actors.runtime.events import Event
from actors.tools import Tool
from tests.helpers import WAIT
from tests.isolated_tools import (
    MIB,
    burn,
    burn_where_isolated,
    crash,
    echo,
    hog,
    hog_shared,
    interval_isolated,
    leave,
    mirror,
    nap,
    refuse,
    spin,
    square,
    unsendable,
    wait_for_cancel,
    whoami,
)

E = TypeVar("E", bound=Event)


# -- fixtures and helpers ---------------------------------------------------------------------


def _children() -> set[int]:
    """Processes whose parent is this one (zombies included: they are children until reaped)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail a test that leaves a child process (running or a zombie) after its teardown."""
    before = _children()
    yield
    deadline = time.monotonic() + WAIT
    left = _children() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = _children() - before
    assert not left, f"child processes left after the test: {sorted(left)}"


@pytest.fixture
def iso() -> Iterator[ActorSystem]:
    """A system with two isolated workers, shut down (and checked clean) after the test."""
    system = ActorSystem("isolated", max_isolated_workers=2)
    try:
        yield system
    finally:
        report = system.shutdown(timeout=WAIT)
        assert report.clean, f"shutdown left threads or processes: {report}"


class Events:
    """Events of some kinds published on a system, in order; each is taken at most once."""

    def __init__(self, system: ActorSystem, *kinds: type[Event]) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self._backlog: list[Event] = []
        self._subscription = system.events.subscribe(self._queue, kinds=kinds)

    def next(self, kind: type[E], match: Callable[[E], bool] = lambda _e: True) -> E:
        """The first event of ``kind`` that matches, waiting at most ``WAIT`` seconds."""
        for event in self._backlog:
            if isinstance(event, kind) and match(event):
                self._backlog.remove(event)
                return event
        deadline = time.monotonic() + WAIT
        while True:
            event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, kind) and match(event):
                return event
            self._backlog.append(event)

    def seen(self, kind: type[Event]) -> list[Event]:
        """The events of ``kind`` published so far and not taken yet."""
        while True:
            try:
                self._backlog.append(self._queue.get_nowait())
            except queue.Empty:
                return [event for event in self._backlog if isinstance(event, kind)]


def assert_gone(pid: int) -> None:
    """The process has ended and has been reaped: no process, no zombie."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def heal(system: ActorSystem) -> WorkerPool:
    """The system's pool, once it is full again (replacement workers start at once)."""
    pool = worker_pool(system)
    deadline = time.monotonic() + WAIT
    while len(pool.pids) < pool.size and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(pool.pids) == pool.size
    return pool


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one instant."""
    return max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)


# -- results ----------------------------------------------------------------------------------


def test_an_isolated_tool_runs_in_a_worker_process_and_returns_its_value(
    iso: ActorSystem,
) -> None:
    assert iso.call(square, 7).value == 49
    pid = iso.call(whoami).value
    assert pid != os.getpid()
    assert pid in worker_pool(iso).pids
    swapped = iso.call(mirror, {"point": {"x": 1, "y": 2}}).value
    assert (type(swapped).__name__, swapped.x, swapped.y) == ("Point", 2, 1)
    assert iso.call(nap, 0.01).value == "rested"


def test_a_tool_error_comes_back_with_its_own_type_and_the_worker_traceback(
    iso: ActorSystem,
) -> None:
    result = iso.call(refuse, "no such thing")
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.type == "builtins.ValueError"
    assert isinstance(result.error.exception, ValueError)
    assert result.error.message == "no such thing"
    assert result.error.traceback is not None
    assert "raised in the worker process" in result.error.traceback
    assert "raise ValueError(message)" in result.error.traceback


def test_values_the_codec_cannot_carry_fail_the_call_naming_where_they_are(
    iso: ActorSystem,
) -> None:
    sent = iso.call(echo, {"value": {"lock": threading.Lock()}})
    assert sent.status is Status.ERROR
    assert sent.error is not None
    assert sent.error.type == "actors.runtime.errors.CodecError"
    assert "cannot encode object of type 'lock' at $.value.lock" in sent.error.message
    back = iso.call(unsendable)
    assert back.status is Status.ERROR
    assert back.error is not None
    assert "output of tool 'unsendable' cannot be sent back" in back.error.message


# -- hard cancellation ------------------------------------------------------------------------


def test_a_cpu_bound_infinite_loop_is_killed_after_its_timeout_and_its_process_is_gone(
    iso: ActorSystem,
) -> None:
    events = Events(iso, IsolatedWorkerExited, StepProgress)
    future = iso.call_future(spin, timeout=1.0, cancellation_timeout=1.0)
    running = int(events.next(StepProgress).message or "0")
    assert running in worker_pool(iso).busy
    result = future.result(WAIT)
    # Decided at the deadline, without waiting for the kill a second later.
    assert result.status is Status.TIMEOUT
    assert events.seen(IsolatedWorkerExited) == []
    exited = events.next(IsolatedWorkerExited)
    assert (exited.pid, exited.reason) == (running, "cancelled")
    assert exited.exit_code == -signal.SIGTERM
    assert_gone(running)
    pool = heal(iso)
    assert running not in pool.pids
    assert iso.call(square, 3).value == 9


def test_a_tool_that_checks_its_scope_stops_and_keeps_its_worker(iso: ActorSystem) -> None:
    assert iso.call(square, 1).ok  # the pool is up: the tool starts before its deadline
    events = Events(iso, IsolatedWorkerExited, IsolatedCallFinished, StepProgress)
    result = iso.call(wait_for_cancel, timeout=0.5, cancellation_timeout=WAIT)
    assert result.status is Status.TIMEOUT
    running = int(events.next(StepProgress).message or "0")
    # The worker answered well before the tool's 60 s wait: it saw its scope cancelled.
    finished = events.next(IsolatedCallFinished, lambda e: e.step == "wait_for_cancel")
    assert finished.pid == running
    assert running in worker_pool(iso).pids
    assert events.seen(IsolatedWorkerExited) == []


def test_an_async_tool_is_cancelled_inside_its_worker(iso: ActorSystem) -> None:
    events = Events(iso, IsolatedWorkerExited, IsolatedCallFinished)
    assert iso.call(square, 1).ok
    pids = worker_pool(iso).pids
    result = iso.call(nap, 60.0, timeout=0.3, cancellation_timeout=WAIT)
    assert result.status is Status.TIMEOUT
    finished = events.next(IsolatedCallFinished, lambda e: e.step == "nap")
    assert finished.pid in pids
    assert worker_pool(iso).pids == pids
    assert events.seen(IsolatedWorkerExited) == []


# -- memory ---------------------------------------------------------------------------------


def test_a_memory_bomb_fails_with_memory_limit_exceeded_while_its_siblings_succeed(
    iso: ActorSystem,
) -> None:
    events = Events(iso, IsolatedWorkerExited, IsolatedCallFinished)
    flow = ParallelWorkflow(
        [step(hog, name="bomb"), step(square, name="a"), step(square, name="b")],
        error_mode=ErrorMode.FAIL_SLOW,
        limits=ResourceLimits(max_memory_per_branch=64 * MIB),
    )
    result = iso.run(flow, 512, timeout=WAIT)
    bomb = result.step("bomb")
    assert bomb.status is Status.ERROR
    assert bomb.error is not None
    assert bomb.error.type == "actors.isolated.MemoryLimitExceeded"
    error = bomb.error.exception
    assert isinstance(error, MemoryLimitExceeded)
    assert error.budget == 64 * MIB
    assert 32 * MIB < error.observed <= 80 * MIB
    assert "memory budget of 64.0 MiB" in bomb.error.message
    assert "an allocation failed" in bomb.error.message
    assert result.step("a").value == result.step("b").value == 512 * 512
    recycled = events.next(IsolatedWorkerExited)
    assert (recycled.reason, recycled.pid) == ("memory", error.pid)
    assert_gone(recycled.pid)
    usage = events.next(IsolatedCallFinished, lambda e: e.step == "square")
    assert usage.budget == 64 * MIB
    assert usage.baseline_rss is not None
    assert usage.peak_rss is not None
    assert usage.peak_rss >= usage.baseline_rss
    assert iso.call(square, 5).value == 25


def test_the_branch_budget_reaches_isolated_tools_nested_in_a_branch(iso: ActorSystem) -> None:
    inner = SequentialWorkflow([square, hog], name="inner")
    flow = ParallelWorkflow(
        [inner, step(square, name="sibling")],
        error_mode=ErrorMode.FAIL_SLOW,
        limits=ResourceLimits(max_memory_per_branch=64 * MIB),
    )
    result = iso.run(flow, 12, timeout=WAIT)  # the inner hog asks for 144 MiB
    record = result.step("inner/hog")
    assert record.status is Status.ERROR
    assert record.error is not None
    assert isinstance(record.error.exception, MemoryLimitExceeded)
    assert result.step("sibling").value == 144
    assert iso.run(ParallelWorkflow([inner]), 3, timeout=WAIT).value == [9]


def test_memory_the_data_limit_misses_is_caught_by_the_rss_watch(iso: ActorSystem) -> None:
    events = Events(iso, IsolatedWorkerExited)
    flow = ParallelWorkflow(
        [hog_shared],
        limits=ResourceLimits(max_memory_per_branch=64 * MIB),
    )
    result = iso.run(flow, 256, timeout=WAIT)
    record = result.step("hog_shared")
    assert record.status is Status.ERROR
    assert record.error is not None
    assert isinstance(record.error.exception, MemoryLimitExceeded)
    assert "its resident memory grew to" in record.error.message
    exited = events.next(IsolatedWorkerExited)
    assert exited.reason == "memory"
    assert_gone(exited.pid)


def test_max_total_memory_admits_branches_only_while_their_budgets_fit() -> None:
    branches = [step(interval_isolated, name=f"i{i}") for i in range(4)]
    free = ParallelWorkflow(
        branches, limits=ResourceLimits(max_memory_per_branch=64 * MIB, max_concurrent_executions=4)
    )
    fitted = ParallelWorkflow(
        branches,
        limits=ResourceLimits(
            max_memory_per_branch=64 * MIB, max_total_memory=128 * MIB, max_concurrent_executions=4
        ),
    )
    with ActorSystem("total", max_isolated_workers=4) as system:
        system.run(free, 0.0, timeout=WAIT)  # starts the four workers
        assert most_at_once(system.run(free, 0.4, timeout=WAIT).value) > 2
        assert most_at_once(system.run(fitted, 0.4, timeout=WAIT).value) == 2
    with pytest.raises(ValidationError, match="larger than max_total_memory"):
        ResourceLimits(max_memory_per_branch=256 * MIB, max_total_memory=128 * MIB)


def test_an_unenforceable_memory_budget_is_a_typed_error_never_a_silent_no_op(
    iso: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_procpool, "memory_problem", lambda: "this platform has no /proc")
    flow = ParallelWorkflow([square], limits=ResourceLimits(max_memory_per_branch=64 * MIB))
    record = iso.run(flow, 3, timeout=WAIT).step("square")
    assert record.status is Status.ERROR
    assert record.error is not None
    assert isinstance(record.error.exception, IsolationUnsupportedError)
    assert "this platform has no /proc" in record.error.message


def test_a_platform_without_process_groups_refuses_isolated_calls(
    iso: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_procpool, "isolation_problem", lambda: "no process groups here")
    result = iso.call(square, 3)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert isinstance(result.error.exception, IsolationUnsupportedError)


# -- crashes and the wire -------------------------------------------------------------------


def test_a_segfaulting_tool_reports_its_signal_and_the_next_call_works(iso: ActorSystem) -> None:
    events = Events(iso, IsolatedWorkerExited)
    result = iso.call(crash, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert result.error.type == "actors.isolated.WorkerDiedError"
    assert "was killed by signal SIGSEGV (11)" in result.error.message
    exited = events.next(IsolatedWorkerExited)
    assert (exited.reason, exited.exit_code) == ("died", -signal.SIGSEGV)
    assert_gone(exited.pid)
    assert iso.call(square, 4).value == 16
    assert len(heal(iso).pids) == 2


def test_a_worker_that_exits_reports_its_exit_code(iso: ActorSystem) -> None:
    result = iso.call(leave, 7, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "exited with code 7" in result.error.message
    assert iso.call(square, 2).value == 4


_FAKE_WORKERS = {
    "an oversized header": ("os.write(1, b'garbage!')", "frame header announces"),
    "a frame of the wrong shape": (
        "os.write(1, pack_frame({'surprise': True}))",
        "unexpected frame",
    ),
    "bytes that are not msgpack": ("os.write(1, b'\\x00\\x00\\x00\\x01\\xc1')", "malformed frame"),
}


@pytest.mark.parametrize("case", list(_FAKE_WORKERS))
def test_malformed_frames_from_a_worker_give_a_typed_error_and_the_worker_is_killed(
    iso: ActorSystem, case: str
) -> None:
    answer, expected = _FAKE_WORKERS[case]
    script = (
        "import os, time\n"
        "from actors.runtime.codec import pack_frame\n"
        "os.read(0, 65536)\n"
        f"{answer}\n"
        "time.sleep(60)\n"
    )
    pool = WorkerPool(
        iso.loop, size=1, name="fake", events=iso.events, command=[sys.executable, "-c", script]
    )
    events = Events(iso, IsolatedWorkerExited)
    call = pool.call(
        path="tests.isolated_tools:square",
        tool="square",
        payload={"x": 2},
        budget=None,
        remaining=lambda: None,
        grace=WAIT,
    )
    try:
        with pytest.raises(WorkerProtocolError, match=expected):
            asyncio.run_coroutine_threadsafe(call, iso.loop).result(WAIT)
        exited = events.next(IsolatedWorkerExited)
        assert exited.reason == "protocol"
        assert_gone(exited.pid)
    finally:
        assert all(not killed.alive for killed in pool.close(time.monotonic() + WAIT))


# -- the worker protocol, spoken by hand ------------------------------------------------------


class HandWorker:
    """A worker process started as the pool starts one, spoken to in frames by the test."""

    def __init__(self) -> None:
        control_in, self.control = os.pipe()
        try:
            self.popen = subprocess.Popen(
                _procpool.WORKER_COMMAND,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(control_in,),
                env={**_procpool._worker_env(), CONTROL_FD_ENV: str(control_in)},
            )
        finally:
            os.close(control_in)
        self._decoder = FrameDecoder()
        self._frames: deque[Any] = deque()

    def send(self, frame: list[Any]) -> None:
        """Write a frame to the worker's input."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(pack_frame(frame))
        self.popen.stdin.flush()

    def call(self, number: int, path: str, payload: object, *, measure: bool) -> None:
        """Send call ``number`` of the tool at ``path`` (no budget, no deadline)."""
        name = path.rpartition(":")[2]
        self.send(["call", number, path, name, encode(payload), None, None, measure])

    def next(self) -> Any:
        """The next frame the worker sent, waiting at most ``WAIT`` seconds."""
        assert self.popen.stdout is not None
        out = self.popen.stdout.fileno()
        deadline = time.monotonic() + WAIT
        while not self._frames:
            readable, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            assert readable, "the worker sent nothing"
            data = os.read(out, 1 << 16)
            assert data, "the worker ended its output"
            self._frames.extend(self._decoder.feed(data))
        return self._frames.popleft()

    def close(self) -> None:
        """End the worker's input and control pipe; kill it if it does not exit."""
        if self.control >= 0:
            os.close(self.control)
            self.control = -1
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(WAIT)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
            assert self.popen.stdout is not None
            self.popen.stdout.close()


@pytest.fixture
def hand() -> Iterator[HandWorker]:
    """A worker spoken to by hand, ended after the test."""
    worker = HandWorker()
    try:
        assert worker.next()[0] == "ready"
        yield worker
    finally:
        worker.close()


def test_a_worker_reads_its_memory_only_for_calls_that_ask(hand: HandWorker) -> None:
    hand.call(1, "tests.isolated_tools:square", {"x": 3}, measure=False)
    assert hand.next() == ["result", 1, encode(9), None, None]
    hand.call(2, "tests.isolated_tools:square", {"x": 4}, measure=True)
    op, number, value, baseline, peak = hand.next()
    assert (op, number, value) == ("result", 2, encode(16))
    assert isinstance(baseline, int)
    assert isinstance(peak, int)
    assert baseline > 0
    assert peak > 0


def test_calls_sent_together_are_answered_in_order(hand: HandWorker) -> None:
    for number in range(1, 6):
        hand.call(number, "tests.isolated_tools:square", {"x": number}, measure=False)
    answers = [hand.next() for _ in range(5)]
    assert [(a[0], a[1], decode(a[2])) for a in answers] == [
        ("result", n, n * n) for n in range(1, 6)
    ]


def test_a_cancel_on_the_control_pipe_reaches_the_running_call(hand: HandWorker) -> None:
    hand.call(1, "tests.isolated_tools:wait_for_cancel", {}, measure=False)
    assert hand.next()[0] == "progress"  # it runs
    os.write(hand.control, pack_frame(["cancel", 1]))
    assert hand.next() == ["result", 1, encode("saw the cancellation"), None, None]


def test_the_end_of_the_control_pipe_ends_a_busy_worker_at_once(hand: HandWorker) -> None:
    hand.call(1, "tests.isolated_tools:wait_for_cancel", {}, measure=False)
    assert hand.next()[0] == "progress"  # it runs, and its input stays open
    os.close(hand.control)
    hand.control = -1
    assert hand.popen.wait(WAIT) == 0


# -- every workflow kind, speed, shutdown -----------------------------------------------------


@tool
def double(x: int) -> int:
    """A thread tool."""
    return 2 * x


def test_isolated_and_thread_tools_mix_in_every_workflow_kind(iso: ActorSystem) -> None:
    assert iso.run(ParallelWorkflow([double, square]), 3, timeout=WAIT).value == [6, 9]
    assert iso.run(SequentialWorkflow([double, square]), 3, timeout=WAIT).value == 36
    assert iso.run(MapReduceWorkflow(square), [1, 2, 3], timeout=WAIT).value == [1, 4, 9]


def test_cpu_bound_branches_run_in_both_workers_at_once_and_return_what_sequential_runs_do(
    iso: ActorSystem,
) -> None:
    flow = ParallelWorkflow(
        [step(burn_where_isolated, name=f"b{i}") for i in range(4)], max_concurrency=4
    )
    iso.run(flow, 1_000, timeout=WAIT)  # starts both workers
    result = iso.run(flow, 1_000_000, timeout=WAIT)
    values = result.value
    assert [total for total, _pid, _begun, _ended in values] == [burn(1_000_000)] * 4
    assert {pid for _total, pid, _begun, _ended in values} == set(worker_pool(iso).pids)
    assert most_at_once([(begun, ended) for _total, _pid, begun, ended in values]) == 2


def test_shutdown_kills_a_busy_worker_reaps_every_worker_and_reports_the_kill() -> None:
    system = ActorSystem("shutdown", max_isolated_workers=2)
    events = Events(system, StepProgress)
    future = system.call_future(spin)
    busy = int(events.next(StepProgress).message or "0")
    pids = worker_pool(system).pids
    assert busy in pids
    report = system.shutdown(timeout=WAIT)
    assert report.clean
    killed = {process.pid: process.signal for process in report.killed}
    assert killed.get(busy) == "SIGTERM"
    for pid in pids:
        assert_gone(pid)
    assert future.result(WAIT).status is Status.CANCELLED


# -- definitions ----------------------------------------------------------------------------


def _outer() -> Callable[[int], int]:
    def inner(x: int) -> int:
        return x

    return inner


def test_tools_a_worker_cannot_import_are_refused_when_defined() -> None:
    with pytest.raises(ToolDefinitionError, match="it is a lambda"):
        Tool(lambda x: x, name="anonymous", isolated=True)
    with pytest.raises(ToolDefinitionError, match="nested function or closure"):
        tool(_outer(), isolated=True)
    in_main: dict[str, Any] = {"__name__": "__main__"}
    exec("def script_tool(x: int) -> int:\n    return x\n", in_main)
    with pytest.raises(ToolDefinitionError, match="defined in __main__"):
        tool(in_main["script_tool"], isolated=True)
    executed: dict[str, Any] = {"__name__": "not_a_module"}
    exec("def loose(x: int) -> int:\n    return x\n", executed)
    with pytest.raises(ToolDefinitionError, match="not an importable module"):
        tool(executed["loose"], isolated=True)
    with pytest.raises(ToolDefinitionError, match="not a partial"):
        Tool(functools.partial(burn, 3), name="partial", isolated=True)
    assert square.isolated
    assert not double.isolated
