"""Small test helpers shared across test modules."""

from __future__ import annotations

import queue
from typing import Any

WAIT = 10.0
"""Upper bound for any wait in tests: generous, because these machines are slow and noisy."""


class Inbox:
    """A receiver (anything with ``tell``) that records what it is told, for assertions."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    def tell(self, message: Any) -> None:
        self._queue.put(message)

    def get(self, timeout: float = WAIT) -> Any:
        return self._queue.get(timeout=timeout)

    def drain(self) -> list[Any]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items
