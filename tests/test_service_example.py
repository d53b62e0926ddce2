"""examples/service.py: a real process on loopback, real requests, a real SIGTERM."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "examples" / "service.py"
DEADLINE = 30.0


class RunningService:
    """The example started as a subprocess, its stdout read line by line in a thread."""

    def __init__(self, stderr: Path, *args: str) -> None:
        self._stderr = stderr.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVICE), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, name="service-stdout")
        self._reader.start()
        first = self.expect(r"listening on http://127\.0\.0\.1:(\d+)$")
        self.base = f"http://127.0.0.1:{first.group(1)}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str) -> re.Match[str]:
        """The next stdout line matching ``pattern`` (earlier lines are kept in ``seen``)."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {DEADLINE} s: {self.seen}")
            self.seen.append(line)
            if (found := re.search(pattern, line)) is not None:
                return found

    def get(self, text: str) -> tuple[int, dict[str, Any]]:
        """``GET /shout?text=...``: the status and the JSON body."""
        url = f"{self.base}/shout?{urllib.parse.urlencode({'text': text})}"
        try:
            with urllib.request.urlopen(url, timeout=DEADLINE) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def terminate(self) -> int:
        """Send SIGTERM and return the exit code (the process must exit within the deadline)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=DEADLINE)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        self._reader.join(DEADLINE)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._stderr.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    running = RunningService(tmp_path / "stderr.txt", "--drain", "0.5")
    try:
        yield running
    finally:
        running.close()


@pytest.mark.timeout(120)
def test_concurrent_requests_all_get_their_answer_and_flaky_ones_are_run_again(
    service: RunningService,
) -> None:
    texts = [f"{kind}-{n}" for n in range(4) for kind in ("hello", "flaky")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(texts)) as pool:
        answers = dict(zip(texts, pool.map(service.get, texts), strict=True))
    for text, (status, body) in answers.items():
        assert status == 200, (text, body)
        assert body["answer"] == text.upper() + "!"
        # A flaky text fails its first run; its supervisor restarts the workflow child once.
        assert body["runs"] == (2 if text.startswith("flaky") else 1), (text, body)
    assert service.terminate() == 0
    service.expect(r"^stopped: drained=True clean=True$")


@pytest.mark.timeout(120)
def test_sigterm_cancels_a_run_still_in_flight_after_the_drain_and_exits_zero(
    service: RunningService,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(service.get, "slow-1")
        service.expect(r"^-> request-1 'slow-1'$")
        assert service.terminate() == 0
        status, body = slow.result(timeout=DEADLINE)
    assert status == 503
    assert body["error"] == "cancelled: shutting down"
    service.expect(r"^SIGTERM: 1 in flight$")
    service.expect(r"^<- request-1 cancelled in \d+ ms, runs=1$")
    service.expect(r"^stopped: drained=False clean=True$")


@pytest.mark.timeout(120)
def test_a_bad_request_is_refused_without_starting_a_child(service: RunningService) -> None:
    url = f"{service.base}/shout"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=DEADLINE)
    assert refused.value.code == 400
    refused.value.close()
    assert service.get("after")[0] == 200
    # The refused request started no child: the first child is the one for "after".
    assert service.expect(r"^-> request-(\d+) '(.*)'$").groups() == ("1", "after")
    assert service.terminate() == 0
