"""Every script in examples/ runs to completion and prints what it promises."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.spec import dump_spec, load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(120)
def test_the_quickstart_example_runs_and_shuts_down_clean() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "summarise: ok" in out
    assert "3 documents, 34 words" in out
    assert "slow_index: timeout" in out
    assert "rejected before running: tool 'word_count': field 'top'" in out
    assert "clean=True" in out


RESEARCH = EXAMPLES / "research"
RAN_BY_TESTS = {
    "quickstart.py": "tests/test_examples.py",
    "service.py": "tests/test_service_example.py",
    "research/main.py": "tests/test_examples.py",
}


def test_every_example_script_is_run_by_a_test() -> None:
    scripts = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    assert scripts == set(RAN_BY_TESTS)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


@pytest.mark.timeout(120)
def test_the_research_example_shows_every_pattern_and_exits_0() -> None:
    done = _run(str(RESEARCH / "main.py"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "first success: define_http" in out
    assert "mirror_define: cancelled" in out
    assert "glossary_db: error" in out
    assert "cut by the deadline: archive_scan; retried: {'unreliable_feed': 3}" in out
    assert "({'ok': 7, 'error': 1})" in out
    assert "'evidence': 7" in out


@pytest.mark.timeout(120)
def test_the_research_spec_runs_with_the_cli_and_removes_its_sources() -> None:
    done = _run("-m", "actors", "run", str(RESEARCH / "research.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    statuses = {}
    for record in result["steps"][1]["steps"]:
        statuses[record["name"]] = {
            s["name"]: (s["status"], s["attempts"]) for s in record["steps"]
        }
    assert statuses["definition"] == {
        "glossary_db": ("error", 1),
        "define_http": ("ok", 1),
        "mirror_define": ("cancelled", 1),
    }
    assert statuses["evidence"] == {
        "papers_db": ("ok", 1),
        "articles_http": ("ok", 1),
        "unreliable_feed": ("ok", 3),
        "archive_scan": ("timeout", 1),
    }
    assert result["steps"][1]["steps"][2]["counts"] == {"ok": 7, "error": 1}
    sources = result["steps"][0]["value"]
    assert not Path(sources["docs"]).exists()  # the report step closed the sources


@pytest.mark.timeout(120)
def test_the_research_spec_shows_progress_and_a_results_table() -> None:
    done = _run(
        "-m",
        "actors",
        "run",
        str(RESEARCH / "research.yaml"),
        "--input",
        '{"topic": "actors", "seed": 2}',
    )
    assert done.returncode == 0, done.stderr
    # Seed 2: the mirror fails instead of hanging, and the feed is overloaded only once.
    assert "running   research/gather/evidence" in done.stderr
    assert "timeout   archive_scan" in done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "mirror_define" in lines
    assert "│     2 │" in lines["unreliable_feed"]
    assert "research: ok" in done.stdout


def test_the_research_example_builds_the_same_workflow_as_its_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(RESEARCH))
    loader = importlib.util.spec_from_file_location("research_main", RESEARCH / "main.py")
    assert loader is not None
    assert loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    assert dump_spec(module.build()) == dump_spec(load_spec(RESEARCH / "research.yaml"))
