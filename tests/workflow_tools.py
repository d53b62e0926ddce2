"""Tools shared by the workflow tests."""

from __future__ import annotations

from actors.tools import Tool, tool
from actors.workflows import Break


@tool
def inc(x: int) -> int:
    """Add one."""
    return x + 1


@tool
def double(x: int) -> int:
    """Multiply by two."""
    return x * 2


@tool
def add_3(x: int) -> int:
    """Add three."""
    return x + 3


@tool
def add_100(x: int) -> int:
    """Add a hundred."""
    return x + 100


@tool
def fail(x: int) -> int:
    """Always fails."""
    raise ValueError(f"cannot take {x}")


def break_at(limit: int) -> Tool[..., int]:
    """A tool adding one, that signals Break(x) once x reaches ``limit``."""

    def count_up(x: int) -> int:
        if x >= limit:
            raise Break(x)
        return x + 1

    return tool(count_up, name=f"break_at_{limit}")
