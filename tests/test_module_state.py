"""Module state read when a derivative is called (nbautodiff/pipeline/module_state.py).

A function differentiated once, then the state it reads changed between calls as a notebook
changes it: a module-level array changed in place, a helper function redefined (the global name
bound to a new function, as a later cell does), a global number rebound, a declared rule
replaced, a closure variable rebound. The same derivative object and a fresh one must both
follow, in reverse mode (grad) and forward mode (jvp), checked against central differences of
the function as it is now.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, directional_diff
from soundness import load_program
from nbautodiff.pipeline import program

MODULE = '''
import numpy as np

W = np.array([1.0, 2.0, 3.0])
SCALE = 1.0


def helper(a, b):
    return a * b


def f(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += helper(W[i], x[i] * x[i])
    return SCALE * s
'''

X = np.array([0.5, -1.0, 2.0])
V = np.array([1.0, -0.5, 0.25])


@pytest.fixture
def module(tmp_path, request):
    """A fresh module with ``W``, ``SCALE``, ``helper`` and ``f`` above, imported from a file."""
    name = f"module_state_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    loaded = load_program(MODULE, name)
    yield loaded
    sys.modules.pop(name, None)


def run_cell(module, tmp_path, text: str) -> None:
    """Execute ``text`` in ``module``'s namespace from a file of its own, like a later cell."""
    path = tmp_path / f"cell_{len(list(tmp_path.glob('cell_*.py')))}.py"
    path.write_text(textwrap.dedent(text))
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)


def derivative(mode: str, function):
    """The derivative object of ``function`` for ``mode`` (reused across calls) and how to read
    it at X: the gradient (grad) or the tangent along V (jvp)."""
    if mode == "grad":
        g = nad.grad(function)
        return lambda: g(X)
    return lambda: nad.jvp(function, (X,), (V,))[1]


def expected(mode: str, function):
    if mode == "grad":
        return central_diff(function, (X,), 0)
    return directional_diff(function, (X,), (0,), (V,))


def check(mode: str, function, same) -> None:
    """``same`` (a derivative made before the change) and a fresh one agree with central
    differences of ``function`` as it is now."""
    want = expected(mode, function)
    assert_grad_close(same(), want, rtol=1e-7, atol=1e-9, label=f"{mode}, same object")
    assert_grad_close(derivative(mode, function)(), want, rtol=1e-7, atol=1e-9,
                      label=f"{mode}, fresh object")


@pytest.mark.parametrize("mode", ["grad", "jvp"])
def test_a_global_array_changed_in_place_between_calls(mode, module):
    same = derivative(mode, module.f)
    check(mode, module.f, same)
    module.W[1] = 10.0                                  # in place: the same object
    check(mode, module.f, same)


@pytest.mark.parametrize("mode", ["grad", "jvp"])
def test_a_helper_redefined_between_calls(mode, module, tmp_path):
    same = derivative(mode, module.f)
    check(mode, module.f, same)
    run_cell(module, tmp_path, """
        def helper(a, b):
            return a * b * b
    """)
    check(mode, module.f, same)


def test_a_global_number_rebound_and_a_global_array_replaced(module, tmp_path):
    same = derivative("grad", module.f)
    module.SCALE = 3.0                                  # folded into the code as a constant
    check("grad", module.f, same)
    module.W = np.array([0.5, -2.0, 4.0])               # a new array under the same name
    check("grad", module.f, same)


def test_unchanged_state_reuses_the_compiled_primal(module):
    g = nad.grad(module.f)
    g(X)
    first = program.primal(module.f)
    module.W[0] = module.W[0]                           # written, bytes unchanged
    module.SCALE = float("1.0")                          # another object, the same value
    g(X)
    assert program.primal(module.f) is first


def test_a_replaced_rule_reaches_callers_already_compiled_and_keys_stay_shared():
    """A rule set after code calling the function was compiled: the callers are rebuilt with it
    (their keys follow the rule), and keys of this process stay shareable with others."""
    def clip(x):
        return min(max(x, -1.0), 1.0)

    wrapped = nad.custom_vjp(clip)

    def caller(x):
        return wrapped(x) * 2.0

    before = program.primal(caller)
    assert before.dispatcher(0.5) == 1.0
    wrapped.defvjp(lambda g, z, x: 3.0 * g)             # its primal was already built
    assert nad.grad(caller)(0.5) == 6.0
    after = program.primal(caller)
    assert after.key != before.key and after.key.shared


def test_a_closure_variable_rebound_between_calls():
    def make():
        scale = 1.0

        def f(x):
            return scale * x[0] * x[1]

        def set_scale(value):
            nonlocal scale
            scale = value
        return f, set_scale

    f, set_scale = make()
    g = nad.grad(f)
    np.testing.assert_allclose(g(X), [X[1], X[0], 0.0])
    set_scale(2.0)
    np.testing.assert_allclose(g(X), [2 * X[1], 2 * X[0], 0.0])
