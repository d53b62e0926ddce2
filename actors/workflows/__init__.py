"""Composable workflows: immutable definitions run by coordinator actors.

``SequentialWorkflow``, ``ConditionalWorkflow`` and ``LoopWorkflow`` nest in each other to any
depth, and tools (or plain functions) are steps of any of them. Run one with
``system.run(workflow, input, timeout=...)``, ``system.start(...)`` or
``await system.run_async(...)``; the result is a ``WorkflowResult``.
"""

from actors.workflows._coordinator import Workflow
from actors.workflows._spec import InputMap, StepSpec, step
from actors.workflows.conditional import ConditionalWorkflow, Predicate
from actors.workflows.context import RunContext
from actors.workflows.errors import Break, WorkflowDefinitionError, WorkflowError
from actors.workflows.fan_out import FanOutWorkflow, SplitterOutputError
from actors.workflows.fork_join import ForkJoinWorkflow
from actors.workflows.loop import LoopWorkflow
from actors.workflows.map_reduce import MapReduceWorkflow, Reducer, ReducerError
from actors.workflows.parallel import ParallelBuilder, ParallelWorkflow
from actors.workflows.result import WorkflowResult, WorkflowStepResult
from actors.workflows.scatter_gather import ScatterGatherWorkflow
from actors.workflows.sequential import SequentialWorkflow
from actors.workflows.streaming import FailedItem, Stage, StreamingWorkflow
from actors.workflows.windowed import WindowedWorkflow

__all__ = [
    "Break",
    "ConditionalWorkflow",
    "FailedItem",
    "FanOutWorkflow",
    "ForkJoinWorkflow",
    "InputMap",
    "LoopWorkflow",
    "MapReduceWorkflow",
    "ParallelBuilder",
    "ParallelWorkflow",
    "Predicate",
    "Reducer",
    "ReducerError",
    "RunContext",
    "ScatterGatherWorkflow",
    "SequentialWorkflow",
    "SplitterOutputError",
    "Stage",
    "StepSpec",
    "StreamingWorkflow",
    "WindowedWorkflow",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowStepResult",
    "step",
]
