"""%%autodiff in an in-process IPython shell: names, gradients, options, rich output, errors.

Gradients are compared with central differences (tests/fd.py) on random inputs.
"""
import inspect

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.display import Image

import nbautodiff as nad
from fd import assert_grad_close, central_diff
from nbautodiff.checks.check import GradientCheck
from nbautodiff.magics.output import HighlightedSource

CELL = '''import math

def energy(x, k):
    s = 0.0
    for i in range(x.shape[0] - 1):
        d = x[i + 1] - x[i]
        s += k * d * d + math.cos(x[i])
    return s

def scaled(a, x):
    return a * a * x[0] + math.exp(a) * x[-1]
'''


@pytest.fixture
def ns(ip, rng):
    ip.user_ns.update(np=np, x0=rng.normal(size=5), a0=0.8, k0=1.7)
    return ip.user_ns


def test_cell_functions_get_gradients(ip, ns):
    result = ip.run_cell_magic("autodiff", "", CELL)
    assert set(result.names) == {"energy_grad", "scaled_grad"}
    assert ns["energy_grad"] is result.names["energy_grad"]
    for derived in result.names.values():
        assert isinstance(derived.source, str) and derived.source
    assert ns["energy_grad"].primal is ns["energy"]
    x0, k0, a0 = ns["x0"], ns["k0"], ns["a0"]
    assert_grad_close(ns["energy_grad"](x0, k0), central_diff(ns["energy"], (x0, k0), 0),
                      rtol=1e-6, label="energy_grad")
    assert_grad_close(ns["scaled_grad"](a0, x0), central_diff(ns["scaled"], (a0, x0), 0),
                      rtol=1e-6, label="scaled_grad")


def test_wrt_chooses_arguments_by_name(ip, ns):
    ip.run_cell_magic("autodiff", "--func energy --wrt x,k", CELL)
    x0, k0 = ns["x0"], ns["k0"]
    gx, gk = ns["energy_grad"](x0, k0)
    fx, fk = central_diff(ns["energy"], (x0, k0), (0, 1))
    assert_grad_close(gx, fx, rtol=1e-6, label="d/dx")
    assert_grad_close(gk, fk, rtol=1e-6, label="d/dk")


def test_activities_derive_a_rust_style_reverse_function(ip, ns):
    result = ip.run_cell_magic("autodiff", "-f scaled --activities Active Duplicated", CELL)
    assert list(result.names) == ["scaled_rev"]
    a0, x0 = ns["a0"], ns["x0"]
    dx = np.zeros_like(x0)
    value, da = ns["scaled_rev"](a0, x0, dx, 1.0)
    assert value == pytest.approx(ns["scaled"](a0, x0), rel=1e-12)
    fa, fx = central_diff(ns["scaled"], (a0, x0), (0, 1))
    assert_grad_close(da, fa, rtol=1e-6, label="adjoint of a")
    assert_grad_close(dx, fx, rtol=1e-6, label="shadow of x")


def test_name_template_is_not_expanded_by_ipython(ip, ns):
    ns["name"] = "not_this"
    result = ip.run_cell_magic("autodiff", "-f energy --name d_{name} --force", CELL)
    assert list(result.names) == ["d_energy"] and "d_energy" in ns


def test_line_magic_derives_an_earlier_function(ip, ns):
    ip.run_cell("def earlier(x):\n    return x[0] * x[1] ** 3\n")
    result = ip.run_line_magic("autodiff", "-f earlier")
    x0 = ns["x0"]
    assert_grad_close(result.names["earlier_grad"](x0), central_diff(ns["earlier"], (x0,), 0),
                      rtol=1e-6)


def test_functions_defined_in_the_cell_have_their_source_and_cell_line_numbers(ip, ns):
    ip.run_cell_magic("autodiff", "-f energy", CELL)
    assert "s += k * d * d" in inspect.getsource(ns["energy"])
    # the %%autodiff line is line 1; "def energy" is the cell body's third line
    assert ns["energy"].__code__.co_firstlineno == 4


