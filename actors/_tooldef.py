"""What a tool is: its name, description, input model, output type and JSON schema.

This module defines tools; it does not run them. The execution layer turns whatever a user
passes into a :class:`Tool` with :func:`as_tool`, validates the input with
:meth:`Tool.validate_input`, calls :meth:`Tool.invoke` with a :class:`ToolContext`, and checks
the result with :meth:`Tool.check_output`.

A tool is declared in one of three ways, all ending in the same :class:`Tool`::

    @tool
    def search(query: str, limit: int = 10) -> list[str]:
        '''Search the index.'''

    class Search(ToolBase):
        name = "search"

        def run(self, query: str, limit: int = 10) -> list[str]: ...

    search_tool = tool(SearchClient())  # any object with a ``__call__``

The input model is derived from the signature: a parameter's annotation is its type (a
parameter without one accepts anything, ``Any``), its default makes it optional, and
``Annotated[T, Field(description=...)]`` or a Google-style ``Args:`` entry in the docstring
describes it. A parameter annotated with :class:`ToolContext` receives the running call's
context and is not part of the input.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import logging
import operator
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    NoReturn,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.json_schema import GenerateJsonSchema

from actors.runtime.errors import CastflowError
from actors.runtime.steps import start_leaf

if TYPE_CHECKING:
    from actors.runtime.cancel import CancelScope
    from actors.runtime.leaves import LeafEnv
    from actors.runtime.results import StepResult
    from actors.runtime.steps import StepCall
    from actors.workflows.result import WorkflowResult

__all__ = [
    "MISSING",
    "TOOL_NAME_PATTERN",
    "FieldError",
    "ProgressReport",
    "Tool",
    "ToolBase",
    "ToolContext",
    "ToolDefinitionError",
    "ToolInputError",
    "ToolOutputError",
    "ToolTask",
    "as_tool",
    "tool",
]

P = ParamSpec("P")
R = TypeVar("R")

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""What a tool name must match: the rule of the function-calling APIs of LLM providers."""

_TOOLS_LOGGER = "castflow.tools"
_REPR_LIMIT = 80
_EMPTY_RESOURCES: Mapping[str, Any] = MappingProxyType({})
_PLAIN_VALUES = frozenset({int, float, str, bytes, bool, type(None)})
"""Types whose values are neither mappings nor models (checked by exact type)."""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class _Missing:
    """The type of :data:`MISSING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The :attr:`FieldError.value` of a required field that was not given."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of a tool's input or output.

    Attributes:
        field: the dotted path of the field, with list positions in brackets, e.g. ``"query"``,
            ``"filters.limit"`` or ``"items[2]"``. ``""`` means the whole value.
        message: what is wrong with it.
        value: the offending value; :data:`MISSING` when a required field was not given.
        kind: a machine-readable kind: pydantic's error type (``"missing"``,
            ``"extra_forbidden"``, ``"string_type"``, ...) or ``"not_a_mapping"`` when a tool
            with several parameters was given something other than a mapping.
    """

    field: str
    message: str
    value: object
    kind: str = "invalid"

    def describe(self, root: str) -> str:
        """Render this error as one clause of an error message.

        Args:
            root: how to call the whole value, e.g. ``"input"`` or ``"output"``.

        Returns:
            e.g. ``"field 'query': Input should be a valid string (got 42)"``.
        """
        if not self.field:
            where = root
        elif root == "input":
            where = f"field {self.field!r}"
        else:
            where = root + self.field if self.field.startswith("[") else f"{root}.{self.field}"
        if self.value is MISSING or self.kind == "extra_forbidden":
            return f"{where}: {self.message}"
        return f"{where}: {self.message} (got {_short_repr(self.value)})"


class ToolDefinitionError(CastflowError):
    """A tool cannot be defined from what was given.

    Raised when the object is not callable, its signature has ``*args`` or ``**kwargs``, its
    name does not match :data:`TOOL_NAME_PATTERN`, an annotation cannot be resolved, or a type
    cannot be validated or described as a JSON schema. The message names the object and the
    problem.
    """

    __module__ = "actors"  # as users import it: how results (ErrorInfo.type) name it


