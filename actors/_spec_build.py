"""Build workflow definitions from validated spec models (``actors.spec.load_spec``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors._spec_errors import SpecProblem
from actors._spec_models import (
    AggregationSpec,
    ConditionalNode,
    CustomAggregation,
    FanOutNode,
    ForkJoinNode,
    LoopNode,
    MapReduceNode,
    ParallelNode,
    QuorumAggregation,
    RetrySpec,
    ScatterGatherNode,
    SequentialNode,
    StageSpec,
    StreamingNode,
    ToolNode,
    WindowedNode,
    _FanOptions,
    _StepOptions,
    _StreamOptions,
    _WorkflowNode,
)
from actors._spec_refs import RefError, resolve, resolve_exception
from actors.gather import Aggregation, ErrorMode
from actors.runtime.permits import Semaphore
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
    WorkflowDefinitionError,
    step,
)
from actors.workflows._spec import StepSpec
from supervisors.backoff import Backoff
from supervisors.limits import RetryPolicy

__all__ = ["BuildError", "build_node", "build_workflow"]


class BuildError(Exception):
    """A node could not be built; carries the problem with its path."""

    def __init__(self, problem: SpecProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


Builder = Callable[[Any, str], Workflow]
"""Builds the workflow of one kind from its model; the second argument is the node's path."""


def _fail(path: str, message: str) -> BuildError:
    return BuildError(SpecProblem(path, message))


def _sub(path: str, part: str | int) -> str:
    return f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"


def _resolve(ref: str, path: str) -> Any:
    try:
        return resolve(ref)
    except RefError as exc:
        raise _fail(path, str(exc)) from exc


def _function(ref: str | None, path: str) -> Any:
    if ref is None:
        return None
    found = _resolve(ref, path)
    if not callable(found):
        raise _fail(path, f"expected a function, but {ref!r} is {found!r}")
    return found


def build_node(node: Any, path: str) -> object:
    """The step (or ``StepSpec``) that ``node`` describes.

    Raises:
        BuildError: an import failed or the definition is invalid; names the path.
    """
    if isinstance(node, str):
        return _target(node, path)
    if isinstance(node, ToolNode):
        target = _target(node.tool, _sub(path, "tool"))
        return _with_options(target, node, path, timeout=node.timeout, name=node.name)
    workflow = build_workflow(node, path)
    return _with_options(workflow, node, path, timeout=None, name=None)


def _target(ref: str, path: str) -> object:
    found = _resolve(ref, path)
    if not (isinstance(found, Step | StepSpec) or callable(found) or hasattr(found, "as_tool")):
        raise _fail(path, f"expected a tool, a function or a step, but {ref!r} is {found!r}")
    return found


def _with_options(
    target: object, node: _StepOptions, path: str, *, timeout: float | None, name: str | None
) -> object:
    if node.input is not None and node.input_fn is not None:
        raise _fail(_sub(path, "input_fn"), "give input (a key) or input_fn, not both")
    select: Any = node.input if node.input is not None else _function(node.input_fn, path)
    sems = [
        _semaphore(spec, _sub(_sub(path, "semaphores"), i))
        for i, spec in enumerate(node.semaphores)
    ]
    if name is None and select is None and timeout is None and not sems:
        return target
    try:
        return step(target, name=name, input=select, timeout=timeout, semaphores=sems)
    except WorkflowDefinitionError as exc:
        raise _fail(path, str(exc)) from exc


def _semaphore(spec: Any, path: str) -> Semaphore:
    try:
        return Semaphore(spec.name, spec.permits, timeout=spec.timeout, scope=spec.scope)
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc


def build_workflow(node: _WorkflowNode, path: str) -> Workflow:
    """The workflow of a ``{kind: ...}`` node.

    Raises:
        BuildError: an import failed or the definition is invalid; names the path.
    """
    builder = BUILDERS.get(type(node))
    if builder is None:  # pragma: no cover - every model has a builder
        raise _fail(path, f"no builder for {type(node).__name__}")
    try:
        return builder(node, path)
    except WorkflowDefinitionError as exc:
        raise _fail(path, str(exc)) from exc


def _common(node: _WorkflowNode) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": node.timeout}
    if node.name is not None:
        options["name"] = node.name
    return options


def _fan(node: _FanOptions, path: str) -> dict[str, Any]:
    options = _common(node)
    options.update(
        error_mode=ErrorMode(node.error_mode),
        max_concurrency=node.max_concurrency,
        limits=node.limits,
        retry=_retry(node.retry, _sub(path, "retry")),
        copy_input=node.copy_input,
    )
    return options


def _aggregation(spec: AggregationSpec, path: str) -> Aggregation:
    if isinstance(spec, QuorumAggregation):
        return Aggregation.quorum(spec.quorum)
    if isinstance(spec, CustomAggregation):
        return Aggregation.custom(_function(spec.custom, _sub(path, "custom")))
    return {
        "all_success": Aggregation.ALL_SUCCESS,
        "first_success": Aggregation.FIRST_SUCCESS,
        "partial_success": Aggregation.PARTIAL_SUCCESS,
    }[spec]


def _retry(spec: RetrySpec | None, path: str) -> RetryPolicy | None:
    if spec is None:
        return None
    options: dict[str, Any] = {"max_attempts": spec.max_attempts}
    if spec.backoff is not None:
        try:
            options["backoff"] = Backoff(**spec.backoff.model_dump())
        except ValueError as exc:
            raise _fail(_sub(path, "backoff"), str(exc)) from exc
    if spec.retry_on is not None:
        options["retry_on"] = _retry_on(spec.retry_on, _sub(path, "retry_on"))
    return RetryPolicy(**options)


