"""Declarative workflow specs: every kind loads, errors say where and what, round trips hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from actors import (
    ActorSystem,
    Aggregation,
    Backoff,
    ConditionalWorkflow,
    ErrorMode,
    FanOutWorkflow,
    ForkJoinWorkflow,
    LoopWorkflow,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    RetryPolicy,
    ScatterGatherWorkflow,
    Semaphore,
    SequentialWorkflow,
    Stage,
    Status,
    StreamingWorkflow,
    WindowedWorkflow,
    Workflow,
    WorkflowStepResult,
    step,
)
from actors.spec import KINDS, SpecError, dump_spec, load_spec, read_spec, spec_schema
from tests import spec_tools as t

T = "tests.spec_tools"

MINIMAL: dict[str, tuple[dict[str, Any], type[Workflow], object, object]] = {
    "sequential": ({"steps": [f"{T}:inc", f"{T}:double"]}, SequentialWorkflow, 3, 8),
    "conditional": (
        {"branches": [{"when": f"{T}:is_even", "step": f"{T}:halve"}], "default": f"{T}:inc"},
        ConditionalWorkflow,
        8,
        4,
    ),
    "loop": ({"body": f"{T}:double", "until": f"{T}:at_least_ten"}, LoopWorkflow, 3, 12),
    "parallel": ({"steps": [f"{T}:inc", f"{T}:square"]}, ParallelWorkflow, 3, [4, 9]),
    "scatter_gather": (
        {"sources": [f"{T}:broken", f"{T}:inc"]},
        ScatterGatherWorkflow,
        1,
        2,
    ),
    "fan_out": (
        {"splitter": f"{T}:digits", "worker": f"{T}:square", "aggregator": f"{T}:total"},
        FanOutWorkflow,
        123,
        14,
    ),
    "fork_join": (
        {"branches": {"a": f"{T}:inc", "b": {"tool": f"{T}:double"}}},
        ForkJoinWorkflow,
        5,
        {"a": 6, "b": 10},
    ),
    "map_reduce": (
        {"mapper": f"{T}:square", "reducer": f"{T}:add", "initial": 0, "items_fn": f"{T}:upto"},
        MapReduceWorkflow,
        4,
        14,
    ),
    "streaming": (
        {"stages": [f"{T}:inc", {"stage": f"{T}:double", "concurrency": 2}]},
        StreamingWorkflow,
        [1, 2, 3],
        [4, 6, 8],
    ),
    "windowed": ({"window_fn": f"{T}:total", "size": 2}, WindowedWorkflow, [1, 2, 3, 4], [3, 7]),
}


def test_the_minimal_spec_table_covers_every_kind_the_format_knows() -> None:
    assert set(MINIMAL) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_every_workflow_kind_loads_from_a_spec_and_runs(kind: str, system: ActorSystem) -> None:
    fields, cls, value, expected = MINIMAL[kind]
    flow = load_spec({"workflow": {"kind": kind, "name": f"my_{kind}", **fields}})
    assert type(flow) is cls
    assert flow.name == f"my_{kind}"
    assert system.run(flow, value, timeout=10).value == expected


def _everything() -> Workflow:
    """A definition that uses every kind and option the spec format mirrors."""
    sem = Semaphore("spec-test", permits=2, timeout=5.0, scope="run")
    retry = RetryPolicy(
        max_attempts=2, backoff=Backoff(min=0.01, max=0.02), retry_on=(ConnectionError,)
    )
    gather = ParallelWorkflow(
        [
            step(t.inc, name="plus", timeout=5.0, semaphores=[sem]),
            step(t.square, input=t.plus_one),
            t.slow,  # cancelled once the quorum is reached
        ],
        aggregation=Aggregation.quorum(2),
        error_mode=ErrorMode.FAIL_SLOW,
        limits=ResourceLimits(max_concurrent_executions=3, execution_timeout=5.0),
        retry=retry,
        name="gather",
    )
    best = ScatterGatherWorkflow(
        [t.inc, t.double, t.broken],
        aggregation=Aggregation.custom(t.biggest),
        retry=RetryPolicy(max_attempts=2, retry_on=t.is_connection_error),
        name="best",
    )
    fan = FanOutWorkflow(t.digits, step(t.square, name="sq"), t.total, name="fan")
    mapped = MapReduceWorkflow(
        t.square,
        t.add,
        initial=0,
        items=t.upto,
        aggregation=Aggregation.PARTIAL_SUCCESS,
        max_concurrency=3,
        keep_results=2,
        name="mapped",
    )
    fork = ForkJoinWorkflow(
        {"gather": gather, "best": best, "fan": fan, "mapped": mapped, "half": t.halve},
        name="fork",
    )
    route = ConditionalWorkflow(
        [(t.is_even, step(t.halve, name="halved"))], default=t.inc, name="route"
    )
    grow = LoopWorkflow(
        SequentialWorkflow([t.double, t.stop_above_fifty], name="round"),
        max_iterations=20,
        until=t.at_least_ten,
        name="grow",
    )
    return SequentialWorkflow(
        [route, grow, step(fork, input=None, timeout=20.0)],
        name="everything",
        timeout=30.0,
    )


def _shape(record: Any) -> Any:
    """What must match between two runs: names, statuses, values and children."""
    children = [_shape(r) for r in record.steps] if hasattr(record, "steps") else []
    return (
        record.name,
        record.status,
        record.output if hasattr(record, "output") else record.value,
        children,
    )


def test_a_definition_dumped_to_a_spec_and_loaded_back_runs_with_the_same_results(
    system: ActorSystem, tmp_path: Path
) -> None:
    built = _everything()
    spec = tmp_path / "everything.yaml"
    spec.write_text(yaml.safe_dump(dump_spec(built), sort_keys=False))
    loaded = load_spec(spec)

    assert dump_spec(loaded) == dump_spec(built)
    first = system.run(built, 7, timeout=30)
    second = system.run(loaded, 7, timeout=30)
    assert first.status is Status.OK, first
    assert _shape(second) == _shape(first)
    fork = second.step("fork")
    assert isinstance(fork, WorkflowStepResult)
    # 7 -> route: 8 -> grow: 16; quorum(2) of plus (17) and square(16 + 1) (289)
    assert fork.value["gather"] == [17, 289]
    assert second.step("fork/gather/slow").status is Status.CANCELLED
    assert second.step("fork/best/broken").attempts == 2  # retried once, per the predicate


@pytest.mark.parametrize(
    "built",
    [
        StreamingWorkflow(
            [t.inc, Stage(step(t.double, name="twice"), concurrency=3, max_in_flight=5)],
            ordered=False,
            error_policy="skip",
            name="stream",
        ),
        WindowedWorkflow(t.total, size=3, every=2, name="windows"),
    ],
    ids=["streaming", "windowed"],
)
def test_streams_dumped_to_a_spec_and_loaded_back_run_with_the_same_results(
    built: Workflow, system: ActorSystem
) -> None:
    loaded = load_spec(yaml.safe_load(yaml.safe_dump(dump_spec(built))))
    assert type(loaded) is type(built)
    assert dump_spec(loaded) == dump_spec(built)
    first = system.run(built, [1, 2, 3, 4, 5], timeout=10)
    second = system.run(loaded, [1, 2, 3, 4, 5], timeout=10)
    assert first.status is Status.OK
    assert sorted(second.value) == sorted(first.value)
    assert second.counts == first.counts


def test_a_json_spec_loads_like_a_yaml_one(tmp_path: Path) -> None:
    doc = {"workflow": {"kind": "sequential", "name": "j", "steps": [f"{T}:inc"]}}
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(doc))
    assert dump_spec(load_spec(path)) == dump_spec(load_spec(doc))


def test_read_spec_keeps_the_default_input_and_timeout(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "description: adds one\ninput: 41\ntimeout: 2.5\n"
        f"workflow: {{kind: sequential, steps: ['{T}:inc']}}\n"
    )
    loaded = read_spec(path)
    assert (loaded.input, loaded.timeout, loaded.description) == (41, 2.5, "adds one")
    assert loaded.source == str(path)


def _error(spec: str | Path | dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    return caught.value


def test_an_invalid_field_names_the_file_the_path_inside_it_and_what_was_expected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "workflow": {
                    "kind": "sequential",
                    "steps": [
                        f"{T}:inc",
                        f"{T}:double",
                        {"kind": "parallel", "steps": [f"{T}:inc"], "aggregation": "most"},
                    ],
                }
            }
        )
    )
    error = _error(path)
    text = str(error)
    assert text.startswith(f"{path}: workflow.steps[2].aggregation: expected ")
    assert "'first_success'" in text
    assert "{quorum: k}" in text
    assert "(got 'most')" in text
    assert error.source == str(path)
    assert error.path == "workflow.steps[2].aggregation"


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    error = _error(
        {
            "workflow": {
                "kind": "parallel",
                "steps": [{"kind": "nope"}, 5, {"tool": "not a path"}],
                "max_concurrency": 0,
                "surprise": True,
            }
        }
    )
    paths = sorted(problem.path for problem in error.problems)
    assert paths == [
        "workflow.max_concurrency",
        "workflow.steps[0]",
        "workflow.steps[1]",
        "workflow.steps[2].tool",
        "workflow.surprise",
    ]
    text = str(error)
    assert "workflow.steps[0]: expected a step: " in text
    assert "kind one of sequential" in text
    assert "workflow.steps[2].tool: expected an import path 'package.module:function'" in text
    assert "workflow.surprise: unknown field" in text


def test_an_unknown_module_says_which_import_failed_and_why() -> None:
    error = _error({"workflow": {"kind": "sequential", "steps": [f"{T}:inc", "tests.nope:fn"]}})
    assert error.path == "workflow.steps[1]"
    assert "cannot import module 'tests.nope'" in str(error)
    assert "ModuleNotFoundError" in str(error)


def test_a_missing_attribute_says_which_module_lacks_it() -> None:
    error = _error({"workflow": {"kind": "loop", "body": f"{T}:inc", "until": f"{T}:nothing"}})
    assert error.path == "workflow.until"
    assert f"module '{T}' has no attribute 'nothing'" in str(error)


def test_every_import_that_fails_is_listed_at_its_path() -> None:
    doc = {
        "workflow": {
            "kind": "sequential",
            "steps": [
                "tests.nope:fn",
                {
                    "kind": "map_reduce",
                    "mapper": {"tool": f"{T}:missing", "name": "m"},
                    "reducer": f"{T}:no_reducer",
                },
                {"kind": "loop", "body": f"{T}:inc", "until": f"{T}:nothing"},
            ],
        }
    }
    error = _error(doc)
    assert [problem.path for problem in error.problems] == [
        "workflow.steps[0]",
        "workflow.steps[1].mapper.tool",
        "workflow.steps[1].reducer",
        "workflow.steps[2].until",
    ]
    assert "cannot import module 'tests.nope'" in str(error)
    assert f"module '{T}' has no attribute 'nothing'" in str(error)


def test_a_module_that_fails_to_import_reports_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exploding_tools.py").write_text("raise RuntimeError('no config file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    error = _error({"workflow": {"kind": "sequential", "steps": ["exploding_tools:fn"]}})
    assert "RuntimeError: no config file" in str(error)


def test_a_definition_error_is_reported_at_the_node_that_causes_it() -> None:
    doc = {
        "workflow": {
            "kind": "sequential",
            "steps": [
                {"kind": "parallel", "steps": [f"{T}:inc"], "aggregation": {"quorum": 2}},
            ],
        }
    }
    error = _error(doc)
    assert error.path == "workflow.steps[0]"
    assert "quorum(2) can never be reached with 1 branches" in str(error)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("workflow:\n  kind: sequential\n  steps: [a:b\n")
    text = str(_error(path))
    assert text.startswith(f"{path}: invalid YAML at line ")


def test_a_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    assert "cannot read the file" in str(_error(tmp_path / "absent.yaml"))


def test_the_top_of_a_spec_must_be_a_workflow() -> None:
    error = _error({"workflow": f"{T}:inc"})
    assert error.path == "workflow"
    assert "expected a workflow" in str(error)


def test_dumping_a_lambda_names_where_it_is_and_what_to_do() -> None:
    flow = LoopWorkflow(t.double, until=lambda x: x > 10, name="grow")
    with pytest.raises(SpecError) as caught:
        dump_spec(flow)
    assert caught.value.path == "workflow.until"
    assert "define it at module level" in str(caught.value)


def test_the_schema_is_a_valid_json_schema_that_accepts_specs_and_rejects_bad_ones() -> None:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = dump_spec(_everything())
    assert list(validator.iter_errors(good)) == []
    research = Path(__file__).resolve().parent.parent / "examples" / "research" / "research.yaml"
    assert list(validator.iter_errors(yaml.safe_load(research.read_text()))) == []
    bad = {"workflow": {"kind": "parallel", "steps": [], "aggregation": "most"}}
    assert list(validator.iter_errors(bad))


DOCS = Path(__file__).resolve().parent.parent / "docs"


def _documented_specs() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.DOTALL | re.MULTILINE)
        found += [(f"{page.name}#{i}", block) for i, block in enumerate(blocks, 1)]
    return [(where, block) for where, block in found if "workflow:" in block]


def test_the_docs_show_a_spec_for_every_kind() -> None:
    shown = "\n".join(block for _, block in _documented_specs())
    for kind in KINDS:
        assert f"kind: {kind}" in shown


@pytest.mark.parametrize(
    ("where", "block"), _documented_specs(), ids=[w for w, _ in _documented_specs()]
)
def test_every_spec_in_the_docs_is_valid_per_the_schema(where: str, block: str) -> None:
    validator = jsonschema.Draft202012Validator(spec_schema())
    errors = [error.message for error in validator.iter_errors(yaml.safe_load(block))]
    assert errors == [], where
