"""The msgpack codec castflow uses on every boundary: process pipes, the journal, input copies.

castflow never pickles. Values are encoded with msgpack, and the Python types msgpack has no
word for travel as ext types or as tagged arrays, so a value comes back with the same types it
left with: a tuple stays a tuple, a set a set, a dict may keep tuple or int keys, a big int or a
tz-aware datetime survives exactly.

What round-trips, with its exact type:
    ``None``, ``bool``, ``int`` (any size), ``float`` (nan and infinities too), ``str``,
    ``bytes``, ``list``, ``tuple``, ``set``, ``frozenset``, ``dict`` (any encodable hashable
    keys), ``datetime.datetime``, ``datetime.date``, ``datetime.time``,
    ``datetime.timedelta``, ``decimal.Decimal``, ``uuid.UUID`` and
    :class:`~actors.runtime.results.ErrorInfo` (without its in-process ``exception``).

What is encoded one way (decoding gives something else):
    - an enum member is encoded as its ``value``;
    - a pydantic model is encoded as ``model_dump(mode="python")``, and decodes as a dict;
    - a dataclass instance is encoded as a dict of its fields (not recursively copied: nested
      values are encoded by these same rules);
    - an exception is encoded as an error record and decodes as an ``ErrorInfo`` with its
      qualified type name, message and formatted traceback;
    - ``bytearray`` and ``memoryview`` are encoded as bytes (msgpack packs them natively, so
      keeping them apart would cost a walk over every value) and decode as ``bytes``;
    - a datetime or time whose tzinfo is not a fixed offset (a ``zoneinfo`` zone, say) keeps
      the UTC offset it has at that instant and decodes with a fixed-offset ``timezone``; a
      ``timezone``'s name is not kept.

Because models and dataclasses decode as dicts, one used as a dict key or set item encodes but
its frame is refused by ``decode`` (a dict cannot be a key).

Everything else, subclasses of the built-in types included (``OrderedDict``, a ``str``
subclass, a ``namedtuple``), is refused with a :class:`CodecError` naming the type and where it
was, e.g. ``cannot encode object of type 'lock' at $.items[2].lock``. The path reads ``.name``
for a str key, ``[2]`` for an index, ``[(1, 2)]`` for any other key, ``<key 0>`` for the
first key itself, and ``{0}`` for the first item of a set in its iteration order. (msgpack's
own ``ExtType`` and ``Timestamp`` objects are not refused, as msgpack packs them before castflow
sees them, but they are not supported values either.)

Ext type table (stable: frames written to the journal depend on it):

    ====  ==============  ============================================================
    code  type            payload
    ====  ==============  ============================================================
    1     tuple           tag (empty); the tagged array ``[tag, *items]``
    2     set             tag (empty); the tagged array ``[tag, *items]``
    3     frozenset       tag (empty); the tagged array ``[tag, *items]``
    4     int             big-endian two's complement (ints outside msgpack's 64 bits)
    5     datetime        ``>HBBBBBIB`` y m d H M S us fold, then ``>q`` UTC offset in us
                          when aware
    6     date            ``>HBB`` year, month, day
    7     time            ``>BBBIB`` H M S us fold, then ``>q`` UTC offset in us when aware
    8     timedelta       ``>iII`` days, seconds, microseconds
    9     Decimal         ``str(value)`` in ASCII
    10    UUID            the 16 bytes
    11    error record    tag (empty); the tagged array ``[tag, type, message, traceback]``
    ====  ==============  ============================================================

Containers are tagged arrays rather than ext payloads holding nested msgpack so that a whole
value is packed and parsed in one pass of msgpack's C code, and msgpack's own nesting limit
bounds every level (see :data:`MAX_DEPTH`). A tag anywhere but at the head of an array is
refused. msgpack's standard timestamp (ext -1) is never written; if a frame holds one it
decodes as a UTC ``datetime``. Any other ext code is refused: ``unknown ext type 99``.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, Final
from uuid import UUID

import msgpack
from msgpack.exceptions import ExtraData, FormatError, OutOfData, StackError
from msgpack.ext import ExtType, Timestamp
from pydantic import BaseModel

from actors.runtime.errors import CodecError
from actors.runtime.results import ErrorInfo

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "MAX_DEPTH",
    "ExtCode",
    "FrameDecoder",
    "copy_value",
    "decode",
    "encode",
    "pack_frame",
]

DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024
"""The largest encoded value, in bytes, that ``encode`` writes and ``decode`` reads (64 MiB)."""

MAX_DEPTH: Final = 1024
"""The most levels of nesting a value may have, counting the outermost value as level 1.

