"""Tests of the tool definition layer: input models, schemas, validation, contexts."""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from actors.runtime.cancel import CancelScope
from actors.runtime.clock import ManualClock
from actors.runtime.errors import CancelledError, CastflowError
from actors.tools import (
    MISSING,
    FieldError,
    ProgressReport,
    Tool,
    ToolBase,
    ToolContext,
    ToolDefinitionError,
    ToolInputError,
    ToolOutputError,
    as_tool,
    tool,
)

# -- tools shared by several tests ---------------------------------------------------------


class Filters(BaseModel):
    limit: int = 10
    tags: list[str] = []


@tool
def search(
    query: str,
    filters: Filters,
    mode: Literal["fast", "deep"] = "fast",
    k: Annotated[int, Field(description="how many results", ge=1)] = 3,
    lang: Optional[str] = None,  # noqa: UP045 - the Optional spelling is what is under test
    sources: list[str] | None = None,
) -> list[str]:
    """Search the index for documents.

    This paragraph is not part of the description.

    Args:
        query: what to look
            for, in words.
        mode: how hard to look.
        k: this entry loses to the Field description.
    """
    return [query, filters.__class__.__name__, mode, str(k), str(lang), str(sources)]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def total(items: list[int]) -> int:
    """Sum a list."""
    return sum(items)


@tool
def greet() -> str:
    """Say hello."""
    return "hello"


def make_context(
    *,
    scope: CancelScope | None = None,
    resources: Mapping[str, Any] | None = None,
    sink: Any = None,
    logger: logging.Logger | None = None,
) -> ToolContext:
    return ToolContext(
        scope=scope if scope is not None else CancelScope(clock=ManualClock()),
        tool_name="search",
        call_id="call-1",
        resources=resources,
        progress_sink=sink,
        logger=logger,
    )


def input_error(t: Tool[..., Any], data: object) -> ToolInputError:
    with pytest.raises(ToolInputError) as info:
        t.validate_input(data)
    return info.value


# -- schemas -------------------------------------------------------------------------------


