"""The pool of worker processes that runs a system's process-isolated tool calls.

One ``WorkerPool`` per system (``actors.isolated.worker_pool``). It lives on the system's
asyncio loop: every method except the read-only properties and :meth:`WorkerPool.close` runs
on the loop thread, so its state needs no lock. Workers are ``python -m actors._worker``
subprocesses in their own sessions. Calls go down a worker's standard input and cancels down
a control pipe of their own (so the worker's main thread reads its calls itself, and a cancel
never waits behind them); answers come up its standard output. The pipes are non-blocking,
the answers are watched by the loop's selector (no thread per worker), and exits are noticed
with ``waitid`` polls. Workers start when the first call needs one and are all started then;
a worker that is killed or dies after it came up is replaced at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from actors._worker import CONTROL_FD_ENV
from actors.isolated import (
    IsolatedCallFinished,
    IsolatedToolError,
    IsolatedWorkerExited,
    IsolationUnsupportedError,
    MemoryLimitExceeded,
    WorkerDiedError,
    WorkerProtocolError,
)
from actors.runtime.codec import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, decode, encode, pack_frame
from actors.runtime.errors import CodecError, SystemShutDownError
from actors.runtime.events import EventBus
from actors.runtime.results import ErrorInfo
from actors.runtime.system import KilledProcess

__all__ = ["KILL_GRACE", "WORKER_COMMAND", "WorkerPool", "isolation_problem", "memory_problem"]

logger = logging.getLogger("castflow.isolated")

WORKER_COMMAND: Final = (sys.executable, "-m", "actors._worker")
"""How a worker is started."""

KILL_GRACE: Final = 0.2
"""Seconds between SIGTERM and SIGKILL when a worker is killed."""

RSS_POLL: Final = 0.05
"""Seconds between two reads of a budgeted call's worker RSS."""

_READ_CHUNK: Final = 1 << 16
_EXIT_WAIT: Final = 1.0  # after its output ends, how long a worker may take to exit
_WATCH_MAX: Final = 0.05

Progress = Callable[[float | None, str | None], None]
"""Receives a call's progress reports: fraction and message."""


def isolation_problem() -> str | None:
    """Why this platform cannot run isolated tools, or ``None`` when it can."""
    if os.name != "posix" or not hasattr(os, "killpg"):
        return f"process-isolated tools need POSIX process groups, which {sys.platform} lacks"
    return None


