"""castflow supervision: who lives, who restarts, who is cancelled.

OTP's supervisors on castflow actors: ``Supervisor`` (one_for_one, one_for_all, rest_for_one),
``DynamicSupervisor``, child specs with restart types and shutdown specs, restart intensity,
backoff and automatic shutdown; steps (workflows, tools) run as supervised children, and
``ActorSystem.supervise`` starts a root. See docs/supervision.md. The ``BranchSupervisor``
admits, times, cancels and retries the branches of parallel steps under ``ResourceLimits`` and
a ``RetryPolicy`` (docs/parallel.md).
"""

from supervisors._run_child import RunChild, RunFailedError
from supervisors.backoff import Backoff
from supervisors.batches import (
    Branch,
    BranchBatch,
    MemoryLimitUnsupportedError,
    TooManyAbandonedThreadsError,
)
from supervisors.branch import (
    BranchSupervisor,
)
from supervisors.client import (
    SupervisorClient,
    start_dynamic_supervisor,
    start_supervisor,
    supervise,
)
from supervisors.dynamic import DynamicSupervisor
from supervisors.errors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildSpecError,
    ChildStartError,
    MaxChildrenError,
    SupervisorError,
    SupervisorStoppingError,
)
from supervisors.events import (
    AutoShutdownTriggered,
    ChildAbandoned,
    ChildExited,
    ChildIgnored,
    ChildRestarting,
    ChildRestartsExhausted,
    ChildStarted,
    ChildStartFailed,
    ChildTerminated,
    SupervisionEvent,
    SupervisorEscalated,
    SupervisorStopped,
)
from supervisors.limits import ResourceLimits, RetryPolicy
from supervisors.messages import (
    ChildCounts,
    ChildInfo,
    ChildState,
    CountChildren,
    DeleteChild,
    GetChildSpec,
    Request,
    RestartChild,
    StartChild,
    SupervisorReply,
    TerminateChild,
    WhichChildren,
)
from supervisors.spec import (
    IGNORE,
    AutoShutdown,
    ChildKind,
    ChildSpec,
    Ignore,
    RestartStrategy,
    RestartType,
    ShutdownSpec,
    SupervisorFlags,
)
from supervisors.supervisor import Supervisor

__all__ = [
    "IGNORE",
    "AutoShutdown",
    "AutoShutdownTriggered",
    "Backoff",
    "Branch",
    "BranchBatch",
    "BranchSupervisor",
    "ChildAbandoned",
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildCounts",
    "ChildExited",
    "ChildIgnored",
    "ChildInfo",
    "ChildKind",
    "ChildNotFoundError",
    "ChildRestarting",
    "ChildRestartingError",
    "ChildRestartsExhausted",
    "ChildRunningError",
    "ChildSpec",
    "ChildSpecError",
    "ChildStartError",
    "ChildStartFailed",
    "ChildStarted",
    "ChildState",
    "ChildTerminated",
    "CountChildren",
    "DeleteChild",
    "DynamicSupervisor",
    "GetChildSpec",
    "Ignore",
    "MaxChildrenError",
    "MemoryLimitUnsupportedError",
    "Request",
    "ResourceLimits",
    "RestartChild",
    "RestartStrategy",
    "RestartType",
    "RetryPolicy",
    "RunChild",
    "RunFailedError",
    "ShutdownSpec",
    "StartChild",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorClient",
    "SupervisorError",
    "SupervisorEscalated",
    "SupervisorFlags",
    "SupervisorReply",
    "SupervisorStopped",
    "SupervisorStoppingError",
    "TerminateChild",
    "TooManyAbandonedThreadsError",
    "WhichChildren",
    "start_dynamic_supervisor",
    "start_supervisor",
    "supervise",
]
