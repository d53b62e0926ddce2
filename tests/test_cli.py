"""The castflow command line, run as ``python -m actors`` in a subprocess."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
T = "tests.spec_tools"


def castflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m actors ARGS`` from the checkout's root (where ``tests`` imports)."""
    return subprocess.run(
        [sys.executable, "-m", "actors", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_spec(folder: Path, workflow: dict[str, Any], **top: Any) -> Path:
    path = folder / "flow.yaml"
    path.write_text(yaml.safe_dump({**top, "workflow": workflow}))
    return path


def test_run_prints_a_results_table_and_exits_0_when_the_workflow_succeeds(
    tmp_path: Path,
) -> None:
    spec = write_spec(
        tmp_path,
        {"kind": "sequential", "name": "twice", "steps": [f"{T}:inc", f"{T}:double"]},
        input=4,
    )
    done = castflow("run", str(spec))
    assert done.returncode == 0, done.stderr
    assert "twice: ok" in done.stdout
    assert "output: 10" in done.stdout
    assert "inc" in done.stdout
    assert "double" in done.stdout


def test_run_json_prints_the_workflow_result_for_scripts(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, {"kind": "parallel", "name": "both", "steps": [f"{T}:inc", f"{T}:square"]}
    )
    done = castflow("run", str(spec), "--input", "3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    assert result["output"] == [4, 9]
    assert [step["name"] for step in result["steps"]] == ["inc", "square"]


def test_run_reads_the_input_from_a_file_given_with_an_at_sign(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"kind": "sequential", "steps": [f"{T}:inc"]})
    (tmp_path / "input.json").write_text("41")
    done = castflow("run", str(spec), "--input", f"@{tmp_path / 'input.json'}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == 42


def test_run_exits_1_when_the_workflow_fails(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"kind": "sequential", "name": "doomed", "steps": [f"{T}:broken"]})
    done = castflow("run", str(spec), "--input", "1")
    assert done.returncode == 1
    assert "doomed: failed" in done.stdout
    assert "broken on 1" in done.stdout


def test_run_exits_1_when_the_timeout_cuts_the_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"kind": "sequential", "name": "late", "steps": [f"{T}:slow"]})
    done = castflow("run", str(spec), "--input", "1", "--timeout", "0.2", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "timeout"


def test_an_invalid_spec_exits_2_naming_the_path_inside_the_file(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"kind": "parallel", "steps": [f"{T}:inc"], "aggregation": "most"})
    for command in ("run", "validate"):
        done = castflow(command, str(spec))
        assert done.returncode == 2
        assert f"{spec}: workflow.aggregation: expected 'all_success'" in done.stderr


def test_an_input_that_is_not_json_exits_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"kind": "sequential", "steps": [f"{T}:inc"]})
    done = castflow("run", str(spec), "--input", "not json")
    assert done.returncode == 2
    assert "--input: expected JSON" in done.stderr


def test_a_missing_spec_file_and_an_unknown_command_exit_2(tmp_path: Path) -> None:
    assert castflow("run", str(tmp_path / "absent.yaml")).returncode == 2
    assert castflow("frobnicate").returncode == 2


def test_validate_prints_the_outline_of_a_valid_spec(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {
            "kind": "sequential",
            "name": "outer",
            "steps": [
                f"{T}:inc",
                {"kind": "parallel", "name": "inner", "steps": [f"{T}:square"]},
                {"tool": f"{T}:square", "name": "again"},
            ],
        },
    )
    done = castflow("validate", str(spec))
    assert done.returncode == 0, done.stderr
    assert f"{spec}: valid" in done.stdout
    assert "inner (parallel)" in done.stdout
    assert "square (tool)" in done.stdout
    assert "again (tool square)" in done.stdout, "a step is named as its parent names it"


def test_tools_lists_a_modules_tools_with_their_json_schemas() -> None:
    done = castflow("tools", T, "--json")
    assert done.returncode == 0, done.stderr
    schemas = {s["function"]["name"]: s for s in json.loads(done.stdout)}
    assert {"inc", "double", "square", "broken", "slow"} <= set(schemas)
    assert schemas["inc"]["function"]["parameters"]["properties"]["x"]["type"] == "integer"
    table = castflow("tools", T)
    assert table.returncode == 0
    assert "inc  Add one." in table.stdout


def test_tools_exits_2_when_the_module_cannot_be_imported() -> None:
    done = castflow("tools", "tests.no_such_module")
    assert done.returncode == 2
    assert "ModuleNotFoundError" in done.stderr


def test_schema_prints_the_json_schema_of_the_spec_format() -> None:
    done = castflow("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "castflow workflow spec"
    assert "workflow" in schema["required"]


def _read_until(stream: Any, marker: bytes, deadline: float) -> bytes:
    """Read ``stream`` until ``marker`` appears or the deadline passes."""
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.timeout(60)
def test_ctrl_c_cancels_the_run_prints_what_finished_and_exits_130(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {"kind": "sequential", "name": "long", "steps": [f"{T}:inc", f"{T}:slow", f"{T}:double"]},
        input=1,
    )
    with subprocess.Popen(
        [sys.executable, "-m", "actors", "run", str(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        seen = _read_until(proc.stderr, b"running   slow", time.monotonic() + 30)
        assert b"running   slow" in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    text = out.decode()
    assert proc.returncode == 130, err.decode(errors="replace")
    assert "long: cancelled" in text
    assert "finished before that: inc" in text
    assert "slow" in text
    assert "skipped" in text  # double never ran


def test_the_castflow_console_script_runs_the_same_program() -> None:
    script = Path(sys.executable).parent / "castflow"
    assert script.exists(), "install castflow (pip install -e .) to get the console script"
    done = subprocess.run(
        [str(script), "validate", "examples/research/research.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "corpus (map_reduce)" in done.stdout