def memory_problem() -> str | None:
    """Why this platform cannot enforce a memory budget on a worker, or ``None`` when it can."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return f"{sys.platform} has no resource module (RLIMIT_DATA)"
    if not hasattr(resource, "RLIMIT_DATA"):
        return f"{sys.platform} has no RLIMIT_DATA"
    if not os.path.exists("/proc/self/statm"):
        return f"{sys.platform} has no /proc to read a worker's memory from"
    return None


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4096


_PAGE: Final = _page_size()


def _read_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    return f"{n / 2**20:.1f} MiB"


def describe_exit(code: int | None) -> str:
    """``"exited with code 3"`` or ``"was killed by signal SIGSEGV (11)"``."""
    if code is None:
        return "ended"
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    return f"was killed by signal {name} ({-code})"


def _worker_env() -> dict[str, str]:
    """The worker's environment: this one, with this process's import path."""
    env = dict(os.environ)
    paths = [os.path.abspath(entry) if entry else os.getcwd() for entry in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _rebuild(info: ErrorInfo) -> BaseException:
    """The exception a worker reported, as itself when possible, else ``IsolatedToolError``."""
    exc = _same_exception(info) or IsolatedToolError(info)
    if info.traceback:
        exc.add_note(f"raised in the worker process:\n{info.traceback.rstrip()}")
    return exc


def _same_exception(info: ErrorInfo) -> BaseException | None:
    parts = info.type.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        found: object = module
        for part in parts[cut:]:
            found = getattr(found, part, None)
        if not (isinstance(found, type) and issubclass(found, Exception)):
            return None
        try:
            exc = found(info.message)
        except Exception:  # noqa: BLE001 - it does not take a message alone: not rebuilt
            return None
        return exc if str(exc) == info.message else None
    return None


# -- state ------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Call:
    number: int
    tool: str
    call_id: str
    budget: int | None
    future: asyncio.Future[Any]
    on_progress: Progress | None
    baseline: int | None = None
    peak: int | None = None
    poll: asyncio.TimerHandle | None = None
    kill: asyncio.TimerHandle | None = None

    def stop_timers(self) -> None:
        for timer in (self.poll, self.kill):
            if timer is not None:
                timer.cancel()
        self.poll = self.kill = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)


@dataclass(slots=True, eq=False)
class _Worker:
    popen: subprocess.Popen[bytes]
    stdin: int
    stdout: int
    control: int
    decoder: FrameDecoder
    pending: bytearray = field(default_factory=bytearray)
    call: _Call | None = None
    ready: bool = False
    ending: str | None = None
    signal: str | None = None
    reaped: bool = False
    kill_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


# -- the pool ---------------------------------------------------------------------------------


class WorkerPool:
    """A fixed-size pool of worker processes for isolated tool calls, driven by ``loop``.

    Args:
        loop: the system's asyncio loop; the pool's work runs on it.
        size: how many workers run at once.
        name: names the pool in reports and logs.
        events: where ``IsolatedCallFinished`` and ``IsolatedWorkerExited`` are published.
        command: how a worker is started (tests start fakes).
        kill_grace: seconds between SIGTERM and SIGKILL.
        max_frame_size: the largest frame either side may send, in bytes.

    Raises:
        IsolationUnsupportedError: this platform cannot run worker processes.
        ValueError: ``size`` is below 1.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        size: int,
        name: str,
        events: EventBus | None = None,
        command: Sequence[str] = WORKER_COMMAND,
        kill_grace: float = KILL_GRACE,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        problem = isolation_problem()
        if problem is not None:
            raise IsolationUnsupportedError(problem)
        if size < 1:
            msg = f"a worker pool needs at least 1 worker, got {size}"
            raise ValueError(msg)
        self._loop = loop
        self._size = size
        self._name = name
        self._events = events
        self._command = tuple(command)
        self._kill_grace = kill_grace
        self._max_frame_size = max_frame_size
        self._env = _worker_env()
        self._numbers = itertools.count(1)
        self._live: list[_Worker] = []
        self._ending: list[_Worker] = []
        self._idle: deque[_Worker] = deque()
        self._waiters: deque[asyncio.Future[_Worker]] = deque()
        self._closed = False

    # -- read-only views (any thread) ----------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def size(self) -> int:
        """How many workers run at once."""
        return self._size

    # Each view copies its list first: the copy is atomic, so another thread never sees the
    # list change under it, and the calls pay nothing for views nobody reads.

    @property
    def pids(self) -> tuple[int, ...]:
        """Process ids of the workers running now (busy or idle, not being stopped)."""
        return tuple(w.pid for w in tuple(self._live))

    @property
    def busy(self) -> tuple[int, ...]:
        """Process ids of the workers running a call now."""
        return tuple(w.pid for w in tuple(self._live) if w.call is not None)

    @property
    def stopping(self) -> tuple[int, ...]:
        """Process ids of workers being stopped and not reaped yet."""
        return tuple(w.pid for w in tuple(self._ending))

    # -- calls ---------------------------------------------------------------------------

    async def call(
        self,
        *,
        path: str,
        tool: str,
        payload: object,
        budget: int | None,
        remaining: Callable[[], float | None],
        grace: float,
        call_id: str = "",
        on_progress: Progress | None = None,
    ) -> Any:
        """Run the tool at ``path`` on a worker and return the value it returned.

        Args:
            path: the tool's ``module:qualname``.
            tool: the tool's name.
            payload: its input, as a mapping of parameter names.
            budget: bytes the call may use above the worker's baseline, or ``None``.
            remaining: seconds left before the call's deadline, asked when it is sent.
            grace: seconds a cancelled call's worker has to answer before it is killed.
            call_id: the leaf call's id, for events.
            on_progress: receives the tool's progress reports.

        Raises:
            asyncio.CancelledError: the awaiting task was cancelled; the worker is asked to
                cancel the call and killed if it has not answered within ``grace``.
            MemoryLimitExceeded: the call went over ``budget``.
            WorkerDiedError: the worker ended while it ran the call.
            WorkerProtocolError: the worker sent something that is not a valid frame.
            IsolationUnsupportedError: a budget was given and cannot be enforced here.
            CodecError: the input cannot be encoded.
            SystemShutDownError: the pool has been closed.
            Exception: what the tool raised (see ``IsolatedToolError``).
        """
        self._check_open()
        if budget is not None:
            problem = memory_problem()
            if problem is not None:
                msg = f"tool {tool!r} has a memory budget, but {problem}"
                raise IsolationUnsupportedError(msg)
        try:
            raw = encode(payload, max_size=self._max_frame_size)
        except CodecError as exc:
            msg = f"the input of tool {tool!r} cannot be sent to a worker process: {exc}"
            raise CodecError(msg) from None
        worker = await self._acquire()
        while worker.ending is not None:  # it died between being handed over and now
            worker = await self._acquire()
        call = _Call(
            next(self._numbers), tool, call_id, budget, self._loop.create_future(), on_progress
        )
        # Reading the worker's memory costs it /proc reads: only for a budget, or for
        # somebody listening to the IsolatedCallFinished events that report it.
        measure = budget is not None or self._listened()
        try:
            frame = pack_frame(
                ["call", call.number, path, tool, raw, budget, remaining(), measure],
                max_size=self._max_frame_size,
            )
        except BaseException:
            self._release(worker)
            raise
        worker.call = call
        self._send(worker, frame)
        try:
            return await call.future
        except asyncio.CancelledError:
            self._cancel(worker, call, grace)
            raise

    def _listened(self) -> bool:
        return self._events is not None and self._events.has_subscribers

    def _check_open(self) -> None:
        if self._closed:
            msg = f"worker pool {self._name!r} has been closed (the system shut down)"
            raise SystemShutDownError(msg)

    async def _acquire(self) -> _Worker:
        if not self._idle:
            self._fill()
        if self._idle:
            return self._idle.popleft()
        waiter: asyncio.Future[_Worker] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed a worker just as it was cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _fill(self) -> None:
        """Start workers until the pool is full."""
        while not self._closed and len(self._live) < self._size:
            self._spawn()

    def _spawn(self) -> None:
        control_in, control = os.pipe()
        try:
            popen = subprocess.Popen(  # noqa: S603 - our own worker module, no shell
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                pass_fds=(control_in,),
                env={**self._env, CONTROL_FD_ENV: str(control_in)},
            )
        except BaseException:
            os.close(control)
            raise
        finally:
            os.close(control_in)
        assert popen.stdin is not None
        assert popen.stdout is not None
        stdin, stdout = popen.stdin.fileno(), popen.stdout.fileno()
        for fd in (stdin, stdout, control):
            os.set_blocking(fd, False)
        decoder = FrameDecoder(max_size=self._max_frame_size)
        worker = _Worker(popen, stdin, stdout, control, decoder)
        self._live.append(worker)
        self._loop.add_reader(stdout, self._readable, worker)
        self._release(worker)

    def _release(self, worker: _Worker) -> None:
        """``worker`` is free: give it to the oldest waiting call, or park it."""
        if worker.ending is not None:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _cancel(self, worker: _Worker, call: _Call, grace: float) -> None:
        """The caller gave up on ``call``: ask the worker to stop it, kill it after ``grace``."""
        if worker.call is not call or worker.ending is not None:
            return
        # A frame this small is written whole or not at all; a cancel the full pipe refuses
        # is still enforced by the kill after the grace.
        with contextlib.suppress(OSError):
            os.write(worker.control, pack_frame(["cancel", call.number]))
        call.kill = self._loop.call_later(grace, self._stop, worker, "cancelled", None)

    # -- pipes ---------------------------------------------------------------------------

    def _send(self, worker: _Worker, data: bytes) -> None:
        if worker.ending is not None:
            return
        if worker.pending:
            worker.pending += data
            return
        try:
            written = os.write(worker.stdin, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return  # the worker is gone: the end of its output tells the rest
        if written < len(data):
            worker.pending += data[written:]
            self._loop.add_writer(worker.stdin, self._writable, worker)

    def _writable(self, worker: _Worker) -> None:
        try:
            written = os.write(worker.stdin, worker.pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(worker.pending)
        del worker.pending[:written]
        if not worker.pending:
            self._loop.remove_writer(worker.stdin)

    def _readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.stdout, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._output_ended(worker)
            return
        try:
            frames = worker.decoder.feed(data)
        except CodecError as exc:
            self._protocol_error(worker, f"malformed frame: {exc}")
            return
        for frame in frames:
            if worker.ending is not None:
                return
            self._frame(worker, frame)

    # -- frames --------------------------------------------------------------------------

    def _frame(self, worker: _Worker, frame: Any) -> None:
        call = worker.call
        op = frame[0] if type(frame) is list and frame else None
        number = frame[1] if op is not None and len(frame) > 1 else None
        current = call is not None and type(number) is int and number == call.number
        if op == "ready" and len(frame) == 2 and type(number) is int:
            worker.ready = True
        elif op == "started" and current and len(frame) == 3 and _is_size(frame[2]):
            assert call is not None
            self._started(worker, call, frame[2])
        elif op == "progress" and current and len(frame) == 4 and _is_progress(frame):
            assert call is not None
            if call.on_progress is not None and not call.future.done():
                try:
                    call.on_progress(frame[2], frame[3])
                except Exception:
                    logger.exception("%s: progress of tool %r failed", self._name, call.tool)
        elif (
            op == "result"
            and current
            and len(frame) == 5
            and type(frame[2]) is bytes
            and _is_size(frame[3])
            and _is_size(frame[4])
        ):
            assert call is not None
            self._answered(worker, call, frame[3], frame[4], raw=frame[2])
        elif (
            op == "error"
            and current
            and len(frame) == 6
            and isinstance(frame[2], ErrorInfo)
            and _is_size(frame[3])
            and _is_size(frame[4])
            and type(frame[5]) is bool
        ):
            assert call is not None
            self._answered(worker, call, frame[3], frame[4], error=frame[2], exceeded=frame[5])
        else:
            self._protocol_error(worker, f"unexpected frame {frame!r:.120}")

    def _started(self, worker: _Worker, call: _Call, baseline: int | None) -> None:
        call.baseline = baseline
        if call.budget is not None and baseline is not None:
            call.poll = self._loop.call_later(RSS_POLL, self._poll, worker, call)

    def _poll(self, worker: _Worker, call: _Call) -> None:
        if worker.call is not call or worker.ending is not None or call.budget is None:
            return
        rss = _read_rss(worker.pid)
        baseline = call.baseline
        if rss is not None and baseline is not None:
            call.peak = rss if call.peak is None else max(call.peak, rss)
            if rss - baseline > call.budget:
                error = self._over_budget(worker, call, rss, "its resident memory grew to")
                self._stop(worker, "memory", error)
                return
        call.poll = self._loop.call_later(RSS_POLL, self._poll, worker, call)

    def _over_budget(self, worker: _Worker, call: _Call, peak: int | None, how: str) -> Exception:
        budget = call.budget if call.budget is not None else 0
        baseline = call.baseline
        observed = 0 if peak is None or baseline is None else max(0, peak - baseline)
        msg = (
            f"tool {call.tool!r} exceeded its memory budget of {_size(budget)}: {how} "
            f"{_size(observed)} above the worker's baseline of {_size(baseline)}; "
            f"worker {worker.pid} was recycled"
        )
        return MemoryLimitExceeded(
            msg, tool=call.tool, budget=budget, observed=observed, pid=worker.pid
        )

    def _answered(
        self,
        worker: _Worker,
        call: _Call,
        baseline: int | None,
        peak: int | None,
        *,
        raw: bytes | None = None,
        error: ErrorInfo | None = None,
        exceeded: bool = False,
    ) -> None:
        worker.call = None
        call.stop_timers()
        if call.baseline is None:
            call.baseline = baseline
        if call.peak is not None:
            peak = call.peak if peak is None else max(peak, call.peak)
        self._publish_call(worker, call, peak)
        if exceeded:
            failure = self._over_budget(worker, call, peak, "an allocation failed with")
            call.resolve(error=failure)
            self._stop(worker, "memory", None)
            return
        if error is not None:
            call.resolve(error=_rebuild(error))
        else:
            assert raw is not None
            try:
                value = decode(raw, max_size=self._max_frame_size)
            except CodecError as exc:
                worker.call = call
                self._protocol_error(worker, f"malformed result: {exc}")
                return
            call.resolve(value)
        self._release(worker)

    def _protocol_error(self, worker: _Worker, detail: str) -> None:
        msg = f"worker {worker.pid} broke the worker protocol ({detail}); it was killed"
        self._stop(worker, "protocol", WorkerProtocolError(msg))

    # -- ending workers ------------------------------------------------------------------

    def _stop(self, worker: _Worker, reason: str, failure: BaseException | None) -> None:
        """Kill ``worker`` (SIGTERM, SIGKILL after the grace); its call fails with ``failure``."""
        if worker.ending is not None:
            return
        worker.ending = reason
        call = worker.call
        if call is not None:
            call.stop_timers()
            if failure is not None:
                call.resolve(error=failure)
        self._retire(worker)
        self._signal(worker, signal.SIGTERM)
        worker.kill_timer = self._loop.call_later(
            self._kill_grace, self._signal, worker, signal.SIGKILL
        )
        self._watch(worker)

    def _output_ended(self, worker: _Worker) -> None:
        """The worker closed its output: it is exiting (or died); reap it."""
        if worker.ending is not None:
            return
        worker.ending = "died"
        self._retire(worker)
        worker.kill_timer = self._loop.call_later(_EXIT_WAIT, self._signal, worker, signal.SIGKILL)
        self._watch(worker)

    def _retire(self, worker: _Worker) -> None:
        """Take ``worker`` out of service: no more reading, writing or calls."""
        if worker in self._live:
            self._live.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        self._ending.append(worker)
        self._loop.remove_reader(worker.stdout)
        if worker.pending:
            self._loop.remove_writer(worker.stdin)
            worker.pending.clear()
        stdin = worker.popen.stdin
        if stdin is not None:
            stdin.close()
        _close_control(worker)  # the end of its control pipe ends the worker at once

    def _signal(self, worker: _Worker, sig: signal.Signals) -> None:
        if worker.reaped:
            return
        try:
            os.killpg(worker.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        worker.signal = sig.name

    def _watch(self, worker: _Worker, delay: float = 0.001) -> None:
        """Reap ``worker`` once it has exited, polling with a growing delay."""
        if worker.reaped:
            return
        if not _has_exited(worker.popen):
            self._loop.call_later(delay, self._watch, worker, min(delay * 2, _WATCH_MAX))
            return
        # A zombie until reaped, it still holds its process group: sweep what it started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.popen.wait()
        self._reaped(worker)

    def _reaped(self, worker: _Worker) -> None:
        worker.reaped = True
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
        if worker in self._ending:
            self._ending.remove(worker)
        stdout = worker.popen.stdout
        if stdout is not None:
            stdout.close()
        code = worker.popen.returncode
        call, worker.call = worker.call, None
        if call is not None:
            call.stop_timers()
            msg = f"worker {worker.pid} running tool {call.tool!r} {describe_exit(code)}"
            call.resolve(error=WorkerDiedError(msg, pid=worker.pid, exit_code=code))
        if not self._closed and (worker.ready or self._waiters):
            try:
                self._fill()  # heal
            except OSError as exc:
                logger.exception("%s: cannot start a worker", self._name)
                while self._waiters:
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(exc)
        events = self._events
        if events is not None and events.has_subscribers:
            events.publish(
                IsolatedWorkerExited(
                    system=events.system,
                    pid=worker.pid,
                    reason=worker.ending or "died",
                    exit_code=code,
                )
            )

    def _publish_call(self, worker: _Worker, call: _Call, peak: int | None) -> None:
        events = self._events
        if events is None or not events.has_subscribers:
            return
        events.publish(
            IsolatedCallFinished(
                system=events.system,
                step=call.tool,
                call_id=call.call_id,
                pid=worker.pid,
                baseline_rss=call.baseline,
                peak_rss=peak,
                budget=call.budget,
            )
        )

    # -- closing -------------------------------------------------------------------------

    def close(self, deadline: float) -> list[KilledProcess]:
        """Stop every worker by ``deadline``; return those that had to be killed.

        Idle workers are asked to exit (the end of their input); busy ones are killed, their
        calls failing with ``SystemShutDownError``; any still running after the kill grace
        get SIGKILL. Every worker is reaped. Called from any thread but the loop's.
        """
        loop = self._loop
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close(deadline), loop)
            try:
                return future.result(max(0.0, deadline - time.monotonic()) + 2 * _EXIT_WAIT)
            except Exception:  # noqa: BLE001 - a stuck loop must not keep processes alive
                future.cancel()
                logger.warning("%s: the loop did not close the pool; killing workers", self._name)
        return self._close_now()

    async def _close(self, deadline: float) -> list[KilledProcess]:
        self._closed = True
        shut = SystemShutDownError(f"worker pool {self._name!r} closed: the system shut down")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(shut)
        stopping = [*self._live, *self._ending]
        signalled: list[_Worker] = []
        for worker in list(self._live):
            if worker.call is not None:
                signalled.append(worker)
                self._stop(worker, "shutdown", shut)
            else:
                # Idle: the end of its input asks it to exit; it is killed only if it does not.
                worker.ending = "shutdown"
                self._retire(worker)
                worker.kill_timer = self._loop.call_later(
                    max(self._kill_grace, _EXIT_WAIT), self._signal, worker, signal.SIGKILL
                )
                self._watch(worker)
        while any(not w.reaped for w in stopping) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for worker in stopping:
            if not worker.reaped:
                self._signal(worker, signal.SIGKILL)
        reap_by = time.monotonic() + _EXIT_WAIT  # SIGKILL cannot be ignored: a short wait
        while any(not w.reaped for w in stopping) and time.monotonic() < reap_by:
            await asyncio.sleep(0.005)
        return [
            KilledProcess(
                pid=w.pid, owner=self._name, signal=w.signal or "none", alive=not w.reaped
            )
            for w in stopping
            if w in signalled or w.signal is not None or not w.reaped
        ]

    def _close_now(self) -> list[KilledProcess]:
        """Kill and reap every worker from this thread (the loop cannot do it)."""
        self._closed = True
        killed = []
        for worker in [*self._live, *self._ending]:
            _close_control(worker)
            if worker.reaped or worker.popen.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.popen.wait(1.0)
            alive = worker.popen.returncode is None
            killed.append(
                KilledProcess(pid=worker.pid, owner=self._name, signal="SIGKILL", alive=alive)
            )
        return killed


def _close_control(worker: _Worker) -> None:
    """Close the parent's end of ``worker``'s control pipe (once)."""
    if worker.control >= 0:
        os.close(worker.control)
        worker.control = -1


def _is_size(value: object) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _is_progress(frame: list[Any]) -> bool:
    fraction, message = frame[2], frame[3]
    fraction_ok = fraction is None or type(fraction) in (int, float)
    return fraction_ok and (message is None or type(message) is str)


def _has_exited(popen: subprocess.Popen[bytes]) -> bool:
    """Whether the process has exited, without reaping it (so its group can still be swept)."""
    if popen.returncode is not None:
        return True
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return popen.poll() is not None
    try:
        found = waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return popen.poll() is not None
    return found is not None
