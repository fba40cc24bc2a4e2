"""Functions returning tuples: ``vjp``, ``jacrev`` and ``reverse`` against central differences;
``grad`` refusing them; the normalised form of tuples that the transforms build on.

The corpus (tests/corpus.py, section "tuples") covers tuples inside differentiated functions
through ``grad``; here the tuple is the output itself: each cotangent is a tuple with one entry
per output, and the reference is the central-difference gradient of ``sum(cotangent * output)``
summed over the outputs.
"""
from __future__ import annotations

import ast
import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.frontend import normalize
from nbautodiff.frontend import source

from fd import assert_grad_close, central_diff


def scalar_pair(x, y):
    r = math.sqrt(x * x + y * y)
    return r * math.cos(y), math.atan2(y, x) + r


def loop_stats(x, c):
    s = 0.0
    q = 0.0
    for i in range(len(x)):
        s += math.sin(c * x[i])
        q += x[i] * x[i] * c
    return s, q, len(x)


def arrays_and_scalar(x, c):
    y = np.tanh(x * c)
    return y, np.sum(y * x), (c * c, x * 2.0)


def _halves(x):
    return np.sum(x[:2] * x[:2]), x[2:] * 3.0


def calls_and_returns(x):
    a, b = _halves(x)
    return b * a, a


def stored_callee_elements(x):
    # array elements of a callee's tuple result stored into rows (the shape of batched code)
    rows = np.zeros((2, 3))
    t = _halves(x)
    rows[0] = t[1]
    a, b = _halves(x * x)
    rows[1] = b
    return rows, a + t[0]


def like_generated_code(x, y):
    # the shape of what reverse variants return: None, adjoints, a nested tuple with an int
    count = 0
    return None, x * y, (math.sin(x) * y, count)


CASES = {
    # name: (function, arguments, random cotangent for the output)
    "scalar_pair": (scalar_pair, lambda r: (r.uniform(0.3, 1.5), r.uniform(0.3, 1.5)),
                    lambda r, out: (r.normal(), r.normal())),
    "loop_stats": (loop_stats, lambda r: (r.uniform(-1, 1, 5), r.uniform(0.5, 1.5)),
                   lambda r, out: (r.normal(), r.normal(), None)),
    "arrays_and_scalar": (arrays_and_scalar, lambda r: (r.uniform(-1, 1, 4), r.uniform(0.5, 1.5)),
                          lambda r, out: (r.normal(size=4), r.normal(),
                                          (r.normal(), r.normal(size=4)))),
    "calls_and_returns": (calls_and_returns, lambda r: (r.uniform(-1, 1, 5),),
                          lambda r, out: (r.normal(size=3), r.normal())),
    "stored_callee_elements": (stored_callee_elements, lambda r: (r.uniform(-1, 1, 5),),
                               lambda r, out: (r.normal(size=(2, 3)), r.normal())),
    "like_generated_code": (like_generated_code, lambda r: (r.uniform(-1, 1), r.uniform(-1, 1)),
                            lambda r, out: (None, r.normal(), (r.normal(), 0))),
}


def _pairing(cotangent, out) -> float:
    """sum(cotangent * out) over every differentiable output, nested tuples included."""
    if isinstance(out, tuple):
        return sum(_pairing(c, o) for c, o in zip(cotangent, out))
    if cotangent is None:
        return 0.0
    return float(np.sum(np.asarray(cotangent) * np.asarray(out, dtype=np.float64)))


