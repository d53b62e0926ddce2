"""castflow's benchmark suite: every workload against its baselines, in one command.

Each workload runs castflow and its baselines interleaved in one process run (A B C A B C
...), at least ``--repeats`` times, and reports medians and same-run ratios: on a shared
machine absolute times mean little, ratios taken in one run do. ``--json FILE`` also writes
every figure for tracking.

    python benchmarks/suite.py [--quick] [--repeats 5] [--json results.json] [--no-ray]

Baselines: a reused ThreadPoolExecutor, asyncio with a Semaphore, a pool of C pykka actors
and a pykka actor per branch; with ray installed (``pip install -e '.[bench]'``), Ray tasks
for the no-op fan-out and a threaded Ray actor for the I/O-bound ones (see
``ray_baseline``), in rows of their own at the end, on a local cluster started for those.

Workloads (targets from the performance issue in brackets):

- no-op fan-out, N=10,000, C=64 [ParallelWorkflow <= 1.5x a reused ThreadPoolExecutor];
- I/O-bound fan-out with ``time.sleep(L)`` at (200, 50, 20 ms), (1000, 100, 10 ms) and
  (10,000, 256, 1 ms) [efficiency >= 0.93, >= 0.90, and no worse than the executor];
- first-success latency: winner's return to the caller's result [<= 1 ms], and to the
  losers' scopes being cancelled [<= 2 ms after];
- branch-timeout lateness: how late after its deadline a branch is decided [p99 <= 10 ms];
- map-reduce over 100,000 items at C=64 with peak RSS growth [<= 100 MiB];
- idle actor memory [<= 32 KiB RSS each];
- a ToolActor round trip (``system.call``) against a raw pykka ``ask``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import resource
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pykka
import ray_baseline

from actors import (
    Actor,
    ActorSystem,
    Aggregation,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    ToolContext,
    tool,
)

Row = dict[str, Any]
TPE = "ThreadPoolExecutor (reused)"
FAN_OUTS = ((200, 50, 0.02), (1000, 100, 0.01), (10_000, 256, 0.001))  # N, C, latency


# -- helpers ----------------------------------------------------------------------------------


def timed(run: Callable[[], object]) -> float:
    begun = time.perf_counter()
    run()
    return time.perf_counter() - begun


def interleaved(
    jobs: dict[str, Callable[[], object]], repeats: int, *, collect: bool = False
) -> dict[str, float]:
    """Median seconds of each job, run A B C A B C ... after one warm-up round.

    ``collect`` starts each sample from a collected heap (``gc.collect()``, not timed), for
    workloads that make many objects: a full collection costs in proportion to every object
    alive, and it falls due by what survived before, so without it a fan-out is charged for
    the one the job before made due (a pykka pool's 10,000 futures, an executor's). Each
    job still pays for the collections its own work causes.
    """
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for run in jobs.values():
        run()
    for _ in range(repeats):
        for name, run in jobs.items():
            if collect:
                gc.collect()
            samples[name].append(timed(run))
    return {name: statistics.median(times) for name, times in samples.items()}


def rss_bytes() -> int:
    """The process's resident set size now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return pages * resource.getpagesize()


class RawWorker(pykka.ThreadingActor):
    """A plain pykka actor that runs ``fn(arg)`` for each message."""

    def on_receive(self, message: Any) -> Any:
        fn, arg = message
        return fn(arg)


def sleeper(latency: float) -> Callable[[int], int]:
    def body(x: int) -> int:
        if latency:
            time.sleep(latency)
        return x

    return body


# -- fan-out ----------------------------------------------------------------------------------


