"""The worker process of process-isolated tools: ``python -m actors._worker``.

It talks to the pool that started it in msgpack frames (``actors.runtime.codec``) over two
pipes in, its standard input (calls) and a control pipe (cancels), and the standard output it
was started with; what tools print goes to its standard error, and they read an empty
standard input. Frames are lists, the operation first:

    parent to worker, input:     ["call", id, path, tool, input, budget, remaining, measure]
    parent to worker, control:   ["cancel", id]
    worker to parent:   ["ready", pid]   ["started", id, baseline_rss]
                        ["progress", id, fraction, message]
                        ["result", id, value, baseline_rss, peak_rss]
                        ["error", id, error, baseline_rss, peak_rss, memory_exceeded]

``input`` and ``value`` are themselves encoded values (bytes), so a value that cannot be
encoded is reported with its own path. Calls run one at a time, in the order they came, in the
main thread, which reads them itself: a call the pool sent while the one before it ran starts
as soon as that one ends. A control thread takes the cancel frames meanwhile: it cancels the
call's ``ToolContext`` scope and, for an async tool, its task (a call cancelled before its
turn starts with its scope cancelled). The control pipe's descriptor is named
by the ``CASTFLOW_WORKER_CONTROL_FD`` environment variable; without it, cancels travel on the
input and are seen between calls.

Memory is measured only for a call that asks (``measure``; any call with a ``budget`` does):
``started`` is sent only for a call with a budget (the parent then watches the worker's RSS
against it), and ``baseline_rss`` and ``peak_rss`` are ``None`` for a call that did not ask.
Before a call with a memory ``budget`` the soft ``RLIMIT_DATA`` is set to the worker's
current data size plus the budget (not ``RLIMIT_AS``, which counts every thread's stack), and
restored after. The end of the input ends the worker once the calls already sent are
answered; the end of the control pipe ends it at once (it is retired, or its parent is
gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from actors._tooldef import Tool, ToolContext
from actors.isolated import resolve_import_path
from actors.runtime.cancel import CancelScope
from actors.runtime.codec import FrameDecoder, decode, encode, pack_frame
from actors.runtime.errors import CodecError
from actors.runtime.results import ErrorInfo

CONTROL_FD_ENV: Final = "CASTFLOW_WORKER_CONTROL_FD"
"""The environment variable that names the worker's control pipe (its read end)."""

_READ_CHUNK: Final = 1 << 16
_PROTOCOL_ERROR_EXIT: Final = 3


