"""Cancel scopes: hierarchy, reasons, deadlines, callbacks and waiting."""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.clock import MONOTONIC, ManualClock
from actors.runtime.errors import CancelledError
from actors.runtime.timers import TimerService, TimerServiceStoppedError
from tests.helpers import WAIT


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def timers(clock: ManualClock) -> Iterator[TimerService]:
    service = TimerService(clock, name="cancel-test-timers")
    yield service
    assert service.stop(WAIT)


def counter() -> tuple[list[CancelScope], Callable[[CancelScope], None]]:
    calls: list[CancelScope] = []
    return calls, calls.append


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(WAIT)
    assert not [t.name for t in threads if t.is_alive()]


# --- hierarchy and reasons ----------------------------------------------------------------------


def test_cancelling_a_parent_cancels_its_children_and_grandchildren_with_its_reason() -> None:
    root = CancelScope(name="root")
    child = root.child(name="child")
    grandchild = child.child(name="grandchild")
    assert root.cancel(CancelReason.SHUTDOWN) is True
    for scope in (root, child, grandchild):
        assert scope.cancelled
        assert scope.reason is CancelReason.SHUTDOWN


def test_cancelling_a_child_leaves_its_parent_and_siblings_untouched() -> None:
    root = CancelScope(name="root")
    child = root.child(name="child")
    sibling = root.child(name="sibling")
    nephew = sibling.child(name="nephew")
    child.cancel()
    assert child.reason is CancelReason.CANCELLED
    for scope in (root, sibling, nephew):
        assert not scope.cancelled
        assert scope.reason is None


def test_the_first_reason_wins_and_only_the_first_cancel_reports_true() -> None:
    scope = CancelScope(name="s")
    assert scope.cancel(CancelReason.ABANDONED) is True
    assert scope.cancel(CancelReason.SHUTDOWN) is False
    assert scope.reason is CancelReason.ABANDONED


def test_descendants_already_cancelled_keep_their_reason_and_pass_it_down() -> None:
    root = CancelScope(name="root")
    child = root.child(name="child")
    grandchild = child.child(name="grandchild")
    other = root.child(name="other")
    child.cancel(CancelReason.DEADLINE)
    root.cancel(CancelReason.SHUTDOWN)
    assert child.reason is CancelReason.DEADLINE
    assert grandchild.reason is CancelReason.DEADLINE
    assert other.reason is CancelReason.SHUTDOWN


def test_a_child_of_a_cancelled_scope_is_born_cancelled_with_the_parents_reason() -> None:
    root = CancelScope(name="root")
    root.cancel(CancelReason.SHUTDOWN)
    child = root.child(name="late")
    assert child.cancelled
    assert child.reason is CancelReason.SHUTDOWN


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_cancelling_any_scope_cancels_exactly_its_subtree_and_first_reasons_stick(
    data: st.DataObject,
) -> None:
    size = data.draw(st.integers(1, 30), label="size")
    parents = [data.draw(st.integers(0, i - 1), label=f"parent of {i}") for i in range(1, size)]
    scopes = [CancelScope(name="0")]
    for i, parent in enumerate(parents, start=1):
        scopes.append(scopes[parent].child(name=str(i)))

    def subtree(root: int) -> set[int]:
        members = {root}
        for i, parent in enumerate(parents, start=1):
            if parent in members:
                members.add(i)
        return members

    expected: dict[int, CancelReason] = {}
    for _ in range(data.draw(st.integers(1, 3), label="cancels")):
        target = data.draw(st.integers(0, size - 1), label="target")
        reason = data.draw(st.sampled_from(CancelReason), label="reason")
        assert scopes[target].cancel(reason) is (target not in expected)
        for i in subtree(target):
            expected.setdefault(i, reason)
        actual = {i: s.reason for i, s in enumerate(scopes) if s.reason is not None}
        assert actual == expected


def test_callbacks_of_descendants_run_before_those_of_their_ancestors() -> None:
    order: list[str] = []
    root = CancelScope(name="root")
    child = root.child(name="child")
    grandchild = child.child(name="grandchild")
    for scope in (root, child, grandchild):
        scope.add_callback(lambda s: order.append(s.name))
    root.cancel()
    assert order == ["grandchild", "child", "root"]


