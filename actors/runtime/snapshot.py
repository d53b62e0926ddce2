"""Branch inputs: snapshotted once, copied per branch, so branches never share mutable state.

``snapshot(value)`` encodes a value once with the msgpack codec and returns a function that
decodes a fresh, independent copy for each branch. Immutable values (numbers, strings, bytes,
enum members, paths, fractions, tuples and frozensets of immutable values) and frozen pydantic
models are shared as they are. A mutable pydantic model or a dataclass at the top is rebuilt
as its own type, so a branch binds it as the caller's step would; models and dataclasses
nested inside containers arrive as dicts (the codec's one-way rule). A value the
codec cannot encode raises :class:`InputNotCopyableError` naming its path; pass ``copy=False``
(a step's ``copy_input="none"``) to share it instead, at your own risk.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import datetime as _dt
import enum
import fractions
import pathlib
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from actors.runtime.codec import decode, encode
from actors.runtime.errors import CastflowError, CodecError

__all__ = ["InputNotCopyableError", "is_immutable", "snapshot"]

_SCALARS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    Decimal,
    _dt.datetime,
    _dt.date,
    _dt.time,
    _dt.timedelta,
    uuid.UUID,
    enum.Enum,
    range,
    pathlib.PurePath,
    fractions.Fraction,
)


class InputNotCopyableError(CastflowError):
    """A branch input cannot be copied (the codec cannot encode it); the message names where."""


def is_immutable(value: object, _depth: int = 0) -> bool:
    """Whether ``value`` can be shared between branches without copying."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, BaseModel):
        return bool(value.model_config.get("frozen", False))
    if isinstance(value, tuple | frozenset) and _depth < 32:
        return all(is_immutable(item, _depth + 1) for item in value)
    return False


def snapshot(value: object, *, copy: bool = True, what: str = "input") -> Callable[[], Any]:
    """A function returning an independent copy of ``value`` on each call.

    Args:
        value: the value to snapshot (it is encoded once, now).
        copy: ``False`` shares ``value`` itself (no copy, no check).
        what: names the value in errors, e.g. ``"input of parallel 'search'"``.

    Raises:
        InputNotCopyableError: the codec cannot encode ``value``; the message names the path of
            the part that failed.
    """
    if not copy or is_immutable(value):
        return lambda: value
    try:
        if isinstance(value, BaseModel):
            model = type(value)
            data = encode(value.model_dump(mode="python"))
            return lambda: model.model_validate(decode(data))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return _dataclass_copies(value)
        data = encode(value)
    except CodecError as exc:
        msg = (
            f"{what} cannot be copied for its branches: {exc}. Make it plain data, share it "
            "through ToolContext.resources, or pass copy_input='none'"
        )
        raise InputNotCopyableError(msg) from exc
    return lambda: decode(data)


def _dataclass_copies(value: Any) -> Callable[[], Any]:
    """Copies of a dataclass instance, of its own type, each field a fresh decoded copy.

    Raises:
        CodecError: a field cannot be encoded.
    """
    data = encode({field.name: getattr(value, field.name) for field in dataclasses.fields(value)})

    def rebuild() -> Any:
        fresh = _copy.copy(value)  # the same type (slots, frozen and all); fields replaced below
        for name, field_value in decode(data).items():
            object.__setattr__(fresh, name, field_value)
        return fresh

    return rebuild