class _FieldsError(CastflowError):
    """An error about a tool's input or output, with one :class:`FieldError` per problem."""

    _subject = ""

    def __init__(self, tool_name: str, errors: list[FieldError]) -> None:
        """Create the error.

        Args:
            tool_name: the tool whose value was invalid.
            errors: one entry per problem; at least one.
        """
        self.tool_name = tool_name
        self.errors = list(errors)
        details = "; ".join(error.describe(self._subject) for error in self.errors)
        super().__init__(f"tool {tool_name!r}: {details}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tool_name, self.errors))


class ToolInputError(_FieldsError):
    """A tool's input is invalid; raised before the tool runs.

    ``str(err)`` names the tool and every bad field, e.g. ``tool 'search': field 'query': Input
    should be a valid string (got 42); field 'limit': Field required``.

    Attributes:
        tool_name: the tool whose input was invalid.
        errors: one :class:`FieldError` per problem.
    """

    __module__ = "actors"  # as users import it: how results (ErrorInfo.type) name it
    _subject = "input"


class ToolOutputError(_FieldsError):
    """A tool returned a value that does not match its declared output type.

    ``str(err)`` names the tool and each problem, e.g. ``tool 'count': output: Input should be a
    valid integer (got 'many')``.

    Attributes:
        tool_name: the tool whose output was invalid.
        errors: one :class:`FieldError` per problem; paths are relative to the output.
    """

    __module__ = "actors"  # as users import it: how results (ErrorInfo.type) name it
    _subject = "output"


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} with failing repr: {type(exc).__name__}>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for detail in exc.errors(include_url=False):
        kind = detail["type"]
        path = _path(detail["loc"])
        if kind == "missing":
            errors.append(FieldError(path, "Field required", MISSING, kind))
        elif kind == "extra_forbidden":
            errors.append(FieldError(path, "unexpected field", detail["input"], kind))
        else:
            errors.append(FieldError(path, detail["msg"], detail["input"], kind))
    return errors


# --------------------------------------------------------------------------------------------
# ToolContext
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """A running tool's report of how far it has come.

    Attributes:
        tool_name: the tool that reported.
        call_id: the call that reported.
        fraction: the share done, in ``[0, 1]``, or ``None`` when unknown.
        message: what the tool is doing, or ``None``.

    Raises:
        ValueError: ``fraction`` is outside ``[0, 1]`` or not a number.
    """

    tool_name: str
    call_id: str
    fraction: float | None
    message: str | None

    def __post_init__(self) -> None:
        fraction = self.fraction
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0.0 <= fraction <= 1.0
        ):
            raise ValueError(
                f"progress of tool {self.tool_name!r}: fraction must be a number in [0, 1] "
                f"or None, got {fraction!r}"
            )


