"""Chaos soak: thousands of branch executions through supervised workflow children.

A root supervisor (``system.supervise``) holds a ``DynamicSupervisor``; every job is a
transient workflow child (``ChildSpec.run``) running a ``MapReduceWorkflow`` or a
``ParallelWorkflow`` of one tool over its branches. The tool is told by each branch what to
do: 10% crash, 5% hang past their timeout (half of them wait on their scope, half ignore it
for a bounded time, so their threads are abandoned and end later), 5% return slowly, the rest
return at once. One job in ten gathers with ``ALL_SUCCESS``, so a crash fails its run and the
supervisor restarts it (at most twice); the others gather with ``PARTIAL_SUCCESS``.

It prints the branch executions per status, restarts, abandoned threads and RSS at the
start, middle and end, and exits non-zero if a target fails:

- every branch execution started is decided exactly once (``StepStarted``/``StepFinished``);
- every job's last result accounts for each of its branches;
- after shutdown, once the abandoned threads have ended, no thread is left;
- RSS grows by less than 10% between the middle and the end.

Run ``python benchmarks/soak.py`` (20,000 branches) or ``--branches 2000`` for a quick run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from actors import (
    ActorSystem,
    Aggregation,
    ErrorMode,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    StepFinished,
    StepStarted,
    ToolContext,
    WorkflowResult,
    step,
    tool,
)
from actors.runtime.events import Event
from supervisors import Backoff, ChildRestarting, ChildSpec, SupervisorClient, SupervisorFlags

BRANCH_TIMEOUT = 0.1
STUBBORN_EXTRA = 0.1
SLOW = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


class CrashError(Exception):
    """What a crashing branch raises."""


@tool
def work(code: str, ctx: ToolContext) -> str:
    """One branch: ``ok``, ``crash``, ``hang`` (cooperative), ``stubborn`` or ``slow``."""
    if code == "crash":
        raise CrashError("injected crash")
    if code == "hang":
        ctx.scope.wait(BRANCH_TIMEOUT * 20)
        ctx.raise_if_cancelled()
    elif code == "stubborn":
        time.sleep(BRANCH_TIMEOUT + STUBBORN_EXTRA)  # deaf to its cancellation, but finite
    elif code == "slow":
        time.sleep(SLOW)
    return code


def plan(rng: random.Random, size: int) -> list[str]:
    """The codes of ``size`` branches: 10% crash, 5% hang, 5% slow, the rest ok."""
    codes = []
    for _ in range(size):
        roll = rng.random()
        if roll < 0.10:
            codes.append("crash")
        elif roll < 0.15:
            codes.append(rng.choice(["hang", "stubborn"]))
        elif roll < 0.20:
            codes.append("slow")
        else:
            codes.append("ok")
    return codes


def rss_bytes() -> int:
    """The resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


@dataclass
class Ledger:
    """What the event bus saw: leaf executions started and decided, with their statuses.

    It keeps only the executions in flight, so that its own memory does not grow with the
    soak's length and the RSS figures measure castflow's.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: set[str] = field(default_factory=set)
    wrong: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    restarts: int = 0

    def __call__(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, StepStarted) and event.step == "work":
                if event.call_id in self.in_flight:
                    self.wrong += 1  # started twice
                self.in_flight.add(event.call_id)
            elif isinstance(event, StepFinished) and event.step == "work":
                if event.call_id in self.in_flight:
                    self.in_flight.remove(event.call_id)
                else:
                    self.wrong += 1  # decided twice, or never started
                self.statuses[event.status.value] += 1
            elif isinstance(event, ChildRestarting):
                self.restarts += 1

    def unaccounted(self) -> int:
        """Executions started and not decided exactly once (or decided more than once)."""
        with self.lock:
            return self.wrong + len(self.in_flight)


def job_flow(index: int, codes: list[str]) -> Any:
    """The workflow of job ``index``: a map-reduce or a parallel step over ``codes``."""
    strict = index % 10 == 0
    aggregation = Aggregation.ALL_SUCCESS if strict else Aggregation.PARTIAL_SUCCESS
    limits = ResourceLimits(max_concurrent_executions=16, execution_timeout=BRANCH_TIMEOUT)
    if index % 2 == 0:
        return MapReduceWorkflow(
            work,
            name=f"map-{index}",
            aggregation=aggregation,
            error_mode=ErrorMode.FAIL_SLOW,
            limits=limits,
            keep_results=0,
        )
    branches = [step(work, name=f"b{i}", input=_const(code)) for i, code in enumerate(codes)]
    return ParallelWorkflow(
        branches,
        name=f"par-{index}",
        aggregation=aggregation,
        error_mode=ErrorMode.FAIL_SLOW,
        limits=limits,
    )


def _const(code: str) -> Any:
    def value(_: Any) -> str:
        return code

    return value


def accounted(result: WorkflowResult, size: int) -> bool:
    """Whether the job's last result has one status for each of its ``size`` branches."""
    if result.counts is not None:
        return sum(result.counts.values()) == size
    return len(result.steps) == size


