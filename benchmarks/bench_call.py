"""One tool call through castflow vs a reused ThreadPoolExecutor vs a raw pykka actor.

Interleaves the implementations (A B C A B C ...) in one process run and prints medians and
ratios; absolute times on a shared machine mean little, same-run ratios do.

    python benchmarks/bench_call.py [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka

from actors import ActorSystem, tool


@tool
def noop(x: int) -> int:
    """Return the input."""
    return x


class RawEcho(pykka.ThreadingActor):
    """A plain pykka actor that answers with the message."""

    def on_receive(self, message: Any) -> Any:
        return message


def timed(run: Callable[[], None]) -> float:
    begun = time.perf_counter()
    run()
    return time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.calls

    with ActorSystem("bench", max_leaf_workers=8) as system, ThreadPoolExecutor(8) as pool:
        raw = RawEcho.start()
        try:

            def castflow_sequential() -> None:
                for i in range(n):
                    system.call(noop, i)

            def tpe_sequential() -> None:
                for i in range(n):
                    pool.submit(noop.fn, i).result()

            def pykka_sequential() -> None:
                for i in range(n):
                    raw.ask(i)

            def castflow_batch() -> None:
                for future in [system.call_future(noop, i) for i in range(n)]:
                    future.result()

            def tpe_batch() -> None:
                for future in [pool.submit(noop.fn, i) for i in range(n)]:
                    future.result()

            workloads: dict[str, Callable[[], None]] = {
                "castflow call (sequential)": castflow_sequential,
                "TPE submit+result (sequential)": tpe_sequential,
                "pykka ask (sequential)": pykka_sequential,
                "castflow call_future x n (8 workers)": castflow_batch,
                "TPE submit x n (8 threads)": tpe_batch,
            }
            samples: dict[str, list[float]] = {name: [] for name in workloads}
            for run in workloads.values():  # warm-up
                run()
            for _ in range(args.repeats):
                for name, run in workloads.items():
                    samples[name].append(timed(run))
        finally:
            raw.stop()

    medians = {name: statistics.median(times) for name, times in samples.items()}
    print(f"{n} no-op tool calls, median of {args.repeats} interleaved repetitions")
    print(f"{'workload':40} {'µs/call':>10}")
    for name, median in medians.items():
        print(f"{name:40} {median / n * 1e6:10.1f}")
    seq = medians["castflow call (sequential)"]
    print(f"castflow/TPE sequential: {seq / medians['TPE submit+result (sequential)']:.2f}x")
    print(f"castflow/pykka ask sequential: {seq / medians['pykka ask (sequential)']:.2f}x")
    fan = medians["castflow call_future x n (8 workers)"]
    print(f"castflow/TPE batch: {fan / medians['TPE submit x n (8 threads)']:.2f}x")


if __name__ == "__main__":
    main()
