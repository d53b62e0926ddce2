"""Deadlock prevention for barriers and rendezvous: the checks a parallel step runs when built.

A parallel step's branches form one *group*; the barriers and rendezvous under them (not under
a nested parallel step, whose branches form a group of their own) synchronise within it. A
point whose parties can never all arrive, or never all be in flight at once, would only ever
end in its timeout, so the enclosing step refuses it when it is constructed:

- a rendezvous must be in exactly two branches;
- a barrier's parties (``None``: the branches that contain it) must not exceed the branches
  that contain it, nor ``max_concurrency``;
- branches are admitted in order and a waiting party keeps its slot, so the admission order is
  simulated: if every free slot could be held by waiting parties whose partners are not yet
  admitted, the definition is refused (``ParallelWorkflow([a1, b1, a2, b2],
  max_concurrency=2)`` with barrier A in ``a1, a2`` and B in ``b1, b2``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from actors.runtime.steps import Step
from actors.workflows._coordinator import Workflow
from actors.workflows._spec import StepSpec
from actors.workflows.errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from actors.sync import SyncPoint
    from actors.workflows._fan import FanWorkflow

__all__ = ["SyncPlan", "check_item_sync", "plan_sync", "sync_points_in"]

SyncPlan = tuple[tuple["SyncPoint", int], ...]
"""Each sync point of a group with the number of parties each of its rounds waits for."""


def sync_points_in(step: Step[Any]) -> list[SyncPoint]:
    """The barriers and rendezvous under ``step`` that synchronise in ``step``'s group.

    Nested parallel kinds are not entered (their branches form their own group), except for
    their ``outer_children`` (a fan-out's splitter and aggregator), which run in this one.
    """
    found: dict[int, SyncPoint] = {}
    for point in _walk(step):
        found.setdefault(id(point), point)
    return list(found.values())


def _walk(step: Step[Any]) -> Iterator[SyncPoint]:
    from actors.sync import SyncPoint  # noqa: PLC0415 - actors.sync imports the workflows
    from actors.workflows._fan import FanWorkflow  # noqa: PLC0415 - _fan imports this module

    if isinstance(step, SyncPoint):
        yield step
    elif isinstance(step, FanWorkflow):
        for spec in step.outer_children():
            yield from _walk(spec.step)
    elif isinstance(step, Workflow):
        for spec in step.children():
            yield from _walk(spec.step)


def plan_sync(node: FanWorkflow, specs: Sequence[StepSpec]) -> SyncPlan:
    """Check the sync points under the branches ``specs`` of ``node``; return their plan.

    Raises:
        WorkflowDefinitionError: a point could never complete a round; the message names the
            point, ``node`` and the numbers.
    """
    where = f"{node.kind} {node.name!r}"
    limit = node.max_concurrency
    per_branch = [sync_points_in(spec.step) for spec in specs]
    holders: dict[int, list[int]] = {}
    points: dict[int, SyncPoint] = {}
    for index, found in enumerate(per_branch):
        for point in found:
            points.setdefault(id(point), point)
            holders.setdefault(id(point), []).append(index)
    plan: list[tuple[SyncPoint, int]] = []
    for key, point in points.items():
        branches = [specs[i].name for i in holders[key]]
        parties = _check_point(point, len(branches), limit, where, branches)
        plan.append((point, parties))
    if plan:
        needed = {id(point): n for point, n in plan}
        _simulate_admission(where, specs, per_branch, needed, limit)
    return tuple(plan)


def _check_point(
    point: SyncPoint, containing: int, limit: int, where: str, branches: Sequence[str]
) -> int:
    what = f"{point.kind} {point.name!r}"
    listed = ", ".join(repr(name) for name in branches)
    if point.kind == "rendezvous" and containing != 2:
        msg = (
            f"{where}: {what} must be in exactly 2 branches, but it is in {containing} "
            f"({listed}); a rendezvous exchanges values between two parties"
        )
        raise WorkflowDefinitionError(msg)
    parties = containing if point.parties is None else point.parties
    if parties > containing:
        msg = (
            f"{where}: {what} waits for {parties} parties but only {containing} branches "
            f"contain it ({listed}); its parties could never all arrive"
        )
        raise WorkflowDefinitionError(msg)
    if parties > limit:
        msg = (
            f"{where}: {what} waits for {parties} parties but max_concurrency is {limit}; "
            f"its parties could never all run at once (raise max_concurrency to {parties} "
            "or lower the parties)"
        )
        raise WorkflowDefinitionError(msg)
    return parties


def _simulate_admission(
    where: str,
    specs: Sequence[StepSpec],
    per_branch: Sequence[Sequence[SyncPoint]],
    parties: dict[int, int],
    limit: int,
) -> None:
    """Refuse branch orders where waiting parties could hold every slot while partners wait.

    The model is the branch supervisor's: branches are admitted in order while fewer than
    ``limit`` are in flight; a branch without sync points eventually ends; a branch with some
    holds its slot until each of its points has had its parties admitted.
    """
    arrived: dict[int, int] = dict.fromkeys(parties, 0)
    waiting: list[int] = []
    admitted = 0
    total = len(specs)
    while admitted < total:
        still = [
            i for i in waiting if not all(arrived[id(p)] >= parties[id(p)] for p in per_branch[i])
        ]
        progress = len(still) < len(waiting)
        waiting = still
        while len(waiting) < limit and admitted < total:
            index = admitted
            admitted += 1
            progress = True
            if per_branch[index]:
                waiting.append(index)
                for point in per_branch[index]:
                    arrived[id(point)] += 1
        if not progress:
            names = ", ".join(repr(specs[i].name) for i in waiting)
            next_name = specs[admitted].name
            msg = (
                f"{where}: with max_concurrency={limit}, branches {names} would hold every "
                f"slot waiting at barriers/rendezvous whose other parties (from branch "
                f"{next_name!r} on) are admitted only after a slot frees up; reorder the "
                "branches so each point's parties are adjacent, or raise max_concurrency"
            )
            raise WorkflowDefinitionError(msg)


def check_item_sync(
    where: str, points: Sequence[SyncPoint], names: Sequence[str], limit: int
) -> SyncPlan:
    """The plan of the sync points of a step run once per item, once the items are known.

    Every item's branch (named by ``names``) contains every point; ``parties=None`` means
    every item.

    Raises:
        WorkflowDefinitionError: a point could never complete a round with these items under
            ``limit``.
    """
    shown = [*names[:5], "..."] if len(names) > 5 else list(names)
    return tuple((point, _check_point(point, len(names), limit, where, shown)) for point in points)
