"""Batches of plain leaves: branches prepared ahead, started by the workers themselves.

A worker that finishes a branch of such a batch starts the next one through the batch's
admission gate, without the branch supervisor. The bounds and records must be those of any
other batch: never more than ``max_concurrency`` running, branches started in input order,
``skipped`` only for a branch that never ran, and a slot of its own for every branch that is
not a plain leaf.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    StepResult,
    ToolContext,
    tool,
)
from actors.tools import Tool
from tests.helpers import WAIT
from tests.parallel_kit import Gates, Meter, raising
from tests.sizes import sized


class Ledger:
    """What the branches' bodies did: which ran, in what order, how many at once."""

    def __init__(self) -> None:
        self.meter = Meter()
        self._lock = threading.Lock()
        self.ran: list[int] = []

    def enter(self, index: int) -> None:
        self.meter.enter()
        with self._lock:
            self.ran.append(index)

    def plain(self, index: int, *, fail: bool, latency: float) -> Tool[..., int]:
        """A plain tool (no ``ToolContext``): runs ``latency`` seconds, then returns or raises."""

        def body(x: int) -> int:
            self.enter(index)
            try:
                if latency:
                    time.sleep(latency)
                if fail:
                    msg = f"branch {index} fails"
                    raise ValueError(msg)
                return index
            finally:
                self.meter.leave()

        return tool(body, name=f"b{index}")

    def seeing(self, index: int) -> Tool[..., int]:
        """A tool that takes a ``ToolContext``: it runs with a scope of its own."""

        def body(x: int, ctx: ToolContext) -> int:
            self.enter(index)
            try:
                ctx.raise_if_cancelled()
                return index
            finally:
                self.meter.leave()

        return tool(body, name=f"b{index}")


AGGREGATIONS = [
    Aggregation.ALL_SUCCESS,
    Aggregation.FIRST_SUCCESS,
    Aggregation.PARTIAL_SUCCESS,
    Aggregation.quorum(2),
]


@sized(120, 2000)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.0, 0.001])), min_size=1, max_size=30),
    st.integers(1, 6),
    st.sampled_from(AGGREGATIONS),
    st.sampled_from([ErrorMode.FAIL_FAST, ErrorMode.FAIL_SLOW]),
)
@pytest.mark.timeout(300)
def test_plain_batches_keep_the_bound_the_order_and_the_records(
    branches: list[tuple[bool, float]],
    concurrency: int,
    aggregation: Aggregation,
    error_mode: ErrorMode,
) -> None:
    if aggregation.k is not None and aggregation.k > len(branches):
        aggregation = Aggregation.ALL_SUCCESS  # a quorum needs that many branches
    ledger = Ledger()
    flow = ParallelWorkflow(
        [ledger.plain(i, fail=fail, latency=latency) for i, (fail, latency) in enumerate(branches)],
        max_concurrency=concurrency,
        aggregation=aggregation,
        error_mode=error_mode,
    )
    with ActorSystem("lanes") as system:
        result = system.run(flow, 0, timeout=WAIT)
    assert ledger.meter.peak <= concurrency
    # Started in input order (a body records itself as its first act: concurrent starts
    # may record out of order, but never further apart than the slots allow).
    for position, index in enumerate(ledger.ran):
        assert abs(position - index) < concurrency
    ran = set(ledger.ran)
    assert len(ran) == len(ledger.ran), "a branch ran twice"
    assert [record.name for record in result.steps] == [f"b{i}" for i in range(len(branches))]
    for index, record in enumerate(result.steps):
        fail = branches[index][0]
        if record.status is Status.SKIPPED:
            assert index not in ran, f"b{index} is recorded skipped but it ran"
        elif record.status is Status.OK:
            assert index in ran
            assert not fail
            assert record.value == index
        elif record.status is Status.ERROR:
            assert index in ran
            assert fail
        else:
            assert record.status is Status.CANCELLED, record
    if aggregation is Aggregation.ALL_SUCCESS and not any(fail for fail, _ in branches):
        assert result.status is Status.OK
        assert result.value == list(range(len(branches)))


def test_a_first_success_starts_none_of_the_branches_prepared_behind_the_winner(
    system: ActorSystem,
) -> None:
    ledger = Ledger()
    flow = ParallelWorkflow(
        [ledger.plain(i, fail=False, latency=0.0) for i in range(40)],
        max_concurrency=2,
        aggregation=Aggregation.FIRST_SUCCESS,
    )
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    ran = set(ledger.ran)
    skipped = {i for i, record in enumerate(result.steps) if record.status is Status.SKIPPED}
    assert skipped, "every branch ran: the decision did not stop the prepared ones"
    assert not skipped & ran
    assert ran | skipped | {
        i for i, record in enumerate(result.steps) if record.status is Status.CANCELLED
    } == set(range(40))


def test_branches_that_are_not_plain_leaves_wait_their_turn_for_a_slot(
    system: ActorSystem,
) -> None:
    ledger = Ledger()
    steps: list[Any] = []
    for i in range(24):
        kind = i % 3
        if kind == 0:
            steps.append(ledger.plain(i, fail=False, latency=0.001))
        elif kind == 1:
            steps.append(ledger.seeing(i))
        else:
            steps.append(
                SequentialWorkflow([ledger.plain(i, fail=False, latency=0.0)], name=f"s{i}")
            )
    flow = ParallelWorkflow(steps, max_concurrency=3)
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    assert ledger.meter.peak <= 3
    assert sorted(ledger.ran) == list(range(24))
    for position, index in enumerate(ledger.ran):
        assert abs(position - index) < 3
    values = [value if not isinstance(value, list) else value[-1] for value in result.value]
    assert values == list(range(24))


def test_a_custom_fail_fast_sees_the_prepared_branch_it_dropped_as_skipped(
    system: ActorSystem, gates: Gates
) -> None:
    # Two slots, four plain branches, all pulled at once (two running, two prepared). When
    # b0 fails, its worker starts b2 at once; cancelling the rest then drops b3, which never
    # started: the gather must still hear that the batch is over, and record b3 skipped.
    ledger = Ledger()
    release = gates.new()
    b1_started = threading.Event()
    calls: list[list[tuple[str, Status]]] = []

    def summarise(records: list[StepResult]) -> int:
        calls.append([(r.name, r.status) for r in records])
        return len(records)

    def blocking(index: int, started: threading.Event | None = None) -> Tool[..., int]:
        def body(x: int) -> int:
            ledger.enter(index)
            if started is not None:
                started.set()
            try:
                release.wait(WAIT)
                return x
            finally:
                ledger.meter.leave()

        return tool(body, name=f"b{index}")

    flow = ParallelWorkflow(
        [
            raising(ValueError("no"), "b0", after=(b1_started,)),
            blocking(1, b1_started),
            blocking(2),
            ledger.plain(3, fail=False, latency=0.0),
        ],
        aggregation=Aggregation.custom(summarise),
        error_mode=ErrorMode.FAIL_FAST,
        max_concurrency=2,
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == 4
    assert calls == [
        [
            ("b0", Status.ERROR),
            ("b1", Status.CANCELLED),
            ("b2", Status.CANCELLED),
            ("b3", Status.SKIPPED),
        ]
    ]
    assert 3 not in ledger.ran
