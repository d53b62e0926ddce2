"""Fuzzing tool input validation: any JSON-ish input gives a validated input or ToolInputError.

Tools with varied signatures (no parameters, one, several with defaults and constraints,
positional-only and keyword-only ones, models, dataclasses, TypedDicts, mappings, literals,
unions, a ``ToolContext``, async) receive random JSON-ish values, mappings of their own
parameter names to random values, and hostile values (huge ints, NaN, deep nesting, non-string
keys). ``Tool.prepare`` must answer each with a task or a ``ToolInputError`` whose message
names the tool, never another exception; a validated input always binds to the function.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from actors import ActorSystem, Status, Tool, ToolContext, ToolInputError, tool
from tests.sizes import sized

FUZZ = sized(200, 2000)


class Query(BaseModel):
    """A nested model parameter."""

    text: str
    limit: int = 3


@dataclasses.dataclass
class Window:
    """A dataclass parameter."""

    start: int
    end: int


class Options(TypedDict, total=False):
    """A TypedDict parameter."""

    verbose: bool
    depth: int


@tool
def nothing() -> int:
    """No parameters."""
    return 0


@tool
def one_int(x: int) -> int:
    """One required int."""
    return x


@tool
def search(query: str, limit: Annotated[int, Field(ge=1, le=50)] = 10) -> list[str]:
    """A constrained int with a default."""
    return [query] * limit


@tool
def floats(items: list[float], opts: dict[str, bool] | None = None) -> float:
    """Containers and an optional mapping."""
    return sum(items)


@tool
def nested(query: Query) -> str:
    """A model parameter."""
    return query.text


@tool
def window(span: Window, options: Options | None = None) -> int:
    """A dataclass and a TypedDict."""
    return span.end - span.start


@tool
def mapping(data: dict[str, Any]) -> int:
    """A single mapping parameter."""
    return len(data)


@tool
def positional(a: int, /, b: str = "b", *, c: float = 1.0) -> str:
    """Positional-only and keyword-only parameters."""
    return f"{a}{b}{c}"


@tool
def choice(kind: Literal["a", "b"], when: datetime | None = None, n: int | str = 0) -> str:
    """A literal, an optional datetime and a union."""
    return kind


@tool
def with_context(ctx: ToolContext, q: str = "") -> str:
    """A context and one optional parameter."""
    return q


@tool
async def pair(x: tuple[int, str], flag: bool = False) -> str:
    """An async tool with a tuple parameter."""
    return x[1]


TOOLS: list[Tool[..., Any]] = [
    nothing,
    one_int,
    search,
    floats,
    nested,
    window,
    mapping,
    positional,
    choice,
    with_context,
    pair,
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.floats(),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.dictionaries(st.one_of(st.integers(), st.none(), st.booleans()), inner, max_size=3),
    ),
    max_leaves=20,
)


@st.composite
def inputs_for(draw: st.DrawFn, target: Tool[..., Any]) -> object:
    """A random input: a bare value, or a mapping of the tool's parameters to random values."""
    if draw(st.booleans()):
        return draw(json_values)
    names = [*target.input_model.model_fields, "unexpected"]
    keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return {key: draw(json_values) for key in keys}


def prepare_or_refuse(target: Tool[..., Any], data: object) -> bool:
    """Prepare a call of ``target`` with ``data``; whether it was accepted.

    Anything but a task or a ``ToolInputError`` naming the tool escapes and fails the test.
    """
    try:
        target.prepare(data)
    except ToolInputError as error:
        message = str(error)
    else:
        if target is not with_context:  # a validated input always binds to the function
            target.bind(target.validate_input(data))
        return True
    assert target.name in message
    return False


@FUZZ
@given(st.data())
def test_random_inputs_give_a_task_or_a_tool_input_error(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(TOOLS))
    prepare_or_refuse(target, data.draw(inputs_for(target)))


@pytest.mark.parametrize("target", TOOLS, ids=lambda t: t.name)
def test_hostile_values_give_a_task_or_a_tool_input_error(target: Tool[..., Any]) -> None:
    deep: object = 0
    for _ in range(2000):
        deep = [deep]
    hostile: list[object] = [
        float("nan"),
        float("inf"),
        2**10_000,
        "\udcff",
        b"\xff\xfe",
        deep,
        {"x": deep},
        {(1, 2): 3},
        {None: None},
        [None] * 10_000,
        object(),
        {name: float("nan") for name in target.input_model.model_fields},
    ]
    for value in hostile:
        prepare_or_refuse(target, value)


def test_a_refused_input_fails_a_call_with_tool_input_error_before_anything_runs() -> None:
    with ActorSystem("fuzz") as system, pytest.raises(ToolInputError, match="search"):
        system.call(search, {"query": "q", "limit": 500})
    with ActorSystem("fuzz") as system:
        assert system.call(search, {"query": "q", "limit": 2}).status is Status.OK
