"""The pure helpers of benchmarks/jax_compare.py (no JAX needed, nothing compiled or timed)."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "jax_compare.py"


@pytest.fixture(scope="module")
def jc():
    spec = importlib.util.spec_from_file_location("jax_compare", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(name, primal, grad, jax_primal, jax_grad, cold=1.0, jax_cold=1.0):
    return {"name": name, "failure": None, "primal": primal, "grad": grad,
            "cpu_grad": grad, "cpu_jax_grad": jax_grad,
            "jax_primal": jax_primal, "jax_grad": jax_grad, "cold": cold, "jax_cold": jax_cold,
            "error": 0.0}


def test_geomean(jc):
    assert jc.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert jc.geomean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert math.isnan(jc.geomean([]))


def test_relative_error_tuples_and_floor(jc):
    a = np.array([1.0, 2.0, 0.0])
    assert jc.relative_error(a, a.copy()) == 0.0
    assert jc.relative_error(a, a * (1 + 1e-6)) == pytest.approx(1e-6, rel=1e-3)
    # a component far below the gradient's size counts against the 1e-6 floor, not itself
    assert jc.relative_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) == pytest.approx(1e-6)
    assert jc.relative_error((a, 1.0), (a, 1.5)) == pytest.approx(1 / 3)
    assert jc.relative_error(a, a[:2]) == math.inf


def test_verdicts_pass(jc):
    rows = [_row("a", 1.0, 2.0, 1.0, 2.5, cold=1.0, jax_cold=0.8),
            _row("b", 1.0, 2.0, 1.0, 2.0, cold=1.5, jax_cold=1.0)]
    checks = jc.verdicts(rows)
    assert len(checks) == 4 and all(ok for _, _, ok in checks)


def test_verdicts_name_each_miss(jc):
    rows = [_row("fast", 1.0, 1.0, 1.0, 4.0),                       # 0.25x JAX
            _row("slow", 1.0, 5.0, 1.0, 2.0, cold=3.0, jax_cold=1.0),  # 2.5x JAX, 5x primal
            {"name": "broken", "failure": "MISMATCH"}]
    (geo_vs_jax, geo_ok), (worst, worst_ok), (geo_ratio, ratio_ok), (cold, cold_ok), \
        (failed, failed_ok) = [(measured, ok) for _, measured, ok in jc.verdicts(rows)]
    assert geo_ok and geo_vs_jax == f"{math.sqrt(0.25 * 2.5):.2f}"
    assert not worst_ok and "slow" in worst
    assert geo_ratio == f"{math.sqrt(5.0):.2f}" and ratio_ok
    assert not cold_ok and "over: slow" in cold
    assert not failed_ok and "broken" in failed


def test_verdicts_nothing_timed(jc):
    assert jc.verdicts([{"name": "x", "failure": "MISMATCH"}]) == [
        ("at least one kernel timed", "none", False)]


def test_every_benchmark_kernel_has_a_jax_version(jc):
    pytest.importorskip("jax")
    names = {k.fun.__name__ for k in jc.rm.kernels(np.random.default_rng(0))}
    assert names == set(jc.jax_kernels())
