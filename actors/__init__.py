"""castflow: actor-model orchestration of tools and workflows on pykka.

Every tool and workflow runs as an actor with its own mailbox inside an embedded
``ActorSystem``. Start here::

    from actors import ActorSystem, tool

    @tool
    def greet(name: str) -> str:
        '''Say hello.'''
        return f"hello {name}"

    with ActorSystem() as system:
        print(system.call(greet, {"name": "ada"}).value)
"""

import logging

from actors import runtime
from actors.gather import Aggregation, BranchFailedError, ErrorMode, GatherActor
from actors.isolated import (
    IsolatedCallFinished,
    IsolatedTask,
    IsolatedToolError,
    IsolatedWorkerExited,
    IsolationUnsupportedError,
    MemoryLimitExceeded,
    WorkerDiedError,
    WorkerProtocolError,
    worker_pool,
)
from actors.runtime import *  # noqa: F403 - the runtime's public names are castflow's
from actors.runtime import codec
from actors.runtime.system import KilledProcess
from actors.spec import SpecError, dump_spec, load_spec, spec_schema
from actors.sync import (
    Barrier,
    BarrierTimeoutError,
    BrokenBarrierError,
    Rendezvous,
    SyncError,
    SyncPoint,
)
from actors.tools import (
    FieldError,
    ProgressReport,
    Tool,
    ToolActor,
    ToolBase,
    ToolContext,
    ToolDefinitionError,
    ToolInputError,
    ToolOutputError,
    as_tool,
    tool,
)
from actors.workflows import (
    Break,
    ConditionalWorkflow,
    FailedItem,
    FanOutWorkflow,
    ForkJoinWorkflow,
    InputMap,
    LoopWorkflow,
    MapReduceWorkflow,
    ParallelBuilder,
    ParallelWorkflow,
    Predicate,
    Reducer,
    ReducerError,
    RunContext,
    ScatterGatherWorkflow,
    SequentialWorkflow,
    SplitterOutputError,
    Stage,
    StepSpec,
    StreamingWorkflow,
    WindowedWorkflow,
    Workflow,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowResult,
    WorkflowStepResult,
    step,
)
from supervisors.backoff import Backoff
from supervisors.batches import (
    MemoryLimitUnsupportedError,
    TooManyAbandonedThreadsError,
)
from supervisors.branch import (
    BranchSupervisor,
)
from supervisors.limits import ResourceLimits, RetryPolicy

logging.getLogger("castflow").addHandler(logging.NullHandler())

__all__ = [  # noqa: PLE0604 - extended from the runtime's list
    *runtime.__all__,
    "FieldError",
    "ProgressReport",
    "Tool",
    "ToolActor",
    "ToolBase",
    "ToolContext",
    "ToolDefinitionError",
    "ToolInputError",
    "ToolOutputError",
    "as_tool",
    "codec",
    "tool",
    "Break",
    "ConditionalWorkflow",
    "InputMap",
    "LoopWorkflow",
    "MapReduceWorkflow",
    "ParallelBuilder",
    "ParallelWorkflow",
    "Predicate",
    "Reducer",
    "ReducerError",
    "RunContext",
    "SequentialWorkflow",
    "StepSpec",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowStepResult",
    "step",
    "Aggregation",
    "Backoff",
    "BranchFailedError",
    "BranchSupervisor",
    "ErrorMode",
    "GatherActor",
    "MemoryLimitUnsupportedError",
    "ResourceLimits",
    "RetryPolicy",
    "TooManyAbandonedThreadsError",
    "Barrier",
    "BarrierTimeoutError",
    "BrokenBarrierError",
    "FanOutWorkflow",
    "ForkJoinWorkflow",
    "Rendezvous",
    "ScatterGatherWorkflow",
    "SplitterOutputError",
    "SyncError",
    "SyncPoint",
    "FailedItem",
    "Stage",
    "StreamingWorkflow",
    "WindowedWorkflow",
    "IsolatedCallFinished",
    "IsolatedTask",
    "IsolatedToolError",
    "IsolatedWorkerExited",
    "IsolationUnsupportedError",
    "KilledProcess",
    "MemoryLimitExceeded",
    "WorkerDiedError",
    "WorkerProtocolError",
    "worker_pool",
    "SpecError",
    "dump_spec",
    "load_spec",
    "spec_schema",
]
