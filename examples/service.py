"""castflow in a long-running service: one supervised workflow actor per HTTP request.

    python examples/service.py                  # the first line says which port it got
    curl 'http://127.0.0.1:PORT/shout?text=hello'
    curl 'http://127.0.0.1:PORT/shout?text=flaky-1'
    kill -TERM <pid>                            # or Ctrl-C

What it shows:
- one ``ActorSystem`` embedded in a stdlib ``ThreadingHTTPServer``;
- ``system.supervise`` starts the root supervisor; under it a ``DynamicSupervisor`` starts
  one workflow child per request (``ChildSpec.run``); the child is transient with a backoff,
  so a run that fails is run again, and it answers through a future;
- a flaky upstream: the first lookup of every text that starts with ``flaky`` fails, the
  supervisor restarts that request's workflow child, and the second run answers;
- graceful shutdown on SIGTERM or SIGINT: stop accepting connections, let the runs in
  flight finish for up to ``--drain`` seconds, then shut the system down, which cancels the
  rest (they answer 503), and exit 0.

Signals are received with ``signal.sigwait`` (POSIX): they are blocked before any thread
starts, so no handler runs at an awkward moment in some thread.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from actors import (
    ActorSystem,
    CastflowError,
    SequentialWorkflow,
    Status,
    ToolContext,
    WorkflowResult,
    tool,
)
from supervisors import Backoff, ChildSpec, SupervisorClient, SupervisorFlags

# -- the work: a three-step workflow, one step of which depends on a flaky upstream ---------


class Upstream:
    """Stands in for a remote dependency that has hiccups and slow answers.

    The first lookup of a text starting with ``flaky`` fails; a text starting with ``slow``
    takes up to 30 seconds (cancellable).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    def lookup(self, text: str, ctx: ToolContext) -> str:
        with self._lock:
            first_time = text not in self._failed
            if text.startswith("flaky") and first_time:
                self._failed.add(text)
                raise ConnectionError(f"upstream hiccup on {text!r}")
            self._failed.discard(text)
        if text.startswith("slow"):
            ctx.scope.wait(30.0)  # returns early when the run is cancelled
            ctx.raise_if_cancelled()
        return text


@tool
def normalise(text: str) -> str:
    """Collapse whitespace and lower-case the text."""
    return " ".join(text.split()).lower()


@tool
def enrich(text: str, ctx: ToolContext) -> str:
    """Look the text up upstream (shared client from the system's resources)."""
    upstream: Upstream = ctx.resources["upstream"]
    return upstream.lookup(text, ctx)


@tool
def shout(text: str) -> str:
    """Upper-case the text and add emphasis."""
    return text.upper() + "!"


PIPELINE = SequentialWorkflow([normalise, enrich, shout], name="shout")

# A failed run is run again after 50 ms, 100 ms, ... at most 3 times in a row. The requests
# supervisor allows 50 restarts in 5 s across all requests before it gives up (its parent,
# the root, then restarts it).
RETRY = Backoff(min=0.05, max=1.0, max_restarts=3)
REQUESTS_FLAGS = SupervisorFlags(intensity=50, period=5.0)


# -- the service: requests in, answers out ---------------------------------------------------


class Service:
    """Starts one workflow child per request and counts the requests in flight."""

    def __init__(self, requests: SupervisorClient, request_timeout: float) -> None:
        self.requests = requests
        self.request_timeout = request_timeout
        self._ids = itertools.count(1)
        self._idle = threading.Condition()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._idle:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the requests in flight to be answered."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request in flight until its answer has been written."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def shout(self, text: str) -> tuple[HTTPStatus, dict[str, Any]]:
        request_id = f"request-{next(self._ids)}"
        started = time.monotonic()
        reply: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
        spec = ChildSpec.run(request_id, PIPELINE, text, reply_to=reply, backoff=RETRY)
        try:
            child = self.requests.start_child(spec)
        except CastflowError as exc:  # the service is shutting down
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        print(f"-> {request_id} {text!r}", flush=True)
        try:
            result = reply.result(timeout=self.request_timeout)
        except TimeoutError:
            return HTTPStatus.GATEWAY_TIMEOUT, {"error": "no answer in time"}
        runs = child.incarnation if child is not None else 0
        took = (time.monotonic() - started) * 1000
        print(f"<- {request_id} {result.status.value} in {took:.0f} ms, runs={runs}", flush=True)
        if result.status is Status.OK:
            return HTTPStatus.OK, {"text": text, "answer": result.value, "runs": runs}
        if result.status is Status.CANCELLED:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "cancelled: shutting down"}
        return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(result.error), "runs": runs}


class Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its ``Service``."""

    daemon_threads = True

    def __init__(self, port: int, service: Service) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.service = service


class Handler(BaseHTTPRequestHandler):
    """``GET /shout?text=...`` answers ``{"text", "answer", "runs"}`` as JSON."""

    server: Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        texts = parse_qs(url.query).get("text")
        if url.path != "/shout":
            self._send(HTTPStatus.NOT_FOUND, {"error": "try /shout?text=..."})
        elif not texts:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "missing ?text="})
        else:
            service = self.server.service
            with service.answering():  # until the answer is written, not just computed
                self._send(*service.shout(texts[0]))

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the service prints its own one-line log per request


# -- running it --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="castflow example: a supervised HTTP service")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to finish runs")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    # Blocked before any thread starts, so every thread inherits the mask and the signals
    # wait for sigwait below.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    with ActorSystem("service", resources={"upstream": Upstream()}) as system:
        root: SupervisorClient = system.supervise(
            [ChildSpec.dynamic_supervisor("requests", REQUESTS_FLAGS, max_children=1000)],
            name="service",
        )
        service = Service(root.child("requests"), args.request_timeout)
        server = Server(args.port, service)
        http = threading.Thread(target=server.serve_forever, name="http")
        http.start()
        print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)

        received = signal.sigwait(stop_signals)
        print(f"{signal.Signals(received).name}: {service.in_flight} in flight", flush=True)
        server.shutdown()  # no new connections; requests in flight go on
        http.join()
        drained = service.wait_idle(args.drain)
        # Stops the root first: its children stop in order and cancel the runs still going.
        report = system.shutdown(timeout=args.drain)
        service.wait_idle(args.drain)  # the cancelled requests answer 503
        server.server_close()
    print(f"stopped: drained={drained} clean={report.clean}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