def fan_out(
    system: ActorSystem,
    n: int,
    c: int,
    latency: float,
    repeats: int,
    *,
    per_branch_actor: bool = False,
    with_ray: bool = False,
) -> dict[str, float]:
    """The same N branches at concurrency C through castflow and every baseline; ``with_ray``
    (a local Ray cluster runs): through castflow, the executor and Ray alone."""
    body = sleeper(latency)
    branch = tool(body, name="branch")
    parallel = ParallelWorkflow([branch] * n, max_concurrency=c, copy_input="none")
    mapped = MapReduceWorkflow(branch, lambda acc, _v: acc + 1, initial=0, max_concurrency=c)
    pool = ThreadPoolExecutor(c)
    raw = [RawWorker.start() for _ in range(c)]

    async def gather_all() -> None:
        gate = asyncio.Semaphore(c)

        async def one(i: int) -> int:
            async with gate:
                if latency:
                    await asyncio.sleep(latency)
                return i

        await asyncio.gather(*(one(i) for i in range(n)))

    def actor_per_branch() -> None:
        # Start at most C actors at a time, each answering one message, as a naive design does.
        for first in range(0, n, c):
            refs = [RawWorker.start() for _ in range(first, min(n, first + c))]
            pykka.get_all([ref.ask((body, i), block=False) for i, ref in enumerate(refs)])
            for ref in refs:
                ref.stop()

    jobs: dict[str, Callable[[], object]] = {
        "castflow ParallelWorkflow": lambda: system.run(parallel, 1, timeout=600).value,
        "castflow MapReduceWorkflow": lambda: system.run(mapped, range(n), timeout=600).value,
        TPE: lambda: wait([pool.submit(body, i) for i in range(n)]),
        "asyncio + Semaphore": lambda: asyncio.run(gather_all()),
        "pykka pool of C actors": lambda: pykka.get_all(
            [raw[i % c].ask((body, i), block=False) for i in range(n)]
        ),
    }
    if per_branch_actor:
        jobs["pykka actor per branch"] = actor_per_branch
    stop_ray = ray_baseline.nothing
    if with_ray:
        jobs = {name: jobs[name] for name in ("castflow ParallelWorkflow", TPE)}
        ray_jobs, stop_ray = ray_baseline.fan_out_jobs(body, n, c, io_bound=latency > 0)
        jobs.update(ray_jobs)
    try:
        return interleaved(jobs, repeats, collect=True)
    finally:
        pool.shutdown()
        for ref in raw:
            ref.stop()
        stop_ray()


# -- first success ------------------------------------------------------------------------


def first_success_latency(system: ActorSystem, runs: int) -> Row:
    """Winner's return to the caller's result, and to the last loser's scope cancellation."""
    returned: list[float] = []
    cancelled: list[float] = []
    lock = threading.Lock()

    @tool
    def winner(x: int) -> int:
        """Return at once, stamping the moment."""
        with lock:
            returned.append(time.perf_counter())
        return x

    @tool
    def loser(x: int, ctx: ToolContext) -> int:
        """Wait to be cancelled, stamping the moment it is seen."""
        if ctx.scope.wait(30):
            with lock:
                cancelled.append(time.perf_counter())
        ctx.raise_if_cancelled()
        return x

    flow = ParallelWorkflow(
        [loser, loser, winner], aggregation=Aggregation.FIRST_SUCCESS, max_concurrency=3
    )
    to_result: list[float] = []
    to_cancel: list[float] = []
    for _ in range(runs):
        returned.clear()
        cancelled.clear()
        result = system.run(flow, 1, timeout=30)
        got = time.perf_counter()
        assert result.ok
        deadline = time.monotonic() + 5
        while len(cancelled) < 2 and time.monotonic() < deadline:
            time.sleep(0.0005)
        to_result.append((got - returned[0]) * 1000)
        if len(cancelled) == 2:
            to_cancel.append((max(cancelled) - returned[0]) * 1000)
    return {
        "winner to result, median ms": statistics.median(to_result),
        "winner to losers cancelled, median ms": statistics.median(to_cancel),
    }


# -- timeouts -----------------------------------------------------------------------------


def timeout_lateness(system: ActorSystem, runs: int, deadline: float = 0.02) -> Row:
    """How long after its deadline a hanging branch is decided ``timeout``."""

    @tool
    def hang(x: int, ctx: ToolContext) -> int:
        """Wait to be cut."""
        ctx.scope.wait(30)
        ctx.raise_if_cancelled()
        return x

    flow = ParallelWorkflow([hang], limits=ResourceLimits(execution_timeout=deadline))
    late: list[float] = []
    unstarted = 0
    for _ in range(runs):
        result = system.run(flow, 1, timeout=30)
        record = result.steps[0]
        if record.duration is None:
            # Its deadline passed before a worker took it (a pause longer than the deadline,
            # e.g. a full garbage collection): there is no start to measure lateness from.
            unstarted += 1
            continue
        late.append((record.duration - deadline) * 1000)
    late.sort()
    return {
        "median ms late": statistics.median(late),
        "p99 ms late": late[min(len(late) - 1, math.ceil(len(late) * 0.99) - 1)],
        "cut before it started": unstarted,
    }


# -- memory -------------------------------------------------------------------------------


def map_reduce_memory(system: ActorSystem, n: int) -> Row:
    @tool
    def square(x: int) -> int:
        """Square it."""
        return x * x

    flow = MapReduceWorkflow(square, lambda acc, v: acc + v, initial=0, max_concurrency=64)
    system.run(flow, range(1000), timeout=60)
    gc.collect()
    before = rss_bytes()
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, rss_bytes())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.perf_counter()
    result = system.run(flow, range(n), timeout=600)
    took = time.perf_counter() - began
    done.set()
    watcher.join()
    assert result.value == sum(i * i for i in range(n))
    return {
        "items": n,
        "µs per item": took / n * 1e6,
        "peak RSS growth MiB": (peak - before) / 2**20,
    }


