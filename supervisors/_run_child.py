"""``RunChild``: the actor that runs a step (a workflow, a tool) as a supervised child.

Only the runtime's ``Step`` protocol is used here: supervision sits below tools and workflows
and never imports them. Each incarnation starts one run through the system and ends with it:
``Normal`` when the run ended ok, ``Crashed`` when it failed or passed its deadline,
``Shutdown`` when it was cancelled. A stop request cancels the run, and the incarnation ends
once the run has ended (its supervisor abandons it after its shutdown time if it never does).

The optional ``reply_to`` future gets the result of the child's *last* run. A run that ended
ok answers at once. A run that did not leaves a marker in the child's handle as the
incarnation ends: the stash carries it to the next incarnation if the child is restarted, and
it is refused if not (the supervisor gave up, or stopped, or nothing supervises the child).
The refusal is what answers the future with that last result.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykka._envelope import Envelope

from actors.runtime.actor import Actor
from actors.runtime.reasons import Crashed, ExitReason, Normal, Shutdown
from actors.runtime.results import ErrorInfo, Status, StepResult
from actors.runtime.steps import Run, Step

__all__ = ["RunChild", "RunFailedError"]


class RunFailedError(Exception):
    """Stands for a failed run that carries no exception (a deadline passed, for instance)
    in its child's ``Crashed`` reason; it is never raised."""

    __module__ = "supervisors"  # as users import it: how results (ErrorInfo.type) name it


@dataclass(frozen=True, slots=True)
class RunDecided:
    """Told to the incarnation that started ``run`` once the run's result is decided."""

    run: Run[Any]


@dataclass(frozen=True, slots=True)
class LastRun:
    """The marker a run child leaves in its handle when its run did not end ok."""


class RunChild(Actor):
    """Runs ``step`` on ``input``; each incarnation is one run. See ``ChildSpec.run``.

    Args:
        step: anything implementing ``actors.Step`` (a workflow, a tool, a user step).
        input: the input of each run.
        timeout: seconds until each run's deadline.
        reply_to: completed with the result of the child's last run.
    """

    _fenced_when_abandoned = False  # what it sends once given up on is its run's cleanup

    def __init__(
        self,
        step: Step[Any],
        input: object = None,
        *,
        timeout: float | None = None,
        reply_to: concurrent.futures.Future[Any] | None = None,
    ) -> None:
        super().__init__()
        self.step = step
        self.input = input
        self.timeout = timeout
        self.reply_to = reply_to
        self.run: Run[Any] | None = None
        self._stop_info: tuple[object] | None = None

    def on_start(self) -> None:
        """Start the run (an invalid input fails the start)."""
        try:
            run = self.system.start(self.step, self.input, timeout=self.timeout)
        except Exception as exc:
            error, reply_to = exc, self.reply_to
            self._leave_marker(lambda: _set_exception(reply_to, error))
            raise
        self.run = run
        run.add_done_callback(self._decided)

    def _decided(self, run: Run[Any]) -> None:
        # To this incarnation only: a later one has a run of its own.
        self._deliver(Envelope(RunDecided(run)))

    def on_receive(self, message: Any) -> Any:
        """End this incarnation the way its run ended."""
        if isinstance(message, RunDecided):
            if message.run is self.run:
                self.exit(self._exit_reason(message.run))
        elif not isinstance(message, LastRun):
            super().on_receive(message)
        return None

    def _exit_reason(self, run: Run[Any]) -> ExitReason:
        result = _step_result(run)
        if result.ok:
            _set_result(self.reply_to, run)
        if self._stop_info is not None:
            return Shutdown(self._stop_info[0])
        if result.ok:
            return Normal()
        if result.status is Status.CANCELLED:
            return Shutdown("run cancelled")
        return Crashed(_error_of(result))

    def _request_stop(self, info: object = None) -> None:
        # Stopping cancels the run; the incarnation ends when the run has ended.
        run = self.run
        if run is not None and not run.done() and self._accepting:
            self._stop_info = (info,)
            run.cancel()
            return
        super()._request_stop(info)

    def _run_stop_hooks(self, reason: ExitReason) -> ExitReason:
        reason = super()._run_stop_hooks(reason)
        run = self.run
        if run is not None:
            run.cancel()  # no-op once decided; an incarnation cut short leaves no run behind
            reply_to = self.reply_to

            def answer_last_run() -> None:
                run.add_done_callback(lambda decided: _set_result(reply_to, decided))

            self._leave_marker(answer_last_run)
        return reason

    def _leave_marker(self, settle: Callable[[], object]) -> None:
        """Answer ``reply_to`` with ``settle`` unless a next incarnation takes over."""
        if _settled(self.reply_to):
            return
        refused: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def on_answer(done: concurrent.futures.Future[Any]) -> None:
            if done.exception() is not None:  # refused or dropped: no incarnation follows
                settle()

        refused.add_done_callback(on_answer)
        envelope: Envelope[Any] = Envelope(LastRun(), reply_to=refused)  # type: ignore[arg-type]
        if not self.handle._send(envelope):
            self.handle._reject(envelope)


def _step_result(run: Run[Any]) -> StepResult:
    # The raw result: ``Run.result()`` gives the step's presentation (a WorkflowResult for a
    # workflow), which the Step protocol does not describe. Only called once the run is done.
    return run.step_result(0)


def _error_of(result: StepResult) -> ErrorInfo:
    error = result.error
    if error is None:
        error = ErrorInfo(type="castflow.RunFailed", message=str(result))
    if error.exception is None:
        # on_failure hooks and exit reasons expect the exception object.
        error = error.model_copy(update={"exception": RunFailedError(str(error))})
    return error


def _settled(future: concurrent.futures.Future[Any] | None) -> bool:
    return future is None or future.done()


def _set_result(future: concurrent.futures.Future[Any] | None, run: Run[Any]) -> None:
    if _settled(future):
        return
    assert future is not None
    try:
        value = run.result()
    except Exception as exc:  # noqa: BLE001 - a failing presentation is the answer
        _set_exception(future, exc)
        return
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        return


def _set_exception(future: concurrent.futures.Future[Any] | None, exc: BaseException) -> None:
    if _settled(future):
        return
    assert future is not None
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        return
