"""Live progress of a CLI run, built from the system's step events, and the results table."""

from __future__ import annotations

import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from actors.runtime.events import Event, StepFinished, StepProgress, StepStarted
from actors.runtime.results import Status, StepResult
from actors.workflows import WorkflowResult, WorkflowStepResult

__all__ = ["LABELS", "Progress", "results_table"]

LABELS: dict[str, tuple[str, str]] = {
    Status.OK.value: ("ok", "green"),
    Status.ERROR.value: ("failed", "red"),
    Status.TIMEOUT.value: ("timeout", "magenta"),
    Status.CANCELLED.value: ("cancelled", "yellow"),
    Status.ABANDONED.value: ("abandoned", "red"),
    Status.SKIPPED.value: ("skipped", "dim"),
}
"""How each status is shown: its word and its colour."""

_PLAIN_LINES_PER_STEP = 5
"""Without a terminal, the most lines printed per step (a MapReduce runs one tool per item)."""


@dataclass
class _Row:
    key: str
    first_start: float
    last_end: float | None = None
    running: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    last_status: str | None = None
    message: str | None = None
    lines: int = 0


class Progress:
    """Step events folded into one row per step (a workflow node's path, or a tool's name).

    Events arrive on actor threads and are queued; :meth:`drain` applies them on the caller's
    thread, so the rows are only ever touched by one thread.

    Args:
        plain: a console to print one line per event on (no terminal), or ``None``.
    """

    def __init__(self, plain: Console | None = None) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.started = time.monotonic()
        self._rows: dict[str, _Row] = {}
        self._plain = plain

    def drain(self) -> None:
        """Apply every queued event."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._apply(event)

    def _apply(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            row = self._rows.get(event.step)
            if row is None:
                row = self._rows[event.step] = _Row(event.step, event.at)
            row.running.add(event.call_id)
            self._line(row, "running", "cyan", event.at)
        elif isinstance(event, StepFinished):
            row = self._rows.get(event.step)
            if row is None:
                row = self._rows[event.step] = _Row(event.step, event.at)
            row.running.discard(event.call_id)
            row.counts[event.status.value] += 1
            row.last_status = event.status.value
            row.last_end = event.at
            word, colour = LABELS.get(event.status.value, (event.status.value, "white"))
            self._line(row, word, colour, event.at)
        elif isinstance(event, StepProgress):
            row = self._rows.get(event.step)
            if row is not None:
                percent = f"{event.fraction:.0%} " if event.fraction is not None else ""
                row.message = f"{percent}{event.message or ''}".strip()

    def _line(self, row: _Row, word: str, colour: str, at: float) -> None:
        if self._plain is None:
            return
        row.lines += 1
        if row.lines > _PLAIN_LINES_PER_STEP:
            return
        text = Text(f"{at - self.started:7.2f}s  ")
        text.append(f"{word:<9}", style=colour)
        text.append(f" {row.key}")
        if row.lines == _PLAIN_LINES_PER_STEP:
            text.append(" (further lines of this step are left out)", style="dim")
        self._plain.print(text, highlight=False)

    def table(self) -> Table:
        """The rows as a table: step, state, counts, elapsed seconds."""
        now = time.monotonic()
        table = Table(title="castflow run", title_justify="left", expand=False)
        table.add_column("step")
        table.add_column("state")
        table.add_column("count", justify="right")
        table.add_column("elapsed", justify="right")
        table.add_column("progress")
        for row in self._rows.values():
            if row.running:
                state = Text("running", style="cyan")
            else:
                word, colour = LABELS.get(row.last_status or "", (row.last_status or "?", "white"))
                state = Text(word, style=colour)
            end = now if row.running or row.last_end is None else row.last_end
            counts = ", ".join(f"{LABELS.get(k, (k,))[0]} {n}" for k, n in row.counts.items())
            if row.running:
                counts = ", ".join(filter(None, [f"running {len(row.running)}", counts]))
            table.add_row(
                row.key, state, counts, f"{end - row.first_start:.2f}s", row.message or ""
            )
        return table


def results_table(result: WorkflowResult, width: int = 120) -> Table:
    """Every step of a finished run as a table: status, attempts, time, value or error.

    Args:
        result: the run's result.
        width: the columns available; values and errors are cut to fit.
    """
    rows = _walk(result.steps, 0)
    step_width = max((2 * depth + len(record.name) for depth, record in rows), default=4)
    # borders and padding (16) + status (9) + tries (5) + time (6)
    value_width = max(12, width - 16 - 9 - 5 - 6 - max(step_width, 4))
    table = Table(title=f"{result.kind} {result.name!r}", title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("tries", justify="right", no_wrap=True, min_width=5)
    table.add_column("time", justify="right", no_wrap=True, min_width=6)
    table.add_column("value / error", no_wrap=True, overflow="ellipsis", max_width=value_width)
    for depth, record in rows:
        word, colour = LABELS.get(record.status.value, (record.status.value, "white"))
        duration = record.duration
        table.add_row(
            "  " * depth + record.name,
            Text(word, style=colour),
            str(record.attempts),
            "" if duration is None else f"{duration:.2f}s",
            _detail(record),
        )
    return table


def _walk(records: list[StepResult], depth: int) -> list[tuple[int, StepResult]]:
    rows: list[tuple[int, StepResult]] = []
    for record in records:
        rows.append((depth, record))
        if isinstance(record, WorkflowStepResult):
            rows.extend(_walk(record.steps, depth + 1))
    return rows


def _detail(record: StepResult) -> str:
    if isinstance(record, WorkflowStepResult) and record.counts:
        counts = ", ".join(f"{LABELS.get(k, (k,))[0]} {n}" for k, n in record.counts.items())
        if record.status is not Status.OK:
            return counts
        return f"{counts}: {short(record.value)}"
    if record.status is Status.OK:
        return short(record.value)
    if record.error is not None:
        return f"{record.error.type.rsplit('.', 1)[-1]}: {record.error.message}"
    return ""


def short(value: Any, limit: int = 70) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
