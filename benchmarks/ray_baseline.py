"""Ray baselines for the benchmarks, used when ray is installed (``pip install -e '.[bench]'``).

Ray runs work in worker processes of a local cluster started for the benchmark: the same
machine, its CPUs given to Ray's scheduler. Two shapes are measured, the ones a Ray user
would write:

- **Ray tasks** (``@ray.remote`` functions): each call a task scheduled onto a worker
  process, one task per CPU at a time. Used for the no-op fan-out and for CPU-bound work.
- **a threaded Ray actor** (``max_concurrency=C``): one worker process running up to C calls
  at once in its threads, how Ray runs blocking I/O concurrently. Used for the I/O fan-outs;
  tasks would start a worker process per concurrent call.

Every call crosses a process boundary (its arguments and result serialised), which is what a
Ray user pays for distribution; castflow's thread leaves do not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    import ray
except ImportError:  # the optional baseline: without ray, the benchmarks leave it out
    ray = None

TASKS = "Ray tasks"
ACTOR = "Ray threaded actor"  # max_concurrency=C


def available() -> bool:
    """Whether ray is installed."""
    return ray is not None


@contextmanager
def local_cluster(cpus: int | None = None, *, enabled: bool = True) -> Iterator[bool]:
    """Start a local Ray cluster for the block (``cpus``: all of the machine's by default);
    yields whether one runs (not when ray is not installed, or not ``enabled``)."""
    if ray is None or not enabled:
        yield False
        return
    ray.init(
        num_cpus=cpus or os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        logging_level=logging.ERROR,
    )
    try:
        yield True
    finally:
        ray.shutdown()


def task_map(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], list[Any]]:
    """A job that runs ``fn`` on every item as one Ray task each and returns the results."""
    assert ray is not None
    remote = ray.remote(fn)

    def run() -> list[Any]:
        return list(ray.get([remote.remote(item) for item in items]))

    return run


def task_calls(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], list[Any]]:
    """A job that runs ``fn`` on each item as a Ray task, one after another (submit, then
    wait for its result): what one remote call costs."""
    assert ray is not None
    remote = ray.remote(fn)

    def run() -> list[Any]:
        return [ray.get(remote.remote(item)) for item in items]

    return run


def actor_map(
    fn: Callable[[Any], Any], items: list[Any], concurrency: int
) -> tuple[Callable[[], list[Any]], Callable[[], None]]:
    """A job that calls ``fn`` on every item through one threaded Ray actor running up to
    ``concurrency`` calls at once; and the function that stops the actor.

    At most ``2 * concurrency`` calls are in flight: Ray asks that callers wait for results
    before queueing thousands of calls to an actor.
    """
    assert ray is not None

    # Made here, so that Ray ships the class by value: its workers need not import this file.
    class Caller:
        """The body of the threaded actor: calls ``fn`` on each item it is given."""

        def call(self, item: Any) -> Any:
            return fn(item)

    actor = ray.remote(max_concurrency=concurrency)(Caller).remote()
    window = 2 * concurrency

    def run() -> list[Any]:
        results: list[Any] = []
        pending: list[Any] = []
        for item in items:
            if len(pending) >= window:
                done, pending = ray.wait(pending, num_returns=concurrency)
                results.extend(ray.get(done))
            pending.append(actor.call.remote(item))
        results.extend(ray.get(pending))
        return results

    def stop() -> None:
        ray.kill(actor)

    return run, stop


def fan_out_jobs(
    fn: Callable[[Any], Any], n: int, concurrency: int, *, io_bound: bool
) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The Ray jobs of a fan-out of ``n`` calls of ``fn``, and what stops them: tasks for a
    no-op fan-out, a threaded actor of ``concurrency`` threads for an I/O-bound one. No jobs
    without a running cluster."""
    if ray is None or not ray.is_initialized():
        return {}, nothing
    items = list(range(n))
    if not io_bound:
        return {TASKS: task_map(fn, items)}, nothing
    run, stop = actor_map(fn, items, concurrency)
    return {ACTOR: run}, stop


def nothing() -> None:
    """Stops nothing: what there is to stop when nothing was started."""
