"""The pydantic models of the spec format: one per workflow kind, mirroring the Python API.

A *node* is a step of a workflow: an import path string (a tool, a function or any step
object), ``{tool: path, ...}`` with step options, or ``{kind: ..., ...}`` for a workflow.
To add a workflow kind: write its model here (a ``_WorkflowNode`` subclass with a ``kind``
literal), add it to ``_KIND_MODELS``, and give ``actors._spec_build`` / ``actors._spec_dump``
a builder and a dumper for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
)

from actors._spec_refs import check_ref
from supervisors.limits import ResourceLimits

__all__ = [
    "AGGREGATION_EXPECTED",
    "KIND_MODELS",
    "TAGS",
    "AggregationSpec",
    "BackoffSpec",
    "ConditionalNode",
    "CustomAggregation",
    "FanOutNode",
    "ForkJoinNode",
    "LoopNode",
    "MapReduceNode",
    "Node",
    "ParallelNode",
    "QuorumAggregation",
    "RetrySpec",
    "ScatterGatherNode",
    "SemaphoreSpec",
    "SequentialNode",
    "SpecDocument",
    "StageSpec",
    "StreamingNode",
    "ToolNode",
    "WindowedNode",
    "WorkflowNode",
]

Ref = Annotated[
    str,
    AfterValidator(check_ref),
    Field(
        description="An import path 'package.module:attribute'.",
        json_schema_extra={"pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"},
    ),
]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SemaphoreSpec(_Model):
    """A named semaphore every leaf execution under the step holds a permit of."""

    name: str = Field(min_length=1)
    permits: int = Field(ge=1)
    timeout: PositiveSeconds = 60.0
    scope: Literal["system", "run"] = "system"


class BackoffSpec(_Model):
    """Exponential backoff between retries (seconds)."""

    min: PositiveSeconds
    max: PositiveSeconds
    factor: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0)


class RetrySpec(_Model):
    """How failed branches are tried again (``RetryPolicy``)."""

    max_attempts: int = Field(default=3, ge=1)
    backoff: BackoffSpec | None = None
    retry_on: list[str] | None = Field(
        default=None,
        description=(
            "Exception class names (builtins such as 'ConnectionError', or "
            "'package.module:Class'), or one import path of a predicate on the failed "
            "attempt's StepResult. All exceptions if omitted."
        ),
    )


class QuorumAggregation(_Model):
    """Succeed once ``quorum`` branches succeeded."""

    quorum: int = Field(ge=1)


class CustomAggregation(_Model):
    """``fn(list[StepResult]) -> value``, called once every branch has a result."""

    custom: Ref


AGGREGATION_EXPECTED = (
    "expected 'all_success', 'first_success', 'partial_success', {quorum: k} or "
    "{custom: 'module:function'}"
)
"""What an aggregation must look like, for error messages."""

AggregationName = Literal["all_success", "first_success", "partial_success"]


def _aggregation_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "@name"
    if isinstance(value, dict):
        if "quorum" in value:
            return "@quorum"
        if "custom" in value:
            return "@custom"
    if isinstance(value, QuorumAggregation):
        return "@quorum"
    if isinstance(value, CustomAggregation):
        return "@custom"
    return None


AggregationSpec = Annotated[
    Annotated[AggregationName, Tag("@name")]
    | Annotated[QuorumAggregation, Tag("@quorum")]
    | Annotated[CustomAggregation, Tag("@custom")],
    Discriminator(
        _aggregation_tag,
        custom_error_type="aggregation",
        custom_error_message=AGGREGATION_EXPECTED,
    ),
]


class _StepOptions(_Model):
    """Options of a step inside its parent (``step(target, ...)``)."""

    name: str | None = Field(default=None, description="The step's name in its parent.")
    input: str | int | None = Field(
        default=None, description="Pass value[input] to the step instead of the value."
    )
    input_fn: Ref | None = Field(
        default=None, description="Pass fn(value) to the step instead of the value."
    )
    semaphores: list[SemaphoreSpec] = Field(default_factory=list)


class ToolNode(_StepOptions):
    """A tool, a function (made a tool) or any step object, by import path."""

    tool: Ref
    timeout: PositiveSeconds | None = Field(
        default=None, description="Seconds until the step's deadline."
    )


class _WorkflowNode(_StepOptions):
    timeout: PositiveSeconds | None = Field(
        default=None, description="Seconds until each run of this workflow is cut."
    )


class _FanOptions(_WorkflowNode):
    error_mode: Literal["fail_fast", "fail_slow"] = "fail_fast"
    max_concurrency: int | None = Field(default=None, ge=1)
    limits: ResourceLimits | None = None
    retry: RetrySpec | None = None
    copy_input: Literal["branch", "none"] = "branch"


class SequentialNode(_WorkflowNode):
    """``SequentialWorkflow``: steps in order, each output the next step's input."""

    kind: Literal["sequential"]
    steps: list[Node] = Field(min_length=1)
    continue_on_error: bool = False


