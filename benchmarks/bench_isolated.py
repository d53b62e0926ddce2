"""CPU-bound branches: castflow's isolated tools vs sequential vs a ProcessPoolExecutor.

With ray installed (``pip install -e '.[bench]'``), a second round adds Ray tasks on a local
cluster of ``--workers`` CPUs, started for that round only, unless ``--no-ray``.

Runs in one process, interleaving the implementations (A B C, B C A, C A B, ...) after one
warm-up run of each (every worker started and the tools imported), and prints medians,
the speedup of each parallel implementation over running the branches one after another, and
the per-call overhead of an isolated call vs a ProcessPoolExecutor round trip. Absolute times
on a shared machine mean little; same-run ratios do, so each ratio is the median of the ratios
of the two workloads' times within one repetition.

    python benchmarks/bench_isolated.py [--branches 8] [--workers 2] [--ms 50] [--calls 300]
        [--no-ray]
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import ray_baseline

from actors import ActorSystem, MapReduceWorkflow, Tool, tool

SEQUENTIAL = "sequential (in process)"
ISOLATED = "castflow isolated (MapReduce)"
POOL_MAP = "ProcessPoolExecutor.map"
ISOLATED_CALL = "castflow isolated call (no-op)"
POOL_CALL = "ProcessPoolExecutor submit+result (no-op)"
RAY_MAP = f"{ray_baseline.TASKS} (a task per branch)"
RAY_CALL = "Ray task submit+get (no-op)"


def burn(rounds: int) -> int:
    """Pure-Python CPU work: a deterministic sum over ``rounds`` iterations."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def noop(x: int) -> int:
    """Return the input: what a call costs when the tool costs nothing."""
    return x


def timed(run: Callable[[], object]) -> float:
    begun = time.perf_counter()
    run()
    return time.perf_counter() - begun


def calibrate(ms: float) -> int:
    """Rounds of ``burn`` that take about ``ms`` milliseconds here."""
    probe = 200_000
    took = min(timed(lambda: burn(probe)) for _ in range(3))
    return max(1_000, int(probe * ms / 1000 / took))


