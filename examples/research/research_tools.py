"""The tools of the research example, referenced by ``research.yaml`` as ``research_tools:NAME``.

Each tool takes the *job* (the dict ``prepare`` returns: topic, seed, token and where the
sources are) or one document path. Sync tools run on pooled worker threads and watch their
cancel scope; the HTTP tools are async, so cancelling them is a real ``Task.cancel()``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from sources import Sources

from actors import ToolContext, tool

__all__ = [
    "analyse_document",
    "archive_scan",
    "articles_http",
    "close_sources",
    "define_http",
    "document_paths",
    "glossary_db",
    "merge_stats",
    "mirror_define",
    "papers_db",
    "prepare",
    "report",
    "unreliable_feed",
]

ARCHIVE_SECONDS = 5.0
"""How long the archive scan would take: far past its branch's deadline."""

_open: list[Sources] = []
_lock = threading.Lock()


def close_sources() -> None:
    """Close every source this process opened (the last step does; so does interpreter exit)."""
    with _lock:
        opened, _open[:] = list(_open), []
    for sources in opened:
        sources.close()


atexit.register(close_sources)


@tool
def prepare(topic: str, seed: int = 1) -> dict[str, Any]:
    """Set up the local sources: a SQLite database, a folder of documents, a JSON service.

    Args:
        topic: what to research.
        seed: the seed of the unreliable source's plan (the same seed, the same run).
    """
    sources = Sources.open(seed)
    with _lock:
        _open.append(sources)
    return {
        "topic": topic,
        "seed": seed,
        "token": uuid.uuid4().hex,
        "db": str(sources.db),
        "docs": str(sources.docs),
        "api": sources.api,
    }


# -- the definition: scatter-gather, first success wins --------------------------------------


@tool
def glossary_db(job: dict[str, Any]) -> str:
    """Look the topic up in the database's glossary (fails: the glossary lacks it)."""
    row = _query(job["db"], "SELECT definition FROM glossary WHERE term = ?", job["topic"])
    if not row:
        msg = f"no glossary entry for {job['topic']!r}"
        raise LookupError(msg)
    return str(row[0][0])


@tool
async def define_http(job: dict[str, Any]) -> str:
    """Ask the JSON service for a definition."""
    answer = await _get_json(job["api"], "/define", topic=job["topic"])
    return str(answer["definition"])


@tool
async def mirror_define(job: dict[str, Any]) -> str:
    """Ask the unreliable mirror (it hangs or fails, per the seed)."""
    answer = await _get_json(
        job["api"], "/flaky", name="mirror", token=job["token"], topic=job["topic"]
    )
    return str(answer["items"][0])


# -- the evidence: parallel, partial success, a deadline per branch, retries ------------------


@tool
def papers_db(job: dict[str, Any]) -> list[str]:
    """The database's papers on the topic, most cited first."""
    rows = _query(
        job["db"],
        "SELECT title, year FROM papers WHERE topic = ? ORDER BY citations DESC",
        job["topic"],
    )
    return [f"{title} ({year})" for title, year in rows]


@tool
async def articles_http(job: dict[str, Any]) -> list[str]:
    """The JSON service's articles on the topic."""
    answer = await _get_json(job["api"], "/articles", topic=job["topic"])
    return [str(title) for title in answer["articles"]]


@tool
async def unreliable_feed(job: dict[str, Any]) -> list[str]:
    """The unreliable news feed: overloaded once or twice per the seed, then it answers."""
    answer = await _get_json(
        job["api"], "/flaky", name="feed", token=job["token"], topic=job["topic"]
    )
    return [str(item) for item in answer["items"]]


@tool
def archive_scan(job: dict[str, Any], ctx: ToolContext) -> list[str]:
    """Scan the slow archive; far slower than its deadline, and stops when cancelled."""
    ctx.scope.wait(ARCHIVE_SECONDS)
    ctx.raise_if_cancelled()
    return [f"archive: {job['topic']}"]


# -- the corpus: map-reduce over the documents ---------------------------------------------


def document_paths(job: dict[str, Any]) -> list[str]:
    """The documents to analyse (the map-reduce's items)."""
    return sorted(str(path) for path in Path(job["docs"]).glob("*.txt"))


@tool
def analyse_document(path: str) -> dict[str, Any]:
    """Count a document's words and its mentions of actors (a corrupt file fails)."""
    text = Path(path).read_bytes().decode("utf-8")
    words = [word.strip(".,:;").lower() for word in text.split()]
    mentions = sum(word in ("actor", "actors") for word in words)
    return {"file": Path(path).name, "words": len(words), "mentions": mentions}


def merge_stats(total: dict[str, int], stats: dict[str, Any]) -> dict[str, int]:
    """Fold one document's stats into the total (order-insensitive)."""
    return {
        "documents": total["documents"] + 1,
        "words": total["words"] + int(stats["words"]),
        "mentions": total["mentions"] + int(stats["mentions"]),
    }


# -- the report ---------------------------------------------------------------------------


@tool
def report(findings: dict[str, Any]) -> dict[str, Any]:
    """Summarise the findings and close the sources."""
    close_sources()
    evidence = [item for source in findings["evidence"] for item in source]
    return {
        "definition": findings["definition"],
        "evidence": len(evidence),
        "top_paper": evidence[0] if evidence else None,
        "corpus": findings["corpus"],
    }


# -- helpers ------------------------------------------------------------------------------


def _query(db: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


async def _get_json(api: str, path: str, **query: str) -> dict[str, Any]:
    """GET ``api + path`` over HTTP/1.0 with asyncio streams (cancellable while it waits)."""
    url = urlparse(api)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    try:
        target = f"{path}?{urlencode(query)}"
        writer.write(f"GET {target} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    data: dict[str, Any] = json.loads(body)
    if status == 503:
        raise ConnectionError(data.get("error", "service unavailable"))
    if status != 200:
        msg = f"GET {path}: HTTP {status}: {data.get('error')}"
        raise RuntimeError(msg)
    return data
