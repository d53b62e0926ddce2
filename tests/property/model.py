"""The reference model: what a run of a random tree must give, computed without threads.

For every node the model says whether its outcome is determined (``known``), whether it
succeeds, the statuses its record may have when nothing above cut it short, the values it may
produce (``None``: too many to list, or not determined) and whether it may cut its own
branches short (a strategy deciding early). Leaves ignore their input and return their own
name, so values are determined by the tree's shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actors import Status
from tests.property.trees import Cond, Fan, Leaf, Loop, Node, Par, Rally, Seq

MAX_CANDIDATES = 64
FAILED = frozenset({Status.ERROR, Status.TIMEOUT})


@dataclass(frozen=True)
class Expect:
    """The model's answer for one node.

    Attributes:
        known: whether the outcome is determined (no timing race can change it).
        ok: whether the node succeeds (meaningful when ``known``).
        statuses: the statuses its record may have when no ancestor cut it.
        values: the values it may produce when it succeeds, or ``None`` if not listed.
        cuts: whether the node may decide before every branch ended, cutting the rest.
    """

    known: bool
    ok: bool
    statuses: frozenset[Status]
    values: list[Any] | None
    cuts: bool = False


UNKNOWN = Expect(known=False, ok=False, statuses=frozenset(Status), values=None, cuts=True)


def _failed(*, cuts: bool = False) -> Expect:
    return Expect(known=True, ok=False, statuses=FAILED, values=None, cuts=cuts)


def _succeeded(values: list[Any] | None, *, cuts: bool = False) -> Expect:
    return Expect(known=True, ok=True, statuses=frozenset({Status.OK}), values=values, cuts=cuts)


def _products(options: Iterable[list[Any] | None]) -> list[list[Any]] | None:
    """Every list made of one candidate per position, or ``None`` if too many or unknown."""
    lists = list(options)
    if any(option is None for option in lists):
        return None
    count = 1
    for option in lists:
        assert option is not None
        count *= len(option)
    if count > MAX_CANDIDATES:
        return None
    return [list(combo) for combo in itertools.product(*(o or [] for o in lists))]


def expect(node: Node) -> Expect:
    """What a run of ``node`` gives, as far as it is determined."""
    if isinstance(node, Leaf):
        return _leaf(node)
    if isinstance(node, Seq):
        return _seq(node)
    if isinstance(node, Cond):
        chosen = expect(node.chosen)
        return _failed() if chosen.known and not chosen.ok else chosen
    if isinstance(node, Loop):
        body = expect(node.body)
        if not body.known:
            return UNKNOWN
        return _succeeded(body.values) if body.ok else _failed()
    if isinstance(node, Par):
        return _par(node)
    if isinstance(node, Fan):
        return _fan(node)
    return _rally(node)


def branch_expect(parent: Par, child: Node) -> Expect:
    """What a branch of ``parent`` gives, with the parent's execution timeout applied."""
    inner = expect(child)
    timeout = parent.execution_timeout
    if timeout is None or timeout >= 1.0:
        return inner
    return UNKNOWN  # a deadline close to the latencies: either may come first


def _leaf(leaf: Leaf) -> Expect:
    if leaf.kind in ("ok", "slow"):
        return _succeeded([leaf.name])
    if leaf.kind == "error":
        return Expect(True, False, frozenset({Status.ERROR}), None)
    return Expect(True, False, frozenset({Status.TIMEOUT}), None)


def _seq(node: Seq) -> Expect:
    values: list[Any] | None = None
    for child in node.children:
        got = expect(child)
        if not got.known:
            return UNKNOWN
        if not got.ok:
            return _failed()
        values = got.values
    return _succeeded(values)


def _par(node: Par) -> Expect:
    kids = [branch_expect(node, child) for child in node.children]
    if not all(kid.known for kid in kids):
        return UNKNOWN
    oks = [kid for kid in kids if kid.ok]
    aggregation = node.aggregation
    if node.kind == "fork_join":
        if len(oks) < len(kids):
            return _failed(cuts=node.fail_fast)
        combos = _products(kid.values for kid in kids)
        names = [child.name for child in node.children]
        dicts = None if combos is None else [dict(zip(names, c, strict=True)) for c in combos]
        return _succeeded(dicts)
    if aggregation == "all":
        if len(oks) < len(kids):
            return _failed(cuts=node.fail_fast)
        return _succeeded(_products(kid.values for kid in kids))
    if aggregation == "partial":
        if not oks:
            return _failed()
        return _succeeded(_products(kid.values for kid in oks))
    if aggregation == "custom":
        if node.fail_fast and len(oks) < len(kids):
            # FAIL_FAST cancels the rest at the first failure; fn then sees every branch,
            # the cut ones as cancelled or skipped: how many succeeded depends on timing.
            return _succeeded(None, cuts=True)
        return _succeeded([len(oks)])
    if aggregation == "first":
        if not oks:
            return _failed()
        union: list[Any] | None = []
        for kid in oks:
            if kid.values is None or union is None:
                union = None
            else:
                union += [v for v in kid.values if v not in union]
        return _succeeded(union, cuts=True)
    # quorum(k): the first k successes, in input order
    if len(oks) < node.quorum:
        return _failed(cuts=True)
    if len(oks) == node.quorum:
        return _succeeded(_products(kid.values for kid in oks), cuts=True)
    return _succeeded(None, cuts=True)


def _fan(node: Fan) -> Expect:
    worker = expect(node.worker)
    if not worker.known:
        return UNKNOWN
    if node.items == 0:
        return _succeeded([[]])
    if not worker.ok:
        return _failed(cuts=node.fail_fast and not node.partial)
    return _succeeded(_products([worker.values] * node.items))


def _rally(node: Rally) -> Expect:
    return _succeeded([[leaf.name for leaf in node.second]])
