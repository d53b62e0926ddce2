"""castflow quickstart: tools on an embedded actor system.

Runs a small document-statistics job over a folder of text files it writes itself: a sync
tool per file on pooled leaf workers, an async tool on the system loop, a tool cut by its
deadline (and really cancelled), and input validation that fails before anything runs.

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from actors import ActorSystem, Status, ToolContext, ToolInputError, tool

DOCUMENTS = {
    "actors.txt": "An actor has a mailbox. An actor handles one message at a time.",
    "supervision.txt": "A supervisor restarts a failed child. Restarts are counted.",
    "cancellation.txt": "A cancel scope has a deadline. Cancelling a scope cancels its children.",
}


@tool
def word_count(path: str, top: int = 3) -> dict[str, object]:
    """Count the words of one text file and return the most common ones.

    Args:
        path: the file to read.
        top: how many of the most common words to return.
    """
    words = [w.strip(".,").lower() for w in Path(path).read_text().split()]
    return {"file": Path(path).name, "words": len(words), "top": Counter(words).most_common(top)}


@tool
async def summarise(counts: list[int]) -> str:
    """Summarise word counts (async: runs on the system's event loop, holds no thread)."""
    await asyncio.sleep(0)
    return f"{len(counts)} documents, {sum(counts)} words"


@tool
def slow_index(ctx: ToolContext) -> str:
    """Pretend to build an index; checks its cancel scope so a deadline stops it."""
    for _ in range(100):
        if ctx.scope.wait(0.05):
            ctx.raise_if_cancelled()
    return "index built"


def main() -> None:
    """Run the quickstart and print what happened."""
    with tempfile.TemporaryDirectory() as folder, ActorSystem("quickstart") as system:
        for name, text in DOCUMENTS.items():
            (Path(folder) / name).write_text(text)

        futures = [
            system.call_future(word_count, {"path": str(path)})
            for path in sorted(Path(folder).glob("*.txt"))
        ]
        results = [f.result(timeout=30) for f in futures]
        for result in results:
            print(result)

        summary = system.call(summarise, [r.value["words"] for r in results if r.ok])
        print(summary)

        cut = system.call(slow_index, timeout=0.2)
        assert cut.status is Status.TIMEOUT
        print(cut)

        try:
            system.call(word_count, {"path": str(folder), "top": "three"})
        except ToolInputError as error:
            print(f"rejected before running: {error}")

        print(f"json schema for LLMs: {word_count.json_schema()['function']['name']}")
    report = system.shutdown()
    print(f"shut down in {report.duration * 1000:.1f} ms, clean={report.clean}")


if __name__ == "__main__":
    main()
