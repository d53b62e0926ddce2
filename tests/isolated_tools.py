"""Tools for tests/test_isolated.py: isolated tools must live in a module a worker can import."""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import os
import threading
import time
from typing import Any

from pydantic import BaseModel

from actors.tools import ToolContext, tool

MIB = 2**20


class Point(BaseModel):
    """A model that travels to the worker as a dict and comes back validated."""

    x: int
    y: int


@tool(isolated=True)
def square(x: int) -> int:
    """Square a number in a worker process."""
    return x * x


@tool(isolated=True)
def whoami() -> int:
    """The worker's process id."""
    return os.getpid()


@tool(isolated=True)
def spin(ctx: ToolContext) -> None:
    """Say it runs (progress: its pid), then burn CPU forever, never looking at its scope."""
    ctx.report_progress(0.0, str(os.getpid()))
    while True:
        pass


@tool(isolated=True)
def wait_for_cancel(ctx: ToolContext) -> str:
    """Wait (at most a minute) until the call is cancelled, then say so."""
    ctx.report_progress(0.0, str(os.getpid()))
    if ctx.scope.wait(60):
        return "saw the cancellation"
    return "never cancelled"


@tool(isolated=True)
async def nap(seconds: float) -> str:
    """Sleep on the worker's event loop."""
    await asyncio.sleep(seconds)
    return "rested"


@tool(isolated=True)
def hog(megabytes: int) -> int:
    """Hold ``megabytes`` MiB of distinct pages, one MiB at a time."""
    chunks = [os.urandom(16) * (MIB // 16) for _ in range(megabytes)]
    return len(chunks)


@tool(isolated=True)
def hog_shared(megabytes: int) -> int:
    """Touch ``megabytes`` MiB of shared memory (not counted by RLIMIT_DATA), then hold it."""
    region = mmap.mmap(-1, megabytes * MIB)
    for offset in range(0, megabytes * MIB, mmap.PAGESIZE):
        region[offset] = 1
    time.sleep(30)
    return len(region)


@tool(isolated=True)
def crash() -> None:
    """Read address 0 from native code: the worker gets SIGSEGV."""
    ctypes.string_at(0)


@tool(isolated=True)
def leave(code: int) -> None:
    """End the worker at once with ``code``."""
    os._exit(code)


@tool(isolated=True)
def refuse(message: str) -> None:
    """Fail with a ValueError."""
    raise ValueError(message)


@tool(isolated=True)
def echo(value: Any) -> Any:
    """Return the value it was given."""
    return value


@tool(isolated=True)
def unsendable() -> object:
    """Return something the codec cannot carry back."""
    return threading.Lock()


@tool(isolated=True)
def mirror(point: Point) -> Point:
    """Return the point swapped; the output is validated back into a Point."""
    return Point(x=point.y, y=point.x)


def burn(rounds: int) -> int:
    """Pure-Python CPU work: a deterministic sum over ``rounds`` iterations."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def burn_where(rounds: int) -> tuple[int, int, float, float]:
    """Burn ``rounds``; return the sum, the worker's pid, and when it started and ended."""
    begun = time.monotonic()
    total = burn(rounds)
    return total, os.getpid(), begun, time.monotonic()


burn_where_isolated = tool(burn_where, name="burn_where", isolated=True)


def interval(seconds: float) -> tuple[float, float]:
    """Sleep in the worker; return when it started and ended (the system-wide monotonic clock)."""
    begun = time.monotonic()
    time.sleep(seconds)
    return begun, time.monotonic()


interval_isolated = tool(interval, name="interval", isolated=True)
