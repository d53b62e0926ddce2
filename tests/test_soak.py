"""The chaos soak (benchmarks/soak.py) in its quick mode meets every target."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_the_quick_chaos_soak_accounts_for_every_branch_and_leaks_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--branches", "2000"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all targets met" in done.stdout
    executions = re.search(r"branch executions: (\d+)", done.stdout)
    assert executions is not None
    assert int(executions.group(1)) >= 2000
    # Every kind of injected fault happened and was decided with its own status.
    for status in ("ok", "error", "timeout"):
        assert re.search(rf"\b{status}=\d+", done.stdout), done.stdout
    assert not re.search(r"restarts: 0\b", done.stdout), "no job was restarted"