def isolated_tools() -> tuple[Tool[..., Any], Tool[..., Any]]:
    """The isolated tools, made from this file imported under its module name.

    Run as a script this file is ``__main__``, which a worker cannot import; its directory is
    on ``sys.path``, so the same functions are importable as ``bench_isolated.*``.
    """
    module = importlib.import_module(Path(__file__).stem)
    return (
        tool(module.burn, name="burn", isolated=True),
        tool(module.noop, name="noop", isolated=True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--branches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--ms", type=float, default=50.0, help="CPU time of one branch")
    parser.add_argument("--calls", type=int, default=300, help="no-op calls for the overhead")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray baseline")
    args = parser.parse_args()
    burn_tool, noop_tool = isolated_tools()
    rounds = calibrate(args.ms)
    items = [rounds] * args.branches
    flow = MapReduceWorkflow(burn_tool, max_concurrency=args.branches)
    context = multiprocessing.get_context("forkserver")

    with (
        ActorSystem("bench", max_isolated_workers=args.workers) as system,
        ProcessPoolExecutor(args.workers, mp_context=context) as pool,
    ):

        def sequential() -> list[int]:
            return [burn(n) for n in items]

        def isolated() -> list[int]:
            return list(system.run(flow, items, timeout=600).value)  # raises if it failed

        def process_pool() -> list[int]:
            return list(pool.map(burn, items))

        def isolated_calls() -> list[int]:
            return [system.call(noop_tool, i).value for i in range(args.calls)]

        def pool_calls() -> list[int]:
            return [pool.submit(noop, i).result() for i in range(args.calls)]

        workloads: dict[str, Callable[[], object]] = {
            SEQUENTIAL: sequential,
            ISOLATED: isolated,
            POOL_MAP: process_pool,
            ISOLATED_CALL: isolated_calls,
            POOL_CALL: pool_calls,
        }
        warm_up(workloads)
        report(args, measure(workloads, args.repeats))
        if args.no_ray:
            return
        if not ray_baseline.available():
            print("ray is not installed: the Ray baseline is left out (see --help)")
            return
        # A round of its own, on a cluster started for it: the cluster's processes work in the
        # background, which must not weigh on the round above (it has targets).
        with ray_baseline.local_cluster(args.workers):
            workloads[RAY_MAP] = ray_baseline.task_map(burn, items)
            workloads[RAY_CALL] = ray_baseline.task_calls(noop, list(range(args.calls)))
            warm_up(workloads)
            print("\nWith Ray (a local cluster runs during this round only):")
            report(args, measure(workloads, args.repeats))


def warm_up(workloads: dict[str, Callable[[], object]]) -> None:
    """Run each workload once (every worker started, the tools imported) and compare results.

    The parallel implementations must compute what the sequential one does, and both no-op
    loops must return the same values: otherwise the times compare different work.
    """
    results = {name: run() for name, run in workloads.items()}
    parallel = [name for name in (ISOLATED, POOL_MAP, RAY_MAP) if name in results]
    branches = {results[SEQUENTIAL] == results[name] for name in parallel}
    others = [name for name in (POOL_CALL, RAY_CALL) if name in results]
    calls = {results[ISOLATED_CALL] == results[name] for name in others}
    if branches != {True} or calls != {True}:
        msg = "the implementations did not compute the same results"
        raise SystemExit(msg)


def measure(workloads: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time every workload ``repeats`` times, interleaved; return each one's times."""
    samples: dict[str, list[float]] = {name: [] for name in workloads}
    names = list(workloads)
    for repeat in range(repeats):
        # Each repetition starts one workload later: none always runs after the same one.
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(workloads[name]))
    return samples


def paired(samples: dict[str, list[float]], slow: str, fast: str) -> float:
    """The median over repetitions of ``slow``'s time over ``fast``'s in the same repetition.

    Both ran back to back in each repetition, so a load that comes and goes on a shared
    machine weighs on both sides of each ratio alike.
    """
    return statistics.median(a / b for a, b in zip(samples[slow], samples[fast], strict=True))


def report(args: argparse.Namespace, samples: dict[str, list[float]]) -> None:
    """Print the median times and the same-repetition ratios."""
    medians = {name: statistics.median(times) for name, times in samples.items()}
    print(
        f"{args.branches} CPU-bound branches of ~{args.ms:.0f} ms, {args.workers} workers, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"median of {args.repeats} interleaved repetitions"
    )
    for name in (SEQUENTIAL, ISOLATED, POOL_MAP, RAY_MAP):
        if name in medians:
            print(f"  {name:45} {medians[name] * 1000:9.1f} ms")
    castflow, ppe = paired(samples, SEQUENTIAL, ISOLATED), paired(samples, SEQUENTIAL, POOL_MAP)
    line = f"  speedup over sequential: castflow {castflow:.2f}x, PPE {ppe:.2f}x"
    if RAY_MAP in samples:
        line += f", Ray {paired(samples, SEQUENTIAL, RAY_MAP):.2f}x"
    print(line)
    print(f"  castflow / ProcessPoolExecutor wall time: {paired(samples, ISOLATED, POOL_MAP):.2f}x")
    call = medians[ISOLATED_CALL] / args.calls
    submit = medians[POOL_CALL] / args.calls
    print(f"{args.calls} sequential no-op calls:")
    print(f"  castflow isolated call      {call * 1e6:9.1f} µs/call")
    print(f"  ProcessPoolExecutor submit  {submit * 1e6:9.1f} µs/call")
    if RAY_CALL in medians:
        print(f"  Ray task submit+get         {medians[RAY_CALL] / args.calls * 1e6:9.1f} µs/call")
    ratio = paired(samples, ISOLATED_CALL, POOL_CALL)
    print(f"  per-call overhead ratio castflow / ProcessPoolExecutor: {ratio:.2f}x")


if __name__ == "__main__":
    main()
