"""Sequential, conditional and loop workflows: values, records, nesting and definitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.runtime.results import Status
from actors.runtime.system import ActorSystem
from actors.tools import Tool, tool
from actors.workflows import (
    Break,
    ConditionalWorkflow,
    LoopWorkflow,
    RunContext,
    SequentialWorkflow,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowResult,
    WorkflowStepResult,
    step,
)
from tests.workflow_tools import add_3, add_100, break_at, double, fail, inc


def test_each_output_of_a_sequence_is_the_next_steps_input(system: ActorSystem) -> None:
    result = system.run(SequentialWorkflow([inc, double, add_3], name="pipeline"), 4)
    assert result.status is Status.OK
    assert result.value == 13
    assert [r.name for r in result.steps] == ["inc", "double", "add_3"]
    assert [r.value for r in result.steps] == [5, 10, 13]
    assert all(r.status is Status.OK for r in result.steps)


def test_a_failing_step_in_the_middle_stops_the_sequence_and_is_named(
    system: ActorSystem,
) -> None:
    result = system.run(SequentialWorkflow([inc, fail, double], name="pipeline"), 1)
    assert result.status is Status.ERROR
    assert result.failed_step == "fail"
    assert [(r.name, r.status) for r in result.steps] == [
        ("inc", Status.OK),
        ("fail", Status.ERROR),
        ("double", Status.SKIPPED),
    ]
    skipped = result.step("double")
    assert skipped.error is not None
    assert skipped.error.message == "step 'fail' failed"
    with pytest.raises(WorkflowError, match="at step 'fail'") as caught:
        _ = result.value
    assert caught.value.result is result
    assert isinstance(caught.value.__cause__, ValueError)
    assert str(caught.value.__cause__) == "cannot take 2"


def test_continue_on_error_records_the_failure_and_feeds_the_failed_steps_input_on(
    system: ActorSystem,
) -> None:
    flow = SequentialWorkflow([inc, fail, double], continue_on_error=True)
    result = system.run(flow, 1)
    assert result.status is Status.OK
    assert result.value == 4
    assert [r.status for r in result.steps] == [Status.OK, Status.ERROR, Status.OK]


def test_input_mapping_and_key_selection_reshape_a_steps_input(system: ActorSystem) -> None:
    @tool
    def pair(x: int) -> dict[str, int]:
        """Two numbers."""
        return {"small": x, "big": x * 10}

    flow = SequentialWorkflow(
        [pair, step(inc, input="big"), step(double, name="twice", input=lambda v: v - 1)]
    )
    result = system.run(flow, 2)
    assert result.value == 40
    assert [r.name for r in result.steps] == ["pair", "inc", "twice"]


def test_a_mapping_that_fails_is_the_failure_of_its_step(system: ActorSystem) -> None:
    flow = SequentialWorkflow([inc, step(double, input="missing")])
    result = system.run(flow, 1)
    assert result.status is Status.ERROR
    assert result.failed_step == "double"
    error = result.step("double").error
    assert error is not None
    assert error.short_type == "TypeError"


def test_plain_functions_are_made_tools_and_repeated_names_get_a_suffix(
    system: ActorSystem,
) -> None:
    def square(x: int) -> int:
        return x * x

    result = system.run(SequentialWorkflow([square, square, inc]), 2)
    assert result.value == 17
    assert [r.name for r in result.steps] == ["square", "square_2", "inc"]


def test_the_first_branch_whose_predicate_holds_runs_and_is_recorded(
    system: ActorSystem,
) -> None:
    flow = ConditionalWorkflow(
        [(lambda x, _ctx: x < 0, fail), (lambda x, _ctx: x % 2 == 0, double)],
        default=inc,
        name="route",
    )
    even = system.run(flow, 4)
    assert (even.value, even.branch) == (8, "double")
    assert [(r.name, r.status) for r in even.steps] == [
        ("fail", Status.SKIPPED),
        ("double", Status.OK),
        ("inc", Status.SKIPPED),
    ]
    odd = system.run(flow, 5)
    assert (odd.value, odd.branch) == (6, "inc")
    negative = system.run(flow, -2)
    assert negative.status is Status.ERROR
    assert negative.failed_step == "fail"


def test_without_a_match_or_default_the_input_passes_through(system: ActorSystem) -> None:
    result = system.run(ConditionalWorkflow([(lambda x, _ctx: False, inc)]), 7)
    assert result.status is Status.OK
    assert result.value == 7
    assert result.branch is None
    assert [r.status for r in result.steps] == [Status.SKIPPED]


def test_predicates_see_the_run_inputs_read_only_and_outputs_of_finished_steps(
    system: ActorSystem,
) -> None:
    seen: list[RunContext] = []

    def after_inc(x: int, ctx: RunContext) -> bool:
        seen.append(ctx)
        return bool(ctx.outputs["inc"] == x)

    flow = SequentialWorkflow(
        [
            step(inc, input="n"),
            ConditionalWorkflow([(after_inc, double)], name="check"),
        ]
    )
    result = system.run(flow, {"n": 3})
    assert result.value == 8
    [ctx] = seen
    assert ctx.run_id == result.run_id
    assert ctx.path == "sequential/check"
    assert ctx.inputs == {"n": 3}
    with pytest.raises(TypeError):
        ctx.inputs["n"] = 4
    with pytest.raises(TypeError):
        ctx.outputs["inc"] = 0  # type: ignore[index]


def test_a_predicate_that_raises_fails_the_conditional_naming_the_branch(
    system: ActorSystem,
) -> None:
    def broken(x: int, ctx: RunContext) -> bool:
        raise KeyError("nope")

    result = system.run(ConditionalWorkflow([(broken, inc)], name="route"), 1)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "the predicate of branch 1 ('inc') raised" in result.error.message


def test_a_loop_stops_when_until_holds_or_at_max_iterations(system: ActorSystem) -> None:
    until = system.run(LoopWorkflow(double, until=lambda v: v > 40, max_iterations=50), 3)
    assert until.value == 48
    assert until.iterations == 4
    assert [r.name for r in until.steps] == [f"double[{i}]" for i in range(4)]
    capped = system.run(LoopWorkflow(inc, max_iterations=7), 0)
    assert (capped.value, capped.iterations) == (7, 7)


def test_a_failed_iteration_fails_the_loop_and_names_the_iteration(system: ActorSystem) -> None:
    body = SequentialWorkflow([inc, step(fail, input=lambda v: v)], name="body")
    result = system.run(LoopWorkflow(body, max_iterations=3), 0)
    assert result.status is Status.ERROR
    assert result.failed_step == "body[0]"
    assert result.iterations == 1


def test_break_exits_only_the_nearest_enclosing_loop(system: ActorSystem) -> None:
    inner = LoopWorkflow(break_at(5), max_iterations=100, name="inner")
    outer = LoopWorkflow(
        SequentialWorkflow([inner, add_100], name="body"), max_iterations=3, name="outer"
    )
    result = system.run(outer, 0)
    assert result.status is Status.OK
    assert result.value == 305
    assert result.iterations == 3
    first_inner = result.step("body[0]/inner")
    assert isinstance(first_inner, WorkflowStepResult)
    assert first_inner.iterations == 6
    assert first_inner.value == 5
    later_inner = result.step("body[1]/inner")
    assert isinstance(later_inner, WorkflowStepResult)
    assert (later_inner.iterations, later_inner.value) == (1, 105)
    assert [r.value for r in result.steps] == [105, 205, 305]


def test_a_break_passes_up_through_a_sequence_and_skips_its_remaining_steps(
    system: ActorSystem,
) -> None:
    body = SequentialWorkflow([break_at(2), add_100], name="body")
    result = system.run(LoopWorkflow(body, max_iterations=10), 0)
    assert result.value == 101
    assert result.iterations == 2
    last = result.step("body[1]")
    assert isinstance(last, WorkflowStepResult)
    assert [(r.name, r.status) for r in last.steps] == [
        ("break_at_2", Status.OK),
        ("add_100", Status.SKIPPED),
    ]


def test_a_returned_break_marker_works_like_a_raised_one(system: ActorSystem) -> None:
    @tool
    def stop_at_3(x: int) -> Any:
        """Return a Break marker at 3."""
        return Break("done") if x >= 3 else x + 1

    result = system.run(LoopWorkflow(stop_at_3, max_iterations=10), 0)
    assert (result.value, result.iterations) == ("done", 4)


def test_a_break_outside_any_loop_fails_the_run(system: ActorSystem) -> None:
    result = system.run(SequentialWorkflow([break_at(0)], name="plain"), 1)
    assert result.status is Status.ERROR
    assert result.error is not None
    assert "outside any LoopWorkflow" in result.error.message


def _reference_depth_5(x: int) -> int:
    x = x * 2
    for _ in range(10):
        x = x + 3 + 3 if x % 2 == 0 else x + 1
        x = x + 1
        if x >= 50:
            break
    return x + 1


def test_five_levels_mixing_every_kind_compute_the_reference_value_and_records(
    system: ActorSystem,
) -> None:
    level5 = LoopWorkflow(add_3, max_iterations=2, name="inner")
    level4 = ConditionalWorkflow([(lambda x, _ctx: x % 2 == 0, level5)], default=inc, name="parity")
    level3 = SequentialWorkflow([level4, inc], name="round")
    level2 = LoopWorkflow(level3, until=lambda v: v >= 50, max_iterations=10, name="grow")
    level1 = SequentialWorkflow([double, level2, inc], name="outer")

    result = system.run(level1, 1)
    assert result.value == _reference_depth_5(1) == 28
    assert [r.name for r in result.steps] == ["double", "grow", "inc"]
    grow = result.step("grow")
    assert isinstance(grow, WorkflowStepResult)
    assert grow.iterations == 10
    first = result.step("grow/round[0]/parity")
    assert isinstance(first, WorkflowStepResult)
    assert first.branch == "inner"
    assert result.step("grow/round[0]/parity/inner/add_3[1]").value == 8
    second = result.step("grow/round[1]/parity")
    assert isinstance(second, WorkflowStepResult)
    assert second.branch == "inc"
    assert result.step("grow/round[1]/parity/inner").status is Status.SKIPPED
    text = str(result)
    assert text.splitlines()[0].startswith("sequential outer: ok")
    assert "      parity: ok" in text


def test_the_result_serialises_to_json_and_back_to_a_dict(system: ActorSystem) -> None:
    result = system.run(SequentialWorkflow([inc, fail], name="pipe"), 1)
    data = result.to_dict()
    assert data["status"] == "error"
    assert data["failed_step"] == "fail"
    assert [s["name"] for s in data["steps"]] == ["inc", "fail"]
    assert "exception" not in data["steps"][1]["error"]
    again = WorkflowResult.model_validate_json(result.to_json())
    assert again.status is Status.ERROR
    assert again.steps[0].value == 2


def test_a_single_tool_is_a_one_step_run(system: ActorSystem) -> None:
    result = system.run(double, 21)
    assert isinstance(result, WorkflowResult)
    assert (result.value, result.kind, result.name) == (42, "tool", "double")
    assert [r.name for r in result.steps] == ["double"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SequentialWorkflow([], name="empty"), "sequential 'empty': steps is empty"),
        (lambda: SequentialWorkflow([inc, 42], name="s"), "sequential 's': step 2: 42 (int)"),
        (lambda: SequentialWorkflow(inc, name="s"), "steps must be a list"),  # type: ignore[arg-type]
        (lambda: SequentialWorkflow([inc], timeout=-1), "timeout must be a non-negative"),
        (lambda: SequentialWorkflow([inc], name=""), "name must be a non-empty string"),
        (lambda: SequentialWorkflow([inc], continue_on_error=1), "continue_on_error must be"),  # type: ignore[arg-type]
        (lambda: LoopWorkflow(inc, name="forever"), "loop 'forever': give max_iterations or"),
        (lambda: LoopWorkflow(inc, max_iterations=0), "max_iterations must be an int >= 1"),
        (lambda: LoopWorkflow(inc, until=3), "until must be callable"),  # type: ignore[arg-type]
        (lambda: LoopWorkflow("x", max_iterations=1), "loop 'loop': body: 'x' (str)"),
        (lambda: ConditionalWorkflow([], name="c"), "conditional 'c': no branches"),
        (lambda: ConditionalWorkflow([inc]), "branch 1 must be a (predicate, step) pair"),  # type: ignore[list-item]
        (lambda: ConditionalWorkflow([(1, inc)]), "branch 1: predicate 1 is not callable"),  # type: ignore[list-item]
        (lambda: step(inc, input=3.5), "input must be a function or a key"),  # type: ignore[arg-type]
        (lambda: SequentialWorkflow([lambda x: x]), "cannot be made a tool"),
    ],
)
def test_bad_definitions_raise_at_construction_naming_the_offending_part(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        build()
    assert message in str(caught.value)


def test_definitions_are_immutable() -> None:
    flow = SequentialWorkflow([inc], name="fixed")
    with pytest.raises(AttributeError, match="immutable"):
        flow.name = "other"


# -- a property: random trees of sequential and conditional nodes -------------------------------

_LEAVES: dict[str, tuple[Tool[..., int], Callable[[int], int]]] = {
    "inc": (inc, lambda x: x + 1),
    "double": (double, lambda x: x * 2),
    "add_3": (add_3, lambda x: x + 3),
}

Tree = tuple[Any, ...]

_trees: st.SearchStrategy[Tree] = st.recursive(
    st.sampled_from(sorted(_LEAVES)).map(lambda name: ("leaf", name)),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda kids: ("seq", tuple(kids))),
        st.tuples(st.integers(0, 30), children, children).map(lambda t: ("cond", t[0], t[1], t[2])),
    ),
    max_leaves=8,
)


def _build(tree: Tree) -> object:
    match tree:
        case ("leaf", name):
            return _LEAVES[name][0]
        case ("seq", kids):
            return SequentialWorkflow([_build(kid) for kid in kids])
        case ("cond", threshold, yes, no):
            limit: int = threshold

            def above(x: int, _ctx: RunContext) -> bool:
                return x > limit

            return ConditionalWorkflow([(above, _build(yes))], default=_build(no))
    raise AssertionError(tree)


def _evaluate(tree: Tree, x: int) -> int:
    match tree:
        case ("leaf", name):
            return _LEAVES[name][1](x)
        case ("seq", kids):
            for kid in kids:
                x = _evaluate(kid, x)
            return x
        case ("cond", threshold, yes, no):
            return _evaluate(yes if x > threshold else no, x)
    raise AssertionError(tree)


def test_random_trees_of_sequences_and_conditionals_match_a_plain_evaluation() -> None:
    with ActorSystem("property") as system:

        @settings(max_examples=40, deadline=None)
        @given(tree=_trees, x=st.integers(-5, 40))
        def check(tree: Tree, x: int) -> None:
            flow = SequentialWorkflow([_build(tree)], name="root")
            result = system.run(flow, x)
            assert result.status is Status.OK
            assert result.value == _evaluate(tree, x)

        check()
