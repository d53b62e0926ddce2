"""Fuzzing the msgpack codec: whatever bytes arrive, the answer is a value or a ``CodecError``.

Random bytes, mutated and truncated frames of real values, lengths that announce more than the
input holds, deep nesting, tags out of place and unknown ext types: ``decode`` and
``FrameDecoder.feed`` must answer each with a value or a ``CodecError``, never another
exception, never a hang (pytest-timeout guards) and never memory out of proportion to the
input (checked with ``tracemalloc`` on the hostile lengths).
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.runtime.codec import MAX_DEPTH, FrameDecoder, decode, encode, pack_frame
from actors.runtime.errors import CodecError
from tests.sizes import sized

FUZZ = sized(300, 2000)

_packb: Any = msgpack.packb
_ext: Any = getattr(msgpack, "ExtType")  # noqa: B009 - msgpack ships no type hints


def ext(code: int, payload: bytes) -> bytes:
    """The msgpack encoding of ext type ``code`` with ``payload``."""
    packed: bytes = _packb(_ext(code, payload))
    return packed


def decode_or_refuse(data: bytes, *, max_size: int | None = None) -> tuple[bool, Any]:
    """Decode ``data``; return ``(True, value)`` or ``(False, error)`` for a ``CodecError``.

    Anything else escapes and fails the test.
    """
    try:
        if max_size is None:
            return True, decode(data)
        return True, decode(data, max_size=max_size)
    except CodecError as error:
        refused = error
    assert str(refused), "a CodecError says what is wrong"
    return False, refused


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(days=-1000), max_value=timedelta(days=1000)),
    st.decimals(allow_nan=False, places=3),
    st.uuids(),
)
hashables = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.frozensets(hashables, max_size=6),
        st.sets(hashables, max_size=6),
        st.dictionaries(hashables, inner, max_size=6),
    ),
    max_leaves=30,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A real value's encoding with a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(encode(draw(values)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and data:
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_decode_to_a_value_or_a_codec_error(data: bytes) -> None:
    decode_or_refuse(data)


@FUZZ
@given(mutated_frames())
def test_mutated_frames_decode_to_a_value_or_a_codec_error(data: bytes) -> None:
    ok, value = decode_or_refuse(data)
    if ok:
        # Whatever was accepted is a value the codec can write again.
        decode(encode(value))


@FUZZ
@given(values)
def test_every_strict_prefix_of_a_frame_is_refused_as_truncated(value: Any) -> None:
    data = encode(value)
    for end in range(len(data)):
        ok, error = decode_or_refuse(data[:end])
        assert not ok, f"a {end}-byte prefix of a {len(data)}-byte frame decoded to {error!r}"


# msgpack headers announcing far more than the input holds: array32, map32, str32, bin32, ext32.
HOSTILE_HEADERS = [
    b"\xdd" + struct.pack(">I", 2**32 - 1),
    b"\xdf" + struct.pack(">I", 2**32 - 1),
    b"\xdb" + struct.pack(">I", 2**32 - 1),
    b"\xc6" + struct.pack(">I", 2**32 - 1),
    b"\xc9" + struct.pack(">I", 2**32 - 1) + b"\x04",
    b"\xdc\xff\xff",
    b"\xde\xff\xff",
]


@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=lambda h: h[:1].hex())
def test_lengths_announcing_more_than_the_input_are_refused_without_allocating_them(
    header: bytes,
) -> None:
    tracemalloc.start()
    try:
        ok, _ = decode_or_refuse(header + b"\x00" * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not ok
    assert peak < 1024 * 1024, f"refusing a 70-byte frame took {peak} bytes"


@FUZZ
@given(st.integers(1, MAX_DEPTH + 50), st.sampled_from([b"\x91", b"\x81\x00", b"\x92\xc0"]))
def test_deep_nesting_decodes_within_the_limit_and_is_refused_beyond(
    depth: int, opener: bytes
) -> None:
    ok, _ = decode_or_refuse(opener * depth + b"\xc0")
    if depth > MAX_DEPTH:
        assert not ok, f"{depth} levels of nesting decoded"


@FUZZ
@given(st.integers(1, MAX_DEPTH + 10))
def test_deeply_nested_tuples_decode_or_are_refused(depth: int) -> None:
    tag = b"\xc7\x00\x01"  # ext8 of length 0, code 1: the tuple tag
    frame = (b"\x92" + tag) * depth + b"\x90"
    ok, value = decode_or_refuse(frame)
    if ok:
        levels = 0
        while isinstance(value, tuple) and value:
            value = value[0]
            levels += 1
        assert levels == depth


@FUZZ
@given(st.integers(-128, 127), st.binary(max_size=40))
def test_every_ext_type_is_a_value_or_a_codec_error(code: int, payload: bytes) -> None:
    frame = ext(code, payload) if code >= 0 else None
    if frame is None:
        # Negative codes (msgpack's reserved range): build the ext8 header by hand.
        frame = b"\xc7" + bytes([len(payload)]) + struct.pack(">b", code) + payload
    ok, value = decode_or_refuse(frame)
    if code > 11 or (code < 0 and code != -1):
        assert not ok, f"unknown ext type {code} decoded to {value!r}"


@FUZZ
@given(
    st.lists(values, min_size=1, max_size=5),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
    st.binary(max_size=30),
)
def test_a_frame_stream_cut_anywhere_gives_values_or_codec_errors(
    items: list[Any], cuts: list[int], garbage: bytes
) -> None:
    stream = b"".join(pack_frame(item) for item in items) + garbage
    decoder = FrameDecoder(max_size=4096)
    got: list[Any] = []
    position = 0
    index = 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        index += 1
        with contextlib.suppress(CodecError):
            got += decoder.feed(stream[position : position + size])
        position += size
    assert got[: len(items)] == items[: len(got)] or garbage, "frames before the garbage decode"
    assert decoder.pending_bytes <= len(stream)


def test_a_frame_header_over_the_limit_breaks_the_stream_for_good() -> None:
    decoder = FrameDecoder(max_size=1024)
    with pytest.raises(CodecError, match="over the limit"):
        decoder.feed(struct.pack(">I", 2**32 - 1))
    with pytest.raises(CodecError, match="unusable"):
        decoder.feed(pack_frame(1))
    assert decoder.pending_bytes == 0


@FUZZ
@given(values)
def test_a_valid_frame_decodes_to_a_value_that_encodes_again(value: Any) -> None:
    ok, back = decode_or_refuse(encode(value))
    assert ok
    assert back == value


def test_hostile_scalars_in_ext_payloads_are_codec_errors() -> None:
    frames = [
        ext(5, b"\x00" * 12),  # datetime with year 0
        ext(6, b"\xff\xff\x0d\x20"),  # date with month 13
        ext(8, b"\x7f\xff\xff\xff" + b"\xff" * 8),  # timedelta overflow
        ext(9, b"not a number"),
        ext(9, "é".encode()),
        ext(10, b"\x00" * 15),
        ext(4, b""),
        ext(1, b"\x00"),
        b"\xd6\xff" + b"\xff" * 4,  # timestamp 32
        b"\xc7\x0c\xff" + b"\xff" * 12,  # timestamp 96 far out of range
    ]
    for frame in frames:
        ok, value = decode_or_refuse(frame)
        assert not ok or isinstance(value, datetime | Decimal | UUID), (frame, value)