class ConditionalBranch(_Model):
    """One ``(predicate, step)`` pair of a conditional."""

    when: Ref = Field(description="predicate(input, ctx) -> bool, by import path.")
    step: Node


class ConditionalNode(_WorkflowNode):
    """``ConditionalWorkflow``: the first branch whose predicate holds, or the default."""

    kind: Literal["conditional"]
    branches: list[ConditionalBranch] = Field(default_factory=list)
    default: Node | None = None


class LoopNode(_WorkflowNode):
    """``LoopWorkflow``: the body again and again until ``until`` or ``max_iterations``."""

    kind: Literal["loop"]
    body: Node
    max_iterations: int | None = Field(default=None, ge=1)
    until: Ref | None = None


class ParallelNode(_FanOptions):
    """``ParallelWorkflow``: the same input to every step at once, gathered by a strategy."""

    kind: Literal["parallel"]
    steps: list[Node] = Field(min_length=1)
    aggregation: AggregationSpec = "all_success"


class ScatterGatherNode(_FanOptions):
    """``ScatterGatherWorkflow``: the same request to several sources (first success wins)."""

    kind: Literal["scatter_gather"]
    sources: list[Node] = Field(min_length=1)
    aggregation: AggregationSpec = "first_success"


class FanOutNode(_FanOptions):
    """``FanOutWorkflow``: split, run the worker per item, aggregate."""

    kind: Literal["fan_out"]
    splitter: Node
    worker: Node
    aggregator: Node | None = None
    aggregation: AggregationSpec = "all_success"


class ForkJoinNode(_FanOptions):
    """``ForkJoinWorkflow``: named branches on the same input, joined into a dict."""

    kind: Literal["fork_join"]
    branches: dict[str, Node] = Field(min_length=1)


class MapReduceNode(_FanOptions):
    """``MapReduceWorkflow``: the mapper per item, values folded by the reducer."""

    kind: Literal["map_reduce"]
    mapper: Node
    reducer: Ref | None = None
    initial: Any = None
    items: str | int | None = Field(default=None, description="Select input[items].")
    items_fn: Ref | None = Field(default=None, description="Select fn(input).")
    aggregation: Literal["all_success", "partial_success"] = "all_success"
    keep_results: int = Field(default=10, ge=0)
    indexed: bool = False


class StageSpec(_Model):
    """A stage of a stream with its own limits (``Stage``)."""

    stage: Node
    concurrency: int = Field(default=1, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)


def _stage_tag(value: Any) -> str:
    if isinstance(value, StageSpec) or (isinstance(value, dict) and "stage" in value):
        return "@stage"
    return "@step"


StageItem = Annotated[
    Annotated["Node", Tag("@step")] | Annotated[StageSpec, Tag("@stage")],
    Discriminator(_stage_tag),
]


class _StreamOptions(_WorkflowNode):
    ordered: bool = True
    error_policy: Literal["fail", "skip", "dead_letter"] = "fail"
    dead_letters: Ref | None = Field(
        default=None, description="fn(FailedItem) called for each failed item, by import path."
    )
    max_in_flight: int | None = Field(default=None, ge=1)
    collect: bool | None = None
    on_output: Ref | None = Field(default=None, description="fn(output), by import path.")
    keep_results: int = Field(default=10, ge=0)