def test_cancelling_a_very_deep_chain_does_not_hit_the_recursion_limit() -> None:
    root = CancelScope(name="root")
    leaf = root
    for i in range(5_000):
        leaf = leaf.child(name=str(i))
    root.cancel()
    assert leaf.reason is CancelReason.CANCELLED


# --- construction -------------------------------------------------------------------------------


def test_a_childs_deadline_is_the_earlier_of_its_own_and_its_parents(clock: ManualClock) -> None:
    parent = CancelScope(deadline=10.0, clock=clock, name="parent")
    assert parent.child(deadline=5.0).deadline == 5.0
    assert parent.child(deadline=20.0).deadline == 10.0
    assert parent.child().deadline == 10.0
    clock.advance(2.0)
    assert parent.child(timeout=3.0).deadline == 5.0
    assert parent.child(timeout=math.inf).deadline == 10.0
    assert CancelScope(clock=clock).deadline is None
    assert CancelScope(clock=clock, deadline=math.inf).deadline is None


@settings(max_examples=100, deadline=None)
@given(
    own=st.lists(st.one_of(st.none(), st.floats(-5, 50, allow_nan=False)), min_size=1, max_size=6)
)
def test_the_effective_deadline_is_the_minimum_along_the_chain(own: list[float | None]) -> None:
    scope: CancelScope | None = None
    clock = ManualClock(-10.0)
    scope = None
    for deadline in own:
        scope = CancelScope(deadline=deadline, parent=scope, clock=clock)
    assert scope is not None
    given_deadlines = [d for d in own if d is not None]
    assert scope.deadline == (min(given_deadlines) if given_deadlines else None)


def test_a_scope_takes_a_deadline_or_a_timeout_but_not_both() -> None:
    with pytest.raises(ValueError, match="give a deadline or a timeout, not both"):
        CancelScope(deadline=1.0, timeout=1.0, name="both")


