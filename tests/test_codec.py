"""The msgpack codec: exact round trips, typed refusals, hostile frames and stream framing."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import struct
import threading
import tracemalloc
from collections import OrderedDict, defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from actors.runtime.codec import (
    DEFAULT_MAX_FRAME_SIZE,
    MAX_DEPTH,
    ExtCode,
    FrameDecoder,
    copy_value,
    decode,
    encode,
    pack_frame,
)
from actors.runtime.errors import CodecError
from actors.runtime.results import ErrorInfo

PROPERTY = settings(max_examples=150, deadline=None)

# ------------------------------------------------------------------------ comparisons


def assert_same(expected: Any, actual: Any, path: str = "$") -> None:
    """Assert ``actual`` equals ``expected`` with exactly the same types, all the way down."""
    assert type(actual) is type(expected), f"{path}: {type(actual)!r} != {type(expected)!r}"
    if isinstance(expected, float):
        assert struct.pack(">d", actual) == struct.pack(">d", expected), f"{path}: float bits"
    elif isinstance(expected, Decimal):
        assert str(actual) == str(expected), path
    elif isinstance(expected, datetime | time):
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None), path
        assert actual.utcoffset() == expected.utcoffset(), f"{path}: offset"
        assert actual.fold == expected.fold, f"{path}: fold"
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), f"{path}: length"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_same(want, got, f"{path}[{index}]")
    elif isinstance(expected, dict):
        assert len(actual) == len(expected), f"{path}: size"
        actual_keys = {key: key for key in actual}
        for key, want in expected.items():
            assert key in actual_keys, f"{path}: missing key {key!r}"
            assert_same(key, actual_keys[key], f"{path}<key {key!r}>")
            assert_same(want, actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, set | frozenset):
        assert len(actual) == len(expected), f"{path}: size"
        actual_items = {item: item for item in actual}
        for item in expected:
            assert item in actual_items, f"{path}: missing item {item!r}"
            assert_same(item, actual_items[item], f"{path}{{{item!r}}}")
    else:
        assert actual == expected, path


def mutable_ids(value: Any) -> set[int]:
    """The ids of every list, dict and set inside ``value``, itself included."""
    found: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list | dict | set):
            found.add(id(item))
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
    return found


def round_trip(value: object) -> Any:
    return decode(encode(value))


def nested(levels: int, inner: object, wrap: type = list) -> Any:
    value = inner
    for _ in range(levels):
        value = wrap([value]) if wrap is not dict else {"k": value}
    return value


def unwrap_depth(value: Any) -> tuple[int, Any]:
    """Count the single-item containers around ``value`` without recursing."""
    levels = 0
    while type(value) in (list, tuple, frozenset, dict) and len(value) == 1:
        value = next(iter(value.values())) if type(value) is dict else next(iter(value))
        levels += 1
    return levels, value


class Opaque:
    """A type the codec has no rule for."""

    def __repr__(self) -> str:
        return "Opaque()"


# -------------------------------------------------------------------------- strategies

fixed_offsets = st.just(UTC) | st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
zones = st.none() | fixed_offsets

hashable_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.dates(),
    st.datetimes(timezones=zones),
    st.times(timezones=zones),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
)
hashables: st.SearchStrategy[Any] = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
leaves: st.SearchStrategy[Any] = hashables | st.floats() | st.decimals()
values: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=16,
)

# ------------------------------------------------------------------------- round trips


@PROPERTY
@given(values)
def test_every_supported_value_round_trips_with_its_exact_types(value: Any) -> None:
    assert_same(value, round_trip(value))


@PROPERTY
@given(values)
def test_a_copy_equals_the_original_and_shares_no_container_with_it(value: Any) -> None:
    copy = copy_value(value)
    assert_same(value, copy)
    assert not mutable_ids(value) & mutable_ids(copy)


@pytest.mark.parametrize(
    "number",
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**1000, -(2**1000) + 7],
)
def test_ints_on_both_sides_of_the_64_bit_boundary_round_trip_exactly(number: int) -> None:
    assert_same(number, round_trip(number))
    assert_same({number: [number]}, round_trip({number: [number]}))


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.5])
def test_floats_keep_their_exact_bits(number: float) -> None:
    assert_same([number], round_trip([number]))


@pytest.mark.parametrize(
    "number", ["NaN", "-sNaN", "Infinity", "-0", "1.000", "1E+5", "-12345678901234567890.5"]
)
def test_decimals_keep_their_exact_representation(number: str) -> None:
    assert_same(Decimal(number), round_trip(Decimal(number)))


def test_dict_keys_keep_their_types() -> None:
    value = {
        1: "int",
        "1": "str",
        b"1": "bytes",
        (1, "1"): "tuple",
        frozenset({1, 2}): "frozenset",
        None: "none",
        2**70: "bigint",
        date(2024, 5, 6): "date",
        UUID(int=1): "uuid",
    }
    assert_same(value, round_trip(value))


def test_naive_and_fixed_offset_datetimes_keep_their_fields_offset_and_fold() -> None:
    offset = timezone(timedelta(hours=-3, minutes=-30, microseconds=7))
    moments = [
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=offset),
        datetime(2024, 11, 3, 1, 30, fold=1),
        time(12, 0, 0, 1, tzinfo=offset),
        time(0, 0, fold=1),
    ]
    assert_same(moments, round_trip(moments))
    assert round_trip(moments[1]).tzinfo is UTC


class _ShiftingZone(tzinfo):
    """A zone whose offset depends on the date, like a zone with daylight saving time."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2 if dt is not None and dt.month in range(4, 10) else 1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "Shifting"


