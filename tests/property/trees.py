"""Random workflow trees: the node types, their hypothesis strategies and their cost bound.

A tree is plain data (frozen dataclasses). ``trees(racy=...)`` draws one: depth at most
``MAX_DEPTH``, width at most ``MAX_WIDTH``, mixing every workflow kind, aggregation and error
mode, retries, shared named semaphores and barrier groups that are valid by construction.
Names are given afterwards by :func:`number`, so that every node of a tree has its own.

Without ``racy``, leaves succeed, fail or return slowly and no timeout can fire: the model
determines every status. With ``racy``, leaves may also hang past their own timeout (waiting on
their scope, or ignoring it for a bounded time, so abandoned threads end) and a parallel step
may cut its branches with an execution timeout close to their latencies.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from hypothesis import strategies as st

MAX_DEPTH = 4
MAX_WIDTH = 8
SEMAPHORES = ("sem-a", "sem-b")
FAR_TIMEOUT = 30.0
"""An execution timeout that never fires in a run of these trees."""

LeafKind = Literal["ok", "error", "slow", "hang", "stubborn"]
AggregationKind = Literal["all", "first", "partial", "quorum", "custom"]
ParKind = Literal["parallel", "scatter", "fork_join"]
FanKind = Literal["fan_out", "map_reduce"]


@dataclass(frozen=True)
class Leaf:
    """A tool: succeeds, fails, returns slowly, hangs cooperatively, or ignores cancellation.

    Attributes:
        kind: what it does.
        is_async: whether it is an async tool (``stubborn`` leaves are always sync).
        semaphore: the index in ``SEMAPHORES`` of the semaphore it holds while it runs.
        timeout: its step's own timeout (``hang`` and ``stubborn`` leaves always have one).
        latency: ``slow``: seconds it takes; ``stubborn``: seconds it runs past its timeout.
        name: its tool name, unique in the tree.
    """

    kind: LeafKind
    is_async: bool = False
    semaphore: int | None = None
    timeout: float | None = None
    latency: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class Seq:
    """A ``SequentialWorkflow`` of its children."""

    children: tuple[Node, ...]
    name: str = ""


@dataclass(frozen=True)
class Cond:
    """A ``ConditionalWorkflow`` whose first predicate is false and second true."""

    other: Node
    chosen: Node
    name: str = ""


@dataclass(frozen=True)
class Loop:
    """A ``LoopWorkflow`` running its body ``iterations`` times."""

    body: Node
    iterations: int
    name: str = ""


@dataclass(frozen=True)
class Par:
    """A ``ParallelWorkflow``, ``ScatterGatherWorkflow`` or ``ForkJoinWorkflow``.

    Attributes:
        kind: which workflow.
        children: its branches.
        aggregation: the strategy (``fork_join`` always gathers every branch).
        quorum: ``k`` of ``quorum(k)``.
        fail_fast: ``ErrorMode.FAIL_FAST`` if true, else ``FAIL_SLOW``.
        max_concurrency: the branches in flight at once.
        execution_timeout: each attempt's deadline (``None``, ``FAR_TIMEOUT`` or a racy one).
        attempts: the retry policy's ``max_attempts`` (1: no retry policy).
        name: the workflow's name.
    """

    kind: ParKind
    children: tuple[Node, ...]
    aggregation: AggregationKind
    quorum: int
    fail_fast: bool
    max_concurrency: int
    execution_timeout: float | None
    attempts: int
    name: str = ""


@dataclass(frozen=True)
class Fan:
    """A ``FanOutWorkflow`` or ``MapReduceWorkflow`` running ``worker`` on ``items`` items."""

    kind: FanKind
    worker: Node
    items: int
    partial: bool
    fail_fast: bool
    max_concurrency: int
    name: str = ""


@dataclass(frozen=True)
class Rally:
    """A ``ParallelWorkflow`` of ``parties`` branches ``[first, barrier, second]``.

    Its leaves only succeed (slowly or not), its concurrency admits every party, so the
    barrier is valid by construction and always opens.
    """

    first: tuple[Leaf, ...]
    second: tuple[Leaf, ...]
    name: str = ""


Node = Leaf | Seq | Cond | Loop | Par | Fan | Rally


def children_of(node: Node) -> tuple[Node, ...]:
    """The direct children of ``node``, in the order of its record's steps."""
    if isinstance(node, Seq | Par):
        return node.children
    if isinstance(node, Cond):
        return (node.other, node.chosen)
    if isinstance(node, Loop):
        return (node.body,)
    if isinstance(node, Fan):
        return (node.worker,)
    if isinstance(node, Rally):
        return (*node.first, *node.second)
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree under ``node``, depth first, ``node`` included."""
    yield node
    for child in children_of(node):
        yield from walk(child)


def number(root: Node) -> Node:
    """A copy of ``root`` in which every node has a unique name."""
    counter = itertools.count()

    def named(node: Node) -> Node:
        index = next(counter)
        if isinstance(node, Leaf):
            return dataclasses.replace(node, name=f"L{index}")
        if isinstance(node, Seq):
            return Seq(tuple(named(c) for c in node.children), name=f"S{index}")
        if isinstance(node, Cond):
            return Cond(named(node.other), named(node.chosen), name=f"C{index}")
        if isinstance(node, Loop):
            return Loop(named(node.body), node.iterations, name=f"W{index}")
        if isinstance(node, Par):
            kids = tuple(named(c) for c in node.children)
            return dataclasses.replace(node, children=kids, name=f"P{index}")
        if isinstance(node, Fan):
            return dataclasses.replace(node, worker=named(node.worker), name=f"F{index}")
        first = tuple(
            dataclasses.replace(leaf, name=f"L{index}a{i}") for i, leaf in enumerate(node.first)
        )
        second = tuple(
            dataclasses.replace(leaf, name=f"L{index}b{i}") for i, leaf in enumerate(node.second)
        )
        return Rally(first, second, name=f"R{index}")

    return named(root)


def executions(node: Node) -> int:
    """How many leaf executions a run of ``node`` may start at most (retries included)."""
    if isinstance(node, Leaf):
        return 1
    if isinstance(node, Loop):
        return node.iterations * executions(node.body)
    if isinstance(node, Fan):
        return max(1, node.items) * executions(node.worker)
    if isinstance(node, Par):
        return node.attempts * sum(executions(c) for c in node.children)
    return sum(executions(c) for c in children_of(node))


def cost(node: Node) -> float:
    """An upper bound of the seconds ``node`` takes if nothing at all ran in parallel."""
    if isinstance(node, Leaf):
        if node.kind == "slow":
            return node.latency + 0.05
        if node.kind in ("hang", "stubborn"):
            assert node.timeout is not None
            # A stubborn leaf holds its permit until its thread ends.
            return node.timeout + node.latency + 0.1
        return 0.05
    if isinstance(node, Loop):
        return node.iterations * cost(node.body)
    if isinstance(node, Fan):
        return 0.05 + node.items * cost(node.worker)
    if isinstance(node, Par):
        return 0.05 + node.attempts * (sum(cost(c) for c in node.children) + 0.05)
    if isinstance(node, Cond):
        return 0.05 + cost(node.chosen)
    return 0.05 + sum(cost(c) for c in children_of(node))


# -- strategies ---------------------------------------------------------------------------------


@st.composite
def leaves(draw: st.DrawFn, *, racy: bool) -> Leaf:
    """One leaf; ``hang`` and ``stubborn`` only if ``racy``."""
    kinds: list[LeafKind] = ["ok", "ok", "error", "slow"]
    if racy:
        kinds += ["hang", "stubborn"]
    kind = draw(st.sampled_from(kinds))
    is_async = kind != "stubborn" and draw(st.booleans())
    semaphore = draw(st.one_of(st.none(), st.sampled_from(range(len(SEMAPHORES)))))
    timeout: float | None = None
    latency = 0.0
    if kind == "slow":
        latency = draw(st.sampled_from([0.005, 0.01, 0.02]))
    elif kind in ("hang", "stubborn"):
        timeout = draw(st.sampled_from([0.03, 0.08, 0.15]))
        if kind == "stubborn":
            latency = draw(st.sampled_from([0.05, 0.15]))
    return Leaf(kind, is_async, semaphore, timeout, latency)


def _kids(
    sub: st.SearchStrategy[Node], most: int = MAX_WIDTH
) -> st.SearchStrategy[tuple[Node, ...]]:
    return st.lists(sub, min_size=1, max_size=most).map(tuple)


@st.composite
def pars(draw: st.DrawFn, sub: st.SearchStrategy[Node], *, racy: bool) -> Par:
    """A parallel step of any kind, strategy and error mode."""
    kind: ParKind = draw(st.sampled_from(["parallel", "scatter", "fork_join"]))
    children = draw(_kids(sub))
    aggregation: AggregationKind = (
        "all"
        if kind == "fork_join"
        else draw(st.sampled_from(["all", "first", "partial", "quorum", "custom"]))
    )
    quorum = draw(st.integers(1, len(children)))
    timeouts: list[float | None] = [None, None, FAR_TIMEOUT]
    if racy:
        timeouts += [0.02, 0.06]
    return Par(
        kind=kind,
        children=children,
        aggregation=aggregation,
        quorum=quorum,
        fail_fast=draw(st.booleans()),
        max_concurrency=draw(st.integers(1, MAX_WIDTH)),
        execution_timeout=draw(st.sampled_from(timeouts)),
        attempts=draw(st.sampled_from([1, 1, 2])),
    )


@st.composite
def fans(draw: st.DrawFn, sub: st.SearchStrategy[Node]) -> Fan:
    """A fan-out or map-reduce over a few items."""
    kind: FanKind = draw(st.sampled_from(["fan_out", "map_reduce"]))
    partial = draw(st.booleans())
    low = 1 if partial or kind == "map_reduce" else 0
    return Fan(
        kind=kind,
        worker=draw(sub),
        items=draw(st.integers(low, 3)),
        partial=partial,
        fail_fast=draw(st.booleans()),
        max_concurrency=draw(st.integers(1, 4)),
    )


@st.composite
def rallies(draw: st.DrawFn) -> Rally:
    """A barrier group of two to four parties whose leaves always succeed."""
    parties = draw(st.integers(2, 4))
    ok = st.builds(
        Leaf,
        kind=st.sampled_from(["ok", "slow"]),
        is_async=st.booleans(),
        latency=st.sampled_from([0.005, 0.01]),
    )
    first = tuple(draw(ok) for _ in range(parties))
    second = tuple(draw(ok) for _ in range(parties))
    return Rally(first, second)


def nodes(depth: int, *, racy: bool) -> st.SearchStrategy[Node]:
    """A node at ``depth`` (1 is the root's level); past ``MAX_DEPTH`` only leaves."""
    leaf = leaves(racy=racy)
    if depth >= MAX_DEPTH:
        return leaf
    sub = st.deferred(lambda: nodes(depth + 1, racy=racy))
    return st.one_of(
        leaf,
        leaf,
        _kids(sub).map(Seq),
        st.builds(Cond, sub, sub),
        st.builds(Loop, sub, st.integers(1, 2)),
        pars(sub, racy=racy),
        pars(sub, racy=racy),
        fans(sub),
        rallies(),
    )


MAX_EXECUTIONS = 48


def trees(*, racy: bool) -> st.SearchStrategy[Node]:
    """A whole tree, named, of at most ``MAX_EXECUTIONS`` leaf executions."""
    return nodes(1, racy=racy).filter(lambda tree: executions(tree) <= MAX_EXECUTIONS).map(number)