class StreamingNode(_StreamOptions):
    """``StreamingWorkflow``: every item of the input stream through a chain of stages."""

    kind: Literal["streaming"]
    stages: list[StageItem] = Field(min_length=1)


class WindowedNode(_StreamOptions):
    """``WindowedWorkflow``: the stream's items in count or time windows, each to a function."""

    kind: Literal["windowed"]
    window_fn: StageItem
    size: int | None = Field(default=None, ge=1)
    every: int | None = Field(default=None, ge=1)
    duration: PositiveSeconds | None = None
    slide: PositiveSeconds | None = None


KIND_MODELS: dict[str, type[_WorkflowNode]] = {
    "sequential": SequentialNode,
    "conditional": ConditionalNode,
    "loop": LoopNode,
    "parallel": ParallelNode,
    "scatter_gather": ScatterGatherNode,
    "fan_out": FanOutNode,
    "fork_join": ForkJoinNode,
    "map_reduce": MapReduceNode,
    "streaming": StreamingNode,
    "windowed": WindowedNode,
}
"""Every workflow kind the spec format knows, by its ``kind`` value."""

TAGS = frozenset(
    {"@ref", "@tool", "@name", "@quorum", "@custom", "@step", "@stage"}
    | {f"@{k}" for k in KIND_MODELS}
)
"""Union tags pydantic puts in error locations; they are dropped from reported paths."""


def _node_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "@ref"
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind is not None:
            # Any value may come from a document: a list is no kind (nor a key to look up).
            return f"@{kind}" if isinstance(kind, str) and kind in KIND_MODELS else None
        return "@tool" if "tool" in value else None
    if isinstance(value, ToolNode):
        return "@tool"
    if isinstance(value, _WorkflowNode):
        return f"@{value.kind}"  # type: ignore[attr-defined]
    return None


Node = Annotated[
    Annotated[Ref, Tag("@ref")]
    | Annotated[ToolNode, Tag("@tool")]
    | Annotated[SequentialNode, Tag("@sequential")]
    | Annotated[ConditionalNode, Tag("@conditional")]
    | Annotated[LoopNode, Tag("@loop")]
    | Annotated[ParallelNode, Tag("@parallel")]
    | Annotated[ScatterGatherNode, Tag("@scatter_gather")]
    | Annotated[FanOutNode, Tag("@fan_out")]
    | Annotated[ForkJoinNode, Tag("@fork_join")]
    | Annotated[MapReduceNode, Tag("@map_reduce")]
    | Annotated[StreamingNode, Tag("@streaming")]
    | Annotated[WindowedNode, Tag("@windowed")],
    Discriminator(
        _node_tag,
        custom_error_type="step",
        custom_error_message=(
            "expected a step: an import path 'package.module:function', {tool: ...} or "
            "{kind: ...} with kind one of " + ", ".join(KIND_MODELS)
        ),
    ),
]

WorkflowNode = (
    SequentialNode
    | ConditionalNode
    | LoopNode
    | ParallelNode
    | ScatterGatherNode
    | FanOutNode
    | ForkJoinNode
    | MapReduceNode
    | StreamingNode
    | WindowedNode
)


class SpecDocument(_Model):
    """A castflow workflow spec (YAML or JSON).

    Attributes:
        castflow: the spec format's version (1).
        description: what the workflow does, for people.
        input: the default input of ``castflow run``.
        timeout: the default run deadline of ``castflow run``, in seconds.
        workflow: the workflow (a ``{kind: ...}`` node).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="castflow workflow spec",
    )

    castflow: Literal[1] = 1
    description: str | None = None
    input: Any = None
    timeout: PositiveSeconds | None = None
    workflow: Node


_RECURSIVE: tuple[type[BaseModel], ...] = (
    SequentialNode,
    ConditionalBranch,
    ConditionalNode,
    LoopNode,
    ParallelNode,
    ScatterGatherNode,
    FanOutNode,
    ForkJoinNode,
    MapReduceNode,
    StageSpec,
    StreamingNode,
    WindowedNode,
    SpecDocument,
)
for _model in _RECURSIVE:
    _model.model_rebuild()
