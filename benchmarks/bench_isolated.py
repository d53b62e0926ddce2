"""CPU-bound branches: castflow's isolated tools vs sequential vs a ProcessPoolExecutor.

Runs in one process, interleaving the implementations (A B C A B C ...), and prints medians,
the speedup of each parallel implementation over running the branches one after another, and
the per-call overhead of an isolated call vs a ProcessPoolExecutor round trip. Absolute times
on a shared machine mean little; same-run ratios do.

    python benchmarks/bench_isolated.py [--branches 8] [--workers 2] [--ms 50] [--calls 300]
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

from actors import ActorSystem, MapReduceWorkflow, Tool, tool


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
    parser.add_argument("--repeats", type=int, default=5)
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

        def sequential() -> None:
            for n in items:
                burn(n)

        def isolated() -> None:
            system.run(flow, items, timeout=600).value  # noqa: B018 - raises if it failed

        def process_pool() -> None:
            list(pool.map(burn, items))

        def isolated_calls() -> None:
            for i in range(args.calls):
                system.call(noop_tool, i)

        def pool_calls() -> None:
            for i in range(args.calls):
                pool.submit(noop, i).result()

        workloads: dict[str, Callable[[], None]] = {
            "sequential (in process)": sequential,
            "castflow isolated (MapReduce)": isolated,
            "ProcessPoolExecutor.map": process_pool,
            "castflow isolated call (no-op)": isolated_calls,
            "ProcessPoolExecutor submit+result (no-op)": pool_calls,
        }
        for run in workloads.values():  # warm-up: every worker started and imported
            run()
        samples: dict[str, list[float]] = {name: [] for name in workloads}
        for _ in range(args.repeats):
            for name, run in workloads.items():
                samples[name].append(timed(run))

    medians = {name: statistics.median(times) for name, times in samples.items()}
    print(
        f"{args.branches} CPU-bound branches of ~{args.ms:.0f} ms, {args.workers} workers, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"median of {args.repeats} interleaved repetitions"
    )
    for name in list(workloads)[:3]:
        print(f"  {name:45} {medians[name] * 1000:9.1f} ms")
    seq = medians["sequential (in process)"]
    iso = medians["castflow isolated (MapReduce)"]
    ppe = medians["ProcessPoolExecutor.map"]
    print(f"  speedup over sequential: castflow {seq / iso:.2f}x, PPE {seq / ppe:.2f}x")
    print(f"  castflow / ProcessPoolExecutor wall time: {iso / ppe:.2f}x")
    call = medians["castflow isolated call (no-op)"] / args.calls
    submit = medians["ProcessPoolExecutor submit+result (no-op)"] / args.calls
    print(f"{args.calls} sequential no-op calls:")
    print(f"  castflow isolated call      {call * 1e6:9.1f} µs/call")
    print(f"  ProcessPoolExecutor submit  {submit * 1e6:9.1f} µs/call")
    print(f"  per-call overhead ratio castflow / ProcessPoolExecutor: {call / submit:.2f}x")


if __name__ == "__main__":
    main()