``[[1]]`` has three levels. ``encode`` refuses any value deeper than this. ``decode`` refuses
any frame with a container deeper than this; that is msgpack's fixed parser stack, so the
check costs nothing and a hostile frame cannot recurse (its scalars may sit one level deeper).
"""

# msgpack ships no type hints: give the three entry points used here their real types.
_packb: Final[Callable[..., bytes]] = msgpack.packb
_unpackb: Final[Callable[..., Any]] = msgpack.unpackb  # type: ignore[attr-defined]
_ext: Final[Callable[[int, bytes], ExtType]] = ExtType

_FRAME_HEADER: Final = struct.Struct(">I")
_MAX_FRAMED_SIZE: Final = 2**32 - 1
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_PATH_LIMIT: Final = 200


class ExtCode(IntEnum):
    """The msgpack ext type codes castflow writes; see the module docstring for payloads."""

    TUPLE = 1
    SET = 2
    FROZENSET = 3
    BIGINT = 4
    DATETIME = 5
    DATE = 6
    TIME = 7
    TIMEDELTA = 8
    DECIMAL = 9
    UUID = 10
    ERROR = 11


# --------------------------------------------------------------------------- encoding

_DATETIME: Final = struct.Struct(">HBBBBBIB")
_DATE: Final = struct.Struct(">HBB")
_TIME: Final = struct.Struct(">BBBIB")
_TIMEDELTA: Final = struct.Struct(">iII")
_OFFSET: Final = struct.Struct(">q")

_TUPLE_TAG: Final = _ext(ExtCode.TUPLE, b"")
_SET_TAG: Final = _ext(ExtCode.SET, b"")
_FROZENSET_TAG: Final = _ext(ExtCode.FROZENSET, b"")
_ERROR_TAG: Final = _ext(ExtCode.ERROR, b"")

# Exact types msgpack packs by itself under strict_types (ints only within 64 bits).
_NATIVE_TYPES: Final[frozenset[type]] = frozenset(
    {type(None), bool, int, float, str, bytes, bytearray, memoryview, list, dict}
)
_OPAQUE_NATIVE_TYPES: Final[frozenset[type]] = frozenset(
    {type(None), bool, float, bytes, bytearray, memoryview, ExtType, Timestamp}
)


def _offset_payload(offset: timedelta | None) -> bytes:
    if offset is None:
        return b""
    return _OFFSET.pack(offset // timedelta(microseconds=1))


def _encode_int(value: int) -> object:
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    length = (value.bit_length() + 8) // 8
    return _ext(ExtCode.BIGINT, value.to_bytes(length, "big", signed=True))


def _encode_datetime(value: datetime) -> ExtType:
    head = _DATETIME.pack(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.fold,
    )
    return _ext(ExtCode.DATETIME, head + _offset_payload(value.utcoffset()))


def _encode_date(value: date) -> ExtType:
    return _ext(ExtCode.DATE, _DATE.pack(value.year, value.month, value.day))


def _encode_time(value: time) -> ExtType:
    head = _TIME.pack(value.hour, value.minute, value.second, value.microsecond, value.fold)
    return _ext(ExtCode.TIME, head + _offset_payload(value.utcoffset()))


def _encode_timedelta(value: timedelta) -> ExtType:
    payload = _TIMEDELTA.pack(value.days, value.seconds, value.microseconds)
    return _ext(ExtCode.TIMEDELTA, payload)


def _encode_decimal(value: Decimal) -> ExtType:
    return _ext(ExtCode.DECIMAL, str(value).encode("ascii"))


def _encode_uuid(value: UUID) -> ExtType:
    return _ext(ExtCode.UUID, value.bytes)


def _encode_error(info: ErrorInfo) -> list[object]:
    return [_ERROR_TAG, info.type, info.message, info.traceback]


_ENCODERS: Final[dict[type, Callable[[Any], object]]] = {
    tuple: lambda value: [_TUPLE_TAG, *value],
    set: lambda value: [_SET_TAG, *value],
    frozenset: lambda value: [_FROZENSET_TAG, *value],
    int: _encode_int,
    datetime: _encode_datetime,
    date: _encode_date,
    time: _encode_time,
    timedelta: _encode_timedelta,
    Decimal: _encode_decimal,
    UUID: _encode_uuid,
}


def _type_name(value: object) -> str:
    return type(value).__qualname__


def _default(value: object) -> object:
    """msgpack's ``default`` hook: turn one value msgpack cannot pack into one it can.

    The packer applies ``default`` once per value, so whatever this returns must be packable
    as it stands (its items may again go through ``default``).
    """
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    if isinstance(value, Enum):
        inner = value.value
        native = type(inner) in _NATIVE_TYPES and type(inner) is not int
        return inner if native else _default(inner)
    return _encode_object(value)


def _encode_object(value: object) -> object:
    if isinstance(value, ErrorInfo):
        return _encode_error(value)
    if isinstance(value, BaseException):
        return _encode_error(ErrorInfo.from_exception(value))
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise TypeError(f"cannot encode object of type {_type_name(value)!r}")


def encode(value: object, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Encode ``value`` as one msgpack value.

    Args:
        value: what to encode; the module docstring lists the supported types.
        max_size: the largest encoding accepted, in bytes.

    Returns:
        The msgpack bytes; :func:`decode` turns them back into an equal value.

    Raises:
        CodecError: ``value`` holds something that cannot be encoded (the message names its
            type and its path, e.g. ``$.items[2].lock``), is nested deeper than
            :data:`MAX_DEPTH`, or encodes to more than ``max_size`` bytes.
        ValueError: ``max_size`` is not a positive int.
    """
    _check_max_size(max_size)
    try:
        # The extra list costs msgpack one level of nesting, which lines its packer's depth
        # limit (values 1024 deep) up with its parser's (containers 1024 deep).
        packed = _packb([value], default=_default, strict_types=True, use_bin_type=True)
    except Exception as exc:
        raise CodecError(_describe_encode_failure(value, exc)) from exc
    payload = packed[1:]
    if len(payload) > max_size:
        raise CodecError(
            f"encoded value is {len(payload)} bytes, over the limit of {max_size} bytes"
        )
    return payload