def test_a_datetime_in_a_zone_keeps_its_offset_at_that_instant_as_a_fixed_offset() -> None:
    summer = datetime(2024, 7, 1, 12, 0, tzinfo=_ShiftingZone())
    copy = round_trip(summer)
    assert copy == summer
    assert copy.tzinfo == timezone(timedelta(hours=2))


def test_bytearray_and_memoryview_decode_as_bytes() -> None:
    assert_same([b"ab", b"cd"], round_trip([bytearray(b"ab"), memoryview(b"cd")]))


def test_decode_accepts_bytes_bytearray_and_memoryview() -> None:
    data = encode({"a": (1, 2)})
    for form in (data, bytearray(data), memoryview(data)):
        assert_same({"a": (1, 2)}, decode(form))


def test_msgpack_standard_timestamps_decode_as_utc_datetimes() -> None:
    # timestamp 64: nanoseconds in the top 30 bits, seconds in the low 34.
    data = b"\xd7\xff" + struct.pack(">Q", (5000 << 34) | 86400)
    assert_same(datetime(1970, 1, 2, 0, 0, 0, 5, tzinfo=UTC), decode(data))


# ---------------------------------------------------------------- one-way conversions


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)
    HUGE = 2**80


class Level(enum.IntEnum):
    HIGH = 3


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


def test_enum_members_are_encoded_as_their_values() -> None:
    value = {
        Color.RED: Color.PAIR,
        "huge": Color.HUGE,
        "level": Level.HIGH,
        "perm": Perm.READ | Perm.WRITE,
    }
    expected = {"red": (1, 2), "huge": 2**80, "level": 3, "perm": 3}
    assert_same(expected, round_trip(value))


class Inner(BaseModel):
    when: datetime
    tags: frozenset[str]


