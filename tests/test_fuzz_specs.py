"""Fuzzing declarative specs: any document or file gives a workflow or a ``SpecError``.

Random documents built from the spec vocabulary (every kind, their keys, import paths that
resolve or not, values of the wrong type) and random YAML or JSON text must each load into a
workflow or raise ``SpecError``, never another exception.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.spec import KINDS, SpecError, load_spec
from tests.sizes import sized

FUZZ = sized(200, 2000)

PATHS = ["builtins:len", "builtins:str", "json:dumps", "builtins:nope", "no_such_module:x", ""]
KEYS = [
    "kind", "name", "steps", "branches", "body", "default", "max_iterations", "until",
    "aggregation", "error_mode", "max_concurrency", "timeout", "mapper", "reducer", "initial",
    "splitter", "worker", "aggregator", "limits", "retry", "items", "sources", "stages",
    "window", "tool", "input", "semaphores", "continue_on_error",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True),
    st.sampled_from(PATHS),
    st.sampled_from(["all_success", "first_success", "fail_fast", "fail_slow", "quorum"]),
    st.text(max_size=8),
)


def nodes() -> st.SearchStrategy[Any]:
    """Spec nodes: a kind and random keys, nested through lists and mappings."""
    return st.recursive(
        st.one_of(scalars, st.sampled_from(PATHS)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
            st.fixed_dictionaries(
                {"kind": st.sampled_from(KINDS)},
                optional={key: inner for key in KEYS if key != "kind"},
            ),
        ),
        max_leaves=15,
    )


def load_or_refuse(spec: Any) -> bool:
    """Load ``spec``; whether it gave a workflow. Anything but ``SpecError`` fails the test."""
    try:
        load_spec(spec)
    except SpecError as error:
        message = str(error)
    else:
        return True
    assert message
    return False


@FUZZ
@given(nodes(), st.one_of(st.none(), scalars))
def test_random_documents_give_a_workflow_or_a_spec_error(node: Any, timeout: Any) -> None:
    document: dict[str, Any] = {"workflow": node}
    if timeout is not None:
        document["timeout"] = timeout
    load_or_refuse(document)


@FUZZ
@given(st.text(max_size=200), st.sampled_from([".yaml", ".json"]))
def test_random_files_give_a_workflow_or_a_spec_error(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"spec{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        load_or_refuse(str(path))


@pytest.mark.parametrize("kind", [[], {}, 3, ["parallel"]])
def test_a_kind_that_is_not_a_name_is_a_spec_error(kind: object) -> None:
    with pytest.raises(SpecError):
        load_spec({"workflow": {"kind": kind}})
