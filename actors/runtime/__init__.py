"""castflow's runtime (floor 1): the actor system, hardened actors, handles, cancellation,
timers, the event bus, the codec, the leaf-executor protocol and the step protocol runs use.

Everything here is re-exported from ``actors``; import from there.
"""

from actors.runtime.actor import Actor, StopRequest
from actors.runtime.cancel import CancelReason, CancelScope
from actors.runtime.clock import MONOTONIC, Clock, ManualClock, MonotonicClock
from actors.runtime.errors import (
    ActorDeadError,
    BlockingCallError,
    CancelledError,
    CastflowError,
    CodecError,
    StartError,
    SystemShutDownError,
)
from actors.runtime.events import (
    ActorAbandoned,
    ActorFailed,
    ActorStarted,
    ActorStopped,
    DeadLetter,
    Event,
    EventBus,
    StepFinished,
    StepProgress,
    StepStarted,
    Subscription,
)
from actors.runtime.futures import ActorFuture
from actors.runtime.handle import ActorHandle
from actors.runtime.leaves import Leaf, LeafEnv, LeafExecutor, LeafPool, LeafTask, LeafWorker
from actors.runtime.permits import PermitTimeoutError, Semaphore, SemaphoreConflictError
from actors.runtime.reasons import (
    Abandoned,
    Crashed,
    Down,
    Escalated,
    ExitReason,
    Killed,
    Normal,
    Shutdown,
    StartFailed,
)
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.snapshot import InputNotCopyableError
from actors.runtime.steps import Run, RunEnv, RunFinishedError, Step, StepCall, start_leaf
from actors.runtime.system import AbandonedThread, ActorSystem, ShutdownReport
from actors.runtime.timers import Receiver, TimerHandle, TimerService

__all__ = [
    "MONOTONIC",
    "Abandoned",
    "AbandonedThread",
    "Actor",
    "ActorAbandoned",
    "ActorDeadError",
    "ActorFailed",
    "ActorFuture",
    "ActorHandle",
    "ActorStarted",
    "ActorStopped",
    "ActorSystem",
    "BlockingCallError",
    "CancelReason",
    "CancelScope",
    "CancelledError",
    "CastflowError",
    "Clock",
    "CodecError",
    "Crashed",
    "DeadLetter",
    "Down",
    "ErrorInfo",
    "Escalated",
    "Event",
    "EventBus",
    "ExitReason",
    "InputNotCopyableError",
    "Killed",
    "Leaf",
    "LeafEnv",
    "LeafExecutor",
    "LeafPool",
    "LeafTask",
    "LeafWorker",
    "ManualClock",
    "MonotonicClock",
    "Normal",
    "PermitTimeoutError",
    "Receiver",
    "Run",
    "RunEnv",
    "RunFinishedError",
    "Semaphore",
    "SemaphoreConflictError",
    "Shutdown",
    "ShutdownReport",
    "StartError",
    "StartFailed",
    "Status",
    "Step",
    "StepCall",
    "StepFinished",
    "StepProgress",
    "StepResult",
    "StepStarted",
    "StopRequest",
    "Subscription",
    "SystemShutDownError",
    "TimerHandle",
    "TimerService",
    "start_leaf",
]
