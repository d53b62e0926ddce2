"""Process-isolated tools: calls that run in a pool of worker processes owned by the system.

A thread cannot be killed, held to a memory budget or run Python code in parallel with its
siblings. A tool defined with ``@tool(isolated=True)`` (or ``Tool(fn, isolated=True)``) runs
each call in a worker process instead:

- the worker is ``python -m actors._worker``, started in its own session (never forked from
  this process, which has threads), one of a pool of ``ActorSystem(max_isolated_workers=...)``
  started on the first isolated call and reused for every call after it;
- the call travels as msgpack frames over the worker's pipes (``actors.runtime.codec``, never
  pickle): the tool is named by its import path (``module:qualname``) and the worker imports
  it; its input and output must be values the codec can carry;
- in this process the call is an async leaf task: it holds no thread while the worker runs;
- cancellation is real: the worker is asked to cancel the call (the tool's ``ToolContext``
  scope is cancelled, an async tool's task is cancelled), and a worker that has not answered
  ``cancellation_timeout`` seconds later is killed (SIGTERM to its process group, SIGKILL
  shortly after), reaped and replaced;
- a memory budget (``ResourceLimits.max_memory_per_branch``) is enforced inside the worker
  with ``RLIMIT_DATA`` and, as a backstop, by polling its RSS; a call over its budget fails
  with :class:`MemoryLimitExceeded` and the worker is recycled.

This module holds the public names; ``actors._procpool`` runs the pool and ``actors._worker``
is the worker's main.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from actors._tooldef import ToolDefinitionError, ToolTask
from actors.runtime.errors import CastflowError
from actors.runtime.events import Event

if TYPE_CHECKING:
    from pydantic import BaseModel

    from actors._procpool import WorkerPool
    from actors._tooldef import Tool
    from actors.runtime.leaves import LeafEnv
    from actors.runtime.results import ErrorInfo
    from actors.runtime.system import ActorSystem

__all__ = [
    "IsolatedCallFinished",
    "IsolatedTask",
    "IsolatedToolError",
    "IsolatedWorkerExited",
    "IsolationUnsupportedError",
    "MemoryLimitExceeded",
    "WorkerDiedError",
    "WorkerProtocolError",
    "import_path_of",
    "resolve_import_path",
    "worker_pool",
]

_POOL_KEY: Final = "castflow.isolated"


# -- errors ---------------------------------------------------------------------------------


class IsolationUnsupportedError(CastflowError):
    """This platform cannot run isolated tools, or cannot enforce a memory budget on them.

    Isolation needs POSIX process groups; a memory budget also needs ``resource.RLIMIT_DATA``
    and ``/proc``. castflow never silently runs a budgeted call without its budget.
    """


class WorkerProtocolError(CastflowError):
    """A worker process sent something that is not a valid frame of the worker protocol.

    The call it was running fails with this error, and the worker is killed and replaced.
    """


class WorkerDiedError(CastflowError):
    """A worker process ended while it ran a call (``os._exit``, a crash in native code).

    Attributes:
        pid: the worker's process id.
        exit_code: its exit status: ``>= 0`` for an exit code, ``-N`` for signal ``N``.
    """

    def __init__(self, message: str, *, pid: int, exit_code: int | None) -> None:
        """Create the error.

        Args:
            message: names the worker and how it ended.
            pid: the worker's process id.
            exit_code: as ``subprocess.Popen.returncode``.
        """
        super().__init__(message)
        self.pid = pid
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_died, (str(self), self.pid, self.exit_code))


def _rebuild_died(message: str, pid: int, exit_code: int | None) -> WorkerDiedError:
    return WorkerDiedError(message, pid=pid, exit_code=exit_code)


class MemoryLimitExceeded(CastflowError):  # noqa: N818 - the name the contract uses
    """A call of an isolated tool used more memory than its budget.

    Attributes:
        tool: the tool's name.
        budget: the budget, in bytes.
        observed: what the call was seen using above the worker's baseline, in bytes.
        pid: the worker that ran it (recycled since).
    """

    def __init__(self, message: str, *, tool: str, budget: int, observed: int, pid: int) -> None:
        """Create the error.

        Args:
            message: names the tool, the budget and the usage observed.
            tool: the tool's name.
            budget: the budget, in bytes.
            observed: bytes used above the worker's baseline.
            pid: the worker's process id.
        """
        super().__init__(message)
        self.tool = tool
        self.budget = budget
        self.observed = observed
        self.pid = pid

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_memory,
            (str(self), self.tool, self.budget, self.observed, self.pid),
        )


def _rebuild_memory(
    message: str, tool: str, budget: int, observed: int, pid: int
) -> MemoryLimitExceeded:
    return MemoryLimitExceeded(message, tool=tool, budget=budget, observed=observed, pid=pid)


class IsolatedToolError(CastflowError):
    """An isolated tool raised an exception that cannot be rebuilt in this process.

    Exceptions whose class is loaded here and takes its message as only argument are raised
    again as themselves (a ``ValueError`` stays a ``ValueError``); any other comes back as
    this error, its message prefixed with the worker-side type. Either way the worker's
    traceback is attached as a note.

    Attributes:
        remote: the worker-side error record (type, message, traceback).
    """

    def __init__(self, remote: ErrorInfo) -> None:
        """Create the error.

        Args:
            remote: what the worker reported.
        """
        super().__init__(f"{remote.type}: {remote.message}")
        self.remote = remote

    def __reduce__(self) -> tuple[Any, ...]:
        return (IsolatedToolError, (self.remote,))


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IsolatedCallFinished(Event):
    """An isolated call's worker answered; how much memory it used.

    Published for every call that got an answer (a result or an error) from its worker; a
    call whose worker was killed first publishes ``IsolatedWorkerExited`` instead.

    Attributes:
        step: the tool's name.
        call_id: the leaf call's id.
        pid: the worker's process id.
        baseline_rss: the worker's resident memory just before the call, in bytes; ``None``
            when it was not measured (the worker reads it only for a call with a budget or
            one sent while somebody subscribed to the system's events).
        peak_rss: its peak resident memory during the call, in bytes (``None`` likewise).
        budget: the call's memory budget, in bytes, or ``None``.
    """

    step: str
    call_id: str
    pid: int
    baseline_rss: int | None
    peak_rss: int | None
    budget: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IsolatedWorkerExited(Event):
    """A worker process of the isolated pool ended and was reaped.

    Attributes:
        pid: its process id (gone: no zombie is left).
        reason: why it ended: ``"cancelled"`` (its call was cancelled or timed out and it
            did not answer within the cancellation timeout), ``"memory"`` (recycled after its
            call went over budget), ``"died"`` (it ended by itself), ``"protocol"`` (it sent
            a malformed frame) or ``"shutdown"``.
        exit_code: its exit status: ``>= 0`` for an exit code, ``-N`` for signal ``N``.
    """

    pid: int
    reason: str
    exit_code: int | None


# -- import paths ---------------------------------------------------------------------------


def import_path_of(fn: object, tool_name: str) -> str:
    """The ``module:qualname`` a worker imports ``fn`` by; refuse what it cannot import.

    Args:
        fn: the tool's function.
        tool_name: the tool's name, for messages.

    Returns:
        The import path.

    Raises:
        ToolDefinitionError: ``fn`` is a lambda, a nested function or closure, a function of
            ``__main__``, a method, partial or callable object, or lives in a module that
            cannot be imported; the message says which.
    """
    where = f"tool {tool_name!r} cannot be isolated"
    if not (inspect.isfunction(fn) or inspect.isbuiltin(fn)):
        kind = type(fn).__name__
        raise ToolDefinitionError(
            f"{where}: a worker process imports the tool by name, so it must be a function "
            f"defined with def at the top level of a module, not a {kind}"
        )
    name = getattr(fn, "__name__", "")
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", None)
    if name == "<lambda>":
        raise ToolDefinitionError(
            f"{where}: it is a lambda, which a worker process cannot import by name; "
            "define it with def at the top level of a module"
        )
    if "<locals>" in qualname:
        raise ToolDefinitionError(
            f"{where}: {qualname} is a nested function or closure, which a worker process "
            "cannot import; define it at the top level of a module"
        )
    if module == "__main__":
        raise ToolDefinitionError(
            f"{where}: {qualname} is defined in __main__ (the script being run), which a "
            "worker process does not import; move it into a module and import it from there"
        )
    found = sys.modules.get(module) if isinstance(module, str) else None
    if found is None or getattr(found, "__spec__", None) is None:
        raise ToolDefinitionError(
            f"{where}: its module {module!r} is not an importable module (code run by exec, "
            "or a module built at run time); define it in a module file"
        )
    path = f"{module}:{qualname}"
    if inspect.isbuiltin(fn) and _lookup(found, qualname) is not fn:
        raise ToolDefinitionError(f"{where}: {path} does not name it")
    return path


def _lookup(module: object, qualname: str) -> object:
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def resolve_import_path(path: str) -> object:
    """Import the module of ``module:qualname`` and return the object it names.

    Raises:
        ImportError: the module cannot be imported.
        LookupError: the module has no such attribute.
    """
    module_name, _, qualname = path.partition(":")
    module = importlib.import_module(module_name)
    found = _lookup(module, qualname)
    if found is None:
        msg = f"module {module_name!r} has no attribute {qualname!r}"
        raise LookupError(msg)
    return found


# -- the task -------------------------------------------------------------------------------


class IsolatedTask(ToolTask):
    """One validated call of an isolated tool: an async leaf task that runs in a worker.

    Attributes:
        import_path: the ``module:qualname`` the worker imports.
    """

    __slots__ = ("import_path",)

    def __init__(self, tool: Tool[..., Any], validated: BaseModel, import_path: str) -> None:
        """Create the task.

        Args:
            tool: the isolated tool.
            validated: its validated input.
            import_path: where the worker finds the tool.
        """
        super().__init__(tool, validated)
        self.import_path = import_path

    @property
    def is_async(self) -> bool:
        """Always true: the call is awaited on the system loop, holding no thread."""
        return True

    @property
    def uses_env(self) -> bool:
        """Always true: the call needs the env's system, grace and memory budget."""
        return True

    @property
    def isolated(self) -> bool:
        """Always true: the call runs in a worker process (memory limits are enforceable)."""
        return True

    def execute(self, env: LeafEnv | None) -> Coroutine[Any, Any, Any]:
        """The coroutine that sends the call to a worker and awaits its answer."""
        assert env is not None  # it uses its env (``uses_env``)
        return self._run(env)

    async def _run(self, env: LeafEnv) -> Any:
        self._check_path()
        pool = worker_pool(env.system)
        payload = self.validated.model_dump(mode="python", by_alias=True)
        progress = env.report_progress if self.tool.context_param is not None else None
        grace = env.cancellation_timeout
        return await pool.call(
            path=self.import_path,
            tool=self.tool.name,
            payload=payload,
            budget=env.memory_limit,
            remaining=env.scope.remaining,
            grace=env.system.cancellation_timeout if grace is None else grace,
            call_id=env.call_id,
            on_progress=progress,
        )

    def _check_path(self) -> None:
        """Make sure the worker will import this very tool (nothing rebound its name)."""
        module_name, _, qualname = self.import_path.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            return
        found = _lookup(module, qualname)
        fn = self.tool.fn
        if found is fn or getattr(found, "fn", None) is fn:
            return
        msg = (
            f"tool {self.tool.name!r} cannot be isolated: {self.import_path} no longer names "
            "its function (the name was rebound), so a worker would run something else"
        )
        raise ToolDefinitionError(msg)

    def __repr__(self) -> str:
        return f"IsolatedTask({self.tool.name!r}, {self.import_path!r})"


def worker_pool(system: ActorSystem) -> WorkerPool:
    """The system's pool of isolated workers, created (and its workers started) on first use.

    Raises:
        IsolationUnsupportedError: this platform cannot run worker processes.
        SystemShutDownError: the system has been shut down.
    """
    from actors._procpool import WorkerPool  # noqa: PLC0415 - the pool imports this module

    def make() -> WorkerPool:
        return WorkerPool(
            system.loop,
            size=system.max_isolated_workers,
            name=f"{system.name}/isolated",
            events=system.events,
        )

    return system.service(_POOL_KEY, make)
