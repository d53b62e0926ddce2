"""Importable tools and functions for the spec and CLI tests (``tests.spec_tools:NAME``)."""

from __future__ import annotations

from typing import Any

from actors import ActorSystem, Break, StepResult, ToolContext, tool


@tool
def inc(x: int) -> int:
    """Add one."""
    return x + 1


@tool
def double(x: int) -> int:
    """Multiply by two."""
    return 2 * x


@tool
def square(x: int) -> int:
    """Square it."""
    return x * x


@tool
def broken(x: int) -> int:
    """Always fails."""
    raise ConnectionError(f"broken on {x}")


@tool
def stop_above_fifty(x: int) -> int:
    """End the nearest loop once x is large."""
    if x > 50:
        raise Break(x)
    return x


@tool
def slow(x: int, ctx: ToolContext) -> int:
    """Wait until cancelled (at most 30 s)."""
    ctx.scope.wait(30.0)
    ctx.raise_if_cancelled()
    return x


def halve(x: int) -> int:
    """A plain function (made a tool by the workflow)."""
    return x // 2


def is_even(x: int, ctx: object) -> bool:
    """A conditional's predicate."""
    return x % 2 == 0


def at_least_ten(x: int) -> bool:
    """A loop's ``until``."""
    return x >= 10


def digits(x: int) -> list[int]:
    """A fan-out's splitter: the digits of x."""
    return [int(d) for d in str(x)]


def total(values: list[int]) -> int:
    """A fan-out's aggregator."""
    return sum(values)


def add(acc: int, value: int) -> int:
    """A map-reduce's reducer."""
    return acc + value


def upto(x: int) -> list[int]:
    """A map-reduce's items: 0 .. x-1."""
    return list(range(x))


def biggest(results: list[StepResult]) -> int:
    """A custom aggregation: the largest successful value."""
    return max(int(r.value) for r in results if r.ok)


def plus_one(x: int) -> int:
    """An input mapping function."""
    return x + 1


def is_connection_error(result: StepResult) -> bool:
    """A retry predicate."""
    return result.error is not None and "broken" in result.error.message


def run_value(system: ActorSystem, flow: Any, value: object) -> Any:
    """The value of a run (helper for the tests)."""
    return system.run(flow, value, timeout=10).value