class _Idle(Actor):
    """An actor that does nothing."""


def idle_actor_memory(system: ActorSystem, count: int) -> Row:
    gc.collect()
    before = rss_bytes()
    handles = [system.spawn(_Idle, wait=False) for _ in range(count)]
    for handle in handles:
        actor = handle._actor
        assert actor is not None
        actor.started.result(30)
    gc.collect()
    after = rss_bytes()
    for handle in handles:
        handle.stop()
    for handle in handles:
        handle.join(30)
    return {"actors": count, "KiB RSS per idle actor": (after - before) / count / 1024}


# -- one call -----------------------------------------------------------------------------


def call_cost(system: ActorSystem, calls: int, repeats: int) -> dict[str, float]:
    @tool
    def noop(x: int) -> int:
        """Return the input."""
        return x

    raw = RawWorker.start()
    try:
        jobs: dict[str, Callable[[], object]] = {
            "castflow system.call (ToolActor)": lambda: [
                system.call(noop, i) for i in range(calls)
            ],
            "pykka ask": lambda: [raw.ask((noop.fn, i)) for i in range(calls)],
        }
        return {k: v / calls for k, v in interleaved(jobs, repeats).items()}
    finally:
        raw.stop()


# -- report -------------------------------------------------------------------------------


def print_fan(title: str, medians: dict[str, float], n: int, ideal: float | None) -> Row:
    base = medians[TPE]
    print(f"\n{title}")
    print(
        f"  {'implementation':32} {'µs/branch':>10} {'vs TPE':>8}"
        + ("  efficiency" if ideal else "")
    )
    row: Row = {}
    for name, median in medians.items():
        line = f"  {name:32} {median / n * 1e6:10.1f} {median / base:7.2f}x"
        row[name] = {"seconds": median, "vs_tpe": median / base}
        if ideal:
            line += f"  {ideal / median:10.3f}"
            row[name]["efficiency"] = ideal / median
        print(line)
    return row


def print_row(title: str, row: Row) -> Row:
    print(f"\n{title}")
    for key, value in row.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:40} {shown:>12}")
    return row


def fan_out_rows(system: ActorSystem, scale: int, repeats: int, *, with_ray: bool = False) -> Row:
    """Every fan-out workload (see ``fan_out``), printed; their figures by title."""
    results: Row = {}
    suffix = ", with Ray" if with_ray else ""
    n = 10_000 // scale
    medians = fan_out(system, n, 64, 0.0, repeats, per_branch_actor=True, with_ray=with_ray)
    title = f"no-op fan-out, N={n}, C=64{suffix}"
    results[f"no-op fan-out{suffix}"] = print_fan(title, medians, n, None)
    for size, c, latency in FAN_OUTS:
        n = size // scale if size > 1000 else size
        key = f"I/O fan-out ({n}, {c}, {latency * 1000:g} ms){suffix}"
        medians = fan_out(system, n, c, latency, repeats, with_ray=with_ray)
        results[key] = print_fan(key, medians, n, math.ceil(n / c) * latency)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray baselines")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    repeats = args.repeats

    with ActorSystem("bench") as system:
        results = fan_out_rows(system, scale, repeats)
        results["first success"] = print_row(
            "first-success latency", first_success_latency(system, 50 // (scale // 2 or 1))
        )
        results["timeouts"] = print_row(
            "branch-timeout lateness (deadline 20 ms)", timeout_lateness(system, 50)
        )
        results["map-reduce"] = print_row(
            "map-reduce, C=64", map_reduce_memory(system, 100_000 // scale)
        )
        results["idle actors"] = print_row("idle actors", idle_actor_memory(system, 1000 // scale))
        calls = call_cost(system, 2000 // scale, repeats)
        results["one call"] = print_row(
            "one call, µs", {name: seconds * 1e6 for name, seconds in calls.items()}
        )
        # Last, on a cluster of its own: its processes' background work must not weigh on the
        # rows above (they have targets in absolute efficiency).
        if not ray_baseline.available():
            print("\nray is not installed: the Ray baselines are left out (see --help)")
        elif not args.no_ray:
            print("\nRay baselines: a local Ray cluster runs during these rows only")
            with ray_baseline.local_cluster():
                results.update(fan_out_rows(system, scale, repeats, with_ray=True))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