class ToolContext:
    """What a running tool may ask for: cancellation, deadline, resources, logging, progress.

    A tool receives it by annotating a parameter (of any name) with ``ToolContext``; that
    parameter is not part of the tool's input or JSON schema. The execution layer creates one
    per call.

    Attributes:
        scope: the call's cancel scope.
        tool_name: the running tool's name.
        call_id: the identifier of this call.
        logger: a logger under ``castflow.tools`` for this tool.
        resources: shared clients and connection pools, read-only.
    """

    __slots__ = ("_progress_sink", "call_id", "logger", "resources", "scope", "tool_name")

    def __init__(
        self,
        *,
        scope: CancelScope,
        tool_name: str,
        call_id: str,
        resources: Mapping[str, Any] | None = None,
        progress_sink: Callable[[ProgressReport], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """Create the context of one call.

        Args:
            scope: the call's cancel scope.
            tool_name: the running tool's name.
            call_id: the identifier of this call.
            resources: shared objects the tool may use. A ``MappingProxyType`` is kept as it
                is; any other mapping is copied into one.
            progress_sink: receives every :class:`ProgressReport`; without one, reports are
                validated and dropped.
            logger: defaults to ``logging.getLogger("castflow.tools.<tool_name>")``.
        """
        self.scope = scope
        self.tool_name = tool_name
        self.call_id = call_id
        if resources is None:
            self.resources: Mapping[str, Any] = _EMPTY_RESOURCES
        elif isinstance(resources, MappingProxyType):
            self.resources = resources
        else:
            self.resources = MappingProxyType(dict(resources))
        self._progress_sink = progress_sink
        self.logger = (
            logger if logger is not None else logging.getLogger(f"{_TOOLS_LOGGER}.{tool_name}")
        )

    @property
    def deadline(self) -> float | None:
        """The scope's deadline on its clock, or ``None`` when there is none."""
        return self.scope.deadline

    @property
    def cancelled(self) -> bool:
        """Whether the call has been cancelled."""
        return self.scope.cancelled

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` when there is none)."""
        return self.scope.remaining()

    def raise_if_cancelled(self) -> None:
        """Raise ``CancelledError`` if the call has been cancelled.

        Raises:
            actors.runtime.errors.CancelledError: the call has been cancelled.
        """
        self.scope.raise_if_cancelled()

    def report_progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report how far the tool has come.

        A failing progress sink is logged and does not fail the tool: progress is telemetry.

        Args:
            fraction: the share done, in ``[0, 1]``, or ``None`` when unknown.
            message: what the tool is doing.

        Raises:
            ValueError: ``fraction`` is outside ``[0, 1]`` or not a number.
        """
        report = ProgressReport(self.tool_name, self.call_id, fraction, message)
        sink = self._progress_sink
        if sink is None:
            return
        try:
            sink(report)
        except Exception:
            self.logger.exception("progress sink of tool %r failed", self.tool_name)

    def __repr__(self) -> str:
        return f"ToolContext(tool_name={self.tool_name!r}, call_id={self.call_id!r})"


# --------------------------------------------------------------------------------------------
# Reading signatures, annotations and docstrings
# --------------------------------------------------------------------------------------------

_ARGS_SECTIONS = frozenset({"Args:", "Arguments:", "Parameters:", "Params:"})
_SECTION_HEADER = re.compile(r"^[A-Z][A-Za-z ]*:$")
_ARG_ENTRY = re.compile(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _snake_case(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc or not isinstance(doc, str):
        return ""
    lines: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if not stripped or (not lines and stripped in _ARGS_SECTIONS):
            break
        lines.append(stripped)
    return " ".join(lines)


def _arg_descriptions(doc: str | None) -> dict[str, str]:
    """The entries of a Google-style ``Args:`` section: parameter name to description."""
    if not doc or not isinstance(doc, str):
        return {}
    found: dict[str, str] = {}
    in_args = False
    entry_indent: int | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not in_args:
            in_args = indent == 0 and stripped in _ARGS_SECTIONS
            continue
        if not stripped:
            continue
        if indent == 0:
            if _SECTION_HEADER.match(stripped):
                break
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent <= entry_indent:
            match = _ARG_ENTRY.match(stripped)
            current = match.group(1) if match else None
            if current is not None and match is not None:
                found[current] = match.group(2)
        elif current is not None:
            found[current] = f"{found[current]} {stripped}".strip()
    return {name: text for name, text in found.items() if text}


def _strip_annotated(hint: Any) -> Any:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _union_members(hint: Any) -> tuple[Any, ...]:
    hint = _strip_annotated(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(_strip_annotated(member) for member in typing.get_args(hint))
    return (hint,)


def _is_context_hint(hint: Any) -> bool:
    members = [m for m in _union_members(hint) if m is not type(None)]
    return (
        len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], ToolContext)
    )


def _takes_mapping(hint: Any) -> bool:
    """Whether a value of this type is naturally given as a mapping (dict, model, ...)."""
    for member in _union_members(hint):
        origin = typing.get_origin(member) or member
        if not isinstance(origin, type):
            continue
        if (
            issubclass(origin, Mapping | BaseModel)
            or typing.is_typeddict(origin)
            or dataclasses.is_dataclass(origin)
        ):
            return True
    return False


def _caller_namespace(depth: int) -> dict[str, Any] | None:
    """The local names of a calling frame, when it is not a module's top level.

    String annotations of a tool defined inside a function may name classes local to that
    function; ``typing.get_type_hints`` only sees the function's globals.
    """
    frame = sys._getframe(depth + 1)
    while frame.f_code.co_name == "__init_subclass__" and frame.f_back is not None:
        frame = frame.f_back  # a subclass's own __init_subclass__ calling super()
    if frame.f_locals is frame.f_globals:
        return None
    return dict(frame.f_locals)


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a callable's name, docs and annotations come from."""

    default_name: str
    summary_doc: str | None
    args_doc: str | None
    hints_target: Any  # None when the callable has no annotations to read (builtins)
    is_async: bool


def _origin_of(fn: Any) -> _Origin:
    if isinstance(fn, functools.partial):
        inner = _origin_of(fn.func)
        return dataclasses.replace(inner, is_async=inspect.iscoroutinefunction(fn))
    if inspect.ismethod(fn):
        func = fn.__func__
        return _Origin(
            func.__name__, func.__doc__, func.__doc__, func, inspect.iscoroutinefunction(fn)
        )
    if inspect.isfunction(fn):
        return _Origin(fn.__name__, fn.__doc__, fn.__doc__, fn, inspect.iscoroutinefunction(fn))
    if inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn):
        # Builtins and methods of builtin types (``len``, ``str.upper``).
        return _Origin(fn.__name__, fn.__doc__, fn.__doc__, None, False)
    call = type(fn).__call__
    call_doc = getattr(call, "__doc__", None)
    return _Origin(
        _snake_case(type(fn).__name__),
        type(fn).__doc__ or call_doc,
        call_doc,
        call if inspect.isfunction(call) else None,
        inspect.iscoroutinefunction(fn.__call__),
    )


def _describe_object(obj: object) -> str:
    if isinstance(obj, type):
        return f"class {obj.__qualname__}"
    name = getattr(obj, "__qualname__", None)
    if isinstance(name, str) and callable(obj):
        return f"{name}()"
    return _short_repr(obj)


class _SchemaWithoutFieldTitles(GenerateJsonSchema):
    """Drops the per-field ``title`` pydantic derives from names: noise for an LLM."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _output_adapter(tool_name: str, output_type: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(output_type)
    except PydanticSchemaGenerationError:
        pass
    except (PydanticUserError, TypeError) as exc:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: output type {output_type!r} cannot be validated: {exc}"
        ) from exc
    try:
        return TypeAdapter(output_type, config=ConfigDict(arbitrary_types_allowed=True))
    except (PydanticUserError, TypeError) as exc:  # includes PydanticSchemaGenerationError
        raise ToolDefinitionError(
            f"tool {tool_name!r}: output type {output_type!r} cannot be validated: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class _InputPlan:
    """How a signature maps onto an input model and back onto a call.

    ``call_plan`` has one ``(parameter, model field or None for the context, positional)``
    entry per parameter, in signature order.
    """

    fields: dict[str, Any]
    call_plan: tuple[tuple[str, str | None, bool], ...]
    context_param: str | None
    context_required: bool
    param_names: tuple[str, ...]


def _plan_inputs(
    tool_name: str,
    signature: inspect.Signature,
    hints: Mapping[str, Any],
    arg_docs: Mapping[str, str],
) -> _InputPlan:
    fields: dict[str, Any] = {}
    call_plan: list[tuple[str, str | None, bool]] = []
    context_param: str | None = None
    context_required = False
    param_names: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {star}{param.name} cannot be described as an "
                "input field; declare each parameter by name"
            )
        positional = param.kind is param.POSITIONAL_ONLY
        hint = hints.get(param.name, Any)
        if _is_context_hint(hint):
            if context_param is not None:
                raise ToolDefinitionError(
                    f"tool {tool_name!r}: parameters {context_param!r} and {param.name!r} "
                    "both ask for the ToolContext; keep one"
                )
            context_param = param.name
            context_required = param.default is param.empty
            call_plan.append((param.name, None, positional))
            continue
        field_name, annotation = _field_for(param.name, hint, arg_docs.get(param.name))
        default = ... if param.default is param.empty else param.default
        fields[field_name] = (annotation, default)
        call_plan.append((param.name, field_name, positional))
        param_names.append(param.name)
    return _InputPlan(fields, tuple(call_plan), context_param, context_required, tuple(param_names))


def _validated_caller(
    fn: Callable[..., Any], call_plan: tuple[tuple[str, str | None, bool], ...]
) -> Callable[[BaseModel], Any] | None:
    """For a tool of one parameter (not a ``ToolContext``), what calls ``fn`` with a validated
    input, its attribute read made ahead; ``None`` for any other shape (``Tool.invoke`` then).

    A plain tool runs once per branch of a fan-out, and most take one parameter.
    """
    if len(call_plan) != 1:
        return None
    name, source, positional = call_plan[0]
    if source is None:
        return None
    get = operator.attrgetter(source)
    if positional:
        return lambda validated: fn(get(validated))
    return lambda validated: fn(**{name: get(validated)})


def _build_input_model(tool_name: str, fields: dict[str, Any]) -> type[BaseModel]:
    try:
        return create_model(
            f"{_camel_case(tool_name)}Input",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
    except (PydanticUserError, TypeError, ValueError, NameError) as exc:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: cannot build its input model: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Tool
# --------------------------------------------------------------------------------------------


class Tool(Generic[P, R]):
    """A callable with a name, a description, a validated input and an optional output type.

    Build one with :func:`tool`, :func:`as_tool` or :meth:`ToolBase.as_tool`, or directly with
    ``Tool(fn, ...)``. Everything expensive (the input model, the output adapter) is built here,
    once. A tool is immutable; calling it calls the underlying function directly.

    Attributes:
        name: the tool's name; matches :data:`TOOL_NAME_PATTERN`.
        description: what the tool does, for people and LLMs; may be empty.
        fn: the underlying callable.
        is_async: whether ``fn`` is a coroutine function (``invoke`` then returns a coroutine).
        input_model: the pydantic model of the input, derived from the signature
            (``extra="forbid"``).
        output_type: the declared output type (``output=`` or the return annotation); ``None``
            when there is none or it is ``None``.
        context_param: the name of the parameter that receives the :class:`ToolContext`, if any.
        validate_output: whether :meth:`check_output` validates: it was asked for and an output
            type other than ``None`` or ``Any`` is declared.
        isolated: whether calls run in a worker process (see ``actors.isolated``).
        plain: whether a call runs in a thread and never sees its scope (no ``ToolContext``):
            a parallel step may then prepare its branches ahead and let its workers start them.
    """

    __slots__ = (
        "_call_plan",
        "_call_validated",
        "_context_required",
        "_has_required",
        "_import_path",
        "_output_adapter",
        "_param_names",
        "_schema",
        "_single_key",
        "_single_takes_mapping",
        "context_param",
        "description",
        "fn",
        "input_model",
        "is_async",
        "isolated",
        "name",
        "output_type",
        "plain",
        "validate_output",
    )

    name: str
    description: str
    fn: Callable[P, R]
    is_async: bool
    input_model: type[BaseModel]
    output_type: Any
    context_param: str | None
    validate_output: bool
    isolated: bool
    plain: bool
    _import_path: str | None
    _output_adapter: TypeAdapter[Any] | None
    _call_plan: tuple[tuple[str, str | None, bool], ...]
    _call_validated: Callable[[BaseModel], Any] | None
    _context_required: bool
    _param_names: tuple[str, ...]
    _has_required: bool
    _single_key: str | None
    _single_takes_mapping: bool
    _schema: dict[str, Any] | None

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        output: Any = None,
        validate_output: bool = True,
        namespace: Mapping[str, Any] | None = None,
        isolated: bool = False,
    ) -> None:
        """Define a tool from a callable.

        Args:
            fn: a function, method, ``functools.partial`` or object with a ``__call__``.
            name: defaults to the function's name, or the class name in snake case for a
                callable object.
            description: defaults to the first paragraph of the docstring (for a callable
                object: of the class, else of ``__call__``).
            output: the output type or model; defaults to the return annotation.
            validate_output: whether :meth:`check_output` validates against the output type.
            namespace: extra names for resolving string annotations, e.g. classes local to the
                function that defines the tool (``@tool`` passes its caller's locals).
            isolated: run each call in a worker process; ``fn`` must then be a function a
                worker can import (defined with ``def`` at the top level of a module).

        Raises:
            ToolDefinitionError: the object cannot be a tool, or cannot be isolated; the
                message says why.
        """
        if isinstance(fn, Tool | ToolBase):
            raise ToolDefinitionError(
                f"{_describe_object(fn)} is already a tool; use as_tool() to get its Tool"
            )
        if isinstance(fn, type):
            raise ToolDefinitionError(
                f"{_describe_object(fn)} is a class, not a tool: pass an instance"
            )
        if not callable(fn):
            raise ToolDefinitionError(f"{_describe_object(fn)} is not callable, so not a tool")
        origin = _origin_of(fn)
        tool_name = origin.default_name if name is None else name
        if not isinstance(tool_name, str) or not TOOL_NAME_PATTERN.match(tool_name):
            hint = " (pass name=...)" if name is None else ""
            raise ToolDefinitionError(
                f"tool name {tool_name!r} of {_describe_object(fn)} is invalid{hint}: it must be "
                "1 to 64 letters, digits, '_' or '-'"
            )
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: cannot read the signature of {_describe_object(fn)}: {exc}"
            ) from exc
        hints = _resolve_hints(tool_name, fn, origin.hints_target, namespace)
        plan = _plan_inputs(tool_name, signature, hints, _arg_descriptions(origin.args_doc))
        input_model = _build_input_model(tool_name, plan.fields)

        output_type = output if output is not None else hints.get("return")
        if output_type is type(None):
            output_type = None
        adapter = None
        if validate_output and output_type is not None and output_type is not Any:
            adapter = _output_adapter(tool_name, output_type)

        # A bare value binds to the only parameter, or else to the only required one, so a
        # pipeline's previous output flows into `summarize(text, max_words=100)`.
        required = [
            field.alias or key
            for key, field in input_model.model_fields.items()
            if field.is_required()
        ]
        single = plan.param_names[0] if len(plan.param_names) == 1 else None
        if single is None and len(required) == 1:
            single = required[0]
        import_path = _isolation_path(fn, tool_name) if isolated else None

        setattr_ = object.__setattr__
        setattr_(self, "name", tool_name)
        setattr_(
            self,
            "description",
            _summary(origin.summary_doc) if description is None else description,
        )
        setattr_(self, "fn", fn)
        setattr_(self, "is_async", origin.is_async)
        setattr_(self, "input_model", input_model)
        setattr_(self, "output_type", output_type)
        setattr_(self, "context_param", plan.context_param)
        setattr_(self, "validate_output", adapter is not None)
        setattr_(self, "_output_adapter", adapter)
        calling = {
            "_call_plan": plan.call_plan,
            "_call_validated": _validated_caller(fn, plan.call_plan),
            "_context_required": plan.context_required,
            "_param_names": plan.param_names,
        }
        for key, value in calling.items():
            setattr_(self, key, value)
        setattr_(
            self, "_has_required", any(f.is_required() for f in input_model.model_fields.values())
        )
        setattr_(self, "_single_key", single)
        setattr_(
            self,
            "_single_takes_mapping",
            single is not None and _takes_mapping(hints.get(single, Any)),
        )
        setattr_(self, "_schema", None)
        setattr_(self, "isolated", import_path is not None)
        setattr_(self, "_import_path", import_path)
        setattr_(
            self,
            "plain",
            not self.is_async and not self.isolated and self.context_param is None,
        )

    # -- immutability ---------------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Tool {self.name!r} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Tool {self.name!r} is immutable: cannot delete {name!r}")

    # -- input ------------------------------------------------------------------------------

    def validate_input(self, data: object) -> BaseModel:
        """Validate a call's input into an instance of :attr:`input_model`.

        Accepted forms:

        - an instance of :attr:`input_model`, returned as it is;
        - a mapping of parameter names to values;
        - ``None``, for a tool whose parameters all have defaults (or the value of its only
          parameter, see below);
        - for a tool with exactly one parameter, or exactly one required parameter: any value
          that is not a mapping is that parameter's value, so a pipeline's previous output
          flows in. When that parameter's
          type is itself a mapping, model, dataclass or TypedDict, a mapping that does not have
          the parameter's name as a key is also taken as its value.

        Args:
            data: the input.

        Returns:
            The validated input.

        Raises:
            ToolInputError: the input is invalid; it names every bad field and value.
        """
        model = self.input_model
        kind = type(data)
        if kind is model:
            return cast("BaseModel", data)
        single = self._single_key
        # A plain value (the common case in a pipeline) skips the abstract-class checks.
        plain = kind in _PLAIN_VALUES
        if kind is dict or (not plain and isinstance(data, Mapping)):
            mapping = cast("Mapping[str, Any]", data)
            if self._single_takes_mapping and single not in mapping:
                data = {single: mapping}
            elif kind is not dict:
                data = dict(mapping)
        elif not plain and isinstance(data, model):
            return data
        elif data is None and (single is None or not self._has_required):
            data = {}
        elif single is not None:
            data = {single: data}
        else:
            names = ", ".join(repr(n) for n in self._param_names)
            expected = (
                f"expected a mapping of parameter names ({names})"
                if names
                else "expected None or an empty mapping: the tool takes no parameters"
            )
            raise ToolInputError(self.name, [FieldError("", expected, data, "not_a_mapping")])
        try:
            # model_validate without its frame: one call less per input.
            validated: BaseModel = model.__pydantic_validator__.validate_python(data)
        except ValidationError as exc:
            raise ToolInputError(self.name, _field_errors(exc)) from None
        return validated

    # -- calling ----------------------------------------------------------------------------

    def bind(
        self, validated: BaseModel, ctx: ToolContext | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments that call :attr:`fn` with a validated input.

        Values are the model's attributes, so nested models stay models.

        Args:
            validated: a result of :meth:`validate_input`.
            ctx: the call's context; needed when the tool asks for one without a default.

        Returns:
            ``(args, kwargs)``: ``args`` holds only positional-only parameters.

        Raises:
            TypeError: the tool asks for a ``ToolContext`` and ``ctx`` is ``None``.
        """
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param_name, source, positional in self._call_plan:
            if source is None:
                if ctx is None:
                    if self._context_required:
                        raise TypeError(
                            f"tool {self.name!r} takes a ToolContext in parameter "
                            f"{param_name!r}; pass ctx"
                        )
                    if positional:
                        args.append(None)
                    continue
                value: Any = ctx
            else:
                value = getattr(validated, source)
            if positional:
                args.append(value)
            else:
                kwargs[param_name] = value
        return tuple(args), kwargs

    def invoke(self, validated: BaseModel, ctx: ToolContext | None = None) -> Any:
        """Call :attr:`fn` with a validated input.

        Args:
            validated: a result of :meth:`validate_input`.
            ctx: the call's context; needed when the tool asks for one without a default.

        Returns:
            What ``fn`` returns; for an async tool, the coroutine, not yet awaited.

        Raises:
            TypeError: the tool asks for a ``ToolContext`` and ``ctx`` is ``None``.
        """
        args, kwargs = self.bind(validated, ctx)
        return self.fn(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the underlying function directly, without validation."""
        return self.fn(*args, **kwargs)

    def prepare(self, input: object) -> ToolTask:
        """Validate ``input`` and return the task a leaf worker runs (the ``Leaf`` protocol).

        Raises:
            ToolInputError: the input does not fit the signature; nothing has run.
        """
        if self._import_path is not None:
            from actors.isolated import IsolatedTask  # noqa: PLC0415 - a cycle

            return IsolatedTask(self, self.validate_input(input), self._import_path)
        return ToolTask(self, self.validate_input(input))

    # -- as a step --------------------------------------------------------------------------

    def start(self, call: StepCall) -> None:
        """Run as a step (the ``Step`` protocol): validate the input, submit to the leaf pool.

        Raises:
            ToolInputError: the input does not fit the signature; nothing has run.
        """
        start_leaf(self, call)

    def present(self, result: StepResult, run_id: str) -> WorkflowResult:
        """A one-step run's result: a ``WorkflowResult`` whose only step is this tool's call."""
        from actors.workflows.result import WorkflowResult  # noqa: PLC0415 - same floor

        return WorkflowResult.from_step(result, run_id, kind="tool")

    # -- output -----------------------------------------------------------------------------

    def check_output(self, value: object) -> Any:
        """Validate a tool's result against its declared output type.

        Args:
            value: what the tool returned (for an async tool, what its coroutine returned).

        Returns:
            The validated value, coerced to the output type (e.g. a dict into the declared
            model); ``value`` itself when nothing is validated.

        Raises:
            ToolOutputError: the value does not match the output type.
        """
        adapter = self._output_adapter
        if adapter is None:
            return value
        try:
            # The adapter's validator itself: one frame less per call than validate_python.
            return adapter.validator.validate_python(value)
        except ValidationError as exc:
            raise ToolOutputError(self.name, _field_errors(exc)) from None

    # -- schema -----------------------------------------------------------------------------

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the input: an object with ``properties`` and ``required``.

        Returns:
            A fresh dict on every call; nested models are under ``$defs``.

        Raises:
            ToolDefinitionError: a parameter's type has no JSON schema (e.g. an arbitrary
                class, which validation accepts by ``isinstance``).
        """
        schema = self._schema
        if schema is None:
            schema = self._build_schema()
            object.__setattr__(self, "_schema", schema)
        return copy.deepcopy(schema)

    def json_schema(self) -> dict[str, Any]:
        """The function-calling schema LLM APIs take (OpenAI's shape).

        Returns:
            ``{"type": "function", "function": {"name", "description", "parameters"}}`` where
            ``parameters`` is :meth:`input_schema`.

        Raises:
            ToolDefinitionError: a parameter's type has no JSON schema.
        """
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema(),
            },
        }

    def _build_schema(self) -> dict[str, Any]:
        try:
            raw = self.input_model.model_json_schema(schema_generator=_SchemaWithoutFieldTitles)
        except PydanticUserError as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: its input cannot be described as a JSON schema: {exc}"
            ) from exc
        raw.pop("title", None)
        raw.pop("type", None)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": raw.pop("properties", {}),
            "required": raw.pop("required", []),
        }
        schema.update(raw)
        return schema

    def __repr__(self) -> str:
        isolated = ", isolated=True" if self.isolated else ""
        return f"Tool(name={self.name!r}, async={self.is_async}{isolated})"


def _isolation_path(fn: object, tool_name: str) -> str:
    """The import path a worker process finds ``fn`` by (``actors.isolated`` checks it)."""
    from actors.isolated import import_path_of  # noqa: PLC0415 - a cycle

    return import_path_of(fn, tool_name)


def _camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]+", name)) or "Tool"


def _field_for(param_name: str, hint: Any, doc: str | None) -> tuple[str, Any]:
    """The model field name and annotation of a parameter.

    Names pydantic cannot use as fields (leading underscore, ``model_`` prefix, clashes with
    ``BaseModel`` attributes such as ``json``) get an internal field name with the parameter's
    name as alias, so the input and the schema still use the parameter's name.
    """
    metadata: list[Any] = []
    field_name = param_name
    if param_name.startswith(("_", "model_")) or hasattr(BaseModel, param_name):
        field_name = f"param_{param_name.lstrip('_')}_"
        metadata.append(Field(alias=param_name))
    if doc and not _has_description(hint):
        metadata.append(Field(description=doc))
    if not metadata:
        return field_name, hint
    return field_name, typing.Annotated[(hint, *metadata)]


def _has_description(hint: Any) -> bool:
    if typing.get_origin(hint) is not typing.Annotated:
        return False
    return any(getattr(item, "description", None) for item in typing.get_args(hint)[1:])


def _resolve_hints(
    tool_name: str, fn: object, target: Any, namespace: Mapping[str, Any] | None
) -> dict[str, Any]:
    if target is None:
        return {}
    try:
        return typing.get_type_hints(
            target, localns=dict(namespace) if namespace else None, include_extras=True
        )
    except Exception as exc:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: cannot resolve the annotations of {_describe_object(fn)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Declaring tools
# --------------------------------------------------------------------------------------------


class ToolBase:
    """Base class of tools written as classes.

    A subclass defines ``run`` (sync or async) and may set ``name`` (default: the class name
    in snake case), ``description`` (default: the first paragraph of the class docstring, else
    of ``run``'s), ``output`` and ``validate_output``. Its instances are accepted wherever a
    tool is, through :func:`as_tool`, and calling one calls ``run``::

        class Search(ToolBase):
            '''Search the index.'''

            name = "search"

            def __init__(self, client: Client) -> None:
                self.client = client

            def run(self, query: str, ctx: ToolContext) -> list[str]: ...
    """

    __slots__ = ("__tool",)

    __tool: Tool[..., Any]
    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    output: ClassVar[Any] = None
    validate_output: ClassVar[bool] = True
    _tool_namespace: ClassVar[dict[str, Any] | None] = None

    run: Callable[..., Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._tool_namespace = _caller_namespace(1)
        name = cls.__dict__.get("name")
        if name is not None and (not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name)):
            raise ToolDefinitionError(
                f"tool name {name!r} of class {cls.__qualname__} is invalid: it must be 1 to 64 "
                "letters, digits, '_' or '-'"
            )

    def as_tool(self) -> Tool[..., Any]:
        """This instance's :class:`Tool`, built on first use and kept.

        Raises:
            ToolDefinitionError: the class defines no ``run``, or ``run`` cannot be a tool.
        """
        try:
            return self.__tool
        except AttributeError:
            pass
        cls = type(self)
        run = getattr(self, "run", None)
        if run is None:
            raise ToolDefinitionError(f"class {cls.__qualname__} must define run() to be a tool")
        built = Tool(
            run,
            name=self.name if self.name is not None else _snake_case(cls.__name__),
            description=self.description
            if self.description is not None
            else _summary(cls.__doc__) or None,
            output=self.output,
            validate_output=self.validate_output,
            namespace=cls._tool_namespace,
        )
        self.__tool = built
        return built

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``run`` directly, without validation."""
        return self.run(*args, **kwargs)


@overload
def tool(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    output: Any = None,
    validate_output: bool = True,
    isolated: bool = False,
) -> Tool[P, R]: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    output: Any = None,
    validate_output: bool = True,
    isolated: bool = False,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    output: Any = None,
    validate_output: bool = True,
    isolated: bool = False,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Make a tool of a function or callable object: ``@tool``, ``@tool()`` or ``@tool(...)``.

    The decorated name is bound to the :class:`Tool`, which stays callable as the plain
    function.

    Args:
        fn: the function or callable object (when used as ``@tool`` or ``tool(obj)``).
        name: defaults to the function's name, or the class name in snake case.
        description: defaults to the first paragraph of the docstring.
        output: the output type or model; defaults to the return annotation.
        validate_output: whether the result is validated against the output type.
        isolated: run each call in a worker process (hard cancellation, memory budgets, CPU
            parallelism); the function must be defined at the top level of a module.

    Returns:
        The Tool, or a decorator that makes one.

    Raises:
        ToolDefinitionError: the object cannot be a tool; the message says why.
    """
    namespace = _caller_namespace(1)

    def make(target: Callable[P, R]) -> Tool[P, R]:
        return Tool(
            target,
            name=name,
            description=description,
            output=output,
            validate_output=validate_output,
            namespace=namespace,
            isolated=isolated,
        )

    if fn is None:
        return make
    return make(fn)


def as_tool(obj: object) -> Tool[..., Any]:
    """The :class:`Tool` for anything a user may pass as a tool.

    Args:
        obj: a Tool (returned as it is), a :class:`ToolBase` instance, a function, or an
            object with a ``__call__``.

    Returns:
        The Tool.

    Raises:
        ToolDefinitionError: ``obj`` cannot be a tool; the message names it and says why.
    """
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, ToolBase):
        return obj.as_tool()
    if not callable(obj):
        raise ToolDefinitionError(
            f"{_describe_object(obj)} ({type(obj).__name__}) is not a tool: expected a Tool, "
            "a ToolBase instance, a function or a callable object"
        )
    return Tool(obj)


class ToolTask:
    """One validated call of a tool, ready for a leaf worker (the ``LeafTask`` protocol)."""

    __slots__ = ("tool", "validated")

    def __init__(self, tool: Tool[..., Any], validated: BaseModel) -> None:
        self.tool = tool
        self.validated = validated

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.tool.name

    @property
    def is_async(self) -> bool:
        """Whether the tool is a coroutine function."""
        return self.tool.is_async

    @property
    def uses_env(self) -> bool:
        """Whether the tool sees its env (scope, call id, resources): only through a
        ``ToolContext`` parameter."""
        return self.tool.context_param is not None

    def execute(self, env: LeafEnv | None) -> Any:
        """Call the tool (an async tool's coroutine is returned, not awaited)."""
        ctx = None
        if self.tool.context_param is not None:
            assert env is not None  # a task that uses its env is given one
            ctx = ToolContext(
                scope=env.scope,
                tool_name=self.tool.name,
                call_id=env.call_id,
                resources=env.resources,
                progress_sink=lambda report: env.report_progress(report.fraction, report.message),
            )
        tool = self.tool
        args, kwargs = tool.bind(self.validated, ctx)  # as ``invoke``, one call less per run
        return tool.fn(*args, **kwargs)

    def complete(self, value: Any) -> Any:
        """Validate the tool's output when it declares an output type."""
        return self.tool.check_output(value) if self.tool.validate_output else value

    def run(self) -> Any:
        """``complete(execute(None))`` in one call, for a tool that takes no ``ToolContext``
        (a ``plain`` tool's task: what a parallel step's workers run for each branch)."""
        tool = self.tool
        call = tool._call_validated
        value = tool.invoke(self.validated) if call is None else call(self.validated)
        return tool.check_output(value) if tool.validate_output else value

    def __repr__(self) -> str:
        return f"ToolTask({self.tool.name!r})"