class _Channel:
    """Writes whole frames to the parent; any thread may send."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, frame: list[Any]) -> None:
        data = memoryview(pack_frame(frame))
        with self._lock:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]


@dataclass(slots=True, eq=False)
class _Running:
    call_id: int
    scope: CancelScope
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None


def _frames(fd: int) -> Iterator[Any]:
    """The frames read from ``fd`` until it ends; a stream that is not frames ends the worker."""
    decoder = FrameDecoder()
    while data := os.read(fd, _READ_CHUNK):
        try:
            frames = decoder.feed(data)
        except CodecError as exc:
            _protocol_error(f"bad frame from the parent: {exc}")
        yield from frames


def _protocol_error(detail: str) -> NoReturn:
    print(f"castflow worker: {detail}", file=sys.stderr)
    os._exit(_PROTOCOL_ERROR_EXIT)


# -- memory -------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss() -> int | None:
    return _status_kib("VmRSS:")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass  # the peak then covers the worker's whole life: still an upper bound


def _limit_data(budget: int) -> Callable[[], None]:
    """Cap the data segment at its current size plus ``budget``; return what restores it."""
    import resource  # noqa: PLC0415 - POSIX only; the parent checked it exists

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    used = _status_kib("VmData:")
    if used is None:
        raise OSError("cannot read VmData from /proc/self/status")
    limit = used + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))

    def restore() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))

    return restore


# -- the worker ---------------------------------------------------------------------------


class _Worker:
    """Serves calls from the main thread; a control thread handles cancels."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._calls: deque[list[Any]] = deque()
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._cancelled: set[int] = set()  # calls cancelled before they started
        self._tools: dict[str, Tool[..., Any]] = {}

    def control(self, fd: int) -> None:
        """The control thread: take cancels until the control pipe ends, then end the worker.

        The parent closes the control pipe when it retires the worker or when it is gone:
        nobody wants the answer of a call that runs or is queued.
        """
        for frame in _frames(fd):
            match frame:
                case ["cancel", int(call_id)]:
                    self._cancel(call_id)
                case _:
                    _protocol_error(f"unexpected control frame {frame!r:.200}")
        os._exit(0)

    def _take(self, frame: Any) -> None:
        match frame:
            case ["call", *_]:
                self._calls.append(frame)
            case ["cancel", int(call_id)]:
                self._cancel(call_id)
            case _:
                _protocol_error(f"unexpected frame {frame!r:.200}")

    def _cancel(self, call_id: int) -> None:
        with self._lock:
            running = self._running
            if running is None or running.call_id != call_id:
                self._cancelled.add(call_id)  # not started yet (or already answered)
                return
        running.scope.cancel()
        with self._lock:
            loop, task = running.loop, running.task
        if loop is not None and task is not None:
            # A closed loop raises RuntimeError: the tool has already returned.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def serve(self, fd: int) -> None:
        """The main thread: run the calls read from ``fd``, in order, until it ends."""
        self._channel.send(["ready", os.getpid()])
        for frame in _frames(fd):
            self._take(frame)
            while self._calls:
                self._serve_one(self._calls.popleft())

    def _serve_one(self, frame: list[Any]) -> None:
        try:
            _op, call_id, path, name, raw_input, budget, remaining, measure = frame
        except ValueError:
            _protocol_error(f"malformed call frame {frame!r:.200}")
        running = _Running(call_id, CancelScope(timeout=remaining, name=f"call-{call_id}"))
        with self._lock:
            self._running = running
            if call_id in self._cancelled:
                running.scope.cancel()
            # Ids grow: a cancel of an earlier call can no longer matter.
            self._cancelled = {n for n in self._cancelled if n > call_id}
        try:
            answer = self._call(running, path, name, raw_input, budget, measure=bool(measure))
            self._channel.send(answer)
        finally:
            with self._lock:
                self._running = None

    def _call(
        self,
        running: _Running,
        path: str,
        name: str,
        raw_input: bytes,
        budget: int | None,
        *,
        measure: bool,
    ) -> list[Any]:
        call_id = running.call_id
        try:
            tool = self._tool(path, name)
            validated = tool.validate_input(decode(raw_input))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as the result
            rss = _rss() if measure else None
            return ["error", call_id, ErrorInfo.from_exception(exc), rss, rss, False]
        ctx = None
        if tool.context_param is not None:
            ctx = ToolContext(
                scope=running.scope,
                tool_name=tool.name,
                call_id=str(call_id),
                progress_sink=lambda report: self._channel.send(
                    ["progress", call_id, report.fraction, report.message]
                ),
            )
        baseline = None
        if measure:
            baseline = _rss()
            if budget is not None:
                self._channel.send(["started", call_id, baseline])
            _reset_peak()
        limited = False
        try:
            restore = _limit_data(budget) if budget is not None else None
            limited = restore is not None
            try:
                value = tool.invoke(validated, ctx)
                if tool.is_async:
                    value = self._await(running, value)
            finally:
                if restore is not None:
                    restore()
            limited = False
            return ["result", call_id, encode(value), baseline, _peak(measure)]
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as the result
            exceeded = limited and isinstance(exc, MemoryError)
            if isinstance(exc, CodecError):
                exc = CodecError(f"the output of tool {name!r} cannot be sent back: {exc}")
            info = ErrorInfo.from_exception(exc)
            return ["error", call_id, info, baseline, _peak(measure), exceeded]

    def _tool(self, path: str, name: str) -> Tool[..., Any]:
        found = self._tools.get(path)
        if found is None:
            target = resolve_import_path(path)
            found = target if isinstance(target, Tool) else Tool(cast(Any, target), name=name)
            self._tools[path] = found
        return found

    def _await(self, running: _Running, coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            task = asyncio.current_task()
            with self._lock:
                running.loop, running.task = asyncio.get_running_loop(), task
            running.scope.raise_if_cancelled()  # a cancel that came before the task existed
            return await coro

        try:
            return asyncio.run(main())
        finally:
            coro.close()


def _peak(measure: bool) -> int | None:
    return _status_kib("VmHWM:") if measure else None


def _control_fd() -> int | None:
    """The control pipe, kept from the processes tools start (as the frame pipes are)."""
    value = os.environ.pop(CONTROL_FD_ENV, None)
    if value is None or not value.isdigit():
        return None
    fd = int(value)
    os.set_inheritable(fd, False)
    return fd


def main() -> int:
    """Serve the pool on this process's standard streams; return the exit code."""
    frames_in = os.dup(0)
    frames_out = os.dup(1)
    os.dup2(2, 1)  # what tools print goes to stderr, never into the frames
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    worker = _Worker(_Channel(frames_out))
    control = _control_fd()
    if control is not None:
        thread = threading.Thread(
            target=worker.control, args=(control,), name="castflow-worker-control", daemon=True
        )
        thread.start()
    worker.serve(frames_in)
    return 0


if __name__ == "__main__":
    sys.exit(main())
