"""Import paths (``package.module:attribute``) in specs: resolving them and finding them."""

from __future__ import annotations

import builtins
import importlib
import re
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel

from actors._spec_errors import SpecProblem

__all__ = [
    "REF_PATTERN",
    "RefError",
    "builtin_exception_name",
    "check_ref",
    "ref_of",
    "resolve",
    "resolve_exception",
    "unresolved_refs",
]

REF_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
_REF = re.compile(REF_PATTERN)


class RefError(Exception):
    """An import path could not be resolved (or an object has no import path); says why."""


def check_ref(value: str) -> str:
    """``value`` if it looks like ``package.module:attribute``.

    Raises:
        ValueError: it does not; the message shows the expected form.
    """
    if not _REF.match(value):
        msg = f"expected an import path 'package.module:function' (got {value!r})"
        raise ValueError(msg)
    return value


def resolve(ref: str) -> Any:
    """The object that the import path ``ref`` names.

    Raises:
        RefError: the module cannot be imported (with the underlying error) or has no such
            attribute.
    """
    module_name, _, attribute = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        msg = f"cannot import module {module_name!r} for {ref!r}: {type(exc).__name__}: {exc}"
        raise RefError(msg) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"module {module_name!r} has no attribute {attribute!r} (looking up {ref!r})"
            raise RefError(msg) from None
    return obj


def resolve_exception(name: str) -> type[BaseException]:
    """An exception class from a builtin name (``"ConnectionError"``) or an import path.

    Raises:
        RefError: nothing by that name, or it is not an exception class.
    """
    if ":" in name:
        obj = resolve(name)
    else:
        obj = getattr(builtins, name, None)
        if obj is None:
            msg = f"{name!r} is not a builtin exception; use 'package.module:ExceptionClass'"
            raise RefError(msg)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        msg = f"{name!r} is not an exception class (got {obj!r})"
        raise RefError(msg)
    return obj


def ref_of(obj: Any, *also: Any) -> str:
    """The import path of ``obj``: ``module:qualname``, checked to lead back to it.

    Args:
        obj: a module-level function, class or object with ``__module__``/``__qualname__``.
        also: other objects the path may lead to instead (a tool's decorated function).

    Raises:
        RefError: ``obj`` is a lambda, a closure, defined in ``__main__``, or its path does not
            lead back to it.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        msg = f"{obj!r} has no import path (no __module__/__qualname__)"
        raise RefError(msg)
    if "<" in qualname:
        msg = (
            f"{module}.{qualname} is a lambda or a local function; specs reference functions "
            "by import path, so define it at module level"
        )
        raise RefError(msg)
    if module == "__main__":
        msg = f"{qualname} is defined in __main__, which a spec cannot import; move it to a module"
        raise RefError(msg)
    ref = f"{module}:{qualname}"
    found = resolve(ref)
    if found is not obj and all(found is not other for other in also):
        msg = f"{ref!r} does not lead back to {obj!r} (it names {found!r})"
        raise RefError(msg)
    return ref


def builtin_exception_name(kind: type[BaseException]) -> str:
    """``"ConnectionError"`` for builtin exceptions, ``module:qualname`` for others."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return ref_of(kind)


def unresolved_refs(node: object, path: str) -> list[SpecProblem]:
    """Every import path in ``node`` (a validated spec node, or a step's import path) that
    cannot be resolved.

    The build stops at its first problem; this lists every import that fails, in document
    order, each at its path (``workflow.steps[2].tool``).
    """
    problems: list[SpecProblem] = []
    _visit(node, isinstance(node, str), path, problems)
    return problems


def _visit(value: object, is_ref: bool, path: str, problems: list[SpecProblem]) -> None:
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            ref_field = _holds_ref(info.annotation) or any(map(_is_ref_check, info.metadata))
            _visit(getattr(value, name), ref_field, f"{path}.{info.alias or name}", problems)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _visit(item, is_ref, f"{path}[{index}]", problems)
    elif isinstance(value, str) and is_ref:
        try:
            resolve(value)
        except RefError as exc:
            problems.append(SpecProblem(path, str(exc)))


def _holds_ref(annotation: object) -> bool:
    """Whether ``annotation`` (with its unions, lists and ``Annotated``) admits a ``Ref``."""
    if get_origin(annotation) is Annotated:
        inner, *metadata = get_args(annotation)
        return any(map(_is_ref_check, metadata)) or _holds_ref(inner)
    return any(_holds_ref(arg) for arg in get_args(annotation))


def _is_ref_check(metadata: object) -> bool:
    return isinstance(metadata, AfterValidator) and metadata.func is check_ref
