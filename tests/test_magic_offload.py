"""%%offload in an in-process IPython shell (under the CUDA simulator): names, the gradient,
the example check, the plan, the comparison, and bad options."""
import numpy as np
import pytest
pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402

import nbautodiff as nad
from fd import central_diff
from nbautodiff.magics.offload_compare import KERNEL, PARALLEL, SERIAL, TRANSFERS

CELL = '''
import math
from numba import prange

def smooth(u, alpha):
    n = len(u)
    s = 0.0
    for i in prange(1, n - 1):
        v = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        s += v * v * math.cos(v)
    return s
'''


@pytest.fixture
def ns(ip):
    ip.user_ns.update(np=np, u0=np.random.default_rng(3).random(24))
    return ip.user_ns


def test_offloaded_function_and_gradient(ip, ns):
    result = ip.run_cell_magic("offload", "--autodiff u alpha", CELL)
    assert list(result.names) == ["smooth_offload", "smooth_grad_offload"]
    u = ns["u0"]
    np.testing.assert_allclose(ns["smooth_offload"](u, 0.3), ns["smooth"](u, 0.3), rtol=1e-12)
    du, dalpha = ns["smooth_grad_offload"](u, 0.3)
    fd_u, fd_alpha = central_diff(ns["smooth"], (u, 0.3), argnums=(0, 1))
    np.testing.assert_allclose(du, fd_u, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dalpha, fd_alpha, rtol=1e-6)


def test_compare_shows_check_plan_and_four_methods(ip, ns):
    result = ip.run_cell_magic("offload", "--compare (u0, 0.3) --sizes 16 32", CELL)
    (entry,) = result.offloaded
    assert "equals the CPU call" in entry.check or "differs" in entry.check and "e-1" in entry.check
    assert "u" in str(entry.plan) and "copied in" in str(entry.plan)
    times = entry.comparison.times
    assert set(times) == {SERIAL, PARALLEL, KERNEL, TRANSFERS}
    assert all(t is not None and t > 0 for row in times.values() for t in row)
    assert entry.comparison.png()[:4] == b"\x89PNG"


def test_help_and_bad_options(ip, ns):
    assert "--autodiff" in str(ip.run_cell_magic("offload", "--help", CELL).data)
    with pytest.raises(UsageError, match="expected device indices"):
        ip.run_cell_magic("offload", "--devices two", CELL)
    with pytest.raises(UsageError, match="no argument of that name"):
        ip.run_cell_magic("offload", "--autodiff beta", CELL)
    with pytest.raises(UsageError, match="give --compare"):
        ip.run_cell_magic("offload", "--sizes 10", CELL)
    with pytest.raises(UsageError, match="1 example arguments"):
        ip.run_cell_magic("offload", "--compare u0", CELL)


def test_unsupported_loop_is_reported_with_its_line(ip, ns):
    cell = "from numba import prange\ndef bad(u):\n    for i in prange(1, len(u)):\n" \
           "        u[i] = u[i - 1]\n"
    with pytest.raises(Exception, match="line 4"):           # checked at the example call
        ip.run_cell_magic("offload", "--compare u0", cell)
