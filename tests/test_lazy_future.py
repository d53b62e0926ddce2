"""An actor's start and end outcomes: settled once, a ``Future`` only when asked for."""

from __future__ import annotations

import threading

import pytest

from actors.runtime._lazy_future import LazyFuture
from actors.runtime.actor import Actor
from actors.runtime.system import ActorSystem


class _Idle(Actor):
    pass


def test_the_first_settlement_wins_and_a_future_asked_for_later_has_it() -> None:
    outcome: LazyFuture[int] = LazyFuture()
    assert not outcome.done()
    assert outcome.set_result(1)
    assert not outcome.set_result(2)
    assert not outcome.set_exception(ValueError("late"))
    assert outcome.done()
    assert outcome.future().result(0) == 1
    assert outcome.future() is outcome.future()


def test_an_exception_reaches_a_future_asked_for_before_and_one_asked_for_after() -> None:
    outcome: LazyFuture[int] = LazyFuture()
    before = outcome.future()
    assert not before.done()
    assert outcome.set_exception(KeyError("k"))
    assert outcome.future() is before
    with pytest.raises(KeyError):
        before.result(0)


@pytest.mark.timeout(60)
def test_settling_while_others_ask_for_the_future_resolves_it_once_for_all() -> None:
    for round_ in range(200):
        _race_settlement_against_waiters(round_)


def _race_settlement_against_waiters(round_: int) -> None:
    outcome: LazyFuture[int] = LazyFuture()
    start = threading.Barrier(4)
    seen: list[int] = []
    calls: list[int] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait()
        future = outcome.future()
        future.add_done_callback(lambda _: calls.append(1))
        value = future.result(30)
        with lock:
            seen.append(value)

    def settle(value: int) -> None:
        start.wait()
        outcome.set_result(value)

    threads = [
        threading.Thread(target=ask),
        threading.Thread(target=ask),
        threading.Thread(target=settle, args=(round_,)),
        threading.Thread(target=settle, args=(-1,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == 2
    assert len(set(seen)) == 1, seen
    assert seen[0] in (round_, -1)
    assert len(calls) == 2  # each callback ran once


def test_an_actor_that_nobody_waits_on_still_answers_join_and_stop_after_its_end(
    system: ActorSystem,
) -> None:
    handle = system.spawn(_Idle, wait=False)
    actor = handle._actor
    assert actor is not None
    handle._request_stop("done")  # as a run's end stops its actors: nothing waits
    assert type(handle.join(10)).__name__ == "Shutdown"
    assert actor.has_ended
    assert actor.started.result(0) is None
    assert type(actor.terminated.result(0)).__name__ == "Shutdown"
