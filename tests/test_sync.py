"""Barriers and rendezvous as steps: release, timeouts, broken points, build-time checks."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from actors import (
    ActorSystem,
    ErrorMode,
    LoopWorkflow,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    StepResult,
    ToolContext,
    WorkflowDefinitionError,
    step,
    tool,
)
from actors.runtime import permits
from actors.sync import (
    Barrier,
    BarrierTimeoutError,
    BrokenBarrierError,
    Rendezvous,
    Semaphore,
)
from actors.tools import Tool
from actors.workflows.fan_out import FanOutWorkflow
from actors.workflows.fork_join import ForkJoinWorkflow
from actors.workflows.scatter_gather import ScatterGatherWorkflow
from tests.helpers import WAIT
from tests.parallel_kit import Probe, holding, raising, watch_finished
from tests.workflow_tools import double, inc


@tool
def numbers(n: int) -> list[int]:
    """``[0, 1, ..., n - 1]``."""
    return list(range(n))


class Journal:
    """A thread-safe, ordered log of what the branches did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[str, int]] = []

    def add(self, what: str, who: int) -> None:
        with self._lock:
            self.entries.append((what, who))

    def kinds(self) -> list[str]:
        with self._lock:
            return [what for what, _who in self.entries]


def marking(journal: Journal, what: str, who: int, *, delay: float = 0.0) -> Tool[..., int]:
    """A tool that sleeps ``delay``, notes ``(what, who)`` and passes its input through."""

    def mark(x: int) -> int:
        if delay:
            time.sleep(delay)
        journal.add(what, who)
        return x

    return tool(mark, name=f"{what}_{who}")


def error_of(record: StepResult) -> BaseException | None:
    return record.error.exception if record.error is not None else None


# -- Barrier ------------------------------------------------------------------------------------


def test_sync_module_exports_the_runtime_semaphore() -> None:
    assert Semaphore is permits.Semaphore


