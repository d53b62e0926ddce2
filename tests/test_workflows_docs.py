"""Every code example in docs/workflows.md runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "workflows.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_workflows_page_has_an_example_per_kind() -> None:
    joined = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 4
    for kind in ("SequentialWorkflow(", "ConditionalWorkflow(", "LoopWorkflow(", "Break("):
        assert kind in joined


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_code_example_of_the_workflows_page_runs(index: int) -> None:
    code = compile(BLOCKS[index], f"docs/workflows.md[python block {index + 1}]", "exec")
    exec(code, {"__name__": f"workflows_doc_{index}"})