def copy_value(value: object, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
    """Return an independent copy of ``value``, made by encoding and decoding it.

    Nothing in the copy is shared with ``value``. The one-way rules of the codec apply: enum
    members become their values, models and dataclasses become dicts.

    Args:
        value: what to copy.
        max_size: the largest encoding accepted, in bytes.

    Returns:
        The copy.

    Raises:
        CodecError: ``value`` cannot be encoded (the message names the type and its path), or
            its encoding cannot be decoded (a model used as a dict key).
        ValueError: ``max_size`` is not a positive int.
    """
    return decode(encode(value, max_size=max_size), max_size=max_size)


# ------------------------------------------------------------- finding what failed


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real problem
        return f"<{_type_name(value)}>"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _key_segment(key: object) -> str:
    if type(key) is str and key.isidentifier():
        return f".{key}"
    return f"[{_short_repr(key)}]"


def _shorten(path: str) -> str:
    if len(path) <= _PATH_LIMIT:
        return path
    return f"{path[: _PATH_LIMIT // 2]}...{path[-_PATH_LIMIT // 2 :]}"


_Node = tuple[object, str, int]


def _children(value: object, path: str, level: int) -> Iterator[_Node]:
    """The items inside a list, dict, tuple, set or frozenset, in msgpack's packing order."""
    inner = level + 1
    if type(value) is dict:
        for index, (key, item) in enumerate(value.items()):
            yield key, f"{path}<key {index}>", inner
            yield item, f"{path}{_key_segment(key)}", inner
    elif type(value) is list or type(value) is tuple:
        for index, item in enumerate(value):
            yield item, f"{path}[{index}]", inner
    elif type(value) is set or type(value) is frozenset:
        for index, item in enumerate(value):
            yield item, f"{path}{{{index}}}", inner


def _too_deep(path: str) -> str:
    return f"value is nested deeper than {MAX_DEPTH} levels (at {_shorten(path)})"


def _find_problem(value: object) -> str | None:
    """Walk ``value`` as the encoder would, and describe the first thing it cannot encode.

    Only called once encoding has failed, so it may be slow; it never recurses, so a deep
    value cannot exhaust the stack here either.
    """
    stack: list[Iterator[_Node]] = [iter([(value, "$", 1)])]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        item, path, level = node
        if level > MAX_DEPTH:
            return _too_deep(path)
        kind = type(item)
        if kind is list or kind is dict:
            stack.append(_children(item, path, level))
        elif kind is tuple or kind is set or kind is frozenset:
            if level + 1 > MAX_DEPTH:  # the tag inside the tagged array is one level down
                return _too_deep(path)
            stack.append(_children(item, path, level))
        else:
            outcome = _check_leaf(item, path, level)
            if isinstance(outcome, str):
                return outcome
            if outcome is not None:
                stack.append(iter([outcome]))
    return None


def _check_str(text: str, path: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"cannot encode str at {_shorten(path)}: {exc.reason} at index {exc.start}"
    return None


def _check_leaf(item: object, path: str, level: int) -> str | _Node | None:
    """Check one value that is not a list, dict, tuple or set.

    Returns:
        A description of why it cannot be encoded, or the node that stands for it in the same
        place (an enum's value, a model's fields) and still needs checking, or ``None``.
    """
    kind = type(item)
    if kind in _OPAQUE_NATIVE_TYPES or kind is int:
        return None
    if kind is str and isinstance(item, str):
        return _check_str(item, path)
    try:
        converted = _default(item)
    except Exception as exc:  # noqa: BLE001 - user code (model_dump, __str__) may raise anything
        return _describe_refusal(item, path, exc)
    if isinstance(item, Enum):
        return item.value, path, level
    if type(converted) is dict:
        return converted, path, level
    # An error record is a tagged array: its tag sits one level down.
    too_deep = type(converted) is list and level + 1 > MAX_DEPTH
    return _too_deep(path) if too_deep else None


def _describe_refusal(value: object, path: str, exc: Exception) -> str:
    where = _shorten(path)
    message = str(exc)
    if isinstance(exc, TypeError) and message.startswith("cannot encode object of type"):
        return f"{message} at {where}"
    return (
        f"cannot encode object of type {_type_name(value)!r} at {where}: "
        f"{type(exc).__name__}: {message}"
    )


def _describe_encode_failure(value: object, exc: Exception) -> str:
    problem = _find_problem(value)
    if problem is not None:
        return problem
    return f"cannot encode value: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- decoding


class _Tag:
    """Stands for an ext tag while msgpack parses, until its array turns into a container."""

    __slots__ = ("code",)

    def __init__(self, code: ExtCode) -> None:
        self.code = code

    def __repr__(self) -> str:
        return f"<{self.code.name.lower()} tag>"


_TAGS: Final[dict[int, _Tag]] = {
    code: _Tag(code) for code in (ExtCode.TUPLE, ExtCode.SET, ExtCode.FROZENSET, ExtCode.ERROR)
}


def _offset_timezone(payload: bytes) -> tzinfo | None:
    if not payload:
        return None
    if len(payload) != _OFFSET.size:
        raise ValueError(f"UTC offset takes {_OFFSET.size} bytes, got {len(payload)}")
    (micros,) = _OFFSET.unpack(payload)
    if micros == 0:
        return UTC
    return timezone(timedelta(microseconds=micros))


def _decode_bigint(payload: bytes) -> int:
    if not payload:
        raise ValueError("empty payload")
    return int.from_bytes(payload, "big", signed=True)


def _decode_datetime(payload: bytes) -> datetime:
    size = _DATETIME.size
    if len(payload) not in (size, size + _OFFSET.size):
        raise ValueError(f"expected {size} or {size + _OFFSET.size} bytes, got {len(payload)}")
    year, month, day, hour, minute, second, micro, fold = _DATETIME.unpack(payload[:size])
    zone = _offset_timezone(payload[size:])
    return datetime(year, month, day, hour, minute, second, micro, zone, fold=fold)


def _decode_date(payload: bytes) -> date:
    return date(*_DATE.unpack(payload))


def _decode_time(payload: bytes) -> time:
    size = _TIME.size
    if len(payload) not in (size, size + _OFFSET.size):
        raise ValueError(f"expected {size} or {size + _OFFSET.size} bytes, got {len(payload)}")
    hour, minute, second, micro, fold = _TIME.unpack(payload[:size])
    return time(hour, minute, second, micro, _offset_timezone(payload[size:]), fold=fold)


def _decode_timedelta(payload: bytes) -> timedelta:
    days, seconds, micros = _TIMEDELTA.unpack(payload)
    return timedelta(days=days, seconds=seconds, microseconds=micros)


def _decode_decimal(payload: bytes) -> Decimal:
    if not payload:
        raise ValueError("empty payload")
    return Decimal(payload.decode("ascii"))


def _decode_uuid(payload: bytes) -> UUID:
    return UUID(bytes=payload)


_DECODERS: Final[dict[int, Callable[[bytes], object]]] = {
    ExtCode.BIGINT: _decode_bigint,
    ExtCode.DATETIME: _decode_datetime,
    ExtCode.DATE: _decode_date,
    ExtCode.TIME: _decode_time,
    ExtCode.TIMEDELTA: _decode_timedelta,
    ExtCode.DECIMAL: _decode_decimal,
    ExtCode.UUID: _decode_uuid,
}


def _error_info(fields: list[Any]) -> ErrorInfo:
    if len(fields) != 3:
        raise CodecError(f"malformed error record: expected 3 fields, got {len(fields)}")
    type_name, message, traceback = fields
    if type(type_name) is not str or type(message) is not str:
        raise CodecError("malformed error record: type and message must be strings")
    if traceback is not None and type(traceback) is not str:
        raise CodecError("malformed error record: traceback must be a string or nil")
    return ErrorInfo(type=type_name, message=message, traceback=traceback)


class _Parse:
    """The hooks of one ``decode`` call, counting tags so that none can hide in the value."""

    __slots__ = ("tags_seen", "tags_used")

    def __init__(self) -> None:
        self.tags_seen = 0
        self.tags_used = 0

    def ext_hook(self, code: int, payload: bytes) -> object:
        tag = _TAGS.get(code)
        if tag is not None:
            if payload:
                raise CodecError(f"malformed ext type {code}: a tag carries no payload")
            self.tags_seen += 1
            return tag
        decoder = _DECODERS.get(code)
        if decoder is None:
            raise CodecError(f"unknown ext type {code}")
        try:
            return decoder(payload)
        except Exception as exc:
            name = ExtCode(code).name.lower()
            raise CodecError(f"malformed ext type {code} ({name}): {exc}") from exc

    def list_hook(self, items: list[Any]) -> object:
        if not items or type(items[0]) is not _Tag:
            return items
        code = items[0].code
        self.tags_used += 1
        del items[0]
        if code is ExtCode.TUPLE:
            return tuple(items)
        if code is ExtCode.ERROR:
            return _error_info(items)
        try:
            return set(items) if code is ExtCode.SET else frozenset(items)
        except TypeError as exc:
            raise CodecError(
                f"malformed {code.name.lower()}: an item is not hashable ({exc})"
            ) from exc


def _describe_decode_failure(exc: Exception, size: int) -> str:
    # The C parser reports these as plain ValueErrors; only their text tells them apart.
    text = str(exc)
    if isinstance(exc, OutOfData) or "incomplete input" in text:
        if size == 0:
            return "truncated frame: empty input"
        return f"truncated frame: the input ends inside a value ({size} bytes)"
    if "exceeds max_" in text:
        return f"truncated frame: a length announces more than the {size}-byte input holds ({text})"
    if isinstance(exc, TypeError) and "unhashable" in text:
        return f"malformed frame: a map key or set item is not hashable ({text})"
    return f"malformed frame: {type(exc).__name__}: {text}"


def _byte_length(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def decode(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
    """Decode one msgpack value written by :func:`encode`.

    Never trusts ``data``: every failure is a :class:`CodecError`, input longer than
    ``max_size`` is refused before parsing, no array or map may announce more items than
    ``data`` has bytes, and nesting is bounded by :data:`MAX_DEPTH`.

    Args:
        data: exactly one encoded value.
        max_size: the largest input accepted, in bytes.

    Returns:
        The value, with the types it was encoded with (see the module docstring).

    Raises:
        CodecError: ``data`` is too large, truncated, malformed, nested too deeply, holds an
            unknown ext type, or has extra data after the value.
        ValueError: ``max_size`` is not a positive int.
    """
    _check_max_size(max_size)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"can only decode bytes, bytearray or memoryview, not {_type_name(data)}")
    size = _byte_length(data)
    if size > max_size:
        raise CodecError(f"frame of {size} bytes is over the limit of {max_size} bytes")
    parse = _Parse()
    try:
        value = _unpackb(
            data,
            use_list=True,
            raw=False,
            strict_map_key=False,
            timestamp=3,
            ext_hook=parse.ext_hook,
            list_hook=parse.list_hook,
            max_str_len=size,
            max_bin_len=size,
            max_ext_len=size,
            max_array_len=size,
            max_map_len=size // 2,
        )
    except CodecError:
        raise
    except ExtraData as exc:
        raise CodecError(f"extra data after the value ({len(exc.extra)} bytes)") from None
    except StackError:
        raise CodecError(f"value is nested deeper than {MAX_DEPTH} levels") from None
    except FormatError:
        raise CodecError("malformed frame: invalid msgpack type byte") from None
    except Exception as exc:
        raise CodecError(_describe_decode_failure(exc, size)) from exc
    if parse.tags_seen != parse.tags_used:
        raise CodecError("malformed frame: a tuple, set or error tag outside the head of an array")
    return value


# ---------------------------------------------------------------------------- framing


def _check_max_size(max_size: int, *, limit: int | None = None) -> None:
    if type(max_size) is not int or max_size <= 0:
        raise ValueError(f"max_size must be a positive int, got {max_size!r}")
    if limit is not None and max_size > limit:
        raise ValueError(f"max_size must be at most {limit} (the frame header is 4 bytes)")


def pack_frame(value: object, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Encode ``value`` as a frame for a byte stream: a 4-byte big-endian length, then the value.

    Args:
        value: what to send.
        max_size: the largest payload accepted, in bytes (at most ``2**32 - 1``).

    Returns:
        The frame; :class:`FrameDecoder` reads it back.

    Raises:
        CodecError: as for :func:`encode`.
        ValueError: ``max_size`` is not a positive int below ``2**32``.
    """
    _check_max_size(max_size, limit=_MAX_FRAMED_SIZE)
    payload = encode(value, max_size=max_size)
    return _FRAME_HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Reassemble the values of a byte stream of frames written by :func:`pack_frame`.

    Feed it bytes as they arrive, in chunks of any size; it returns each value as soon as its
    frame is complete. A frame whose header announces more than ``max_size`` bytes is refused
    as soon as the header is in, and the decoder then refuses everything after it: the stream
    cannot be trusted to be in step any more. A frame whose payload fails to decode is dropped
    and reported; the frames after it are decoded by the next call.

    Not thread-safe: one reader per decoder.

    Args:
        max_size: the largest payload accepted, in bytes (at most ``2**32 - 1``).

    Raises:
        ValueError: ``max_size`` is not a positive int below ``2**32``.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        _check_max_size(max_size, limit=_MAX_FRAMED_SIZE)
        self._max_size = max_size
        self._buffer = bytearray()
        self._ready: list[Any] = []
        self._broken: str | None = None

    @property
    def max_size(self) -> int:
        """The largest payload accepted, in bytes."""
        return self._max_size

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet decoded (a partial frame, or frames after a bad one)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add ``data`` to the stream and return every value completed so far.

        Args:
            data: the next bytes of the stream (may be empty).

        Returns:
            The decoded values, in stream order; empty when no frame was completed.

        Raises:
            CodecError: a frame header announces more than ``max_size`` bytes (the decoder is
                then unusable and raises on every later call), or a frame's payload fails to
                decode (the frame is dropped; the values of the frames around it in the same
                call are returned by the next call).
        """
        if self._broken is not None:
            raise CodecError(f"frame stream is unusable after an earlier error: {self._broken}")
        self._buffer += data
        buffer = self._buffer
        header = _FRAME_HEADER.size
        start = 0
        try:
            while len(buffer) - start >= header:
                (length,) = _FRAME_HEADER.unpack_from(buffer, start)
                if length > self._max_size:
                    self._broken = (
                        f"frame header announces {length} bytes, over the limit of "
                        f"{self._max_size} bytes"
                    )
                    buffer.clear()
                    start = 0
                    raise CodecError(self._broken)
                end = start + header + length
                if len(buffer) < end:
                    break
                payload = buffer[start + header : end]
                start = end
                self._ready.append(decode(payload, max_size=self._max_size))
        finally:
            del buffer[:start]
        values, self._ready = self._ready, []
        return values