def test_input_schema_lists_types_defaults_optionals_lists_literals_and_required_fields() -> None:
    schema = search.input_schema()

    assert schema["type"] == "object"
    assert schema["required"] == ["query", "filters"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props) == ["query", "filters", "mode", "k", "lang", "sources"]
    assert props["query"]["type"] == "string"
    assert props["mode"] == {
        "default": "fast",
        "description": "how hard to look.",
        "enum": ["fast", "deep"],
        "type": "string",
    }
    assert props["k"]["default"] == 3
    assert props["k"]["minimum"] == 1
    assert props["lang"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert props["sources"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}


def test_a_nested_model_parameter_is_referenced_through_defs() -> None:
    schema = search.input_schema()

    assert schema["properties"]["filters"] == {"$ref": "#/$defs/Filters"}
    nested = schema["$defs"]["Filters"]
    assert nested["properties"]["limit"] == {"default": 10, "type": "integer"}
    assert nested["properties"]["tags"]["items"] == {"type": "string"}


def test_annotated_field_description_wins_over_the_docstring_args_entry() -> None:
    props = search.input_schema()["properties"]

    assert props["k"]["description"] == "how many results"
    assert props["query"]["description"] == "what to look for, in words."
    assert "description" not in props["filters"]


def test_description_is_the_first_paragraph_of_the_docstring() -> None:
    assert search.description == "Search the index for documents."


def test_a_function_without_docstring_has_an_empty_description() -> None:
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.description == ""


def test_json_schema_has_the_function_calling_shape_without_title_noise() -> None:
    schema = search.json_schema()

    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "search"
    assert function["description"] == "Search the index for documents."
    assert function["parameters"] == search.input_schema()
    assert "title" not in function["parameters"]
    assert all("title" not in prop for prop in function["parameters"]["properties"].values())


def test_a_tool_without_parameters_has_an_empty_object_schema() -> None:
    assert greet.input_schema() == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_each_schema_call_returns_a_fresh_copy() -> None:
    first = search.json_schema()
    first["function"]["parameters"]["properties"].clear()

    assert search.json_schema()["function"]["parameters"]["properties"]


def test_explicit_name_and_description_override_the_defaults() -> None:
    @tool(name="web-search", description="Look things up.")
    def lookup(query: str) -> str:
        """Docstring that is not used."""
        return query

    assert lookup.name == "web-search"
    assert lookup.description == "Look things up."
    assert lookup.json_schema()["function"]["name"] == "web-search"


def test_tool_with_empty_parentheses_uses_the_defaults() -> None:
    @tool()
    def echo(text: str) -> str:
        """Echo it."""
        return text

    assert isinstance(echo, Tool)
    assert echo.name == "echo"
    assert echo.description == "Echo it."


def test_a_parameter_without_annotation_accepts_any_value() -> None:
    @tool
    def anything(value) -> object:  # type: ignore[no-untyped-def]
        return value

    assert anything.input_schema()["properties"]["value"] == {}
    marker = object()
    assert anything.validate_input({"value": marker}).value is marker  # type: ignore[attr-defined]


def test_parameters_named_like_model_attributes_keep_their_names_in_input_and_schema() -> None:
    @tool
    def odd(json: int, _hidden: int = 1, model_id: str = "m") -> str:
        return f"{json}-{_hidden}-{model_id}"

    assert list(odd.input_schema()["properties"]) == ["json", "_hidden", "model_id"]
    validated = odd.validate_input({"json": 2, "_hidden": 5})
    assert odd.invoke(validated) == "2-5-m"
    err = input_error(odd, {"json": "x"})
    assert [e.field for e in err.errors] == ["json"]


def test_string_annotations_may_name_classes_local_to_the_defining_function() -> None:
    class Point(BaseModel):
        x: int
        y: int

    @tool
    def norm(point: Point) -> int:
        return abs(point.x) + abs(point.y)

    class Distance(ToolBase):
        def run(self, a: Point, b: Point) -> int:
            return abs(a.x - b.x) + abs(a.y - b.y)

    assert norm.invoke(norm.validate_input({"point": {"x": -1, "y": 2}})) == 3
    distance = as_tool(Distance())
    validated = distance.validate_input({"a": {"x": 0, "y": 0}, "b": {"x": 1, "y": 1}})
    assert distance.invoke(validated) == 2


# -- ToolContext as a parameter ------------------------------------------------------------


@tool
def cancellable(query: str, context: ToolContext) -> str:
    context.raise_if_cancelled()
    return f"{query} in {context.tool_name}/{context.call_id}"


def test_the_context_parameter_is_excluded_from_the_input_model_and_schema() -> None:
    assert cancellable.context_param == "context"
    assert list(cancellable.input_model.model_fields) == ["query"]
    assert list(cancellable.input_schema()["properties"]) == ["query"]
    assert cancellable.input_schema()["required"] == ["query"]
    err = input_error(cancellable, {"query": "q", "context": None})
    assert [(e.field, e.kind) for e in err.errors] == [("context", "extra_forbidden")]


def test_the_context_is_injected_when_the_tool_is_invoked() -> None:
    validated = cancellable.validate_input("q")

    assert cancellable.invoke(validated, make_context()) == "q in search/call-1"


def test_a_cancelled_scope_reaches_the_tool_through_its_context() -> None:
    scope = CancelScope(clock=ManualClock())
    scope.cancel()

    with pytest.raises(CancelledError):
        cancellable.invoke(cancellable.validate_input("q"), make_context(scope=scope))


def test_invoking_a_tool_that_requires_a_context_without_one_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"tool 'cancellable' takes a ToolContext in .*'context'"):
        cancellable.invoke(cancellable.validate_input("q"))


def test_an_optional_context_parameter_keeps_its_default_when_no_context_is_given() -> None:
    @tool
    def maybe(x: int, ctx: ToolContext | None = None) -> bool:
        return ctx is None

    assert maybe.context_param == "ctx"
    assert maybe.invoke(maybe.validate_input(1)) is True
    assert maybe.invoke(maybe.validate_input(1), make_context()) is False


# -- input validation ----------------------------------------------------------------------


def test_invalid_input_names_the_tool_each_bad_field_and_its_value() -> None:
    err = input_error(search, {"query": 42})

    assert isinstance(err, CastflowError)
    assert err.tool_name == "search"
    assert err.errors == [
        FieldError("query", "Input should be a valid string", 42, "string_type"),
        FieldError("filters", "Field required", MISSING, "missing"),
    ]
    assert str(err) == (
        "tool 'search': field 'query': Input should be a valid string (got 42); "
        "field 'filters': Field required"
    )