class Outer(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    pair: tuple[int, int]
    inner: Inner
    color: Color


def test_pydantic_models_decode_as_dicts_of_their_python_dump() -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    model = Outer(name="x", pair=(1, 2), inner=Inner(when=when, tags={"a"}), color=Color.RED)
    expected = {
        "name": "x",
        "pair": (1, 2),
        "inner": {"when": when, "tags": frozenset({"a"})},
        "color": "red",
    }
    assert_same(expected, round_trip(model))


@dataclasses.dataclass
class Point:
    x: int
    tags: set[str]


@dataclasses.dataclass(frozen=True)
class Segment:
    start: Point
    end: tuple[int, int]


def test_dataclass_instances_decode_as_dicts_of_their_fields() -> None:
    segment = Segment(start=Point(1, {"a"}), end=(3, 4))
    expected = {"start": {"x": 1, "tags": {"a"}}, "end": (3, 4)}
    assert_same(expected, round_trip(segment))


class BoomError(Exception):
    pass


def test_a_raised_exception_decodes_as_error_info_with_type_message_and_traceback() -> None:
    try:
        raise BoomError("disk on fire")
    except BoomError as exc:
        caught = exc
    info = round_trip({"error": caught})["error"]
    assert type(info) is ErrorInfo
    assert info.type.endswith("BoomError")
    assert info.short_type == "BoomError"
    assert info.message == "disk on fire"
    assert info.traceback is not None
    assert "Traceback" in info.traceback
    assert "disk on fire" in info.traceback
    assert info.exception is None


def test_an_exception_never_raised_decodes_without_a_traceback() -> None:
    info = round_trip(KeyError("k"))
    assert (info.type, info.message, info.traceback) == ("builtins.KeyError", "'k'", None)


def test_error_info_round_trips_without_its_exception() -> None:
    original = ErrorInfo.from_exception(ValueError("bad"))
    copy = round_trip([original])[0]
    assert type(copy) is ErrorInfo
    assert (copy.type, copy.message, copy.traceback) == (
        original.type,
        original.message,
        original.traceback,
    )
    assert original.exception is not None
    assert copy.exception is None


# ------------------------------------------------------------------- refused on encode


class Holder(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    thing: Any


@dataclasses.dataclass
class Box:
    thing: Any


class Pair(NamedTuple):
    a: int
    b: int


class OpaqueEnum(enum.Enum):
    ODD = Opaque()


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


LOCK_TYPE = type(threading.Lock()).__qualname__


def test_an_exception_that_cannot_describe_itself_travels_with_a_stand_in_message() -> None:
    decoded = decode(encode({"err": BadStrError()}))
    assert isinstance(decoded["err"], ErrorInfo)
    assert decoded["err"].message == "<BadStrError.__str__ raised RuntimeError>"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"items": [1, 2, {"lock": threading.Lock()}]},
            f"cannot encode object of type '{LOCK_TYPE}' at $.items[2].lock",
        ),
        (Opaque(), "cannot encode object of type 'Opaque' at $"),
        ([(1, Opaque())], "cannot encode object of type 'Opaque' at $[0][1]"),
        ({"not an identifier": Opaque()}, "at $['not an identifier']"),
        ({(1, 2): Opaque()}, "at $[(1, 2)]"),
        ({1: {2.5: Opaque()}}, "at $[1][2.5]"),
        ({"a": 1, Opaque(): 2}, "cannot encode object of type 'Opaque' at $<key 1>"),
        ({"s": frozenset({Opaque()})}, "at $.s{0}"),
        ({"model": Holder(thing=[Opaque()])}, "at $.model.thing[0]"),
        (Box(thing={"deep": Opaque()}), "at $.thing.deep"),
        ({"e": OpaqueEnum.ODD}, "cannot encode object of type 'Opaque' at $.e"),
        (["ok", "bad \ud800"], "cannot encode str at $[1]: surrogates not allowed at index 4"),
    ],
)
def test_unsupported_values_are_refused_naming_the_type_and_the_path(
    value: object, message: str
) -> None:
    with pytest.raises(CodecError) as caught:
        encode(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        OrderedDict(a=1),
        defaultdict(list),
        Pair(1, 2),
        type("Name", (str,), {})("x"),
        type("Count", (int,), {})(1),
        int,
        print,
    ],
)
def test_subclasses_of_builtin_types_and_other_objects_are_refused(value: object) -> None:
    with pytest.raises(CodecError, match=f"object of type '{type(value).__qualname__}' at \\$"):
        encode([value])


def test_copy_value_refuses_a_value_it_cannot_copy_naming_the_path() -> None:
    with pytest.raises(CodecError, match=r"type 'Opaque' at \$\.branch\.inputs\[3\]"):
        copy_value({"branch": {"inputs": [0, 1, 2, Opaque()]}})


def test_encode_refuses_a_value_over_max_size() -> None:
    assert len(encode("x" * 90, max_size=100)) <= 100
    with pytest.raises(CodecError, match="over the limit of 100 bytes"):
        encode("x" * 100, max_size=100)


@pytest.mark.parametrize("max_size", [0, -1, 1.5, True])
def test_max_size_must_be_a_positive_int(max_size: Any) -> None:
    with pytest.raises(ValueError, match="max_size must be a positive int"):
        encode(1, max_size=max_size)
    with pytest.raises(ValueError, match="max_size must be a positive int"):
        decode(b"\x01", max_size=max_size)