def main(argv: list[str] | None = None) -> int:
    """Run the soak; return the exit status (0: every target met)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=20_000, help="branch executions")
    parser.add_argument("--per-job", type=int, default=40, help="branches per job")
    parser.add_argument("--jobs-at-once", type=int, default=8, help="jobs in flight at once")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    jobs = max(2, args.branches // args.per_job)
    before = set(threading.enumerate())
    ledger = Ledger()
    system = ActorSystem("soak", cancellation_timeout=0.05)
    system.events.subscribe(ledger, kinds=(StepStarted, StepFinished, ChildRestarting))
    root: SupervisorClient = system.supervise(
        [
            ChildSpec.dynamic_supervisor(
                "jobs", SupervisorFlags(intensity=1_000_000, period=1.0), max_children=1000
            )
        ],
        name="soak",
    )
    jobs_sup = root.child("jobs")
    rss: dict[str, int] = {"start": rss_bytes()}
    began = time.monotonic()
    unaccounted_jobs = 0
    pending: dict[concurrent.futures.Future[Any], int] = {}
    sizes: dict[int, int] = {}

    def settle(done: set[concurrent.futures.Future[Any]]) -> None:
        nonlocal unaccounted_jobs
        for future in done:
            index = pending.pop(future)
            result = future.result()
            if not accounted(result, sizes[index]):
                unaccounted_jobs += 1

    for index in range(jobs):
        if index == jobs // 2:
            while pending:
                done, _ = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
                settle(done)
            gc.collect()
            rss["middle"] = rss_bytes()
        while len(pending) >= args.jobs_at_once:
            done, _ = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
            settle(done)
        codes = plan(rng, args.per_job)
        sizes[index] = len(codes)
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        spec = ChildSpec.run(
            f"job-{index}",
            job_flow(index, codes),
            codes,
            timeout=60.0,
            reply_to=reply,
            backoff=Backoff(min=0.001, max=0.01, reset_after=600.0, max_restarts=2),
        )
        jobs_sup.start_child(spec)
        pending[reply] = index
    while pending:
        done, _ = concurrent.futures.wait(pending, timeout=120, return_when="FIRST_COMPLETED")
        if not done:
            print("FAIL: jobs did not finish within 120 s", file=sys.stderr)
            return 1
        settle(done)
    elapsed = time.monotonic() - began
    gc.collect()
    rss["end"] = rss_bytes()

    report = system.shutdown(timeout=30.0)
    abandoned = len(report.abandoned)
    deadline = time.monotonic() + 30.0
    leaked: list[str] = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)

    executions = sum(ledger.statuses.values())
    unaccounted = ledger.unaccounted()
    growth = (rss["end"] - rss["middle"]) / rss["middle"]
    print(f"jobs: {jobs}, branch executions: {executions} in {elapsed:.1f} s")
    print("per status: " + ", ".join(f"{k}={v}" for k, v in sorted(ledger.statuses.items())))
    print(f"restarts: {ledger.restarts}, abandoned threads: {abandoned}")
    print(
        "RSS MiB: "
        + ", ".join(f"{k}={v / 2**20:.1f}" for k, v in rss.items())
        + f" (middle to end {growth:+.1%})"
    )
    failures = []
    if executions < args.branches * 0.95:
        failures.append(f"only {executions} branch executions")
    if unaccounted or unaccounted_jobs:
        failures.append(f"{unaccounted} executions and {unaccounted_jobs} jobs unaccounted")
    if leaked:
        failures.append(f"threads left after shutdown: {leaked[:5]} ({len(leaked)})")
    if growth >= 0.10:
        failures.append(f"RSS grew {growth:.1%} between the middle and the end")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if not failures:
        print("all targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