def _float_positions(args):
    return tuple(k for k, a in enumerate(args) if isinstance(a, float) or
                 (isinstance(a, np.ndarray) and a.dtype.kind == "f"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_of_tuple_outputs_matches_central_differences(name):
    fun, make_args, make_cotangent = CASES[name]
    rng = np.random.default_rng(3)
    args = make_args(rng)
    out, vjp_fn = nad.vjp(fun, *args)
    expected = fun(*args)
    assert isinstance(out, tuple) and len(out) == len(expected)
    for seed in range(2):
        cotangent = make_cotangent(np.random.default_rng(seed), out)
        adjoints = vjp_fn(cotangent)
        wrt = _float_positions(args)
        fd = central_diff(lambda *a: _pairing(cotangent, fun(*a)), args, wrt)
        for k, reference in zip(wrt, fd):
            assert_grad_close(adjoints[k], reference, rtol=1e-6, atol=1e-8,
                              label=f"{name}: vjp d/d(argument {k}), cotangent {seed}")


def test_vjp_is_linear_in_the_tuple_cotangent():
    rng = np.random.default_rng(4)
    x, c = rng.uniform(-1, 1, 4), 0.8
    _, vjp_fn = nad.vjp(arrays_and_scalar, x, c)
    one = (rng.normal(size=4), 0.3, (0.0, np.zeros(4)))
    two = (np.zeros(4), 0.0, (1.7, rng.normal(size=4)))
    both = (one[0], 0.3, (1.7, two[2][1]))
    separate = [a + b for a, b in zip(vjp_fn(one), vjp_fn(two))]
    for got, want in zip(vjp_fn(both), separate):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_cotangent_of_the_wrong_structure_is_a_clear_error():
    _, vjp_fn = nad.vjp(loop_stats, np.ones(3), 0.5)
    with pytest.raises(ValueError, match="tuple of 3 entries"):
        vjp_fn((1.0, 2.0))
    with pytest.raises(ValueError, match=r"cotangent\[2\].*no derivative"):
        vjp_fn((1.0, 2.0, 1.0))
    _, vjp_fn = nad.vjp(arrays_and_scalar, np.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"cotangent\[2\]\[1\] of shape \(2,\)"):
        vjp_fn((np.ones(3), 1.0, (1.0, np.ones(2))))


def _jacobian_fd(fun, args, path, k, h=1e-6):
    """Central-difference Jacobian of output ``path`` of ``fun`` w.r.t. ``args[k]``."""
    def pick(value):
        for i in path:
            value = value[i]
        return np.asarray(value, dtype=np.float64)

    x = np.asarray(args[k], dtype=np.float64)
    base = pick(fun(*args))
    jac = np.empty(base.shape + x.shape)
    for index in np.ndindex(*x.shape):
        sides = []
        for sign in (1.0, -1.0):
            moved = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            if x.shape:
                moved[k] = x.copy()
                moved[k][index] += sign * h
            else:
                moved[k] = float(x) + sign * h
            sides.append(pick(fun(*moved)))
        jac[(...,) + index] = (sides[0] - sides[1]) / (2 * h)
    return jac


@pytest.mark.parametrize("name", sorted(CASES))
def test_jacrev_of_tuple_outputs_matches_central_differences(name):
    fun, make_args, _ = CASES[name]
    args = make_args(np.random.default_rng(5))
    wrt = _float_positions(args)
    jacobians = nad.jacrev(fun, wrt)(*args)
    out = fun(*args)

    def check(jac, value, path):
        if isinstance(value, tuple):
            assert isinstance(jac, tuple) and len(jac) == len(value), f"output {path}"
            for k, (j, v) in enumerate(zip(jac, value)):
                check(j, v, path + (k,))
        elif value is None or isinstance(value, int):
            assert jac is None, f"output {path} is an int or None: no Jacobian"
        else:
            assert isinstance(jac, tuple) and len(jac) == len(wrt)
            for block, k in zip(jac, wrt):
                expected = _jacobian_fd(fun, args, path, k)
                assert block.shape == expected.shape, f"output {path}, argument {k}"
                np.testing.assert_allclose(block, expected, rtol=1e-6, atol=1e-8,
                                           err_msg=f"{name}: output {path}, argument {k}")

    check(jacobians, out, ())


def test_jacrev_with_an_int_argnums_gives_one_jacobian_per_output():
    x, y = 0.7, 0.4
    jr, jt = nad.jacrev(scalar_pair, 1)(x, y)
    assert np.ndim(jr) == 0 and np.ndim(jt) == 0
    np.testing.assert_allclose(jr, _jacobian_fd(scalar_pair, (x, y), (0,), 1), rtol=1e-6)
    np.testing.assert_allclose(jt, _jacobian_fd(scalar_pair, (x, y), (1,), 1), rtol=1e-6)


def test_reverse_takes_a_tuple_seed():
    rng = np.random.default_rng(6)
    x, c = rng.uniform(-1, 1, 4), 0.9
    seed = (rng.normal(size=4), 0.7, (-0.4, rng.normal(size=4)))
    df = nad.reverse(arrays_and_scalar, nad.Duplicated, nad.Active, ret="Active")
    dx = np.zeros(4)
    value, dc = df(x, dx, c, seed)
    expected = arrays_and_scalar(x, c)
    np.testing.assert_allclose(value[0], expected[0], rtol=1e-12)
    assert value[1] == pytest.approx(expected[1], rel=1e-12)
    fx, fc = central_diff(lambda *a: _pairing(seed, arrays_and_scalar(*a)), (x, c), (0, 1))
    assert_grad_close(dx, fx, rtol=1e-6, atol=1e-8, label="dx")
    assert_grad_close(dc, fc, rtol=1e-6, atol=1e-8, label="dc")
    with pytest.raises(TypeError, match="tuple of 3 entries"):
        df(x, np.zeros(4), c, 1.0)
    with pytest.raises(TypeError, match=r"seed\[2\]\[1\].*array of 1 dimensions"):
        df(x, np.zeros(4), c, (np.ones(4), 1.0, (1.0, 2.0)))


def test_reverse_tuple_seed_of_the_wrong_shape_is_an_error_not_a_partial_sum():
    df = nad.reverse(arrays_and_scalar, nad.Duplicated, nad.Active, ret="ActiveOnly")
    with pytest.raises(ValueError, match="shape"):
        df(np.ones(4), np.zeros(4), 0.5, (np.ones(3), 1.0, (1.0, np.ones(4))))


def doubled(x):
    return x * 2.0


@pytest.mark.parametrize("kind", ["grad", "value_and_grad"])
def test_grad_of_a_tuple_or_array_output_is_a_clear_error(kind):
    with pytest.raises(nad.AutodiffError,
                       match=rf"{kind} requires a scalar output.*a tuple.*vjp or nad.jacrev"):
        getattr(nad, kind)(scalar_pair)(0.5, 0.7)
    with pytest.raises(nad.AutodiffError,
                       match=rf"{kind} requires a scalar output.*an array.*vjp or nad.jacrev"):
        getattr(nad, kind)(doubled)(np.ones(3))


def test_callee_result_elements_not_used_take_zero_seeds():
    # only b (an array) flows to the result: a's seed is 0.0; only a: b's seed is zeros
    def only_b(x):
        a, b = _halves(x)
        return np.sum(b * b)

    def only_a(x):
        a, b = _halves(x)
        return a * 2.0

    x = np.random.default_rng(7).uniform(-1, 1, 5)
    for fun in (only_b, only_a):
        assert_grad_close(nad.grad(fun)(x), central_diff(fun, (x,), 0), rtol=1e-6, atol=1e-8,
                          label=fun.__name__)


# ---- the normalised form (the contract the transforms build on) ---------------------------

def packs_and_unpacks(x, y):
    t = (x, (y, 2))
    a, (b, n) = t
    return a * b, t[1]


def test_normalised_tuples_are_displays_of_atoms_elements_and_returned_names():
    tree = normalize.normalize(source.function_source(packs_and_unpacks)).tree
    displays = [s for s in ast.walk(tree) if isinstance(s, ast.Assign)
                and isinstance(s.value, ast.Tuple)]
    assert displays, ast.unparse(tree)
    for s in displays:
        assert isinstance(s.targets[0], ast.Name)
        assert all(isinstance(e, (ast.Name, ast.Constant)) for e in s.value.elts), ast.unparse(s)
    for s in ast.walk(tree):
        if isinstance(s, ast.Assign):
            assert isinstance(s.targets[0], (ast.Name, ast.Subscript)), ast.unparse(s)
        if isinstance(s, ast.Subscript) and isinstance(s.slice, ast.Constant):
            assert isinstance(s.value, ast.Name)
    last = tree.body[-1]
    assert isinstance(last, ast.Return) and isinstance(last.value, ast.Name)


# ---- tuples in checkpointed loops ------------------------------------------------------------

def _rotate(a, b, h):
    return a * math.cos(h) - b * math.sin(h), a * math.sin(h) + b * math.cos(h) + 0.1 * a * a


def checkpointed_tuple_state(x, c):
    state = (c, 0.5)
    for t in nad.checkpointed(range(len(x)), every=3):
        a, b = _rotate(state[0], state[1], x[t])
        state = (a * 0.9, math.tanh(b))
    return state[0] + state[1] * c


def test_tuple_state_and_tuple_results_in_a_checkpointed_loop():
    x, c = np.random.default_rng(8).uniform(-1, 1, 10), 0.7
    g = nad.grad(checkpointed_tuple_state, (0, 1))
    gx, gc = g(x, c)
    fx, fc = central_diff(checkpointed_tuple_state, (x, c), (0, 1))
    assert_grad_close(gx, fx, rtol=1e-6, atol=1e-8, label="dx")
    assert_grad_close(gc, fc, rtol=1e-6, atol=1e-8, label="dc")
    assert g.memory.checkpoint_bytes > 0, "the loop was checkpointed"
