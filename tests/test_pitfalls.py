"""The pitfall detectors of check_grad: each fires on a function that has its pitfall at the
point, and stays quiet on one that does not (or at a point where it does not matter).

Every example is tiny; each function is compiled once (its gradient and forward variant) and
reused by the firing and the quiet test where both use it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.checks.check import COMPLEX
from nbautodiff.checks.report import figure_png


def shifted_abs(x):
    return abs(x - 1.0) + 0.5 * x


def piecewise(x):
    if x > 1.0:
        y = x * x
    else:
        y = 2.0 * x + 5.0
    return y


def sampled_mean(p, u):
    hits = 0.0
    for i in range(u.shape[0]):
        if u[i] < p:
            hits += 1.0 + 0.1 * p
    return hits / u.shape[0]


def staircase(x):
    return x * math.floor(x) + x


def floor_of_constant(x, c):
    return math.floor(c) * x * x


def table_lookup(x, table, k):
    i = int(x * 10.0)
    return table[i] * x + table[k] * x


def fixed_point(p, tol):
    x = 0.0
    dx = 1.0
    while abs(dx) > tol:
        xn = 0.9 * math.cos(x) + p
        dx = xn - x
        x = xn
    return x


def logistic(r, n):
    x = 0.3
    for i in range(n):
        x = r * x * (1.0 - x)
    return x


def window_average(w, decay, n):
    s = 0.0
    for k in range(n):
        t = 0.05 * k
        s += math.sin(w * t) ** 2 * math.exp(-decay * t)
    return s / n


def norm_times(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sqrt(x[i] * x[i]) * x[i]
    return s


def offset_line(x):
    return 1e8 + 1e-8 * x


def rosen(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def categories(check, severity=None):
    return {f.category for f in check.findings if severity in (None, f.severity)}


def only(check, category):
    found = [f for f in check.findings if f.category == category]
    assert len(found) == 1, str(check)
    return found[0]


# ---- kinks and branches ----------------------------------------------------------------------

def test_kink_fires_near_and_at_the_kink():
    near = nad.check_grad(shifted_abs, 1.0 + 1e-9)
    finding = only(near, "kink")
    assert finding.severity == "warning"
    assert finding.lineno == shifted_abs.__code__.co_firstlineno + 1
    assert "near a kink" in finding.title and "abs(x - 1.0)" in finding.source
    assert 1e-10 < finding.data["closest"] < 1e-8
    assert near.ok                            # AD and the complex step agree on the side taken
    at = only(nad.check_grad(shifted_abs, 1.0), "kink")
    assert "at a kink" in at.title and at.data["closest"] == 0.0


def test_kink_stays_quiet_away_from_it():
    check = nad.check_grad(shifted_abs, 2.0)
    assert check.ok and not check.findings, str(check)


def test_branch_boundary_fires_near_it():
    check = nad.check_grad(piecewise, 1.0 + 1e-10)
    finding = only(check, "branch")
    assert finding.severity == "warning" and "'>'" in finding.explanation
    assert finding.lineno == piecewise.__code__.co_firstlineno + 1
    assert not check.ok or check.reference == COMPLEX     # FD straddles the jump


def test_branch_stays_quiet_away_from_it():
    check = nad.check_grad(piecewise, 3.0)
    assert check.ok and not check.findings, str(check)


def test_many_branch_decisions_close_by_make_a_note():
    u = np.linspace(0.0, 1.0, 1001)
    check = nad.check_grad(sampled_mean, 0.4321, u)
    finding = only(check, "branch")
    assert finding.severity == "note" and finding.data["crowded"] >= 10
    assert "probabilistic" in finding.explanation
    few = nad.check_grad(sampled_mean, 0.4321, np.array([0.1, 0.7, 0.9]))
    assert not few.findings, str(few)


# ---- rounding and lookup tables -------------------------------------------------------------

def test_rounding_fires_on_active_values_only():
    check = nad.check_grad(staircase, 2.5)
    finding = only(check, "rounding")
    assert finding.severity == "note" and "x * math.floor(x)" in finding.source
    assert finding.lineno == staircase.__code__.co_firstlineno + 1
    jump = only(nad.check_grad(staircase, 3.0 - 1e-11), "rounding")
    assert jump.severity == "warning" and "rounding jump" in jump.title


def test_rounding_stays_quiet_on_constants():
    check = nad.check_grad(floor_of_constant, 2.5, 3.7)       # c is not differentiated
    assert check.ok and "rounding" not in categories(check), str(check)


def test_lookup_table_fires_for_a_rounded_index_only():
    table = np.linspace(0.0, 2.0, 11) ** 2
    check = nad.check_grad(table_lookup, 0.55, table, 3)
    finding = only(check, "lookup")
    assert finding.severity == "note" and "table[i]" in finding.source
    assert "rounding" in categories(check)
    quiet = nad.check_grad(table_lookup, 0.55, table, 3, argnums=1)   # w.r.t. the table: linear
    assert quiet.ok and not quiet.findings, str(quiet)


# ---- loops whose count depends on the inputs --------------------------------------------------

def test_fixed_point_loop_fires_when_the_derivative_lags():
    check = nad.check_grad(fixed_point, 0.3, 1e-4)
    finding = only(check, "loop")
    assert finding.severity == "warning" and "while abs(dx) > tol" in finding.source
    assert finding.data["derivative_change"] > 10 * finding.data["value_change"]
    assert finding.data["iterations"] == [[26]]


def test_fixed_point_loop_stays_quiet_when_converged():
    check = nad.check_grad(fixed_point, 0.3, 1e-14)
    assert check.ok and "loop" not in categories(check), str(check)


# ---- loop length: chaos and time averages -----------------------------------------------------

def test_chaos_fires_on_exponential_growth():
    check = nad.check_grad(logistic, 3.9, 80)
    finding = only(check, "chaos")
    assert finding.severity == "warning" and finding.data["rate"] > 0.2
    assert finding.curve["x"][-1] == 80 and finding.curve["y"][-1] > 1e10
    assert check.ok and "finite differences" not in categories(check)   # AD = complex step
    fig = check.plot()
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"


def test_chaos_stays_quiet_on_a_stable_map():
    check = nad.check_grad(logistic, 2.5, 80)
    assert check.ok and not check.findings, str(check)


def test_window_average_fires_when_the_derivative_does_not_settle():
    check = nad.check_grad(window_average, 1.3, 0.0, 2000)
    finding = only(check, "oscillation")
    assert finding.severity == "warning" and "limit" in finding.explanation


def test_window_average_stays_quiet_when_both_settle():
    check = nad.check_grad(window_average, 1.3, 0.5, 2000, argnums=1)
    assert check.ok and not check.findings, str(check)


# ---- NaN / inf ------------------------------------------------------------------------------

def test_nonfinite_adjoint_names_the_first_line():
    check = nad.check_grad(norm_times, np.array([1.0, 0.0, 2.0]))
    assert not check.ok and check.explain().count("not finite") == 1
    finding = only(check, "nonfinite")
    assert finding.lineno == norm_times.__code__.co_firstlineno + 3
    assert "math.sqrt(x[i] * x[i])" in finding.source and finding.severity == "warning"
    assert all(not math.isfinite(r.ad) for r in check.rows)


def root_sum(x):
    y = 2.0 * x
    return np.sum(np.sqrt(x)) + np.sum(y * y)


def test_nonfinite_adjoint_of_an_array_statement():
    check = nad.check_grad(root_sum, np.array([1.0, 0.0, 4.0]))
    finding = only(check, "nonfinite")
    assert finding.lineno == root_sum.__code__.co_firstlineno + 2 and "np.sqrt" in finding.source
    assert math.isinf(check.rows[1].ad)


def test_nonfinite_stays_quiet_on_a_finite_gradient():
    check = nad.check_grad(norm_times, np.array([1.0, -0.5, 2.0]))
    assert check.ok and not check.findings, str(check)


# ---- central differences ---------------------------------------------------------------------

def test_finite_differences_note_when_no_step_resolves_the_function():
    check = nad.check_grad(offset_line, 1.0)
    assert check.ok and check.reference == COMPLEX
    finding = only(check, "finite differences")
    assert finding.severity == "note" and not check.rows[0].fd_error <= check.rtol


def test_finite_differences_quiet_on_a_smooth_function():
    check = nad.check_grad(rosen, np.array([0.3, -0.7, 1.2, 0.1]))
    assert check.ok and not check.findings, str(check)


# ---- rendering ------------------------------------------------------------------------------

def test_findings_render_next_to_the_check():
    check = nad.check_grad(fixed_point, 0.3, 1e-4)
    html = check._repr_html_()
    assert html.count('class="nbautodiff-pitfall"') == 1 and "What to do" in html
    assert "while abs(dx) &gt; tol" in html
    text = str(check)
    assert "WARNING: the derivative has not converged" in text and "What to do:" in text
    assert "Pitfalls: 1 warning below." in check.explain()
    assert figure_png(check.plot())[:4] == b"\x89PNG"


@pytest.mark.parametrize("near, fires", [(1e-12, False), (1e-6, True)])
def test_near_is_an_option(near, fires):
    check = nad.check_grad(shifted_abs, 1.0 + 1e-9, near=near)
    assert ("kink" in categories(check)) == fires
