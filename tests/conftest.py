"""Shared fixtures: every test must leave no thread behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from actors.runtime.system import ActorSystem
from tests.parallel_kit import Gates

THREAD_GRACE = 10.0


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Fail a test that leaves a thread it started running after its teardown."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE
    leftovers = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leftovers.append(thread.name)
    assert not leftovers, f"threads still alive after the test: {leftovers}"


@pytest.fixture
def system() -> Iterator[ActorSystem]:
    """A fresh system, shut down (and checked clean) after the test."""
    sys_ = ActorSystem("test")
    try:
        yield sys_
    finally:
        report = sys_.shutdown(timeout=10.0)
        assert report.clean, f"shutdown left threads running: {report.abandoned}"


@pytest.fixture
def gates(system: ActorSystem) -> Iterator[Gates]:
    """Gates opened at teardown, before ``system`` shuts down: no tool outlives the test."""
    handed_out = Gates()
    yield handed_out
    handed_out.release_all()