def test_frame_sizes_must_fit_the_four_byte_header() -> None:
    with pytest.raises(ValueError, match="at most 4294967295"):
        FrameDecoder(max_size=2**32)
    with pytest.raises(ValueError, match="at most 4294967295"):
        pack_frame(1, max_size=2**32)


# ------------------------------------------------------------------------------ depth


@pytest.mark.parametrize("wrap", [list, tuple, frozenset, dict])
def test_values_nested_max_depth_levels_deep_round_trip(wrap: type) -> None:
    # MAX_DEPTH - 1 containers around a scalar: MAX_DEPTH levels in all.
    levels, inner = unwrap_depth(round_trip(nested(MAX_DEPTH - 1, 7, wrap)))
    assert (levels, inner) == (MAX_DEPTH - 1, 7)


@pytest.mark.parametrize("wrap", [list, tuple, frozenset, dict])
def test_encode_refuses_values_nested_deeper_than_max_depth(wrap: type) -> None:
    with pytest.raises(CodecError, match=f"nested deeper than {MAX_DEPTH} levels"):
        encode(nested(MAX_DEPTH, 7, wrap))


def test_a_very_deep_value_is_refused_without_recursion_error() -> None:
    with pytest.raises(CodecError, match=r"nested deeper than .* \(at \$\[0\]\[0\]"):
        encode(nested(100_000, None))


def test_decode_refuses_frames_nested_deeper_than_max_depth() -> None:
    assert unwrap_depth(decode(b"\x91" * MAX_DEPTH + b"\xc0")) == (MAX_DEPTH, None)
    tuple_head = b"\x92\xc7\x00\x01"
    deep_frames = [
        b"\x91" * (MAX_DEPTH + 1) + b"\xc0",
        b"\x81\xc0" * (MAX_DEPTH + 1) + b"\xc0",
        tuple_head * (MAX_DEPTH + 1) + b"\xc0",
        b"\x91" * 1_000_000 + b"\xc0",
    ]
    for frame in deep_frames:
        with pytest.raises(CodecError, match=f"nested deeper than {MAX_DEPTH} levels"):
            decode(frame)


# -------------------------------------------------------------------- hostile frames


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array32"),
        pytest.param(b"\xdf\xff\xff\xff\xff", id="map32"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="str32"),
        pytest.param(b"\xc6\xff\xff\xff\xff", id="bin32"),
        pytest.param(b"\xc9\xff\xff\xff\xff\x04", id="ext32"),
        pytest.param(b"\x91" * 500 + b"\xdd\xff\xff\xff\xff", id="nested-array32"),
    ],
)
def test_a_frame_announcing_a_4_gib_length_fails_without_allocating_it(frame: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="truncated frame"):
            decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_unknown_ext_types_are_refused() -> None:
    with pytest.raises(CodecError, match="unknown ext type 99"):
        decode(b"\xd4\x63\x00")
    with pytest.raises(CodecError, match="unknown ext type 0"):
        decode(b"\x91\xc7\x00\x00")


def ext(code: int, payload: bytes) -> bytes:
    """An ext 8 frame: msgpack allows it for any payload length below 256."""
    return b"\xc7" + bytes([len(payload), code]) + payload


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (ext(ExtCode.BIGINT, b""), "ext type 4 (bigint): empty payload"),
        (ext(ExtCode.DATETIME, b"\x00" * 11), "ext type 5 (datetime): expected 12 or 20 bytes"),
        (ext(ExtCode.DATETIME, struct.pack(">HBBBBBIB", 2024, 13, 1, 0, 0, 0, 0, 0)), "month"),
        (
            ext(ExtCode.DATETIME, struct.pack(">HBBBBBIBq", 2024, 1, 1, 0, 0, 0, 0, 0, 10**11)),
            "ext type 5 (datetime)",
        ),
        (ext(ExtCode.DATE, b"\x07\xe8\x02\x1e"), "ext type 6 (date): day is out of range"),
        (ext(ExtCode.TIME, b"\x18\x00\x00\x00\x00\x00\x00\x00"), "ext type 7 (time)"),
        (ext(ExtCode.TIMEDELTA, struct.pack(">iII", 2**31 - 1, 0, 0)), "ext type 8 (timedelta)"),
        (ext(ExtCode.DECIMAL, b"1.2.3"), "ext type 9 (decimal)"),
        (ext(ExtCode.DECIMAL, b"\xff"), "ext type 9 (decimal)"),
        (ext(ExtCode.UUID, b"\x00" * 15), "ext type 10 (uuid)"),
        (ext(ExtCode.TUPLE, b"\x00"), "a tag carries no payload"),
        (b"\xc7\x03\xff\x00\x00\x00", "invalid timestamp data"),
    ],
)
def test_malformed_ext_payloads_are_refused(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match="malformed") as caught:
        decode(frame)
    assert message in str(caught.value)


