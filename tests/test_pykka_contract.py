"""The pykka 4.5 internals castflow's runtime relies on. If pykka changes, this fails first."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pykka
from pykka import messages
from pykka._envelope import Envelope

from actors.runtime.actor import Actor
from actors.runtime.futures import GuardedThreadingFuture
from actors.runtime.inbox import PriorityInbox
from actors.runtime.system import ActorSystem


def test_the_installed_pykka_is_the_verified_minor_version() -> None:
    assert version("pykka").startswith("4.5.")


def test_the_actor_hooks_castflow_overrides_exist_with_the_expected_shape() -> None:
    for hook in ("_create_actor_inbox", "_create_future", "_start_actor_loop", "_actor_loop"):
        assert hasattr(pykka.Actor, hook), hook
    assert inspect.signature(pykka.Actor._handle_receive).parameters.keys() == {"self", "message"}
    assert isinstance(Actor._create_actor_inbox(), PriorityInbox)
    assert isinstance(Actor._create_future(), GuardedThreadingFuture)


def test_the_castflow_inbox_has_the_methods_of_pykkas_inbox_protocol() -> None:
    # pykka's ActorRef puts envelopes in an actor's inbox itself (tell and ask).
    inbox = Actor._create_actor_inbox()
    for method in ("put", "get", "empty"):
        expected = inspect.signature(getattr(pykka._actor.ActorInbox, method))
        actual = inspect.signature(getattr(PriorityInbox, method))
        assert list(actual.parameters) == list(expected.parameters), method
    inbox.put(Envelope("hello"))
    assert not inbox.empty()
    assert inbox.get().message == "hello"
    assert inbox.empty()


def test_envelopes_carry_a_message_and_an_optional_reply_future() -> None:
    envelope = Envelope("hello")
    assert envelope.message == "hello"
    assert envelope.reply_to is None


def test_pykka_stop_message_and_threading_future_internals_exist() -> None:
    assert isinstance(messages._ActorStop(), tuple)
    future: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    assert future._result is None
    future.set(1)
    assert future._result is not None
    assert future.get(timeout=0) == 1


def test_a_pykka_ref_of_a_castflow_actor_asks_through_the_castflow_loop(
    system: ActorSystem,
) -> None:
    class Doubler(Actor):
        def on_receive(self, message: object) -> object:
            assert isinstance(message, int)
            return message * 2

    handle = system.spawn(Doubler)
    actor = handle._actor
    assert actor is not None
    assert actor.actor_ref.ask(21, timeout=10) == 42
    actor.actor_ref.stop(block=False)
    assert type(handle.join(10)).__name__ == "Shutdown"