def _retry_on(names: list[str], path: str) -> Any:
    if len(names) == 1 and ":" in names[0]:
        found = _resolve(names[0], _sub(path, 0))
        if not isinstance(found, type) and callable(found):
            return found  # a predicate on the failed attempt's StepResult
    kinds: list[type[BaseException]] = []
    for i, name in enumerate(names):
        try:
            kinds.append(resolve_exception(name))
        except RefError as exc:
            raise _fail(_sub(path, i), str(exc)) from exc
    return tuple(kinds)


def _nodes(nodes: list[Any], path: str) -> list[object]:
    return [build_node(item, _sub(path, i)) for i, item in enumerate(nodes)]


def _sequential(node: SequentialNode, path: str) -> Workflow:
    steps = _nodes(node.steps, _sub(path, "steps"))
    return SequentialWorkflow(steps, continue_on_error=node.continue_on_error, **_common(node))


def _conditional(node: ConditionalNode, path: str) -> Workflow:
    branches = []
    for i, branch in enumerate(node.branches):
        where = _sub(_sub(path, "branches"), i)
        predicate = _function(branch.when, _sub(where, "when"))
        branches.append((predicate, build_node(branch.step, _sub(where, "step"))))
    default = None if node.default is None else build_node(node.default, _sub(path, "default"))
    return ConditionalWorkflow(branches, default=default, **_common(node))


def _loop(node: LoopNode, path: str) -> Workflow:
    body = build_node(node.body, _sub(path, "body"))
    until = _function(node.until, _sub(path, "until"))
    return LoopWorkflow(body, max_iterations=node.max_iterations, until=until, **_common(node))


def _parallel(node: ParallelNode, path: str) -> Workflow:
    steps = _nodes(node.steps, _sub(path, "steps"))
    aggregation = _aggregation(node.aggregation, _sub(path, "aggregation"))
    return ParallelWorkflow(steps, aggregation=aggregation, **_fan(node, path))


def _scatter_gather(node: ScatterGatherNode, path: str) -> Workflow:
    sources = _nodes(node.sources, _sub(path, "sources"))
    aggregation = _aggregation(node.aggregation, _sub(path, "aggregation"))
    return ScatterGatherWorkflow(sources, aggregation=aggregation, **_fan(node, path))


def _fan_out(node: FanOutNode, path: str) -> Workflow:
    splitter = build_node(node.splitter, _sub(path, "splitter"))
    worker = build_node(node.worker, _sub(path, "worker"))
    aggregator = None
    if node.aggregator is not None:
        aggregator = build_node(node.aggregator, _sub(path, "aggregator"))
    aggregation = _aggregation(node.aggregation, _sub(path, "aggregation"))
    return FanOutWorkflow(splitter, worker, aggregator, aggregation=aggregation, **_fan(node, path))


def _fork_join(node: ForkJoinNode, path: str) -> Workflow:
    where = _sub(path, "branches")
    branches = {name: build_node(item, _sub(where, name)) for name, item in node.branches.items()}
    return ForkJoinWorkflow(branches, **_fan(node, path))


def _map_reduce(node: MapReduceNode, path: str) -> Workflow:
    mapper = build_node(node.mapper, _sub(path, "mapper"))
    reducer = _function(node.reducer, _sub(path, "reducer"))
    if node.items is not None and node.items_fn is not None:
        raise _fail(_sub(path, "items_fn"), "give items (a key) or items_fn, not both")
    items: Any = node.items if node.items is not None else _function(node.items_fn, path)
    aggregation = _aggregation(node.aggregation, _sub(path, "aggregation"))
    return MapReduceWorkflow(
        mapper,
        reducer,
        initial=node.initial,
        items=items,
        aggregation=aggregation,
        keep_results=node.keep_results,
        indexed=node.indexed,
        **_fan(node, path),
    )


def _stage(item: Any, path: str) -> object:
    if not isinstance(item, StageSpec):
        return build_node(item, path)
    target = build_node(item.stage, _sub(path, "stage"))
    return Stage(target, concurrency=item.concurrency, max_in_flight=item.max_in_flight)


def _stream(node: _StreamOptions, path: str) -> dict[str, Any]:
    options = _common(node)
    options.update(
        ordered=node.ordered,
        error_policy=node.error_policy,
        dead_letters=_function(node.dead_letters, _sub(path, "dead_letters")),
        max_in_flight=node.max_in_flight,
        collect=node.collect,
        on_output=_function(node.on_output, _sub(path, "on_output")),
        keep_results=node.keep_results,
    )
    return options


def _streaming(node: StreamingNode, path: str) -> Workflow:
    where = _sub(path, "stages")
    stages = [_stage(item, _sub(where, i)) for i, item in enumerate(node.stages)]
    return StreamingWorkflow(stages, **_stream(node, path))


def _windowed(node: WindowedNode, path: str) -> Workflow:
    window_fn = _stage(node.window_fn, _sub(path, "window_fn"))
    return WindowedWorkflow(
        window_fn,
        size=node.size,
        every=node.every,
        duration=node.duration,
        slide=node.slide,
        **_stream(node, path),
    )


BUILDERS: dict[type[Any], Builder] = {
    SequentialNode: _sequential,
    ConditionalNode: _conditional,
    LoopNode: _loop,
    ParallelNode: _parallel,
    ScatterGatherNode: _scatter_gather,
    FanOutNode: _fan_out,
    ForkJoinNode: _fork_join,
    MapReduceNode: _map_reduce,
    StreamingNode: _streaming,
    WindowedNode: _windowed,
}
"""The builder of each workflow model; a new kind registers its own here."""