TUPLE_TAG = b"\xc7\x00\x01"
SET_TAG = b"\xc7\x00\x02"
ERROR_TAG = b"\xc7\x00\x0b"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (TUPLE_TAG, "tag outside the head of an array"),
        (b"\x81\xa1k" + TUPLE_TAG, "tag outside the head of an array"),
        (b"\x92\x01" + TUPLE_TAG, "tag outside the head of an array"),
        (b"\x92" + TUPLE_TAG + SET_TAG, "tag outside the head of an array"),
        (b"\x92" + SET_TAG + b"\x90", "not hashable"),
        (b"\x81\x90\x01", "not hashable"),
        (b"\x92" + ERROR_TAG + b"\xa1x", "error record: expected 3 fields, got 1"),
        (b"\x94" + ERROR_TAG + b"\xa1x\x01\xc0", "type and message must be strings"),
        (b"\x94" + ERROR_TAG + b"\xa1x\xa1y\x01", "traceback must be a string or nil"),
        (b"\xa1\xff", "UnicodeDecodeError"),
        (b"\xc1", "invalid msgpack type byte"),
    ],
)
def test_malformed_structures_are_refused(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match="malformed") as caught:
        decode(frame)
    assert message in str(caught.value)


def test_every_truncation_of_a_frame_is_refused_as_truncated() -> None:
    data = encode({"a": [1, (2, 3)], (4,): {5}, "when": datetime(2024, 1, 1), "n": 2**70})
    for cut in range(len(data)):
        with pytest.raises(CodecError, match="truncated frame"):
            decode(data[:cut])


def test_extra_data_after_the_value_is_refused() -> None:
    with pytest.raises(CodecError, match=r"extra data after the value \(2 bytes\)"):
        decode(encode({"a": 1}) + b"\x01\x02")


def test_input_over_max_size_is_refused_before_decoding() -> None:
    # The unknown ext type would be reported if the frame were parsed at all.
    frame = b"\x92\xd4\x63\x00" + b"\xc0" * 100
    with pytest.raises(CodecError, match="frame of 104 bytes is over the limit of 100 bytes"):
        decode(frame, max_size=100)
    assert DEFAULT_MAX_FRAME_SIZE == 64 * 1024 * 1024


def test_decode_refuses_what_is_not_bytes() -> None:
    with pytest.raises(CodecError, match="can only decode bytes, bytearray or memoryview, not str"):
        decode("\x01")  # type: ignore[arg-type]


@PROPERTY
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_a_value_or_raise_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@PROPERTY
@given(values, st.data())
def test_mutated_frames_decode_to_a_value_or_raise_codec_error(value: Any, data: Any) -> None:
    frame = bytearray(encode(value))
    positions = st.integers(min_value=0, max_value=len(frame) - 1)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        frame[data.draw(positions)] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(CodecError):
        decode(bytes(frame))


# ------------------------------------------------------------------------ wire format


