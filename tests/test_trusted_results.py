"""The runtime's unvalidated ``StepResult`` is indistinguishable from a validated one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from actors.runtime._trusted import trusted_result
from actors.runtime.results import ErrorInfo, Status, StepResult

values = st.recursive(
    st.none() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
errors = st.none() | st.builds(ErrorInfo, type=st.text(max_size=8), message=st.text(max_size=8))


@given(
    name=st.text(max_size=12),
    status=st.sampled_from(Status),
    value=values,
    error=errors,
    started=st.booleans(),
)
def test_a_trusted_result_equals_the_validated_one_and_behaves_alike(
    name: str, status: Status, value: Any, error: ErrorInfo | None, started: bool
) -> None:
    started_at = time.monotonic() if started else None
    started_wall = datetime.now(UTC) if started else None
    trusted = trusted_result(
        name, status, value, error, started_at=started_at, started_wall=started_wall
    )
    validated = StepResult(
        name=name,
        status=status,
        value=value,
        error=error,
        started_at=started_at,
        finished_at=trusted.finished_at,
        started_wall=started_wall,
        finished_wall=trusted.finished_wall,
    )
    assert trusted == validated
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert str(trusted) == str(validated)
    assert trusted.finished_at is not None
    assert trusted.finished_at >= (started_at or 0.0)
    assert trusted.attempts == 1
    renamed = trusted.model_copy(update={"name": "other", "attempts": 2})
    assert (renamed.name, renamed.attempts, renamed.value) == ("other", 2, value)
    # Results share their set of fields, and a copy's changes never reach it.
    assert "attempts" in renamed.model_fields_set
    other = trusted_result(name, status, value, error, started_at=None, started_wall=None)
    assert other.model_fields_set == trusted.model_fields_set == validated.model_fields_set
