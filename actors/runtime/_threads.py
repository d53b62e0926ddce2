"""Where actor loops run: a thread of their own, or an idle thread a system keeps for reuse.

Starting a thread (and an actor on it) costs far more than handing work to a thread that is
already parked. Actors started in numbers for every run (the leaf workers of parallel steps)
opt in to borrow a parked thread from their system's ``ThreadReservoir``: the thread takes the
actor's name while its loop runs, and parks again when the loop ends, for a bounded idle time
and up to a bounded count. A thread whose actor was abandoned never parks again: it ends when
its stuck work ends, so ``is_alive()`` keeps telling whether that work still runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

__all__ = ["LoopThread", "ThreadReservoir"]


class LoopThread:
    """One run of an actor loop, on a thread of its own or on a borrowed reservoir thread.

    Args:
        name: the thread's name while the loop runs.
        target: the loop; it returns whether its thread may be reused afterwards.
    """

    __slots__ = ("_ended", "_running", "_target", "borrowed", "name", "thread")

    def __init__(self, name: str, target: Callable[[], bool]) -> None:
        self.name = name
        self._target = target
        # Held until the loop returns, for join to wait on: cheaper to make than an Event, and
        # there is one per incarnation. A joiner holds it for a moment: ``_ended`` is the state.
        self._running = threading.Lock()
        self._running.acquire()
        self._ended = False
        self.borrowed = False
        self.thread: threading.Thread | None = None

    def start(self, *, daemon: bool) -> None:
        """Run the loop on a new thread of its own, which ends with the loop."""
        thread = threading.Thread(target=self.run, name=self.name, daemon=daemon)
        self.thread = thread
        thread.start()

    def run(self) -> bool:
        """Run the loop here (on its thread); return whether the thread may be reused."""
        try:
            return self._target()
        finally:
            self._ended = True
            self._running.release()

    @property
    def finished(self) -> bool:
        """Whether the loop has returned (and, on a thread of its own, the thread has ended)."""
        if not self._ended:
            return False
        return self.borrowed or self.thread is None or not self.thread.is_alive()

    def join(self, timeout: float | None) -> bool:
        """Wait until :attr:`finished`, at most ``timeout`` seconds; return :attr:`finished`."""
        thread = self.thread
        if self.borrowed or thread is None:
            if not self._ended:
                wait = -1 if timeout is None else max(0.0, timeout)  # -1: no limit
                if not self._running.acquire(timeout=wait):
                    return self._ended
                self._running.release()  # for the next one who waits
            return True
        thread.join(timeout)
        return not thread.is_alive()


class _Slot:
    """A reservoir thread, the loop it runs next, and the lock it parks on."""

    __slots__ = ("loop", "signal", "thread")

    def __init__(self) -> None:
        self.loop: LoopThread | None = None
        # Held while the thread has nothing to run: a parked thread waits to acquire it.
        self.signal = threading.Lock()
        self.signal.acquire()
        self.thread: threading.Thread | None = None


class ThreadReservoir:
    """Idle daemon threads of one system, lent to the actor loops that opt in.

    Args:
        name: names the idle threads (``"<name>/idle"``).
        idle_timeout: seconds a parked thread waits for a loop before it ends.
        max_idle: the most threads parked at once; a thread finding the reservoir full ends.
    """

    def __init__(self, name: str, *, idle_timeout: float, max_idle: int) -> None:
        self._idle_name = f"{name}/idle"
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._lock = threading.Lock()
        # Parked slots, newest last: the newest is lent first, so the oldest time out.
        self._idle: list[_Slot] = []
        self._threads: set[threading.Thread] = set()
        self._closed = False

    @property
    def idle(self) -> int:
        """How many threads are parked now."""
        return len(self._idle)

    def start(self, loop: LoopThread) -> None:
        """Run ``loop`` on a parked thread (renamed after it), or on a new reservoir thread."""
        loop.borrowed = True
        with self._lock:
            parked = self._idle.pop() if self._idle else None
            if parked is None:
                slot = _Slot()
                slot.thread = threading.Thread(
                    target=self._serve, args=(slot,), name=loop.name, daemon=True
                )
                self._threads.add(slot.thread)
            else:
                slot = parked
        thread = slot.thread
        assert thread is not None
        loop.thread = thread
        slot.loop = loop
        if parked is not None:
            thread.name = loop.name
            slot.signal.release()
            return
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads.discard(thread)
            raise

    def close(self, deadline: float, *, keep: Collection[threading.Thread] = ()) -> bool:
        """End the parked threads and wait, until ``deadline``, for the others to end.

        Threads in ``keep`` (abandoned ones, still running stuck work) are not waited for.
        After ``close`` no thread parks: one whose loop ends later ends with it.

        Returns:
            Whether every thread waited for has ended.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = [thread for thread in self._threads if thread not in keep]
        for slot in idle:
            slot.signal.release()  # with no loop to run, the thread ends
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _serve(self, slot: _Slot) -> None:
        try:
            loop = slot.loop
            while loop is not None:
                slot.loop = None
                if not loop.run():
                    return
                loop = self._park(slot)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _park(self, slot: _Slot) -> LoopThread | None:
        """Wait for the next loop to run on this thread; ``None`` if the thread must end."""
        with self._lock:
            if self._closed or len(self._idle) >= self._max_idle:
                return None
            # Renamed before it can be lent: the lender renames it after its new loop.
            threading.current_thread().name = self._idle_name
            self._idle.append(slot)
        if not slot.signal.acquire(timeout=self._idle_timeout):
            with self._lock:
                if slot in self._idle:
                    self._idle.remove(slot)
                    return None
            # Lent just as the wait ran out: the loop is on its way.
            slot.signal.acquire()
        return slot.loop