def test_ext_codes_are_fixed() -> None:
    assert {code.name: code.value for code in ExtCode} == {
        "TUPLE": 1,
        "SET": 2,
        "FROZENSET": 3,
        "BIGINT": 4,
        "DATETIME": 5,
        "DATE": 6,
        "TIME": 7,
        "TIMEDELTA": 8,
        "DECIMAL": 9,
        "UUID": 10,
        "ERROR": 11,
    }


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        ((1, "a"), "93 c70001 01 a161"),
        (frozenset({7}), "92 c70003 07"),
        (2**64, "c70904 010000000000000000"),
        (-(2**64), "c70904 ff0000000000000000"),
        (datetime(2024, 1, 2, 3, 4, 5, 6), "c70c05 07e8 01 02 03 04 05 00000006 00"),
        (
            datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-1))),
            "c71405 07e8 01 02 03 04 05 00000006 00 ffffffff296c5c00",
        ),
        (date(2024, 1, 2), "d606 07e8 01 02"),
        (timedelta(days=-1, microseconds=1), "c70c08 ffffffff 00000000 00000001"),
        (Decimal("-1.50"), "c70509 2d312e3530"),
        (UUID(int=0x0102), "d80a 00000000000000000000000000000102"),
    ],
)
def test_the_encoding_of_each_ext_type_is_stable(value: object, hex_bytes: str) -> None:
    assert encode(value).hex() == hex_bytes.replace(" ", "")


def test_pack_frame_prefixes_the_payload_with_its_big_endian_length() -> None:
    frame = pack_frame({"a": (1,)})
    payload = encode({"a": (1,)})
    assert frame == len(payload).to_bytes(4, "big") + payload


# -------------------------------------------------------------------------- framing


STREAM_VALUES: list[Any] = [1, "two", (3, b"\x04"), {5: {6}}, [], ErrorInfo(type="E", message="")]


def test_frame_decoder_returns_values_split_at_every_byte_boundary() -> None:
    frames = [pack_frame(value) for value in STREAM_VALUES]
    ends = [sum(len(frame) for frame in frames[: count + 1]) for count in range(len(frames))]
    stream = b"".join(frames)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:cut])
        complete = [end for end in ends if end <= cut]
        assert len(got) == len(complete)
        assert decoder.pending_bytes == cut - (complete[-1] if complete else 0)
        got += decoder.feed(stream[cut:])
        assert_same(STREAM_VALUES, got)
        assert decoder.pending_bytes == 0


def test_frame_decoder_fed_byte_by_byte_returns_each_value_when_its_frame_completes() -> None:
    frames = [pack_frame(value) for value in STREAM_VALUES]
    decoder = FrameDecoder()
    for value, frame in zip(STREAM_VALUES, frames, strict=True):
        for index in range(len(frame) - 1):
            assert decoder.feed(frame[index : index + 1]) == []
            assert decoder.pending_bytes == index + 1
        assert_same([value], decoder.feed(frame[-1:]))
        assert decoder.pending_bytes == 0


@PROPERTY
@given(st.lists(values, max_size=5), st.data())
def test_frame_decoder_reassembles_any_chunking_of_a_stream(
    chunks_of: list[Any], data: Any
) -> None:
    stream = b"".join(pack_frame(value) for value in chunks_of)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert_same(chunks_of, got)
    assert decoder.pending_bytes == 0


def test_a_frame_header_over_max_size_is_refused_as_soon_as_it_arrives() -> None:
    decoder = FrameDecoder(max_size=100)
    assert decoder.feed(b"\x00\x00\x00") == []
    with pytest.raises(CodecError, match="announces 101 bytes, over the limit of 100 bytes"):
        decoder.feed(b"\x65")
    assert decoder.pending_bytes == 0
    with pytest.raises(CodecError, match="unusable after an earlier error: frame header"):
        decoder.feed(pack_frame(1))


def test_a_frame_that_fails_to_decode_is_dropped_and_the_stream_goes_on() -> None:
    bad = b"\x00\x00\x00\x03\xd4\x63\x00"
    empty = b"\x00\x00\x00\x00"
    decoder = FrameDecoder()
    with pytest.raises(CodecError, match="unknown ext type 99"):
        decoder.feed(pack_frame("before") + bad + pack_frame("after"))
    assert decoder.feed(b"") == ["before", "after"]
    with pytest.raises(CodecError, match="truncated frame: empty input"):
        decoder.feed(empty)
    assert decoder.feed(pack_frame("again")) == ["again"]


class FrozenKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str


def test_a_model_used_as_a_dict_key_is_refused_when_its_copy_is_decoded() -> None:
    with pytest.raises(CodecError, match="not hashable"):
        copy_value({FrozenKey(name="k"): 1})
