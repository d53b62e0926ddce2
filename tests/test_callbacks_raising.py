"""A user's callback that raises anything, a ``BaseException`` included, fails its step.

Predicates, input mappings, aggregations, reducers, item sources and stream hooks run on
castflow's own threads; whatever they raise must become the step's error, never a run that is
not decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import (
    ActorSystem,
    Aggregation,
    ConditionalWorkflow,
    FanOutWorkflow,
    LoopWorkflow,
    MapReduceWorkflow,
    ParallelWorkflow,
    SequentialWorkflow,
    Status,
    StreamingWorkflow,
    step,
)
from tests.helpers import WAIT
from tests.workflow_tools import inc


class Abort(BaseException):
    """Not an ``Exception``: what a broad ``except Exception`` lets through."""


def abort(*_args: Any, **_kwargs: Any) -> Any:
    raise Abort("the callback gave up")


def abort_step(value: Any) -> Any:
    raise Abort(f"the step gave up on {value!r}")


def add(total: int, value: int) -> int:
    return total + value


def items_then_abort() -> Iterator[int]:
    yield 1
    raise Abort("the source gave up")


def split(value: int) -> list[int]:
    return [value, value]


CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "custom aggregation": lambda: (
        ParallelWorkflow([inc, inc], aggregation=Aggregation.custom(abort)),
        1,
    ),
    "reducer": lambda: (MapReduceWorkflow(inc, abort, initial=0), [1, 2, 3]),
    "item source": lambda: (MapReduceWorkflow(inc, add, initial=0), items_then_abort()),
    "splitter": lambda: (FanOutWorkflow(abort_step, inc, sum), 1),
    "aggregator": lambda: (FanOutWorkflow(split, inc, abort_step), 1),
    "predicate": lambda: (ConditionalWorkflow([(abort, inc)], default=inc), 1),
    "until": lambda: (LoopWorkflow(inc, until=abort, max_iterations=3), 1),
    "input mapping": lambda: (SequentialWorkflow([step(inc, input=abort)]), 1),
    "on_output": lambda: (StreamingWorkflow([inc], on_output=abort), [1, 2]),
    "stream source": lambda: (StreamingWorkflow([inc]), items_then_abort()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_callback_raising_a_base_exception_fails_its_step(system: ActorSystem, case: str) -> None:
    flow, value = CASES[case]()
    result = system.run(flow, value, timeout=WAIT)
    assert result.status is Status.ERROR, result
    assert result.error is not None
    assert "Abort" in result.error.type or "Abort" in result.error.message, result.error