def test_errors_in_nested_models_and_lists_carry_their_path() -> None:
    err = input_error(search, {"query": "q", "filters": {"limit": "many", "tags": ["a", 7]}})

    assert [(e.field, e.value) for e in err.errors] == [
        ("filters.limit", "many"),
        ("filters.tags[1]", 7),
    ]
    assert "field 'filters.limit': Input should be a valid integer" in str(err)
    assert "(got 'many')" in str(err)


def test_an_unexpected_extra_field_is_an_error() -> None:
    err = input_error(search, {"qurey": "q", "filters": {}})

    assert FieldError("qurey", "unexpected field", "q", "extra_forbidden") in err.errors
    assert "field 'qurey': unexpected field" in str(err)


def test_a_long_offending_value_is_truncated_in_the_message_but_kept_whole() -> None:
    long_value = ["x" * 20] * 20
    err = input_error(add, {"a": long_value, "b": 1})

    assert err.errors[0].value == long_value
    assert len(str(err)) < 200
    assert "...)" in str(err)


def test_input_errors_survive_pickling() -> None:
    err = input_error(add, {"a": "x"})

    copy = pickle.loads(pickle.dumps(err))

    assert str(copy) == str(err)
    assert copy.errors[1].value is MISSING


def test_a_mapping_of_parameter_names_is_validated_with_lax_coercion() -> None:
    validated = add.validate_input(MappingProxyType({"a": "2", "b": 3}))

    assert add.invoke(validated) == 5


def test_a_bare_value_is_bound_to_the_only_parameter() -> None:
    validated = total.validate_input([1, 2, 3])

    assert total.invoke(validated) == 6
    err = input_error(total, [1, "two"])
    assert [e.field for e in err.errors] == ["items[1]"]


def test_a_mapping_without_the_parameter_name_is_bound_whole_to_a_mapping_typed_parameter() -> None:
    @tool
    def configure(config: dict[str, int]) -> dict[str, int]:
        return config

    @tool
    def refine(filters: Filters) -> int:
        return filters.limit

    assert configure.invoke(configure.validate_input({"a": 1})) == {"a": 1}
    assert configure.invoke(configure.validate_input({"config": {"b": 2}})) == {"b": 2}
    assert refine.invoke(refine.validate_input({"limit": 4})) == 4
    assert refine.invoke(refine.validate_input(Filters(limit=5))) == 5


def test_a_mapping_is_not_bound_whole_to_a_single_scalar_parameter() -> None:
    err = input_error(total, {"values": [1]})

    assert [(e.field, e.kind) for e in err.errors] == [
        ("items", "missing"),
        ("values", "extra_forbidden"),
    ]


def test_a_tool_without_parameters_takes_none_or_an_empty_mapping() -> None:
    assert greet.invoke(greet.validate_input(None)) == "hello"
    assert greet.invoke(greet.validate_input({})) == "hello"
    err = input_error(greet, 5)
    assert err.errors[0].kind == "not_a_mapping"
    assert "takes no parameters" in str(err)


def test_none_fills_defaults_when_no_parameter_is_required() -> None:
    @tool
    def page(number: int = 1, size: int = 20) -> tuple[int, int]:
        return number, size

    assert page.invoke(page.validate_input(None)) == (1, 20)


def test_none_for_a_tool_with_required_parameters_reports_them_missing() -> None:
    err = input_error(add, None)

    assert [(e.field, e.kind) for e in err.errors] == [("a", "missing"), ("b", "missing")]


def test_a_tool_with_several_parameters_rejects_a_value_that_is_not_a_mapping() -> None:
    err = input_error(add, [1, 2])

    assert err.errors == [
        FieldError("", "expected a mapping of parameter names ('a', 'b')", [1, 2], "not_a_mapping")
    ]
    assert str(err) == (
        "tool 'add': input: expected a mapping of parameter names ('a', 'b') (got [1, 2])"
    )


def test_an_instance_of_the_input_model_is_accepted_as_it_is() -> None:
    validated = add.validate_input({"a": 1, "b": 2})

    assert add.validate_input(validated) is validated


