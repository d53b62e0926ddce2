"""Races between messages, crashes and stops: nothing is lost, nothing is reported twice."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.runtime.actor import Actor
from actors.runtime.errors import ActorDeadError
from actors.runtime.reasons import Crashed, Down, Shutdown
from actors.runtime.system import ActorSystem
from tests.helpers import WAIT, Inbox


class Worker(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


@settings(max_examples=25, deadline=None)
@given(
    plan=st.lists(
        st.lists(st.sampled_from(["ask", "tell", "crash", "stop"]), min_size=1, max_size=30),
        min_size=1,
        max_size=6,
    )
)
def test_every_ask_is_answered_and_every_incarnation_reports_one_down(
    plan: list[list[str]],
) -> None:
    watcher = Inbox()
    with ActorSystem("stress") as system:
        handles = [system.spawn(Worker, watchers=(watcher,)) for _ in plan]
        asks: list[Any] = []
        start = threading.Barrier(len(plan))

        def drive(handle: Any, actions: list[str]) -> None:
            start.wait(WAIT)
            for i, action in enumerate(actions):
                if action == "ask":
                    asks.append((i, handle.ask(i)))
                elif action == "tell":
                    handle.tell(i)
                elif action == "crash":
                    handle.tell("crash")
                else:
                    handle.stop()

        threads = [
            threading.Thread(target=drive, args=(h, a)) for h, a in zip(handles, plan, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        for expected, future in asks:
            with contextlib.suppress(ActorDeadError):
                assert future.result(WAIT) == expected
        for handle in handles:
            handle.stop()
            assert handle.join(WAIT) is not None
    downs = watcher.drain()
    assert all(isinstance(d, Down) for d in downs)
    per_actor = Counter(d.handle.name for d in downs)
    assert per_actor == Counter(h.name for h in handles), "each incarnation: exactly one Down"
    for down in downs:
        assert isinstance(down.reason, Crashed | Shutdown)
