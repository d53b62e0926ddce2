"""The research example's local sources, set up and torn down by the example itself.

- a SQLite database (papers and a glossary) in a temporary directory;
- a folder of text documents (one of them corrupt, so the map-reduce has a failure);
- a JSON service over HTTP on loopback (stdlib ``http.server`` in a thread, port 0);
- an unreliable endpoint of that service that fails or hangs per a plan drawn from a seed.

Nothing here touches the network beyond 127.0.0.1, and nothing needs starting by hand.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["HANG_SECONDS", "Sources", "plan"]

HANG_SECONDS = 5.0
"""How long the unreliable endpoint holds a request it 'hangs' (released early on close)."""

PAPERS = [
    ("Actors: a model of concurrent computation", 1986, "actors", 2900),
    ("A universal modular actor formalism", 1973, "actors", 1700),
    ("Making reliable distributed systems in the presence of errors", 2003, "actors", 900),
    ("Structured concurrency", 2018, "cancellation", 120),
    ("Timeouts and cancellation for humans", 2018, "cancellation", 80),
]

GLOSSARY = [
    ("supervisor", "A process that starts, watches and restarts its children."),
    ("mailbox", "The queue of messages an actor handles one at a time."),
]

DOCUMENTS = {
    "hewitt.txt": "An actor is a unit of computation. Actors send messages to actors.",
    "erlang.txt": "Erlang processes are actors: each has a mailbox and links to others.",
    "akka.txt": "Akka brings actors to the JVM with supervision and a mailbox per actor.",
    "pykka.txt": "Pykka runs actors on Python threads; an actor handles one message at a time.",
    "trio.txt": "A nursery waits for its children; cancel scopes carry deadlines.",
    "otp.txt": "OTP supervisors restart failed actors with a strategy and an intensity.",
    "orleans.txt": "Virtual actors are activated on demand and never explicitly created.",
}
DEFINE_SECONDS = 0.1
"""How long the service takes to define a topic."""

CORRUPT = "scan.txt"
"""A document that is not valid UTF-8: the map-reduce records it as a failed item."""


def plan(seed: int, name: str) -> list[str]:
    """The unreliable endpoint's answers to ``name``, attempt by attempt, for ``seed``.

    ``"mirror"`` either hangs or fails on its one attempt; ``"feed"`` fails one or two times
    and then answers. The same seed gives the same plan on every run.
    """
    rng = random.Random(f"{seed}:{name}")  # noqa: S311 - a reproducible plan, not a secret
    if name == "mirror":
        return [rng.choice(["hang", "hang", "fail"])]
    return ["fail"] * rng.randint(1, 2) + ["ok"]


@dataclass
class Sources:
    """Every source of one research run; :meth:`close` stops the service and deletes files.

    Attributes:
        root: the temporary directory holding the database and the documents.
        db: the SQLite database file.
        docs: the folder of text documents.
        api: the JSON service's base URL (``http://127.0.0.1:PORT``).
        seed: the seed of the unreliable endpoint's plan.
    """

    root: Path
    db: Path
    docs: Path
    api: str
    seed: int
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _closed: threading.Event = field(repr=False)

    @classmethod
    def open(cls, seed: int) -> Sources:
        """Create the database and the documents, and start the JSON service."""
        root = Path(tempfile.mkdtemp(prefix="castflow-research-"))
        db = root / "library.sqlite"
        _create_database(db)
        docs = root / "docs"
        docs.mkdir()
        for name, text in DOCUMENTS.items():
            (docs / name).write_text(text, encoding="utf-8")
        (docs / CORRUPT).write_bytes(b"\xff\xfe\x00scanned page\x80")
        closed = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seed, closed))
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="research-http"
        )
        thread.daemon = True
        thread.start()
        host, port = server.server_address[:2]
        return cls(root, db, docs, f"http://{host!s}:{port}", seed, server, thread, closed)

    def close(self) -> None:
        """Stop the service (releasing hung requests) and delete the files. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
        shutil.rmtree(self.root, ignore_errors=True)


def _create_database(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        with db:  # commits; closing is ours
            db.execute("CREATE TABLE papers (title TEXT, year INT, topic TEXT, citations INT)")
            db.executemany("INSERT INTO papers VALUES (?, ?, ?, ?)", PAPERS)
            db.execute("CREATE TABLE glossary (term TEXT PRIMARY KEY, definition TEXT)")
            db.executemany("INSERT INTO glossary VALUES (?, ?)", GLOSSARY)
    finally:
        db.close()


def _handler(seed: int, closed: threading.Event) -> type[BaseHTTPRequestHandler]:
    attempts: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            topic = query.get("topic", "")
            if url.path == "/define":
                closed.wait(DEFINE_SECONDS)  # a remote service: slower than the local database
                self._send(200, {"topic": topic, "definition": _definition(topic)})
            elif url.path == "/articles":
                titles = [f"{topic.title()} in practice, part {i}" for i in (1, 2, 3)]
                self._send(200, {"topic": topic, "articles": titles})
            elif url.path == "/flaky":
                self._flaky(query.get("name", ""), query.get("token", ""), topic)
            else:
                self._send(404, {"error": f"no such endpoint {url.path}"})

        def _flaky(self, name: str, token: str, topic: str) -> None:
            with lock:
                n = attempts.get((token, name), 0)
                attempts[(token, name)] = n + 1
            outcomes = plan(seed, name)
            outcome = outcomes[min(n, len(outcomes) - 1)]
            if outcome == "hang":
                closed.wait(HANG_SECONDS)
                self._send(504, {"error": "gave up"})
            elif outcome == "fail":
                self._send(503, {"error": f"{name} is overloaded (attempt {n + 1})"})
            else:
                self._send(200, {"topic": topic, "items": [f"{name}: {topic} news"]})

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (its branch was cancelled)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the example's output clean."""

    return Handler


def _definition(topic: str) -> str:
    return f"{topic}: independent units that share nothing and talk only by messages."