def test_invoke_passes_nested_models_as_models_not_dicts() -> None:
    validated = search.validate_input({"query": "q", "filters": {"limit": 1}})

    assert search.invoke(validated)[1] == "Filters"


def test_positional_only_parameters_are_passed_positionally() -> None:
    @tool
    def divide(a: float, b: float, /, *, digits: int = 2) -> float:
        return round(a / b, digits)

    args, kwargs = divide.bind(divide.validate_input({"a": 1, "b": 3}), None)

    assert args == (1.0, 3.0)
    assert kwargs == {"digits": 2}
    assert divide.invoke(divide.validate_input({"a": 1, "b": 3, "digits": 3})) == 0.333


def test_an_arbitrary_class_parameter_validates_by_isinstance_but_has_no_json_schema() -> None:
    class Client:
        pass

    @tool
    def use(client: Client) -> bool:
        return isinstance(client, Client)

    assert use.invoke(use.validate_input(Client())) is True
    assert input_error(use, "not a client").errors[0].field == "client"
    with pytest.raises(ToolDefinitionError, match=r"tool 'use'.*JSON schema"):
        use.json_schema()


# -- calling and async ---------------------------------------------------------------------


def test_the_decorated_function_is_still_callable_directly() -> None:
    assert add(2, 3) == 5
    assert add(a=1, b=1) == 2
    assert add.fn(4, 4) == 8


def test_an_async_tools_invoke_returns_a_coroutine_to_be_awaited() -> None:
    @tool
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert double.is_async is True
    assert add.is_async is False
    coro = double.invoke(double.validate_input(21))
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 42


def test_repr_names_the_tool_and_whether_it_is_async() -> None:
    assert repr(add) == "Tool(name='add', async=False)"


# -- output --------------------------------------------------------------------------------


def test_output_is_validated_and_coerced_to_the_declared_type() -> None:
    class Answer(BaseModel):
        text: str

    @tool(output=Answer)
    def answer(question: str) -> dict[str, str]:
        return {"text": question}

    assert answer.validate_output is True
    assert answer.output_type is Answer
    assert answer.check_output(answer("why")) == Answer(text="why")
    assert total.check_output("7") == 7


def test_invalid_output_raises_an_error_naming_the_tool_and_the_problem() -> None:
    @tool
    def count(text: str) -> list[int]:
        return [1, "many"]  # type: ignore[list-item]

    with pytest.raises(ToolOutputError) as info:
        count.check_output(count("x"))

    assert info.value.tool_name == "count"
    assert info.value.errors[0].field == "[1]"
    assert str(info.value).startswith("tool 'count': output[1]: Input should be a valid integer")
    assert "(got 'many')" in str(info.value)


def test_output_is_not_validated_when_unannotated_none_any_or_disabled() -> None:
    @tool
    def unannotated(x: int):  # type: ignore[no-untyped-def]
        return "text"

    @tool
    def nothing(x: int) -> None:
        return None

    @tool
    def loose(x: int) -> Any:
        return x

    @tool(validate_output=False)
    def lying(x: int) -> int:
        return "text"  # type: ignore[return-value]

    assert unannotated.output_type is None
    assert nothing.output_type is None
    assert lying.output_type is int
    for t in (unannotated, nothing, loose, lying):
        assert t.validate_output is False
        assert t.check_output("text") == "text"


# -- class-based tools ---------------------------------------------------------------------


