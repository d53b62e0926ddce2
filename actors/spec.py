"""Declarative workflows: YAML or JSON specs that mirror the Python API.

A spec is a document with a ``workflow`` (a ``{kind: ...}`` node) and optionally a default
``input`` and run ``timeout``. Tools and functions are referenced by import path
(``package.module:function``). :func:`load_spec` validates a spec and builds the workflow,
:func:`dump_spec` turns a definition built from importable tools back into spec data, and
:func:`spec_schema` gives the JSON Schema of the format. See ``docs/specs.md``.

Example:
    >>> flow = load_spec(
    ...     {"workflow": {"kind": "sequential", "name": "lengths", "steps": ["builtins:len"]}}
    ... )
    >>> flow.kind, flow.name
    ('sequential', 'lengths')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from actors._spec_build import BuildError, build_node
from actors._spec_dump import DumpError, dump_workflow
from actors._spec_errors import SpecError, SpecProblem, join_path
from actors._spec_models import AGGREGATION_EXPECTED, KIND_MODELS, TAGS, SpecDocument
from actors._spec_refs import unresolved_refs
from actors.workflows import Workflow

__all__ = [
    "KINDS",
    "LoadedSpec",
    "SpecError",
    "SpecProblem",
    "dump_spec",
    "load_spec",
    "read_spec",
    "spec_schema",
]

KINDS: tuple[str, ...] = tuple(KIND_MODELS)
"""The workflow kinds a spec can describe (the values of ``kind``)."""

SPEC_VERSION = 1


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A spec read from a file or mapping, with its workflow built.

    Attributes:
        workflow: the workflow the spec describes.
        input: the spec's default input (``None`` if it gives none).
        timeout: the spec's default run deadline in seconds, if any.
        description: what the spec says the workflow does.
        source: where the spec came from (a file path or ``"<mapping>"``).
    """

    workflow: Workflow
    input: Any
    timeout: float | None
    description: str | None
    source: str


def read_spec(spec: str | Path | Mapping[str, Any]) -> LoadedSpec:
    """Read, validate and build a spec, keeping its default input and timeout.

    Args:
        spec: a path to a YAML (``.yaml``/``.yml``) or JSON (``.json``) file, or the
            document as a mapping.

    Returns:
        The built workflow with the spec's defaults.

    Raises:
        SpecError: the file cannot be read or parsed, the document is invalid, an import
            path cannot be resolved, or the workflow it describes is invalid. The error names
            the file, the path inside it and what was expected.
    """
    source, data = _read(spec)
    try:
        document = SpecDocument.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _problems(exc)) from None
    problems = unresolved_refs(document.workflow, "workflow")
    if problems:
        raise SpecError(source, problems)
    try:
        built = build_node(document.workflow, "workflow")
    except BuildError as exc:
        raise SpecError(source, [exc.problem]) from exc
    if not isinstance(built, Workflow):
        problem = SpecProblem(
            "workflow",
            "expected a workflow ({kind: ...}) without step options at the top, "
            f"got {type(built).__name__}",
        )
        raise SpecError(source, [problem])
    return LoadedSpec(
        workflow=built,
        input=document.input,
        timeout=document.timeout,
        description=document.description,
        source=source,
    )


def load_spec(spec: str | Path | Mapping[str, Any]) -> Workflow:
    """The workflow a spec describes.

    Args:
        spec: a path to a YAML or JSON file, or the document as a mapping.

    Raises:
        SpecError: the spec is invalid; see :func:`read_spec`.
    """
    return read_spec(spec).workflow


def dump_spec(workflow: Workflow) -> dict[str, Any]:
    """The spec document of ``workflow``, ready for ``yaml.safe_dump`` or ``json.dumps``.

    Every tool, function, predicate and reducer in the definition must be importable by path:
    defined at module level in a module other than ``__main__`` (no lambdas, no closures).

    Args:
        workflow: the definition.

    Raises:
        SpecError: a part has no import path or no spec form; the error names the path in the
            document that would have held it.
    """
    try:
        node = dump_workflow(workflow)
    except DumpError as exc:
        raise SpecError(f"<{workflow.kind} {workflow.name!r}>", [exc.problem]) from exc
    return {"castflow": SPEC_VERSION, "workflow": node}


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the spec format."""
    schema = SpecDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _read(spec: str | Path | Mapping[str, Any]) -> tuple[str, Any]:
    if isinstance(spec, Mapping):
        return "<mapping>", dict(spec)
    path = Path(spec)
    source = str(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(source, [SpecProblem("", f"cannot read the file: {exc.strerror}")]) from exc
    if path.suffix.lower() == ".json":
        try:
            return source, json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            problem = SpecProblem("", f"invalid JSON at {where}: {exc.msg}")
            raise SpecError(source, [problem]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [SpecProblem("", f"invalid YAML{where}: {reason}")]) from exc
    if not isinstance(data, dict):
        got = type(data).__name__
        raise SpecError(source, [SpecProblem("", f"expected a mapping at the top, got {got}")])
    return source, data


def _problems(exc: ValidationError) -> list[SpecProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part in TAGS))
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"] and error["loc"][-1] == "@name":
            message = AGGREGATION_EXPECTED
        if message.startswith("Input should be "):
            message = "expected " + message.removeprefix("Input should be ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field missing"
        value = error.get("input")
        if error["type"] not in ("missing", "extra_forbidden") and "(got " not in message:
            message += f" (got {_short(value)})"
        problems.append(SpecProblem(join_path(loc), message))
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