def test_help(ip):
    text = ip.run_cell_magic("autodiff", "--help", "raise RuntimeError('the cell must not run')")
    assert "--check" in text.data and "{name}_{kind}" in text.data
    assert "--activities" in ip.run_line_magic("autodiff", "--help").data


@pytest.mark.parametrize("line, message", [
    ("--no-such-option", "unknown option --no-such-option"),
    ("--mode forward --checkpoint", "applies to reverse mode"),
    ("--mode forward -f energy --activities Active Const", "not one of forward mode's"),
    ("--mode forward -f energy --activities Dual Const --ret Active", "not one of forward"),
    ("--mode sideways", "invalid choice"),
    ("-f energy --activities Active Shadowed", "unknown activity"),
    ("-f energy --activities Dual Const", "reverse mode"),
    ("-f energy --activities Duplicated", "1 activities"),
    ("--activities Duplicated Const", "choose one with --func"),
    ("--wrt nope", "not an argument"),
    ("--name grad_of", "no {name}"),
    ("--name 1{name}", "not a Python name"),
    ("-f energy --wrt x --activities Duplicated Const", "exclude each other"),
    ("-f missing_function", "no such name"),
])
def test_bad_options_raise_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("autodiff", line, CELL)


def test_cell_without_function(ip):
    with pytest.raises(UsageError, match="no function"):
        ip.run_cell_magic("autodiff", "", "y = 1\n")


def test_show_displays_highlighted_source(ip, ns):
    result = ip.run_cell_magic("autodiff", "--func energy --show", CELL)
    shown = [item for item in result.outputs() if isinstance(item, HighlightedSource)]
    assert len(shown) == 1 and shown[0].source == ns["energy_grad"].source
    html = shown[0]._repr_html_()
    assert "energy_grad" in html and "<span style=" in html
    assert html.startswith("<details><summary>")            # collapsed until opened
    source = shown[0].source
    assert "pass" not in [line.strip() for line in source.splitlines()]
    user_lines = [line for line in CELL.splitlines() if line.strip()
                  and not line.lstrip().startswith(("def ", "@", "#"))]
    quoted = [line.split(": ", 1)[1] for line in source.splitlines()
              if line.lstrip().startswith("# ") and ": " in line and line.lstrip()[2].isdigit()]
    assert quoted and all(any(q == u.strip() for u in user_lines) for q in quoted), quoted


def test_check_displays_a_table_and_a_png(ip, ns):
    result = ip.run_cell_magic("autodiff", "-f energy --check (x0, k0)", CELL)
    check = result.checks["energy_grad"]
    assert check.ok, str(check)
    outputs = result.outputs()
    tables = [item for item in outputs if isinstance(item, GradientCheck)]
    images = [item for item in outputs if isinstance(item, Image)]
    assert len(tables) == 1 and "<table" in tables[0]._repr_html_()
    assert len(images) == 1 and images[0].data[:4] == b"\x89PNG"


def test_forward_mode_derives_a_forward_function(ip, ns):
    """--mode forward: f_fwd = nad.forward(f, Dual for the --wrt arguments, Const otherwise)."""
    result = ip.run_cell_magic("autodiff", "--mode forward -f energy", CELL)
    assert list(result.names) == ["energy_fwd"] and result.names["energy_fwd"].source
    x0, k0 = ns["x0"], ns["k0"]
    v = np.linspace(-1.0, 1.0, x0.size)
    value, tangent = ns["energy_fwd"](x0, v, k0)
    assert value == pytest.approx(ns["energy"](x0, k0), rel=1e-12)
    assert tangent == pytest.approx(central_diff(ns["energy"], (x0, k0), 0) @ v, rel=1e-6)


def test_forward_mode_with_activities_and_a_check(ip, ns):
    result = ip.run_cell_magic("autodiff", "--mode forward -f scaled -a Dual Const --check "
                               "(a0, x0)", CELL)
    a0, x0 = ns["a0"], ns["x0"]
    value, tangent = ns["scaled_fwd"](a0, 1.0, x0)
    assert value == pytest.approx(ns["scaled"](a0, x0), rel=1e-12)
    assert tangent == pytest.approx(central_diff(ns["scaled"], (a0, x0), 0), rel=1e-6)
    check = result.checks["scaled_fwd"]
    assert check.ok and [row.label for row in check.rows] == ["a"]