class WebSearch:
    """Search the web."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, query: str) -> str:
        """Run one search.

        Args:
            query (str): the words to search for.
        """
        return self.prefix + query


class IndexSearch(ToolBase):
    """Search the local index."""

    name = "index_search"

    def __init__(self, index: list[str]) -> None:
        self.index = index

    def run(self, query: str, ctx: ToolContext | None = None) -> list[str]:
        """Find matching entries.

        Args:
            query: a substring to look for.
        """
        return [entry for entry in self.index if query in entry]


def test_a_callable_instance_becomes_a_tool_named_after_its_class_in_snake_case() -> None:
    web = tool(WebSearch("web:"))

    assert web.name == "web_search"
    assert web.description == "Search the web."
    props = web.input_schema()["properties"]
    assert props["query"] == {"description": "the words to search for.", "type": "string"}
    assert web.invoke(web.validate_input("cats")) == "web:cats"


def test_an_async_callable_instance_is_an_async_tool() -> None:
    class HTTPFetcher:
        async def __call__(self, url: str) -> str:
            return url

    fetch = as_tool(HTTPFetcher())

    assert fetch.name == "http_fetcher"
    assert fetch.is_async is True
    assert asyncio.run(fetch.invoke(fetch.validate_input("u"))) == "u"


def test_a_tool_base_subclass_is_a_tool_through_as_tool() -> None:
    instance = IndexSearch(["apple", "banana", "grape"])
    built = as_tool(instance)

    assert built is instance.as_tool()
    assert built.name == "index_search"
    assert built.description == "Search the local index."
    assert built.context_param == "ctx"
    assert built.input_schema()["properties"]["query"]["description"] == "a substring to look for."
    assert built.invoke(built.validate_input("ap")) == ["apple", "grape"]
    assert instance("an") == ["banana"]


def test_a_tool_base_subclass_defaults_to_its_snake_case_class_name() -> None:
    class SummarizeText(ToolBase):
        async def run(self, text: str) -> str:
            """Summarize a text."""
            return text[:3]

    built = SummarizeText().as_tool()

    assert built.name == "summarize_text"
    assert built.description == "Summarize a text."
    assert built.is_async is True


def test_a_tool_base_subclass_with_an_invalid_name_fails_when_defined() -> None:
    with pytest.raises(ToolDefinitionError, match=r"tool name 'bad name' of class .*Bad"):

        class Bad(ToolBase):
            name = "bad name"

            def run(self) -> None:
                return None


def test_a_tool_base_subclass_without_run_cannot_become_a_tool() -> None:
    class Empty(ToolBase):
        pass

    with pytest.raises(ToolDefinitionError, match=r"Empty must define run\(\)"):
        as_tool(Empty())


def test_tool_base_output_settings_are_honoured() -> None:
    class Counter(ToolBase):
        output = int
        validate_output = True

        def run(self, text: str) -> object:
            return len(text)

    built = as_tool(Counter())

    assert built.output_type is int
    assert built.check_output("3") == 3


# -- as_tool and definition errors ---------------------------------------------------------


def test_as_tool_returns_a_tool_unchanged_and_wraps_functions_and_partials() -> None:
    def multiply(a: int, b: int) -> int:
        """Multiply."""
        return a * b

    assert as_tool(add) is add
    wrapped = as_tool(multiply)
    assert wrapped.name == "multiply"
    assert wrapped.invoke(wrapped.validate_input({"a": 2, "b": 3})) == 6
    partial = as_tool(functools.partial(multiply, 10))
    assert partial.name == "multiply"
    assert partial.input_schema()["required"] == ["b"]
    assert partial.invoke(partial.validate_input(4)) == 40


@pytest.mark.parametrize(
    ("obj", "pattern"),
    [
        (42, r"42 \(int\) is not a tool"),
        ("search", r"'search' \(str\) is not a tool"),
        (WebSearch, r"class WebSearch is a class, not a tool: pass an instance"),
        (IndexSearch, r"class IndexSearch is a class"),
    ],
)
def test_as_tool_rejects_what_cannot_be_a_tool_and_names_it(obj: object, pattern: str) -> None:
    with pytest.raises(ToolDefinitionError, match=pattern):
        as_tool(obj)


def test_wrapping_a_tool_again_with_tool_is_an_error() -> None:
    with pytest.raises(ToolDefinitionError, match=r"already a tool; use as_tool\(\)"):
        tool(add)


def test_a_name_that_llm_apis_refuse_is_a_definition_error() -> None:
    def fn(x: int) -> int:
        return x

    for bad in ("has space", "", "x" * 65, "dotted.name"):
        with pytest.raises(ToolDefinitionError, match=r"tool name .* is invalid"):
            tool(fn, name=bad)


def test_a_lambda_needs_an_explicit_name() -> None:
    with pytest.raises(ToolDefinitionError, match=r"'<lambda>'.*pass name="):
        tool(lambda x: x)
    assert tool(lambda x: x, name="identity").name == "identity"


def test_variadic_parameters_are_definition_errors() -> None:
    def star_args(*values: int) -> int:
        return sum(values)

    def star_kwargs(**options: int) -> int:
        return len(options)

    with pytest.raises(ToolDefinitionError, match=r"tool 'star_args': parameter \*values"):
        tool(star_args)
    with pytest.raises(ToolDefinitionError, match=r"tool 'star_kwargs': parameter \*\*options"):
        tool(star_kwargs)


def test_two_context_parameters_are_a_definition_error() -> None:
    def twice(a: ToolContext, b: ToolContext) -> None:
        return None

    with pytest.raises(ToolDefinitionError, match=r"'a' and 'b' both ask for the ToolContext"):
        tool(twice)


def test_an_unresolvable_annotation_is_a_definition_error_naming_the_name() -> None:
    def broken(x: Undefined) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0

    with pytest.raises(ToolDefinitionError, match=r"tool 'broken'.*'Undefined' is not defined"):
        tool(broken)


# -- immutability --------------------------------------------------------------------------


def test_a_tool_is_immutable() -> None:
    with pytest.raises(AttributeError, match=r"Tool 'add' is immutable: cannot set 'name'"):
        add.name = "other"
    with pytest.raises(AttributeError, match="immutable"):
        del add.description
    with pytest.raises(AttributeError, match="immutable"):
        add.extra = 1
    assert add.name == "add"


# -- ToolContext ---------------------------------------------------------------------------


def test_report_progress_sends_reports_to_the_sink() -> None:
    reports: list[ProgressReport] = []
    ctx = make_context(sink=reports.append)

    ctx.report_progress(0.5, "halfway")
    ctx.report_progress(message="still going")
    ctx.report_progress(1)

    assert reports == [
        ProgressReport("search", "call-1", 0.5, "halfway"),
        ProgressReport("search", "call-1", None, "still going"),
        ProgressReport("search", "call-1", 1, None),
    ]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), True, "half"])
def test_report_progress_rejects_a_fraction_outside_zero_to_one(fraction: Any) -> None:
    reports: list[ProgressReport] = []
    ctx = make_context(sink=reports.append)

    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\]"):
        ctx.report_progress(fraction)
    assert reports == []


def test_report_progress_without_a_sink_still_validates() -> None:
    ctx = make_context()

    ctx.report_progress(0.2)
    with pytest.raises(ValueError, match="fraction"):
        ctx.report_progress(2.0)


def test_a_failing_progress_sink_is_logged_and_does_not_fail_the_tool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(report: ProgressReport) -> None:
        raise RuntimeError("sink down")

    ctx = make_context(sink=broken)

    with caplog.at_level(logging.ERROR, logger="castflow.tools"):
        ctx.report_progress(0.1)

    assert any("progress sink" in r.message and r.exc_info for r in caplog.records)


def test_the_context_exposes_deadline_remaining_and_cancellation_of_its_scope() -> None:
    clock = ManualClock()
    scope = CancelScope(deadline=10.0, clock=clock)
    ctx = make_context(scope=scope)

    assert ctx.deadline == 10.0
    clock.advance(4.0)
    assert ctx.remaining() == 6.0
    assert ctx.cancelled is False
    ctx.raise_if_cancelled()
    scope.cancel()
    assert ctx.cancelled is True
    with pytest.raises(CancelledError):
        ctx.raise_if_cancelled()


def test_context_resources_are_read_only_and_shared_not_copied() -> None:
    client = threading.Lock()
    given: dict[str, object] = {"client": client}
    ctx = make_context(resources=given)

    assert ctx.resources["client"] is client
    with pytest.raises(TypeError):
        ctx.resources["other"] = 1  # type: ignore[index]
    given["late"] = object()
    assert "late" not in ctx.resources
    proxy = MappingProxyType({"client": client})
    assert make_context(resources=proxy).resources is proxy
    assert dict(make_context().resources) == {}


def test_the_context_logger_is_under_castflow_tools() -> None:
    ctx = make_context()

    assert ctx.logger.name == "castflow.tools.search"
    custom = logging.getLogger("custom")
    assert make_context(logger=custom).logger is custom


def test_a_method_of_a_builtin_type_becomes_a_tool_named_after_the_method() -> None:
    upper = as_tool(str.upper)
    assert upper.name == "upper"
    assert upper.description.startswith("Return a copy of the string")
