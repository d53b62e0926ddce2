"""The actor inbox: control envelopes first, FIFO otherwise, nothing lost between threads."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pykka._envelope import Envelope

from actors.runtime.inbox import ControlMessage, PriorityInbox


class _Stop(ControlMessage):
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def _label(envelope: Envelope[Any]) -> tuple[str, int]:
    message = envelope.message
    return ("control", message.n) if isinstance(message, _Stop) else ("user", message)


# An operation: ("put", is_control, n) or ("get",).
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.booleans(), st.integers(0, 1000)),
        st.tuples(st.just("get")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_operations)
def test_the_inbox_delivers_as_two_fifo_lanes_control_first(ops: list[tuple[Any, ...]]) -> None:
    inbox = PriorityInbox()
    control: deque[tuple[str, int]] = deque()
    user: deque[tuple[str, int]] = deque()
    for op in ops:
        if op[0] == "put":
            _, is_control, n = op
            inbox.put(Envelope(_Stop(n) if is_control else n))
            (control if is_control else user).append(("control" if is_control else "user", n))
        else:
            expected = control.popleft() if control else user.popleft() if user else None
            if expected is None:
                with pytest.raises(queue.Empty):
                    inbox.get_nowait()
            else:
                assert _label(inbox.get_nowait()) == expected
        assert inbox.qsize() == len(control) + len(user)
        assert inbox.empty() == (not control and not user)


@pytest.mark.timeout(60)
def test_a_waiting_reader_gets_every_envelope_of_many_writers_once_in_each_writers_order() -> None:
    inbox = PriorityInbox()
    writers, per_writer = 4, 3000
    received: list[tuple[int, int]] = []
    start = threading.Barrier(writers + 1)

    def write(writer: int) -> None:
        start.wait()
        for i in range(per_writer):
            inbox.put(Envelope((writer, i)))

    def read() -> None:
        start.wait()
        for _ in range(writers * per_writer):
            received.append(inbox.get().message)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    for thread in [*threads, reader]:
        thread.join(50)
    assert not reader.is_alive(), f"the reader got {len(received)} envelopes and waits on"
    assert inbox.empty()
    for writer in range(writers):
        assert [i for w, i in received if w == writer] == list(range(per_writer))


@pytest.mark.timeout(60)
def test_a_reader_racing_a_drain_for_each_envelope_neither_loses_one_nor_hangs() -> None:
    # The loop blocks in get() while a teardown drains with get_nowait(): an envelope whose
    # put woke the loop may be taken by the drain, and the loop must wait again, not return.
    inbox = PriorityInbox()
    count = 4000
    taken_by_reader: list[int] = []
    taken_by_drain: list[int] = []
    done = threading.Event()

    def read() -> None:
        while True:
            message = inbox.get().message
            if message is None:
                return
            taken_by_reader.append(message)

    def drain() -> None:
        while not done.is_set():
            with contextlib.suppress(queue.Empty):
                taken_by_drain.append(inbox.get_nowait().message)

    reader = threading.Thread(target=read)
    drainer = threading.Thread(target=drain)
    reader.start()
    drainer.start()
    for i in range(count):
        inbox.put(Envelope(i))
    done.set()
    drainer.join(50)
    inbox.put(Envelope(None))  # the reader's end, put once the drain has stopped
    reader.join(50)
    assert not reader.is_alive()
    assert not drainer.is_alive()
    assert sorted(taken_by_reader + taken_by_drain) == list(range(count))
    assert taken_by_reader == sorted(taken_by_reader)
    assert taken_by_drain == sorted(taken_by_drain)


@pytest.mark.timeout(30)
def test_a_control_envelope_put_while_user_envelopes_wait_is_read_next() -> None:
    inbox = PriorityInbox()
    for i in range(3):
        inbox.put(Envelope(i))
    inbox.put(Envelope(_Stop(9)))
    assert [_label(inbox.get()) for _ in range(4)] == [
        ("control", 9),
        ("user", 0),
        ("user", 1),
        ("user", 2),
    ]