def test_forward_mode_check_needs_a_dual_result(ip, ns):
    with pytest.raises(UsageError, match="--ret Dual or DualOnly"):
        ip.run_cell_magic("autodiff", "--mode forward -f scaled -a Dual Const --ret Const "
                          "--check (a0, x0)", CELL)


def test_check_of_a_reverse_function(ip, ns):
    result = ip.run_cell_magic("autodiff", "-f scaled -a Active Duplicated --check (a0, x0)", CELL)
    check = result.checks["scaled_rev"]
    assert check.ok and [row.label for row in check.rows][:2] == ["a", "x[0]"]


UNSUPPORTED = '''def bad(x):
    s = 0.0
    try:
        s = x[0] * 2.0
    except IndexError:
        s = 0.0
    return s
'''


def test_unsupported_construct_names_the_cell_line(ip):
    with pytest.raises(nad.AutodiffError) as info:
        ip.run_cell_magic("autodiff", "", UNSUPPORTED)
    error = info.value
    assert error.lineno == 4          # "try:" is the body's third line, the cell's fourth
    rendered = error._render_traceback_()
    assert len(rendered) <= 3 and "line 4 of the cell" in rendered[0]
    assert "try" in rendered[-1]


def test_unsupported_construct_in_a_cell_shows_a_short_error(ip, capsys):
    result = ip.run_cell("%%autodiff\n" + UNSUPPORTED)
    assert isinstance(result.error_in_exec, nad.AutodiffError)
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "line 4 of the cell" in text and "Traceback" not in text
    assert len(text.strip().splitlines()) <= 3


def test_check_expression_errors_are_usage_errors(ip, ns):
    with pytest.raises(UsageError, match="NameError"):
        ip.run_cell_magic("autodiff", "-f energy --check (undefined_name, 1.0)", CELL)


HELPER_CELL = '''def shift(p, v):
    return p[0] + p[1] * v

def fit(p, v):
    return shift(p, v[0]) ** 2
'''


def test_show_before_a_first_call_when_types_cannot_be_guessed(ip, ns):
    # fit's source does not say that p is an array: its code is generated at the first call.
    result = ip.run_cell_magic("autodiff", "-f fit --show", HELPER_CELL)
    shown = [item for item in result.outputs() if isinstance(item, HighlightedSource)]
    assert "first call" in shown[0]._repr_html_()
    p, v = np.array([0.3, -1.2]), np.array([2.0])
    assert_grad_close(ns["fit_grad"](p, v), central_diff(ns["fit"], (p, v), 0), rtol=1e-6)
    assert "def " in ns["fit_grad"].source


def test_unsupported_construct_in_an_earlier_cell_names_that_cell(ip):
    ip.run_cell("def helper_with_try(v):\n    s = v\n    try:\n        s = v * v\n"
                "    except ValueError:\n        pass\n    return s\n", store_history=True)
    with pytest.raises(nad.AutodiffError) as info:
        ip.run_cell_magic("autodiff", "",
                          "def uses_helper(x):\n    return helper_with_try(x[0])\n")
    error = info.value
    assert error.lineno == 3 and error.function == "helper_with_try"
    assert "line 3 of In[" in error._render_traceback_()[0]


@pytest.mark.parametrize("magic,line,expected", [
    ("autodiff", "--chek (x0, k0)", "unknown option --chek; did you mean --check?"),
    ("batch", "--sizez 10 100", "unknown option --sizez; did you mean --sizes?"),
    ("offload", "--comapre (u0, 0.1)", "unknown option --comapre; did you mean --compare?"),
    ("autodiff", "--frobnicate", "unknown option --frobnicate (%%autodiff --help"),
])
def test_a_mistyped_option_is_answered_with_the_nearest_one(ip, magic, line, expected):
    with pytest.raises(UsageError) as raised:
        ip.run_cell_magic(magic, line, "def typo_cell_function(x):\n    return x * x\n")
    assert expected in str(raised.value)
    assert "typo_cell_function" not in ip.user_ns           # nothing ran
