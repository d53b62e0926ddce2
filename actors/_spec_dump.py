"""Turn workflow definitions back into spec data (``actors.spec.dump_spec``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors._spec_errors import SpecProblem
from actors._spec_refs import RefError, builtin_exception_name, ref_of
from actors.gather import Aggregation
from actors.runtime.steps import Step
from actors.workflows import (
    ConditionalWorkflow,
    FanOutWorkflow,
    ForkJoinWorkflow,
    LoopWorkflow,
    MapReduceWorkflow,
    ParallelWorkflow,
    ScatterGatherWorkflow,
    SequentialWorkflow,
    Stage,
    StreamingWorkflow,
    WindowedWorkflow,
    Workflow,
)
from actors.workflows._fan import FanWorkflow
from actors.workflows._spec import StepSpec
from supervisors.limits import RetryPolicy

__all__ = ["DumpError", "dump_workflow"]


class DumpError(Exception):
    """A definition cannot be expressed as a spec; carries the problem with its path."""

    def __init__(self, problem: SpecProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


Dumper = Callable[[Any, str], dict[str, Any]]


def _sub(path: str, part: str | int) -> str:
    return f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"


def _ref(obj: Any, path: str, *also: Any) -> str:
    try:
        return ref_of(obj, *also)
    except RefError as exc:
        raise DumpError(SpecProblem(path, str(exc))) from exc


def _step_ref(target: Step[Any], path: str) -> str:
    """The import path of a leaf step: the tool object itself or its function."""
    fn = getattr(target, "fn", None)
    if fn is not None:
        return _ref(fn, path, target)
    return _ref(target, path)


def dump_workflow(workflow: Workflow, path: str = "workflow") -> dict[str, Any]:
    """The spec data of ``workflow``.

    Raises:
        DumpError: a part has no import path (a lambda, a closure, something in ``__main__``)
            or the kind has no spec form.
    """
    dumper = DUMPERS.get(type(workflow))
    if dumper is None:
        problem = SpecProblem(path, f"{type(workflow).__name__} has no spec form")
        raise DumpError(problem)
    data: dict[str, Any] = {"kind": workflow.kind, "name": workflow.name}
    if workflow.timeout is not None:
        data["timeout"] = workflow.timeout
    data.update(dumper(workflow, path))
    return data


def _child(spec: StepSpec, path: str) -> Any:
    target = spec.step
    options: dict[str, Any] = {}
    if isinstance(target, Workflow):
        node = dump_workflow(target, path)
        if spec.name != target.name:
            node["name"] = spec.name
        if spec.timeout is not None:
            # A step deadline and the workflow's own deadline cut the same run of the node.
            own = node.get("timeout")
            node["timeout"] = spec.timeout if own is None else min(own, spec.timeout)
    else:
        node = {"tool": _step_ref(target, path)}
        if spec.name != target.name:
            options["name"] = spec.name
        if spec.timeout is not None:
            options["timeout"] = spec.timeout
    if spec.input is not None:
        if isinstance(spec.input, str | int):
            options["input"] = spec.input
        else:
            options["input_fn"] = _ref(spec.input, _sub(path, "input_fn"))
    if spec.semaphores:
        options["semaphores"] = [
            {"name": s.name, "permits": s.permits, "timeout": s.timeout, "scope": s.scope}
            for s in spec.semaphores
        ]
    node.update(options)
    if set(node) == {"tool"}:
        return node["tool"]
    return node


def _children(specs: tuple[StepSpec, ...], path: str) -> list[Any]:
    return [_child(spec, _sub(path, i)) for i, spec in enumerate(specs)]


def _aggregation(aggregation: Aggregation, path: str) -> Any:
    if aggregation.kind == "quorum":
        return {"quorum": aggregation.k}
    if aggregation.kind == "custom":
        return {"custom": _ref(aggregation.fn, _sub(path, "custom"))}
    return aggregation.kind


def _retry(retry: RetryPolicy | None, path: str) -> dict[str, Any] | None:
    if retry is None:
        return None
    data: dict[str, Any] = {"max_attempts": retry.max_attempts}
    if retry.backoff is not None:
        b = retry.backoff
        data["backoff"] = {"min": b.min, "max": b.max, "factor": b.factor, "jitter": b.jitter}
    retry_on = retry.retry_on
    if isinstance(retry_on, tuple):
        names = []
        for i, kind in enumerate(retry_on):
            try:
                names.append(builtin_exception_name(kind))
            except RefError as exc:
                raise DumpError(SpecProblem(_sub(_sub(path, "retry_on"), i), str(exc))) from exc
        data["retry_on"] = names
    else:
        data["retry_on"] = [_ref(retry_on, _sub(path, "retry_on"))]
    return data


def _fan(workflow: FanWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {"error_mode": workflow.error_mode.value}
    limits = workflow.limits.model_dump(exclude_defaults=True)
    if limits:
        data["limits"] = limits
    retry = _retry(workflow.retry, _sub(path, "retry"))
    if retry is not None:
        data["retry"] = retry
    if workflow.copy_input != "branch":
        data["copy_input"] = workflow.copy_input
    return data


def _sequential(workflow: SequentialWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {"steps": _children(workflow.steps, _sub(path, "steps"))}
    if workflow.continue_on_error:
        data["continue_on_error"] = True
    return data


def _conditional(workflow: ConditionalWorkflow, path: str) -> dict[str, Any]:
    branches = []
    for i, (predicate, spec) in enumerate(workflow.branches):
        where = _sub(_sub(path, "branches"), i)
        branches.append(
            {
                "when": _ref(predicate, _sub(where, "when")),
                "step": _child(spec, _sub(where, "step")),
            }
        )
    data: dict[str, Any] = {"branches": branches}
    if workflow.default is not None:
        data["default"] = _child(workflow.default, _sub(path, "default"))
    return data


def _loop(workflow: LoopWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {"body": _child(workflow.body, _sub(path, "body"))}
    if workflow.max_iterations is not None:
        data["max_iterations"] = workflow.max_iterations
    if workflow.until is not None:
        data["until"] = _ref(workflow.until, _sub(path, "until"))
    return data


def _parallel(workflow: ParallelWorkflow, path: str) -> dict[str, Any]:
    key = "sources" if isinstance(workflow, ScatterGatherWorkflow) else "steps"
    data = {key: _children(workflow.steps, _sub(path, key))}
    data["aggregation"] = _aggregation(workflow.aggregation, _sub(path, "aggregation"))
    data.update(_fan(workflow, path))
    return data


def _fan_out(workflow: FanOutWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "splitter": _child(workflow.splitter, _sub(path, "splitter")),
        "worker": _child(workflow.worker, _sub(path, "worker")),
    }
    if workflow.aggregator is not None:
        data["aggregator"] = _child(workflow.aggregator, _sub(path, "aggregator"))
    data["aggregation"] = _aggregation(workflow.aggregation, _sub(path, "aggregation"))
    data.update(_fan(workflow, path))
    return data


def _fork_join(workflow: ForkJoinWorkflow, path: str) -> dict[str, Any]:
    where = _sub(path, "branches")
    branches = {}
    for spec in workflow.branches:
        node = _child(spec, _sub(where, spec.name))
        if isinstance(node, dict) and "tool" in node:
            # A tool branch is named by its key.
            node.pop("name", None)
            node = node["tool"] if set(node) == {"tool"} else node
        branches[spec.name] = node
    data: dict[str, Any] = {"branches": branches}
    data.update(_fan(workflow, path))
    return data


def _map_reduce(workflow: MapReduceWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {"mapper": _child(workflow.mapper, _sub(path, "mapper"))}
    if workflow.reducer is not None:
        data["reducer"] = _ref(workflow.reducer, _sub(path, "reducer"))
    if workflow.initial is not None:
        data["initial"] = workflow.initial
    if isinstance(workflow.items, str | int):
        data["items"] = workflow.items
    elif workflow.items is not None:
        data["items_fn"] = _ref(workflow.items, _sub(path, "items_fn"))
    data["aggregation"] = _aggregation(workflow.aggregation, _sub(path, "aggregation"))
    if workflow.keep_results != 10:
        data["keep_results"] = workflow.keep_results
    if workflow.indexed:
        data["indexed"] = True
    data.update(_fan(workflow, path))
    return data


def _stage(stage: Stage, path: str) -> Any:
    node = _child(stage.spec, path)
    if stage.concurrency == 1 and stage.max_in_flight == 1:
        return node
    data: dict[str, Any] = {"stage": node, "concurrency": stage.concurrency}
    if stage.max_in_flight != stage.concurrency:
        data["max_in_flight"] = stage.max_in_flight
    return data


def _stream_options(workflow: StreamingWorkflow | WindowedWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ordered": workflow.ordered,
        "error_policy": workflow.error_policy,
        "max_in_flight": workflow.max_in_flight,
        "collect": workflow.collect,
        "keep_results": workflow.keep_results,
    }
    if workflow.dead_letters is not None:
        data["dead_letters"] = _ref(workflow.dead_letters, _sub(path, "dead_letters"))
    if workflow.on_output is not None:
        data["on_output"] = _ref(workflow.on_output, _sub(path, "on_output"))
    return data


def _streaming(workflow: StreamingWorkflow, path: str) -> dict[str, Any]:
    where = _sub(path, "stages")
    data: dict[str, Any] = {
        "stages": [_stage(stage, _sub(where, i)) for i, stage in enumerate(workflow.stages)]
    }
    data.update(_stream_options(workflow, path))
    return data


def _windowed(workflow: WindowedWorkflow, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {"window_fn": _stage(workflow.stages[0], _sub(path, "window_fn"))}
    if workflow.origin_by_time:
        data.update(duration=workflow.window_length, slide=workflow.step_length)
    else:
        data.update(size=int(workflow.window_length), every=int(workflow.step_length))
    data.update(_stream_options(workflow, path))
    return data


DUMPERS: dict[type[Any], Dumper] = {
    SequentialWorkflow: _sequential,
    ConditionalWorkflow: _conditional,
    LoopWorkflow: _loop,
    ParallelWorkflow: _parallel,
    ScatterGatherWorkflow: _parallel,
    FanOutWorkflow: _fan_out,
    ForkJoinWorkflow: _fork_join,
    MapReduceWorkflow: _map_reduce,
    StreamingWorkflow: _streaming,
    WindowedWorkflow: _windowed,
}
"""The dumper of each workflow class; a new kind registers its own here."""
