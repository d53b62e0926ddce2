"""Clocks and the timer service: deadlines become messages, in order, never early."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.runtime.clock import MONOTONIC, Clock, ManualClock, MonotonicClock, ObservableClock
from actors.runtime.errors import CastflowError
from actors.runtime.timers import Receiver, TimerService, TimerServiceStoppedError
from tests.helpers import WAIT

MakeService = Callable[..., TimerService]


class Recorder:
    """A receiver that records each message with the clock's time when it arrived."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self.received: list[tuple[Any, float]] = []

    def tell(self, message: Any) -> None:
        with self._cond:
            self.received.append((message, self._clock.now()))
            self._cond.notify_all()

    def messages(self) -> list[Any]:
        with self._cond:
            return [message for message, _ in self.received]

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= count, timeout)


class Raising:
    """A receiver whose ``tell`` always raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def tell(self, message: Any) -> None:
        raise self.error


def stop_cleanly(service: TimerService) -> None:
    assert service.stop(WAIT), f"{service!r} did not stop"
    thread = service.thread
    assert thread is None or not thread.is_alive()


@pytest.fixture
def make_service() -> Iterator[MakeService]:
    """Hands out timer services and stops (and joins) every one of them after the test."""
    services: list[TimerService] = []

    def make(*args: Any, **kwargs: Any) -> TimerService:
        service = TimerService(*args, **kwargs)
        services.append(service)
        return service

    yield make
    for service in services:
        stop_cleanly(service)


# --- clocks -----------------------------------------------------------------------------------


def test_the_monotonic_clock_reads_time_monotonic() -> None:
    before = time.monotonic()
    now = MONOTONIC.now()
    after = time.monotonic()
    assert before <= now <= after
    assert isinstance(MONOTONIC, MonotonicClock)


def test_a_manual_clock_starts_where_it_is_told_and_moves_only_when_moved() -> None:
    clock = ManualClock(10.0)
    assert clock.now() == 10.0
    assert clock.advance(2.5) == 12.5
    assert clock.now() == 12.5
    clock.set(20.0)
    assert clock.now() == 20.0
    clock.set(20.0)
    assert clock.advance(0) == 20.0


def test_a_manual_clock_refuses_to_move_backwards() -> None:
    clock = ManualClock(5.0)
    with pytest.raises(ValueError, match=r"advance\(-1\.0\) is negative"):
        clock.advance(-1.0)
    with pytest.raises(ValueError, match=r"set\(4\.0\) is before the current time 5\.0"):
        clock.set(4.0)
    assert clock.now() == 5.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_manual_clock_refuses_times_that_are_not_finite(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        ManualClock(value)
    clock = ManualClock()
    with pytest.raises(ValueError, match="finite"):
        clock.advance(value)
    with pytest.raises(ValueError, match="finite"):
        clock.set(value)


def test_a_manual_clock_calls_its_listeners_after_every_move_until_they_are_removed() -> None:
    clock = ManualClock()
    seen: list[tuple[str, float]] = []
    remove_a = clock.add_listener(lambda: seen.append(("a", clock.now())))
    clock.add_listener(lambda: seen.append(("b", clock.now())))
    clock.advance(1.0)
    clock.set(3.0)
    remove_a()
    remove_a()
    clock.advance(1.0)
    assert seen == [("a", 1.0), ("b", 1.0), ("a", 3.0), ("b", 3.0), ("b", 4.0)]


def test_a_listener_may_use_the_clock_because_it_runs_outside_the_clocks_lock() -> None:
    clock = ManualClock()
    seen: list[float] = []

    def listener() -> None:
        seen.append(clock.now())
        clock.add_listener(lambda: None)()

    clock.add_listener(listener)
    clock.advance(1.0)
    assert seen == [1.0]


def test_every_listener_runs_even_if_one_raises_and_the_first_error_reaches_the_mover() -> None:
    clock = ManualClock()
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("listener broke")

    clock.add_listener(broken)
    clock.add_listener(lambda: seen.append("after"))
    with pytest.raises(RuntimeError, match="listener broke"):
        clock.advance(1.0)
    assert seen == ["after"]
    assert clock.now() == 1.0


def test_only_the_manual_clock_reports_its_moves() -> None:
    assert isinstance(ManualClock(), ObservableClock)
    assert not isinstance(MONOTONIC, ObservableClock)


# --- ordering and deadlines ---------------------------------------------------------------------

deadlines = st.lists(
    st.one_of(st.integers(0, 20).map(float), st.floats(0, 20, allow_nan=False)), max_size=25
)
steps = st.lists(st.floats(0, 8, allow_nan=False), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deadlines=deadlines, steps=steps)
def test_after_each_move_of_the_clock_exactly_the_due_entries_were_delivered_in_order(
    deadlines: list[float], steps: list[float]
) -> None:
    clock = ManualClock()
    service = TimerService(clock)
    try:
        inbox = Recorder(clock)
        for seq, deadline in enumerate(deadlines):
            service.schedule_at(deadline, inbox, (deadline, seq))
        in_order = sorted((deadline, seq) for seq, deadline in enumerate(deadlines))
        for step in [*steps, 21.0]:
            now = clock.advance(step)
            due = [entry for entry in in_order if entry[0] <= now]
            assert inbox.wait_for(len(due)), f"only {inbox.messages()} of {due} arrived"
            assert inbox.messages() == due
            assert service.pending() == len(deadlines) - len(due)
            for (deadline, _), arrived_at in inbox.received:
                assert arrived_at >= deadline
    finally:
        stop_cleanly(service)


def test_a_deadline_already_passed_is_delivered_at_once(make_service: MakeService) -> None:
    clock = ManualClock(100.0)
    service = make_service(clock)
    inbox = Recorder(clock)
    handle = service.schedule_at(50.0, inbox, "late")
    assert inbox.wait_for(1)
    assert inbox.messages() == ["late"]
    assert handle.fired
    assert not handle.cancelled


def test_schedule_counts_its_delay_from_the_clocks_now(make_service: MakeService) -> None:
    clock = ManualClock(7.0)
    service = make_service(clock)
    inbox = Recorder(clock)
    handle = service.schedule(3.0, inbox, "x")
    assert handle.deadline == 10.0
    clock.advance(2.9)
    assert service.pending() == 1
    clock.advance(0.1)
    assert inbox.wait_for(1)
    assert inbox.received == [("x", 10.0)]


@pytest.mark.parametrize("delay", [-0.001, math.nan, math.inf])
def test_schedule_refuses_a_negative_or_non_finite_delay(
    make_service: MakeService, delay: float
) -> None:
    service = make_service(ManualClock())
    with pytest.raises(ValueError, match="timer delay must be a finite, non-negative"):
        service.schedule(delay, Recorder(MONOTONIC), "x")
    assert service.thread is None


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf])
def test_schedule_at_refuses_a_deadline_that_is_not_finite(
    make_service: MakeService, deadline: float
) -> None:
    service = make_service(ManualClock())
    with pytest.raises(ValueError, match="timer deadline must be a finite time"):
        service.schedule_at(deadline, Recorder(MONOTONIC), "x")


# --- cancellation and the heap --------------------------------------------------------------


def test_cancelling_before_the_deadline_prevents_the_delivery(make_service: MakeService) -> None:
    clock = ManualClock()
    service = make_service(clock)
    inbox = Recorder(clock)
    first = service.schedule_at(1.0, inbox, "first")
    second = service.schedule_at(1.0, inbox, "second")
    assert first.cancel() is True
    assert first.cancel() is False
    assert service.pending() == 1
    clock.advance(5.0)
    assert inbox.wait_for(1)
    assert inbox.messages() == ["second"]
    assert first.cancelled
    assert not first.fired
    assert second.fired
    assert second.cancel() is False
    assert not second.cancelled
    assert service.pending() == 0


def test_cancel_returning_true_means_the_message_is_never_delivered_even_in_a_race(
    make_service: MakeService,
) -> None:
    clock = ManualClock()
    service = make_service(clock)
    inbox = Recorder(clock)
    count = 400
    handles = [service.schedule_at(float(i), inbox, i) for i in range(count)]

    def move_time() -> None:
        for _ in range(count):
            clock.advance(1.0)

    mover = threading.Thread(target=move_time, name="clock-mover")
    mover.start()
    try:
        cancelled = {i for i, handle in reversed(list(enumerate(handles))) if handle.cancel()}
    finally:
        mover.join(WAIT)
    assert not mover.is_alive()
    assert inbox.wait_for(count - len(cancelled))
    delivered = set(inbox.messages())
    assert delivered.isdisjoint(cancelled)
    assert delivered | cancelled == set(range(count))
    assert len(inbox.received) == len(delivered)


def test_the_heap_stays_bounded_when_a_great_many_timers_are_scheduled_and_cancelled(
    make_service: MakeService,
) -> None:
    clock = ManualClock()
    service = make_service(clock)
    inbox = Recorder(clock)
    keep = [service.schedule_at(1_000.0 + i, inbox, i) for i in range(3)]
    largest = 0
    for i in range(50_000):
        service.schedule_at(10.0 + i, inbox, i).cancel()
        largest = max(largest, service.heap_size)
    assert largest <= 2 * len(keep) + 1
    assert service.pending() == len(keep)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.one_of(st.floats(1, 100, allow_nan=False), st.integers(0, 1_000)), max_size=200)
)
def test_cancelled_entries_never_make_up_more_than_half_of_the_heap(
    ops: list[float | int],
) -> None:
    """A float schedules at that deadline; an int cancels a live entry chosen by it."""
    clock = ManualClock()
    service = TimerService(clock)
    try:
        inbox = Recorder(clock)
        live = []
        for op in ops:
            if isinstance(op, float):
                live.append(service.schedule_at(op, inbox, op))
            elif live:
                assert live.pop(op % len(live)).cancel()
            assert service.pending() == len(live)
            assert service.heap_size <= 2 * len(live) + 1
    finally:
        stop_cleanly(service)


# --- failures, threads and stopping -------------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError("no mailbox"), SystemExit(3)])
def test_a_raising_receiver_does_not_stop_the_service_and_on_undeliverable_sees_it(
    make_service: MakeService, error: BaseException
) -> None:
    clock = ManualClock()
    reports: list[tuple[Receiver, Any, BaseException]] = []
    service = make_service(
        clock, on_undeliverable=lambda target, msg, exc: reports.append((target, msg, exc))
    )
    broken = Raising(error)
    inbox = Recorder(clock)
    service.schedule_at(1.0, broken, "lost")
    service.schedule_at(2.0, inbox, "after")
    clock.advance(2.0)
    assert inbox.wait_for(1)
    assert reports == [(broken, "lost", error)]
    assert service.is_running
    service.schedule_at(3.0, inbox, "later")
    clock.advance(1.0)
    assert inbox.wait_for(2)
    assert inbox.messages() == ["after", "later"]


def test_without_on_undeliverable_a_delivery_error_is_logged(
    make_service: MakeService, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    service = make_service(clock, name="quiet-timers")
    inbox = Recorder(clock)
    with caplog.at_level(logging.ERROR, logger="castflow.timers"):
        service.schedule_at(1.0, Raising(KeyError("gone")), "lost")
        service.schedule_at(1.0, inbox, "after")
        clock.advance(1.0)
        assert inbox.wait_for(1)
    [record] = [r for r in caplog.records if r.name == "castflow.timers"]
    assert "'quiet-timers' could not deliver 'lost'" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


def test_a_raising_on_undeliverable_is_logged_and_the_service_carries_on(
    make_service: MakeService, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()

    def broken_handler(target: Receiver, message: Any, error: BaseException) -> None:
        raise RuntimeError("handler broke")

    service = make_service(clock, on_undeliverable=broken_handler)
    inbox = Recorder(clock)
    with caplog.at_level(logging.ERROR, logger="castflow.timers"):
        service.schedule_at(1.0, Raising(ValueError("x")), "lost")
        service.schedule_at(1.0, inbox, "after")
        clock.advance(1.0)
        assert inbox.wait_for(1)
    assert any("on_undeliverable" in r.getMessage() for r in caplog.records)


def test_the_thread_starts_on_the_first_schedule_only_once_as_a_named_daemon(
    make_service: MakeService,
) -> None:
    clock = ManualClock()
    service = make_service(clock, name="my-timers")
    assert service.thread is None
    assert not service.is_running
    inbox = Recorder(clock)
    service.schedule_at(5.0, inbox, 1)
    thread = service.thread
    assert thread is not None
    assert thread.name == "my-timers"
    assert thread.daemon
    assert service.is_running
    service.schedule_at(6.0, inbox, 2)
    assert service.thread is thread
    assert [t for t in threading.enumerate() if t.name == "my-timers"] == [thread]


def test_stop_joins_the_thread_drops_pending_entries_and_refuses_new_ones() -> None:
    clock = ManualClock()
    service = TimerService(clock, name="stopping-timers")
    inbox = Recorder(clock)
    handle = service.schedule_at(1.0, inbox, "never")
    thread = service.thread
    assert thread is not None
    assert service.stop(WAIT) is True
    assert not thread.is_alive()
    assert not service.is_running
    assert service.pending() == 0
    assert service.heap_size == 0
    clock.advance(5.0)
    assert inbox.messages() == []
    assert not handle.fired
    assert handle.cancel() is True
    assert handle.cancel() is False
    with pytest.raises(TimerServiceStoppedError, match="'stopping-timers' is stopped") as info:
        service.schedule(1.0, inbox, "too late")
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, CastflowError)
    assert service.stop(WAIT) is True


def test_stop_before_any_schedule_starts_no_thread() -> None:
    service = TimerService()
    assert service.stop() is True
    assert service.thread is None


def test_a_receiver_may_schedule_from_inside_a_delivery(make_service: MakeService) -> None:
    clock = ManualClock()
    service = make_service(clock)
    inbox = Recorder(clock)

    class Rescheduler:
        def tell(self, message: Any) -> None:
            service.schedule(0.0, inbox, f"{message} again")

    service.schedule_at(1.0, Rescheduler(), "tick")
    clock.advance(1.0)
    assert inbox.wait_for(1)
    assert inbox.messages() == ["tick again"]


def test_stop_called_from_a_delivery_cannot_wait_for_itself_but_the_thread_then_ends() -> None:
    clock = ManualClock()
    service = TimerService(clock)
    results: list[bool] = []
    done = threading.Event()

    class Stopper:
        def tell(self, message: Any) -> None:
            results.append(service.stop(WAIT))
            done.set()

    service.schedule_at(1.0, Stopper(), "stop")
    clock.advance(1.0)
    assert done.wait(WAIT)
    assert results == [False]
    assert service.stop(WAIT) is True


# --- the real clock -------------------------------------------------------------------------


def test_with_the_real_clock_a_message_arrives_after_its_delay_and_not_before(
    make_service: MakeService,
) -> None:
    service = make_service()
    inbox = Recorder(MONOTONIC)
    handle = service.schedule(0.05, inbox, "ring")
    assert inbox.wait_for(1)
    [(message, arrived_at)] = inbox.received
    assert message == "ring"
    assert arrived_at >= handle.deadline
    assert arrived_at - handle.deadline < WAIT


def test_an_earlier_deadline_wakes_a_thread_sleeping_until_a_later_one(
    make_service: MakeService,
) -> None:
    service = make_service()
    inbox = Recorder(MONOTONIC)
    service.schedule(0.0, inbox, "now")
    service.schedule(3_600.0, inbox, "in an hour")
    # Once "now" has arrived the thread is going back to sleep until the hour is up.
    assert inbox.wait_for(1)
    early = service.schedule(0.01, inbox, "soon")
    assert inbox.wait_for(2)
    assert inbox.messages() == ["now", "soon"]
    assert inbox.received[1][1] >= early.deadline
    assert service.pending() == 1
