"""Child specs, supervisor flags and backoff: defaults, validation, delays."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from actors.runtime.actor import Actor
from supervisors import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    ChildSpecError,
    RestartType,
    SupervisorFlags,
)
from supervisors.spec import validate_children


class Child(Actor):
    pass


def test_a_worker_spec_defaults_to_permanent_with_five_seconds_to_stop() -> None:
    spec = ChildSpec(id="a", start=Child)
    assert spec.restart is RestartType.PERMANENT
    assert spec.shutdown == 5.0
    assert spec.kind == "worker"
    assert spec.significant is False
    assert spec.start_timeout == 5.0


def test_a_supervisor_spec_defaults_to_waiting_forever_for_its_shutdown() -> None:
    assert ChildSpec(id="a", start=Child, kind="supervisor").shutdown == "infinity"
    assert ChildSpec.supervisor("sub", []).shutdown == "infinity"


def test_flags_default_to_one_for_one_with_three_restarts_in_five_seconds() -> None:
    flags = SupervisorFlags()
    assert (flags.strategy, flags.intensity, flags.period) == ("one_for_one", 3, 5.0)
    assert flags.auto_shutdown is AutoShutdown.NEVER


@pytest.mark.parametrize("shutdown", [0, -1, math.inf, "forever", True])
def test_an_invalid_shutdown_is_rejected_naming_the_field(shutdown: object) -> None:
    with pytest.raises(ValidationError, match="shutdown"):
        ChildSpec(id="a", start=Child, shutdown=shutdown)


def test_an_unknown_key_is_rejected_instead_of_ignored() -> None:
    with pytest.raises(ValidationError, match="restrat"):
        ChildSpec(id="a", start=Child, restrat="transient")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="intesity"):
        SupervisorFlags(intesity=1)  # type: ignore[call-arg]


def test_a_start_that_is_neither_an_actor_class_nor_callable_is_rejected() -> None:
    with pytest.raises(ValidationError, match="Actor subclass"):
        ChildSpec(id="a", start=int)
    with pytest.raises(ValidationError, match="Actor subclass"):
        ChildSpec(id="a", start="Child")


def test_a_factory_start_is_called_at_each_resolve() -> None:
    calls: list[int] = []

    def factory() -> tuple[type[Actor], tuple[object, ...], dict[str, object]]:
        calls.append(1)
        return Child, (), {}

    spec = ChildSpec(id="a", start=factory)
    assert spec.resolve() == (Child, (), {})
    spec.resolve()
    assert len(calls) == 2


def test_a_significant_permanent_child_is_rejected_naming_it() -> None:
    with pytest.raises(ValidationError, match="child 'a': a significant child must be"):
        ChildSpec(id="a", start=Child, significant=True)


def test_duplicate_ids_are_rejected_naming_the_id() -> None:
    specs = [ChildSpec(id="a", start=Child), ChildSpec(id="a", start=Child)]
    with pytest.raises(ChildSpecError, match="duplicate child id 'a'"):
        validate_children(specs, SupervisorFlags())


def test_a_significant_child_needs_an_auto_shutdown() -> None:
    spec = ChildSpec(id="s", start=Child, restart="transient", significant=True)
    with pytest.raises(ChildSpecError, match="child 's' is significant"):
        validate_children([spec], SupervisorFlags())
    assert validate_children([spec], SupervisorFlags(auto_shutdown="any_significant")) == [spec]


@pytest.mark.parametrize(
    "flags",
    [{"intensity": -1}, {"intensity": 1.5}, {"period": 0}, {"period": math.inf}, {"strategy": "x"}],
)
def test_invalid_flags_are_rejected(flags: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SupervisorFlags(**flags)  # type: ignore[arg-type]


def test_backoff_doubles_from_min_up_to_max() -> None:
    backoff = Backoff(min=3.0, max=30.0)
    assert [backoff.delay(n) for n in range(6)] == [3.0, 6.0, 12.0, 24.0, 30.0, 30.0]


def test_backoff_matches_akkas_table_of_delays() -> None:
    assert Backoff(min=5.0, max=7 * 24 * 3600.0).delay(2) == 20.0
    assert Backoff(min=5.0, max=7.0).delay(2) == 7.0
    assert Backoff(min=5.0, max=7.0).delay(0) == 5.0


def test_backoff_applies_jitter_after_the_cap_with_the_injected_random_source() -> None:
    backoff = Backoff(min=1.0, max=4.0, jitter=0.5, random=lambda: 0.5)
    assert backoff.delay(0) == 1.25
    assert backoff.delay(10) == 5.0


def test_backoff_does_not_overflow_on_huge_attempt_numbers() -> None:
    assert Backoff(min=1.0, max=60.0).delay(100_000) == 60.0


def test_backoff_resets_by_default_after_the_mean_of_min_and_max() -> None:
    assert Backoff(min=2.0, max=10.0).reset_delay == 6.0
    assert Backoff(min=2.0, max=10.0, reset_after=1.0).reset_delay == 1.0


@pytest.mark.parametrize(
    "fields",
    [{"min": 0, "max": 1}, {"min": 2, "max": 1}, {"min": 1, "max": 2, "jitter": 1.5}],
)
def test_invalid_backoff_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Backoff(**fields)
