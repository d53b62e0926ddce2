"""The benchmarks' optional Ray baseline (benchmarks/ray_baseline.py): left out cleanly without
ray; with ray installed, every shape computes what the plain loop computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BASELINE = Path(__file__).resolve().parent.parent / "benchmarks" / "ray_baseline.py"
HAS_RAY = importlib.util.find_spec("ray") is not None


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ray_baseline", BASELINE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _double(x: int) -> int:
    return 2 * x


@pytest.mark.skipif(HAS_RAY, reason="checks the baseline without ray")
def test_without_ray_the_baseline_is_left_out() -> None:
    baseline = _load()
    assert not baseline.available()
    with baseline.local_cluster() as running:
        assert running is False
        jobs, stop = baseline.fan_out_jobs(_double, 10, 2, io_bound=True)
    assert jobs == {}
    assert stop() is None


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[bench]')")
@pytest.mark.timeout(180)
def test_every_ray_shape_computes_the_same_results() -> None:
    baseline = _load()
    items = list(range(40))
    expected = [2 * x for x in items]
    with baseline.local_cluster(2) as running:
        assert running is True
        assert baseline.task_map(_double, items)() == expected
        assert baseline.task_calls(_double, items[:5])() == expected[:5]
        run, stop = baseline.actor_map(_double, items, 4)  # several windows of 2C calls
        try:
            assert sorted(run()) == expected
        finally:
            stop()
        jobs, stop = baseline.fan_out_jobs(_double, 12, 3, io_bound=False)
        assert sorted(jobs[baseline.TASKS]()) == [2 * x for x in range(12)]
        stop()
    with baseline.local_cluster(enabled=False) as running:
        assert running is False
