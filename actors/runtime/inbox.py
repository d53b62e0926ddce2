"""An actor inbox with a priority lane for control messages.

pykka's inbox is a FIFO ``queue.Queue``: a stop request waits behind every queued message.
castflow's control envelopes (stop requests) jump the queue so that a stop is seen as soon
as the current handler returns.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import Any

from pykka._envelope import Envelope

__all__ = ["ControlMessage", "PriorityInbox"]


class ControlMessage:
    """Base class of messages that travel in the control lane."""

    __slots__ = ()


class PriorityInbox(queue.Queue[Envelope[Any]]):
    """A ``queue.Queue`` whose control envelopes are delivered before user envelopes."""

    def _init(self, maxsize: int) -> None:
        self._control: deque[Envelope[Any]] = deque()
        self._user: deque[Envelope[Any]] = deque()

    def _qsize(self) -> int:
        return len(self._control) + len(self._user)

    def _put(self, item: Envelope[Any]) -> None:
        if isinstance(item.message, ControlMessage):
            self._control.append(item)
        else:
            self._user.append(item)

    def _get(self) -> Envelope[Any]:
        if self._control:
            return self._control.popleft()
        return self._user.popleft()