def test_a_barrier_releases_every_party_together_each_with_its_own_input(
    system: ActorSystem,
) -> None:
    journal = Journal()
    ready = Barrier("ready", timeout=WAIT)
    branches = [
        SequentialWorkflow(
            [
                step(inc, input=lambda x, k=k: x + k),
                marking(journal, "arrive", k, delay=0.02 * k),
                ready,
                marking(journal, "after", k),
            ],
            name=f"party{k}",
        )
        for k in range(4)
    ]
    flow = ParallelWorkflow(branches, name="phases")
    assert flow.sync_points == ((ready, 4),)
    result = system.run(flow, 10, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [11, 12, 13, 14]
    kinds = journal.kinds()
    assert kinds == ["arrive"] * 4 + ["after"] * 4, journal.entries
    for k in range(4):
        record = result.step(f"party{k}/ready")
        assert record.status is Status.OK
        assert record.value == 11 + k


def test_a_barrier_times_out_when_a_party_never_comes(system: ActorSystem) -> None:
    journal = Journal()
    first_round = threading.Event()

    def after(x: int) -> int:
        journal.add("after", x)
        if len(journal.entries) == 2:
            first_round.set()
        return x

    def wait_for_round(x: int) -> int:
        assert first_round.wait(WAIT)
        return x

    late = Barrier("late", parties=2, timeout=0.2)
    flow = ParallelWorkflow(
        [
            SequentialWorkflow([inc, late, tool(after)], name="a"),
            SequentialWorkflow([inc, late, tool(after)], name="b"),
            SequentialWorkflow([tool(wait_for_round), late], name="c"),
        ],
        error_mode=ErrorMode.FAIL_SLOW,
    )
    started = time.monotonic()
    result = system.run(flow, 1, timeout=WAIT)
    assert time.monotonic() - started < WAIT / 2
    assert result.status is Status.ERROR
    assert result.failed_step == "c"
    record = result.step("c/late")
    assert record.status is Status.ERROR
    error = error_of(record)
    assert isinstance(error, BarrierTimeoutError)
    assert error.point == "late"
    assert (error.arrived, error.expected) == (1, 2)
    assert "barrier 'late'" in str(error)
    assert "1 of 2 arrived" in str(error)
    assert record.duration is not None
    assert record.duration >= 0.2
    assert result.step("a/late").status is Status.OK
    assert result.step("b/late").status is Status.OK


def test_a_barrier_times_out_when_a_party_failed_before_it_under_fail_slow(
    system: ActorSystem,
) -> None:
    meet = Barrier("meet", timeout=0.2)
    flow = ParallelWorkflow(
        [
            SequentialWorkflow([inc, meet], name="good"),
            SequentialWorkflow([raising(ValueError("no"), "boom"), meet], name="bad"),
        ],
        error_mode=ErrorMode.FAIL_SLOW,
        name="pair",
    )
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.ERROR
    error = error_of(result.step("good/meet"))
    assert isinstance(error, BarrierTimeoutError)
    assert (error.arrived, error.expected) == (1, 2)
    assert "in parallel 'pair'" in str(error)


def test_a_waiting_party_leaves_when_fail_fast_cancels_its_branch(system: ActorSystem) -> None:
    meet = Barrier("meet", timeout=WAIT)
    flow = ParallelWorkflow(
        [
            SequentialWorkflow([inc, meet], name="good"),
            SequentialWorkflow([raising(ValueError("no"), "boom"), meet], name="bad"),
        ]
    )
    started = time.monotonic()
    result = system.run(flow, 1, timeout=WAIT)
    assert time.monotonic() - started < WAIT / 2, "the waiting party held the run"
    assert result.status is Status.ERROR
    assert result.failed_step == "bad"


def test_a_party_cut_while_waiting_breaks_the_barrier_for_the_others(
    system: ActorSystem,
) -> None:
    watch = watch_finished(system)
    patient_done = watch.finished("phases/patient")
    late_probe = Probe(patient_done)
    meet = Barrier("meet", timeout=WAIT)
    flow = ParallelWorkflow(
        [
            step(SequentialWorkflow([inc, meet], name="short"), timeout=0.2),
            SequentialWorkflow([inc, meet], name="patient"),
            # Arrives only once "patient" has been decided (or the test fails on time).
            SequentialWorkflow([holding(late_probe, "hold", value=1), meet], name="late"),
        ],
        error_mode=ErrorMode.FAIL_SLOW,
        name="phases",
    )
    started = time.monotonic()
    result = system.run(flow, 1, timeout=WAIT)
    # "short" timed out at 0.2 s and left; "patient" was told at once, not after its timeout.
    assert time.monotonic() - started < WAIT / 2
    assert result.status is Status.ERROR
    assert result.step("short").status is Status.TIMEOUT
    assert result.step("short/meet").status is Status.TIMEOUT
    patient = error_of(result.step("patient/meet"))
    assert isinstance(patient, BrokenBarrierError)
    assert patient.point == "meet"
    assert "barrier 'meet' in parallel 'phases' is broken" in str(patient)
    assert "left it" in str(patient)
    # A party arriving after the break fails at once with the same typed error.
    late = error_of(result.step("late/meet"))
    assert isinstance(late, BrokenBarrierError)


def test_a_barrier_is_cyclic_so_one_object_marks_several_phases(system: ActorSystem) -> None:
    journal = Journal()
    sync = Barrier("sync", timeout=WAIT)

    def party(k: int) -> SequentialWorkflow:
        return SequentialWorkflow(
            [
                marking(journal, "one", k, delay=0.01 * k),
                sync,
                marking(journal, "two", k, delay=0.01 * (2 - k)),
                sync,
                marking(journal, "three", k),
            ],
            name=f"p{k}",
        )

    result = system.run(ForkJoinWorkflow({"a": party(0), "b": party(1), "c": party(2)}), 0)
    assert result.status is Status.OK
    assert journal.kinds() == ["one"] * 3 + ["two"] * 3 + ["three"] * 3


def test_a_barrier_in_a_loop_body_synchronises_every_iteration(system: ActorSystem) -> None:
    journal = Journal()
    tick = Barrier("tick", timeout=WAIT)

    def party(k: int) -> LoopWorkflow:
        body = SequentialWorkflow([marking(journal, "round", k, delay=0.005 * k), tick, inc])
        return LoopWorkflow(body, until=lambda value: value >= 3, name=f"loop{k}")

    result = system.run(ParallelWorkflow([party(0), party(1)]), 0, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [3, 3]
    assert len(journal.entries) == 6
    rounds = [sorted(who for _what, who in journal.entries[i : i + 2]) for i in (0, 2, 4)]
    assert rounds == [[0, 1]] * 3


def test_a_barrier_with_parties_none_outside_any_parallel_step_fails_clearly(
    system: ActorSystem,
) -> None:
    result = system.run(SequentialWorkflow([inc, Barrier("alone")]), 1, timeout=WAIT)
    assert result.status is Status.ERROR
    error = error_of(result.step("alone"))
    assert isinstance(error, WorkflowDefinitionError)
    assert "parties=None" in str(error)


def test_a_one_party_barrier_passes_at_once(system: ActorSystem) -> None:
    result = system.run(Barrier("solo", parties=1), 5, timeout=WAIT)
    assert result.status is Status.OK
    assert result.kind == "barrier"
    assert result.value == 5


def test_waiting_parties_hold_no_threads(system: ActorSystem) -> None:
    system.run(SequentialWorkflow([inc]), 1, timeout=WAIT)
    baseline = threading.active_count()
    seen: list[int] = []
    hall = Barrier("hall", timeout=WAIT)

    def last(x: int, ctx: ToolContext) -> int:
        # Branches are admitted in order and a barrier party arrives as it is started, so the
        # 40 parties before this branch are all waiting by now.
        seen.append(threading.active_count())
        return x

    branches: list[object] = [step(hall, name=f"p{i}") for i in range(40)]
    branches.append(SequentialWorkflow([tool(last), hall], name="last"))
    flow = ParallelWorkflow(branches, max_concurrency=41)
    result = system.run(flow, 1, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [1] * 41
    assert seen
    assert seen[0] - baseline <= 8


def test_parallel_groups_are_per_instance_so_nested_copies_meet_separately(
    system: ActorSystem,
) -> None:
    meet = Barrier("meet", timeout=WAIT)
    pair = ParallelWorkflow(
        [SequentialWorkflow([inc, meet], name="x"), SequentialWorkflow([double, meet], name="y")],
        name="pair",
    )
    # Three instances of "pair" (one per item) each form their own group of two.
    flow = FanOutWorkflow(numbers, pair, max_concurrency=3)
    result = system.run(flow, 3, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == [[1, 0], [2, 2], [3, 4]]


def test_a_barrier_across_fan_out_workers_waits_for_every_item(system: ActorSystem) -> None:
    journal = Journal()
    gate = Barrier("gate", timeout=WAIT)

    def arrive(x: int) -> int:
        time.sleep(0.01 * (3 - x))
        journal.add("arrive", x)
        return x

    def after(x: int) -> int:
        journal.add("after", x)
        return x

    worker = SequentialWorkflow([tool(arrive), gate, tool(after)], name="w")
    result = system.run(FanOutWorkflow(numbers, worker), 3, timeout=WAIT)
    assert result.status is Status.OK
    assert journal.kinds() == ["arrive"] * 3 + ["after"] * 3


def test_a_fan_out_whose_items_exceed_max_concurrency_is_refused_when_planned(
    system: ActorSystem,
) -> None:
    gate = Barrier("gate", timeout=WAIT)
    worker = SequentialWorkflow([inc, gate], name="w")
    flow = FanOutWorkflow(numbers, worker, max_concurrency=3, name="fan")
    result = system.run(flow, 5, timeout=WAIT)
    assert result.status is Status.ERROR
    assert result.error is not None
    message = result.error.message
    assert "barrier 'gate'" in message
    assert "fan_out 'fan'" in message
    assert "5 parties but max_concurrency is 3" in message


# -- Rendezvous -----------------------------------------------------------------------------------


def test_a_rendezvous_exchanges_the_two_parties_values(system: ActorSystem) -> None:
    swap = Rendezvous("swap", timeout=WAIT)
    flow = ForkJoinWorkflow(
        {"left": SequentialWorkflow([inc, swap]), "right": SequentialWorkflow([double, swap])}
    )
    result = system.run(flow, 5, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == {"left": 10, "right": 6}


def test_a_rendezvous_hands_over_copies_of_mutable_values(system: ActorSystem) -> None:
    swap = Rendezvous("swap", timeout=WAIT)

    def tagged(tag: str) -> Any:
        def make(x: int) -> dict[str, list[str]]:
            return {"tags": [tag]}

        return tool(make, name=f"make_{tag}")

    def mutate(value: dict[str, list[str]]) -> dict[str, list[str]]:
        value["tags"].append("mutated")
        return value

    flow = ForkJoinWorkflow(
        {
            "a": SequentialWorkflow([tagged("a"), swap, tool(mutate)]),
            "b": SequentialWorkflow([tagged("b"), swap]),
        }
    )
    result = system.run(flow, 0, timeout=WAIT)
    assert result.status is Status.OK
    assert result.value == {"a": {"tags": ["b", "mutated"]}, "b": {"tags": ["a"]}}


def test_a_rendezvous_times_out_when_its_partner_never_comes(system: ActorSystem) -> None:
    swap = Rendezvous("swap", timeout=0.2)
    flow = ForkJoinWorkflow(
        {
            "a": SequentialWorkflow([inc, swap]),
            "b": SequentialWorkflow([raising(ValueError("x"), "boom"), swap]),
        },
        error_mode=ErrorMode.FAIL_SLOW,
    )
    result = system.run(flow, 0, timeout=WAIT)
    error = error_of(result.step("a/swap"))
    assert isinstance(error, BarrierTimeoutError)
    assert "rendezvous 'swap'" in str(error)


# -- build-time checks ------------------------------------------------------------------------


def test_a_barrier_with_more_parties_than_max_concurrency_is_refused_at_build_time() -> None:
    meet = Barrier("meet", parties=3)
    branches = [SequentialWorkflow([inc, meet], name=f"b{i}") for i in range(3)]
    with pytest.raises(WorkflowDefinitionError) as caught:
        ParallelWorkflow(branches, max_concurrency=2, name="phases")
    message = str(caught.value)
    assert "barrier 'meet'" in message
    assert "parallel 'phases'" in message
    assert "3 parties but max_concurrency is 2" in message


def test_parties_none_counts_the_branches_that_contain_the_barrier() -> None:
    meet = Barrier("meet")
    branches = [SequentialWorkflow([inc, meet], name=f"b{i}") for i in range(4)]
    with pytest.raises(WorkflowDefinitionError, match="4 parties but max_concurrency is 3"):
        ParallelWorkflow([*branches, inc], max_concurrency=3)
    assert ParallelWorkflow([*branches, inc], max_concurrency=4).sync_points == ((meet, 4),)


def test_a_barrier_with_more_parties_than_branches_is_refused() -> None:
    meet = Barrier("meet", parties=3)
    with pytest.raises(WorkflowDefinitionError, match="only 2 branches contain it"):
        ForkJoinWorkflow({"a": SequentialWorkflow([inc, meet]), "b": meet}, name="fj")


def test_a_rendezvous_must_be_in_exactly_two_branches() -> None:
    swap = Rendezvous("swap")
    with pytest.raises(WorkflowDefinitionError, match="exactly 2 branches, but it is in 3"):
        ScatterGatherWorkflow([swap, SequentialWorkflow([inc, swap]), step(swap, name="s3")])
    with pytest.raises(WorkflowDefinitionError, match="exactly 2 branches, but it is in 1"):
        ParallelWorkflow([SequentialWorkflow([inc, swap]), inc])


def test_an_admission_order_that_would_deadlock_is_refused() -> None:
    x, y = Barrier("x"), Barrier("y")

    def party(point: Barrier, name: str) -> SequentialWorkflow:
        return SequentialWorkflow([inc, point], name=name)

    with pytest.raises(WorkflowDefinitionError, match="would hold every slot"):
        ParallelWorkflow(
            [party(x, "x1"), party(y, "y1"), party(x, "x2"), party(y, "y2")], max_concurrency=2
        )
    ok = ParallelWorkflow(
        [party(x, "x1"), party(x, "x2"), party(y, "y1"), party(y, "y2")], max_concurrency=2
    )
    assert ok.sync_points == ((x, 2), (y, 2))


def test_a_nested_parallel_step_forms_its_own_group() -> None:
    meet = Barrier("meet")
    inner = ParallelWorkflow([SequentialWorkflow([inc, meet]), meet], name="inner")
    assert inner.sync_points == ((meet, 2),)
    # The outer step does not count the inner step's barrier as one of its own.
    outer = ParallelWorkflow([inner, inc], max_concurrency=1)
    assert outer.sync_points == ()


def test_sync_definitions_are_validated() -> None:
    with pytest.raises(WorkflowDefinitionError, match="parties must be an int >= 1"):
        Barrier("b", parties=0)
    with pytest.raises(WorkflowDefinitionError, match="timeout must be"):
        Barrier("b", timeout=0)
    with pytest.raises(WorkflowDefinitionError, match="name must be"):
        Rendezvous("a/b")
    meet = Barrier("meet")
    with pytest.raises(AttributeError, match="immutable"):
        meet.parties = 3
