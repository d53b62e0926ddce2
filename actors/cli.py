"""The ``castflow`` command line: run, validate and inspect declarative workflows.

Commands:
    ``castflow run SPEC [--input JSON|@file] [--timeout S] [--json]``
    ``castflow validate SPEC``
    ``castflow tools MODULE``
    ``castflow schema``

Exit codes: 0 success, 1 the workflow failed (an error, a timeout), 2 invalid spec or usage,
130 cancelled with Ctrl-C. The directory of the spec file, the current directory and every
``--path DIR`` are put at the front of ``sys.path`` so that the spec's tools import without
installing them. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from actors._cli_progress import LABELS, Progress, results_table, short
from actors.runtime.events import StepFinished, StepProgress, StepStarted
from actors.runtime.results import Status
from actors.runtime.system import ActorSystem
from actors.spec import LoadedSpec, SpecError, read_spec, spec_schema
from actors.tools import Tool
from actors.workflows import Workflow, WorkflowResult

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
"""The workflow ended ``ok`` (or the command succeeded)."""
EXIT_FAILED = 1
"""The workflow ended ``error``, ``timeout`` or ``cancelled`` by its own deadline."""
EXIT_USAGE = 2
"""The spec is invalid, an import failed, or the command line is wrong."""
EXIT_CANCELLED = 130
"""The run was cancelled with Ctrl-C (SIGINT): 128 + SIGINT, as shells report it."""

PIPE_WIDTH = 120
"""Columns of output written to a pipe or a file rather than a terminal."""

CANCEL_GRACE = 10.0
"""Seconds to wait for a cancelled run to report before giving up on it."""


class _UsageError(Exception):
    """A command-line value is wrong; printed and exits with ``EXIT_USAGE``."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``castflow`` command line.

    Args:
        argv: the arguments without the program name; ``sys.argv[1:]`` if ``None``.

    Returns:
        The exit code (see the module's docstring).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    # Without a terminal (a pipe, a CI log) rich would assume 80 columns; tables need more.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)
    for folder in reversed(getattr(args, "path", None) or []):
        _prepend_path(Path(folder))
    try:
        code: int = args.command(args, out, err)
    except (SpecError, _UsageError) as exc:
        err.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="castflow",
        description="Run and inspect castflow workflow specs (YAML or JSON).",
        epilog="exit codes: 0 ok, 1 workflow failed, 2 invalid spec or usage, 130 cancelled",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a workflow spec with live progress")
    run.add_argument("spec", help="the spec file (.yaml, .yml or .json)")
    run.add_argument(
        "--input",
        help="the run's input as JSON, or @FILE to read JSON from a file (default: the spec's)",
    )
    run.add_argument(
        "--timeout", type=float, help="the run's deadline in seconds (default: the spec's)"
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="show no progress")
    run.set_defaults(command=_run)

    validate = commands.add_parser("validate", help="check a spec and import its tools")
    validate.add_argument("spec", help="the spec file (.yaml, .yml or .json)")
    validate.set_defaults(command=_validate)

    tools = commands.add_parser("tools", help="list the tools of a module with their schemas")
    tools.add_argument("module", help="an importable module, e.g. mypackage.tools")
    tools.add_argument("--json", action="store_true", help="print the schemas as JSON")
    tools.set_defaults(command=_tools)

    schema = commands.add_parser("schema", help="print the JSON Schema of the spec format")
    schema.set_defaults(command=_schema)

    for sub in (run, validate, tools):
        sub.add_argument(
            "--path",
            action="append",
            metavar="DIR",
            help="also import from DIR (repeatable)",
        )
    return parser


# -- run --------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = _load(args.spec)
    value = loaded.input if args.input is None else _parse_input(args.input)
    timeout = loaded.timeout if args.timeout is None else args.timeout
    if timeout is not None and timeout <= 0:
        raise _UsageError(f"--timeout must be > 0, got {timeout}")
    show_live = not args.quiet and err.is_terminal
    plain = None if args.quiet or err.is_terminal or args.json else err
    progress = Progress(plain=plain)
    interrupted = threading.Event()
    # Ctrl-C stays a flag until the system has shut down: a second one must not cut that short.
    with _on_sigint(interrupted), ActorSystem("castflow") as system:
        kinds = (StepStarted, StepFinished, StepProgress)
        with system.events.subscribe(progress.events, kinds=kinds):
            result = _watch(
                system,
                workflow=loaded.workflow,
                value=value,
                timeout=timeout,
                progress=progress,
                interrupted=interrupted,
                err=err,
                show_live=show_live,
            )
    if result is None:
        err.print(f"[red]the run did not report within {CANCEL_GRACE:.0f} s of its cancellation[/]")
        return EXIT_CANCELLED
    if args.json:
        out.print(result.to_json(indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        _report(result, out, interrupted.is_set())
    if interrupted.is_set():
        return EXIT_CANCELLED
    return EXIT_OK if result.status is Status.OK else EXIT_FAILED


def _watch(
    system: ActorSystem,
    *,
    workflow: Workflow,
    value: Any,
    timeout: float | None,
    progress: Progress,
    interrupted: threading.Event,
    err: Console,
    show_live: bool,
) -> WorkflowResult | None:
    run = system.start(workflow, value, timeout=timeout)
    live = Live(progress.table(), console=err, refresh_per_second=10, transient=False)
    cancelling = False
    with live if show_live else _nothing():
        while not run.wait(0.05):
            progress.drain()
            if show_live:
                live.update(progress.table())
            if interrupted.is_set() and not cancelling:
                cancelling = True
                run.cancel()
                err.print("[yellow]cancelling the run (Ctrl-C)...[/]")
                if not run.wait(CANCEL_GRACE):
                    return None
        progress.drain()
        if show_live:
            live.update(progress.table())
    result = run.result(timeout=0)
    return result if isinstance(result, WorkflowResult) else None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _on_sigint(interrupted: threading.Event) -> Iterator[None]:
    """Turn Ctrl-C into a flag the watch loop checks (the run is cancelled, not killed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        interrupted.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _report(result: WorkflowResult, out: Console, interrupted: bool) -> None:
    out.print(results_table(result, out.width))
    word, colour = LABELS.get(result.status.value, (result.status.value, "white"))
    took = "" if result.duration is None else f" in {result.duration:.2f}s"
    out.print(Text.assemble(f"{result.name}: ", (word, colour), took))
    if interrupted:
        finished = [r.name for r in result.steps if r.status is Status.OK]
        out.print(f"cancelled with Ctrl-C; finished before that: {', '.join(finished) or 'none'}")
    if result.status is Status.OK:
        out.print(f"output: {short(result.output, 400)}", markup=False)
    elif result.error is not None:
        where = f" at {result.failed_step!r}" if result.failed_step else ""
        out.print(f"error{where}: {result.error.message}", markup=False)


def _parse_input(text: str) -> Any:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"--input {text[:60]}: cannot read the file: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"--input: expected JSON (quote strings: '\"text\"'): {exc.msg} at column {exc.colno}"
        raise _UsageError(msg) from exc


# -- validate, tools, schema --------------------------------------------------------------------


def _load(spec: str) -> LoadedSpec:
    path = Path(spec)
    if not path.is_file():
        raise _UsageError(f"{spec}: no such spec file")
    _prepend_path(Path.cwd())
    _prepend_path(path.resolve().parent)
    return read_spec(path)


def _prepend_path(folder: Path) -> None:
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _validate(args: argparse.Namespace, out: Console, _err: Console) -> int:
    loaded = _load(args.spec)
    out.print(f"{loaded.source}: valid", markup=False)
    for depth, line in _outline(loaded.workflow, 1):
        out.print("  " * depth + line, markup=False)
    return EXIT_OK


def _outline(step: Any, depth: int, name: str | None = None) -> Iterator[tuple[int, str]]:
    """Each step as its parent names it (in the results too), with what it is."""
    name = step.name if name is None else name
    if isinstance(step, Workflow):
        yield depth, f"{name} ({step.kind})"
        for child in step.children():
            yield from _outline(child.step, depth + 1, child.name)
    elif name == step.name:
        yield depth, f"{name} (tool)"
    else:
        yield depth, f"{name} (tool {step.name})"


def _tools(args: argparse.Namespace, out: Console, _err: Console) -> int:
    _prepend_path(Path.cwd())
    try:
        module = importlib.import_module(args.module)
    except Exception as exc:
        raise _UsageError(f"cannot import {args.module!r}: {type(exc).__name__}: {exc}") from exc
    found: dict[str, Tool[..., Any]] = {}
    for value in vars(module).values():
        if isinstance(value, Tool) and value.name not in found:
            found[value.name] = value
    schemas = [tool.json_schema() for tool in found.values()]
    if args.json:
        out.print(json.dumps(schemas, indent=2), markup=False, soft_wrap=True)
        return EXIT_OK
    if not found:
        out.print(f"no tools in {args.module}", markup=False)
        return EXIT_OK
    for tool, schema in zip(found.values(), schemas, strict=True):
        out.print(f"[bold]{tool.name}[/bold]  {tool.description}")
        parameters = schema["function"]["parameters"]
        out.print_json(json.dumps(parameters))
    return EXIT_OK


def _schema(_args: argparse.Namespace, out: Console, _err: Console) -> int:
    out.print(json.dumps(spec_schema(), indent=2), markup=False, soft_wrap=True)
    return EXIT_OK
