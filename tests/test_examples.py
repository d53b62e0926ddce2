"""Every script in examples/ runs to completion and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