@pytest.mark.parametrize(
    ("deadline", "timeout", "match"),
    [
        (None, -1.0, "timeout must be a non-negative number of seconds, got -1.0"),
        (None, math.nan, "timeout must be a non-negative number of seconds, got nan"),
        (math.nan, None, "deadline must be a time or math.inf, got nan"),
        (-math.inf, None, "deadline must be a time or math.inf, got -inf"),
    ],
)
def test_a_scope_refuses_meaningless_deadlines(
    deadline: float | None, timeout: float | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        CancelScope(deadline=deadline, timeout=timeout, name="bad")


def test_a_child_inherits_its_parents_clock_and_timers_and_refuses_another_clock(
    clock: ManualClock, timers: TimerService
) -> None:
    parent = CancelScope(clock=clock, timers=timers, name="parent")
    child = parent.child(name="child")
    assert child.clock is clock
    assert child.timers is timers
    with pytest.raises(ValueError, match="is not its parent's clock"):
        CancelScope(parent=parent, clock=ManualClock(), name="stranger")
    assert parent.children == (child,)


def test_a_scope_reads_the_clock_of_its_timer_service_and_refuses_a_different_one(
    clock: ManualClock, timers: TimerService
) -> None:
    assert CancelScope(timers=timers).clock is clock
    assert CancelScope().clock is MONOTONIC
    with pytest.raises(ValueError, match="deadlines would be read on different scales"):
        CancelScope(clock=MONOTONIC, timers=timers, name="mixed")


# --- deadlines ---------------------------------------------------------------------------------


def test_without_timers_a_passed_deadline_is_noticed_when_checked_and_runs_callbacks(
    clock: ManualClock,
) -> None:
    scope = CancelScope(timeout=5.0, clock=clock, name="lazy")
    calls, callback = counter()
    scope.add_callback(callback)
    clock.advance(4.0)
    assert not scope.cancelled
    assert scope.remaining() == 1.0
    clock.advance(1.0)
    assert calls == []
    assert scope.cancelled
    assert scope.reason is CancelReason.DEADLINE
    assert calls == [scope]
    assert scope.remaining() == 0.0
    clock.advance(10.0)
    assert scope.remaining() == 0.0


def test_noticing_an_inherited_deadline_expires_the_scope_that_owns_it(
    clock: ManualClock,
) -> None:
    parent = CancelScope(timeout=5.0, clock=clock, name="owner")
    child = parent.child(name="child")
    sibling = parent.child(name="sibling")
    calls, callback = counter()
    parent.add_callback(callback)
    clock.advance(5.0)
    assert child.reason is CancelReason.DEADLINE
    assert calls == [parent]
    assert parent.reason is CancelReason.DEADLINE
    assert sibling.reason is CancelReason.DEADLINE


def test_a_reason_asked_after_the_deadline_is_deadline(clock: ManualClock) -> None:
    scope = CancelScope(deadline=1.0, clock=clock, name="r")
    clock.advance(1.0)
    assert scope.reason is CancelReason.DEADLINE


def test_with_timers_the_deadline_fires_callbacks_without_anyone_checking(
    clock: ManualClock, timers: TimerService
) -> None:
    scope = CancelScope(timeout=5.0, timers=timers, name="timed")
    fired = threading.Event()
    seen: list[CancelReason | None] = []

    def on_cancel(s: CancelScope) -> None:
        seen.append(s.reason)
        fired.set()

    scope.add_callback(on_cancel)
    assert timers.pending() == 1
    clock.advance(4.0)
    assert timers.pending() == 1
    clock.advance(1.0)
    assert fired.wait(WAIT)
    assert seen == [CancelReason.DEADLINE]
    assert timers.pending() == 0


def test_children_are_cancelled_by_the_parents_timer_at_the_parents_deadline(
    clock: ManualClock, timers: TimerService
) -> None:
    parent = CancelScope(timeout=5.0, timers=timers, name="parent")
    child = parent.child(name="child")
    fired = threading.Event()
    child.add_callback(lambda _: fired.set())
    clock.advance(5.0)
    assert fired.wait(WAIT)
    assert child.reason is CancelReason.DEADLINE


def test_only_scopes_with_their_own_earlier_deadline_get_a_timer_entry(
    clock: ManualClock, timers: TimerService
) -> None:
    parent = CancelScope(deadline=10.0, timers=timers, name="parent")
    assert timers.pending() == 1
    parent.child(deadline=20.0)
    parent.child(deadline=10.0)
    parent.child()
    assert timers.pending() == 1
    earlier = parent.child(deadline=5.0)
    assert timers.pending() == 2
    earlier.close()
    assert timers.pending() == 1
    parent.cancel()
    assert timers.pending() == 0


def test_cancelling_a_scope_cancels_the_timer_entries_below_it(
    clock: ManualClock, timers: TimerService
) -> None:
    root = CancelScope(timers=timers, name="root")
    root.child(timeout=1.0).child(timeout=0.5)
    assert timers.pending() == 2
    root.cancel()
    assert timers.pending() == 0


def test_a_scope_whose_timer_service_is_stopped_is_refused_and_leaves_no_child_behind(
    clock: ManualClock,
) -> None:
    timers = TimerService(clock)
    parent = CancelScope(timers=timers, name="parent")
    assert timers.stop(WAIT)
    with pytest.raises(TimerServiceStoppedError):
        parent.child(timeout=1.0)
    assert parent.children == ()
    assert parent.child().timers is timers


def test_with_the_real_clock_and_timers_the_deadline_fires_after_it_passes() -> None:
    timers = TimerService()
    try:
        scope = CancelScope(timeout=0.05, timers=timers, name="real")
        fired_at: list[float] = []
        fired = threading.Event()

        def on_cancel(_: CancelScope) -> None:
            fired_at.append(time.monotonic())
            fired.set()

        scope.add_callback(on_cancel)
        assert fired.wait(WAIT)
        deadline = scope.deadline
        assert deadline is not None
        assert fired_at[0] >= deadline
        assert scope.reason is CancelReason.DEADLINE
    finally:
        assert timers.stop(WAIT)


# --- callbacks ---------------------------------------------------------------------------------


def cancel_all_at_once(targets: list[CancelScope]) -> list[bool]:
    """Cancel each target from its own thread, all released together; return what cancel said."""
    barrier = threading.Barrier(len(targets))
    results: list[bool] = []

    def cancel(target: CancelScope) -> None:
        barrier.wait(WAIT)
        results.append(target.cancel(CancelReason.SHUTDOWN))

    threads = [
        threading.Thread(target=cancel, args=(target,), name=f"canceller-{i}")
        for i, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    join(*threads)
    return results


class CallCounter:
    """A thread-safe callback that counts its calls per scope name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def __call__(self, scope: CancelScope) -> None:
        with self._lock:
            self.calls[scope.name] = self.calls.get(scope.name, 0) + 1


def test_callbacks_run_exactly_once_when_eight_threads_cancel_at_once() -> None:
    for _ in range(40):
        root = CancelScope(name="root")
        children = [root.child(name=str(i)) for i in range(4)]
        counter = CallCounter()
        for scope in (root, *children):
            scope.add_callback(counter)
        wins = cancel_all_at_once([root] * 8)
        assert sorted(wins) == [False] * 7 + [True]
        assert counter.calls == dict.fromkeys(("root", "0", "1", "2", "3"), 1)
        assert all(c.reason is CancelReason.SHUTDOWN for c in children)


def test_callbacks_run_exactly_once_when_threads_race_to_cancel_a_parent_and_its_children() -> None:
    for _ in range(40):
        root = CancelScope(name="root")
        children = [root.child(name=str(i)).child(name=f"{i}.0") for i in range(7)]
        scopes = [root, *children, *(c.parent for c in children if c.parent is not None)]
        counter = CallCounter()
        for scope in scopes:
            scope.add_callback(counter)
        cancel_all_at_once([root, *children])
        assert counter.calls == {scope.name: 1 for scope in scopes}
        assert all(scope.cancelled for scope in scopes)


def test_a_callback_added_after_cancel_runs_at_once_in_the_callers_thread() -> None:
    scope = CancelScope(name="done")
    scope.cancel(CancelReason.ABANDONED)
    threads: list[threading.Thread] = []
    reasons: list[CancelReason | None] = []

    def callback(s: CancelScope) -> None:
        threads.append(threading.current_thread())
        reasons.append(s.reason)

    remove = scope.add_callback(callback)
    assert threads == [threading.current_thread()]
    assert reasons == [CancelReason.ABANDONED]
    remove()


def test_a_removed_callback_is_not_called_and_removing_twice_is_harmless() -> None:
    scope = CancelScope(name="s")
    removed_calls, removed = counter()
    kept_calls, kept = counter()
    remove = scope.add_callback(removed)
    scope.add_callback(kept)
    remove()
    remove()
    scope.cancel()
    assert removed_calls == []
    assert kept_calls == [scope]
    remove()


def test_a_raising_callback_is_logged_and_the_other_callbacks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = CancelScope(name="noisy")
    calls, callback = counter()

    def broken(_: CancelScope) -> None:
        raise RuntimeError("callback broke")

    def cancelled_inside(s: CancelScope) -> None:
        s.raise_if_cancelled()

    scope.add_callback(broken)
    scope.add_callback(cancelled_inside)
    scope.add_callback(callback)
    with caplog.at_level(logging.ERROR, logger="castflow.cancel"):
        assert scope.cancel() is True
    assert calls == [scope]
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info is not None]
    assert [type(e) for e in errors] == [RuntimeError, CancelledError]
    assert all("'noisy'" in r.getMessage() for r in caplog.records)


def test_a_callback_may_cancel_check_and_add_callbacks_without_deadlock() -> None:
    parent = CancelScope(name="parent")
    scope = parent.child(name="child")
    inner_calls, inner = counter()
    results: list[object] = []

    def reentrant(s: CancelScope) -> None:
        results.append(s.cancel())
        results.append(s.cancelled)
        s.add_callback(inner)
        results.append(parent.cancel(CancelReason.SHUTDOWN))
        results.append(len(parent.children))

    scope.add_callback(reentrant)
    done = threading.Event()

    def run() -> None:
        scope.cancel()
        done.set()

    thread = start_thread(run, "reentrant-canceller")
    join(thread)
    assert done.is_set()
    assert results == [False, True, True, 1]
    assert inner_calls == [scope]
    assert parent.reason is CancelReason.SHUTDOWN
    assert scope.reason is CancelReason.CANCELLED


# --- closing -----------------------------------------------------------------------------------


def test_closing_a_child_detaches_it_from_its_parent() -> None:
    parent = CancelScope(name="parent")
    child = parent.child(name="child")
    other = parent.child(name="other")
    assert set(parent.children) == {child, other}
    child.close()
    child.close()
    assert child.closed
    assert not child.cancelled
    assert parent.children == (other,)
    parent.cancel()
    assert not child.cancelled
    other.close()
    assert not parent.children


def test_a_long_lived_parent_keeps_no_reference_to_its_closed_children() -> None:
    parent = CancelScope(name="service")
    samples: list[weakref.ref[CancelScope]] = []
    for i in range(100_000):
        with parent.child(name="request") as child:
            child.raise_if_cancelled()
            if i % 10_000 == 0:
                samples.append(weakref.ref(child))
    del child
    gc.collect()
    assert parent.children == ()
    assert [ref() for ref in samples] == [None] * len(samples)


def test_the_context_manager_closes_on_exit_and_lets_exceptions_through() -> None:
    parent = CancelScope(name="parent")
    inside: list[CancelScope] = []

    def body() -> None:
        with parent.child(name="child") as child:
            inside.append(child)
            assert parent.children == (child,)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        body()
    assert inside[0].closed
    assert parent.children == ()


def test_raise_if_cancelled_raises_a_cancelled_error_naming_the_scope_and_reason(
    clock: ManualClock,
) -> None:
    scope = CancelScope(deadline=3.0, clock=clock, name="fetch")
    scope.raise_if_cancelled()
    clock.advance(3.0)
    with pytest.raises(CancelledError, match=r"^scope 'fetch' cancelled: deadline$") as info:
        scope.raise_if_cancelled()
    assert info.value.reason is CancelReason.DEADLINE
    assert not isinstance(info.value, Exception)


# --- waiting ---------------------------------------------------------------------------------


def test_wait_returns_as_soon_as_another_thread_cancels() -> None:
    scope = CancelScope(name="waited")
    results: list[bool] = []
    thread = start_thread(lambda: results.append(scope.wait(3_600.0)), "waiter")
    scope.cancel()
    join(thread)
    assert results == [True]


def test_wait_with_a_timeout_returns_false_when_nothing_cancels() -> None:
    scope = CancelScope(name="idle")
    assert scope.wait(0.01) is False
    assert scope.wait(0) is False
    with pytest.raises(ValueError, match="wait timeout must be non-negative seconds"):
        scope.wait(-1.0)


def test_wait_under_a_manual_clock_wakes_when_the_clock_passes_the_deadline(
    clock: ManualClock,
) -> None:
    scope = CancelScope(timeout=5.0, clock=clock, name="manual")
    results: list[bool] = []
    thread = start_thread(lambda: results.append(scope.wait(3_600.0)), "manual-waiter")
    clock.advance(4.0)
    clock.advance(1.0)
    join(thread)
    assert results == [True]
    assert scope.reason is CancelReason.DEADLINE


def test_wait_under_the_real_clock_ends_at_the_deadline_without_timers() -> None:
    scope = CancelScope(timeout=0.05, name="real")
    deadline = scope.deadline
    assert deadline is not None
    assert scope.wait() is True
    assert time.monotonic() >= deadline
    assert scope.reason is CancelReason.DEADLINE


def test_wait_on_a_child_returns_when_the_parent_is_cancelled() -> None:
    parent = CancelScope(name="parent")
    child = parent.child(name="child")
    results: list[bool] = []
    thread = start_thread(lambda: results.append(child.wait(3_600.0)), "child-waiter")
    parent.cancel(CancelReason.SHUTDOWN)
    join(thread)
    assert results == [True]
