"""N parallel branches through castflow vs a reused ThreadPoolExecutor, asyncio and raw pykka.

Two workloads, each run through every implementation in one process, interleaved
(A B C D A B C D ...), printing medians and same-run ratios:

- no-op branches: the serial cost per branch of each implementation's machinery;
- I/O-bound branches (``time.sleep(L)``, or ``asyncio.sleep`` for asyncio): efficiency,
  the ideal ``ceil(N / C) * L`` over the wall time.

castflow runs the branches as a ``ParallelWorkflow`` of N tool steps (one run) and as a
``MapReduceWorkflow`` over N items. Absolute times on a shared machine mean little; compare
ratios taken in one run.

    python benchmarks/bench_parallel.py [--branches 2000] [--concurrency 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import pykka

from actors import ActorSystem, MapReduceWorkflow, ParallelWorkflow, tool


@tool
def noop(x: int) -> int:
    """Return the input."""
    return x


class RawWorker(pykka.ThreadingActor):
    """A plain pykka actor that runs a function on each message."""

    def on_receive(self, message: Any) -> Any:
        fn, arg = message
        return fn(arg)


def timed(run: Callable[[], None]) -> float:
    begun = time.perf_counter()
    run()
    return time.perf_counter() - begun


def sleeper(latency: float) -> Callable[[int], int]:
    def body(x: int) -> int:
        time.sleep(latency)
        return x

    return body


def workloads(
    system: ActorSystem,
    pool: ThreadPoolExecutor,
    raw: list[pykka.ActorRef[RawWorker]],
    n: int,
    c: int,
    latency: float,
) -> dict[str, Callable[[], None]]:
    """The same N branches at concurrency C through every implementation."""
    body = sleeper(latency) if latency else noop.fn
    branch = tool(body, name="branch")
    parallel = ParallelWorkflow([branch] * n, max_concurrency=c, copy_input="none")
    mapped = MapReduceWorkflow(branch, lambda acc, _v: acc + 1, initial=0, max_concurrency=c)

    def castflow_parallel() -> None:
        system.run(parallel, 1, timeout=600).value  # noqa: B018 - raises if the run failed

    def castflow_map_reduce() -> None:
        system.run(mapped, range(n), timeout=600).value  # noqa: B018

    def tpe() -> None:
        wait([pool.submit(body, i) for i in range(n)])

    async def gather_all() -> None:
        gate = asyncio.Semaphore(c)

        async def one(i: int) -> int:
            async with gate:
                if latency:
                    await asyncio.sleep(latency)
                return i

        await asyncio.gather(*(one(i) for i in range(n)))

    def run_asyncio() -> None:
        asyncio.run(gather_all())

    def pykka_pool() -> None:
        futures = [raw[i % len(raw)].ask((body, i), block=False) for i in range(n)]
        pykka.get_all(futures)

    return {
        "castflow ParallelWorkflow": castflow_parallel,
        "castflow MapReduceWorkflow": castflow_map_reduce,
        "ThreadPoolExecutor (reused)": tpe,
        "asyncio + Semaphore": run_asyncio,
        "pykka actor pool, round-robin ask": pykka_pool,
    }


def measure(jobs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for run in jobs.values():  # warm-up: workers started, caches filled
        run()
    for _ in range(repeats):
        for name, run in jobs.items():
            samples[name].append(timed(run))
    return {name: statistics.median(times) for name, times in samples.items()}


def report(title: str, medians: dict[str, float], n: int, ideal: float | None) -> None:
    base = medians["ThreadPoolExecutor (reused)"]
    print(title)
    header = f"{'implementation':36} {'µs/branch':>10} {'vs TPE':>8}"
    print(header + (f" {'efficiency':>10}" if ideal else ""))
    for name, median in medians.items():
        line = f"{name:36} {median / n * 1e6:10.1f} {median / base:7.2f}x"
        if ideal:
            line += f" {ideal / median:10.2f}"
        print(line)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--branches", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.01, help="seconds per I/O branch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, c = args.branches, args.concurrency

    with ActorSystem("bench") as system, ThreadPoolExecutor(c) as pool:
        raw = [RawWorker.start() for _ in range(c)]
        try:
            noop_medians = measure(workloads(system, pool, raw, n, c, 0.0), args.repeats)
            io_n = min(n, 1000)
            io_medians = measure(
                workloads(system, pool, raw, io_n, c, args.latency), max(1, args.repeats // 2)
            )
        finally:
            for ref in raw:
                ref.stop()

    report(f"{n} no-op branches, concurrency {c}", noop_medians, n, None)
    ideal = math.ceil(io_n / c) * args.latency
    report(
        f"{io_n} I/O branches of {args.latency * 1000:.0f} ms, concurrency {c}",
        io_medians,
        io_n,
        ideal,
    )


if __name__ == "__main__":
    main()
