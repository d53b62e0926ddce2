"""The research example, built in Python: the same workflow as ``research.yaml``.

Sets up its own sources (a SQLite database, a folder of text files, a JSON service on
loopback and an unreliable endpoint that fails or hangs per a seed), then runs:

- a scatter-gather where the first answer wins and the hanging mirror is cancelled;
- a parallel step with partial success, where one branch is cut by its deadline and an
  overloaded source is retried with backoff;
- a map-reduce over the documents that keeps going past a corrupt one;
- a report that closes the sources.

    python examples/research/main.py [--seed N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from research_tools import (
    analyse_document,
    archive_scan,
    articles_http,
    define_http,
    document_paths,
    glossary_db,
    merge_stats,
    mirror_define,
    papers_db,
    prepare,
    report,
    unreliable_feed,
)

from actors import (
    ActorSystem,
    Aggregation,
    Backoff,
    ErrorMode,
    ForkJoinWorkflow,
    MapReduceWorkflow,
    ParallelWorkflow,
    ResourceLimits,
    RetryPolicy,
    ScatterGatherWorkflow,
    SequentialWorkflow,
    Status,
    WorkflowResult,
    WorkflowStepResult,
)


def build() -> SequentialWorkflow:
    """The research workflow, exactly as ``research.yaml`` declares it."""
    definition = ScatterGatherWorkflow(
        [glossary_db, define_http, mirror_define],
        aggregation=Aggregation.FIRST_SUCCESS,
        name="definition",
    )
    evidence = ParallelWorkflow(
        [papers_db, articles_http, unreliable_feed, archive_scan],
        aggregation=Aggregation.PARTIAL_SUCCESS,
        error_mode=ErrorMode.FAIL_SLOW,
        limits=ResourceLimits(max_concurrent_executions=4, execution_timeout=0.5),
        retry=RetryPolicy(
            max_attempts=3, backoff=Backoff(min=0.05, max=0.2), retry_on=(ConnectionError,)
        ),
        name="evidence",
    )
    corpus = MapReduceWorkflow(
        analyse_document,
        merge_stats,
        initial={"documents": 0, "words": 0, "mentions": 0},
        items=document_paths,
        aggregation=Aggregation.PARTIAL_SUCCESS,
        max_concurrency=4,
        keep_results=3,
        name="corpus",
    )
    gather = ForkJoinWorkflow(
        {"definition": definition, "evidence": evidence, "corpus": corpus}, name="gather"
    )
    return SequentialWorkflow([prepare, gather, report], name="research")


def _node(result: WorkflowResult, path: str) -> WorkflowStepResult:
    record = result.step(path)
    assert isinstance(record, WorkflowStepResult)
    return record


def main() -> int:
    """Run the research workflow and print what each part did."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="actors")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with ActorSystem("research") as system:
        result = system.run(build(), {"topic": args.topic, "seed": args.seed}, timeout=30)
    print(result)
    if result.status is not Status.OK:
        return 1
    definition, evidence, corpus = (
        _node(result, f"gather/{name}") for name in ("definition", "evidence", "corpus")
    )
    winner = [r.name for r in definition.steps if r.ok]
    cut = [r.name for r in evidence.steps if r.status is Status.TIMEOUT]
    retried = {r.name: r.attempts for r in evidence.steps if r.attempts > 1}
    print(f"first success: {winner[0]}")
    print(f"cut by the deadline: {', '.join(cut)}; retried: {retried}")
    print(f"corpus: {corpus.value} ({corpus.counts})")
    print(f"report: {result.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
