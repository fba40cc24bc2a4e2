"""Rebinding, values read from arrays, fancy indexing and ``or``/``and`` (issue 18, items 3-5).

Each class of program was silently wrong (or crashed) in reverse mode: a scalar read from an
array recomputed in the reverse sweep from the array's new binding; a name rebound to a value of
another type or rank (``bindings.py`` now splits it); a loop variable reassigned in its body;
integer-array and boolean-mask indexing, reads and writes, taken for views (zero gradients);
``a or b`` on floats treated as a condition. Every program here is generated from a few
templates (several spellings of each class), differentiated in reverse (``grad``) and forward
(``jvp``) mode against central differences on random inputs, some to second order (``hessian``);
what cannot be differentiated is refused with the user's line.
"""
from __future__ import annotations

import importlib.util
import itertools
import sys
import textwrap

import numpy as np
import pytest

import nbautodiff as nad
from fd import assert_grad_close, central_diff, copy_args, directional_diff

_count = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("rebinding_programs")


def load(folder, source: str):
    """``f`` of a module made of ``source`` (written to a file: the transforms read it)."""
    name = f"rebinding_program_{next(_count)}"
    path = folder / f"{name}.py"
    path.write_text("import math\nimport numpy as np\n" + textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.f


def check_both_modes(f, args, argnums=(0,), rtol=1e-6, atol=1e-8):
    """grad and jvp of ``f`` against central differences; the caller's arrays as the primal
    leaves them."""
    primal_args = copy_args(args)
    f(*primal_args)
    expected = central_diff(f, args, argnums)
    call = copy_args(args)
    got = nad.grad(f, argnums=argnums)(*call)
    for k, (ad, fd) in enumerate(zip(got, expected)):
        assert_grad_close(ad, fd, rtol=rtol, atol=atol, label=f"grad, argument {argnums[k]}")
    for a, b in zip(call, primal_args):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(7)
    directions = [rng.standard_normal(np.shape(args[k])) if isinstance(args[k], np.ndarray)
                  else 0.7 for k in argnums]
    tangents = tuple(directions[argnums.index(i)] if i in argnums else None
                     for i in range(len(args)))
    call = copy_args(args)
    _, tangent = nad.jvp(f, call, tangents)
    assert_grad_close(tangent, directional_diff(f, args, argnums, directions), rtol=rtol,
                      atol=atol, label="jvp")
    for a, b in zip(call, primal_args):
        np.testing.assert_array_equal(a, b)


def check_hessian(f, args):
    """hessian of ``f`` (first argument, a vector) against central differences of its grad."""
    x, rest = args[0], args[1:]
    grad = nad.grad(f)
    columns = []
    for k in range(x.size):
        columns.append(central_diff(lambda v: grad(v, *rest)[k], (x,), 0))
    assert_grad_close(nad.hessian(f)(*args), np.array(columns), rtol=1e-5, atol=1e-7,
                      label="hessian")


RNG = np.random.default_rng(20261207)
W2 = np.array([1.5, 0.5])
V5 = RNG.standard_normal(5)
A4 = RNG.standard_normal((4, 4))
IDX = np.array([0, 2, 2, 4])             # repeated on purpose
COLS = np.array([3, 0, 3])


# -- 3: a scalar read from an array comes back as it was read ------------------------------

READ_THEN_REBIND = {                     # loop bodies, one statement a line
    "rebind": "v = x[0]; s += v * v; x = x + v",
    "rebind_in_branch": "v = x[0] * x[1]; s += math.sin(v)\nif t % 2 == 0:\n    x = x * v",
    "rebind_in_inner_loop": "v = x[t % 2]; s += v * v\nfor j in range(2):\n    x = x * 0.9 + v",
    "swap": "v = x[1]; s += v * v * y[0]; x, y = y, x",
    "write_through_row": "v = x[0]; s += v * v; r = x[0:1]; r[0] = r[0] * 0.5 + v * x[1]",
}


@pytest.mark.parametrize("body", list(READ_THEN_REBIND.values()), ids=list(READ_THEN_REBIND))
def test_a_value_read_from_an_array_is_not_read_again_from_its_new_binding(folder, body):
    f = load(folder, "def f(w):\n    x = w * 1.0\n    y = w * 2.0\n    s = 0.0\n"
                     "    for t in range(3):\n" + textwrap.indent(body, " " * 8) +
                     "\n    return s\n")
    check_both_modes(f, (W2,))


def test_the_issue_reproducer_of_item_3(folder):
    f = load(folder, """
        def f(w):
            x = w * 1.0; s = 0.0
            for t in range(3):
                v = x[0]; s += v*v; x = x + v
            return s
        """)
    np.testing.assert_allclose(nad.grad(f)(np.array([1.5, 0.5])), [63.0, 0.0])
    check_hessian(f, (np.array([1.5, 0.5]),))


# -- 4: rebinding to another type or rank, loop variables assigned in their body -----------

REBINDINGS = {
    "scalar_to_array": "y = x[0] * 2.0\n    y = x * y\n    return np.sum(y * y)",
    "array_to_scalar": "x = np.sum(x * x)\n    x = x * x\n    return x",
    "vector_to_matrix": "y = x * 1.0\n    y = np.outer(y, x)\n    return np.sum(y * y)",
    "in_a_loop": "s = 0.0\n    for t in range(2):\n        y = x[t] * 2.0\n        y = x * y\n"
                 "        s += np.sum(y * y)\n    return s",
    "after_a_branch": "y = x[0] * 1.0\n    if x[1] > 0:\n        z = y * 2.0\n    else:\n"
                      "        z = y * 3.0\n    y = x * z\n    return np.sum(y)",
    "augmented_then_rebound": "B = x * 1.0\n    B += x * x\n    B = np.sum(B)\n    return B * B",
    "loop_variable_shifted": "s = 0.0\n    for i in range(len(x) - 1):\n        i = i + 1\n"
                             "        s += x[i] ** 2\n    return s",
    "loop_variable_conditional": "s = 0.0\n    for i in range(4):\n        if x[i] > 0:\n"
                                 "            i = i + 1\n        s += x[i] ** 2\n    return s",
    "loop_variable_read_after": "s = 0.0\n    for i in range(3):\n        s += x[i] * x[i]\n"
                                "        i = i + 1\n    return s * x[i]",
    "loop_variable_nested": "s = 0.0\n    for i in range(2):\n        for j in range(3):\n"
                            "            j = j + i\n            s += x[j] ** 3\n    return s",
}


@pytest.mark.parametrize("body", list(REBINDINGS.values()), ids=list(REBINDINGS))
def test_a_name_rebound_to_another_kind_of_value(folder, body):
    f = load(folder, f"def f(x):\n    {body}\n")
    check_both_modes(f, (V5,))


def test_a_parameter_rebound_to_an_array(folder):
    f = load(folder, """
        def f(x, a):
            a = x * a
            return np.sum(a * a)
        """)
    check_both_modes(f, (V5, 0.7), argnums=(0, 1))


def test_second_order_through_rebinding(folder):
    check_hessian(load(folder, f"def f(x):\n    {REBINDINGS['scalar_to_array']}\n"), (V5,))


def test_one_binding_of_two_types_is_refused_with_its_line(folder):
    f = load(folder, """
        def f(x):
            if x[1] > 0:
                y = x[0]
            else:
                y = x * 2.0
            return np.sum(y)
        """)
    with pytest.raises(nad.AutodiffError) as caught:
        nad.grad(f)(V5)
    assert caught.value.lineno is not None


def test_a_renamed_binding_is_named_as_the_user_wrote_it(folder):
    f = load(folder, """
        def f(x):
            y = x * 1.0
            s = np.sum(y)
            y = x * 2.0
            for t in range(2):
                y = x[t:t + 2]
            return s + np.sum(y)
        """)
    with pytest.raises(nad.AutodiffError, match="'y' to views") as caught:
        nad.grad(f)(V5)
    assert "y_2" not in str(caught.value)


# -- 5: integer-array and boolean-mask indexing, reads and writes ----------------------------

GATHERS = {
    "int_array": ("np.sum(x[idx] ** 2 * x[1])", V5, IDX),
    "bool_mask": ("np.sum(np.sin(x[x > 0]) * x[x > 0])", V5, IDX),
    "rows": ("np.sum(x[idx[:3] - 1] ** 2)", A4, IDX),
    "columns": ("np.sum(np.sin(x[:, idx[:3] - 1]) * x[0, 0])", A4, IDX),
    "rows_and_slice": ("np.sum(x[idx[:3] - 1, 1:] ** 2 * x[idx[:3] - 1, :3])", A4, IDX),
    "mask_of_rows": ("np.sum(x[x[:, 0] > 0] ** 2)", A4, IDX),
    "gather_of_gather": ("np.sum(x[idx][idx[1:] - 1] ** 2 * x[0])", V5, IDX),
}


@pytest.mark.parametrize("expression,x,idx", list(GATHERS.values()), ids=list(GATHERS))
def test_a_gather_has_the_adjoint_of_a_scatter_add(folder, expression, x, idx):
    f = load(folder, f"def f(x, idx):\n    return {expression}\n")
    check_both_modes(f, (x, idx))


STORES = {
    "int_array": "y = np.zeros(5)\n    y[idx] = x[:4] * 2.0",
    "repeated_last_wins": "y = x * 1.0\n    y[idx] = x[:4] ** 2",
    "scalar_value": "y = x * x\n    y[idx] = x[1] * 3.0",
    "mask": "y = x * 1.0\n    y[x > 0] = x[x > 0] ** 2",
    "augmented": "y = x * 1.0\n    y[idx] += x[:4] ** 2",
    "into_a_row": "y = x * 1.0\n    r = y[1:]\n    r[idx[:2]] = x[:2] * x[4]",
    "in_a_loop": "y = np.zeros(5)\n    for t in range(2):\n        y[idx] = y[idx] + x[:4] * x[t]",
}


@pytest.mark.parametrize("body", list(STORES.values()), ids=list(STORES))
def test_a_store_through_an_index_array_takes_the_last_value_stored(folder, body):
    f = load(folder, f"def f(x, idx):\n    {body}\n    return np.sum(y * y * x)\n")
    check_both_modes(f, (V5, IDX))


def test_gathers_in_a_loop_with_the_array_and_the_index_rebound(folder):
    f = load(folder, """
        def f(x, idx):
            s = 0.0
            y = x * 1.0
            j = idx
            for t in range(3):
                z = y[j]
                s += np.sum(z * z)
                y = y * 0.5 + z[0]
                j = (j + 1) % 5
            return s
        """)
    check_both_modes(f, (V5, IDX))


def test_second_order_through_gathers_and_stores(folder):
    check_hessian(load(folder, f"def f(x, idx):\n    {STORES['repeated_last_wins']}\n"
                               "    return np.sum(y * y * x)\n"), (V5, IDX))


def test_an_index_array_written_later_is_refused_with_its_line(folder):
    f = load(folder, """
        def f(x, idx):
            j = idx.copy()
            y = x[j]
            j[0] = 1
            return np.sum(y * y) + np.sum(x[j])
        """)
    with pytest.raises(nad.AutodiffError, match="'j', which is written after") as caught:
        nad.grad(f)(V5, IDX)
    assert caught.value.lineno == 6


def test_a_mask_of_two_dimensions_is_refused_with_its_line(folder):
    f = load(folder, """
        def f(A):
            return np.sum(A[A > 0] ** 2)
        """)
    for transform in (lambda: nad.grad(f)(A4), lambda: nad.jvp(f, (A4,), (A4,))):
        with pytest.raises(nad.AutodiffError, match="2-dimensional boolean mask") as caught:
            transform()
        assert caught.value.lineno == 5


# -- 5: `or` / `and` returning an operand -------------------------------------------------------

BOOL_OPERATIONS = {
    "or": ("a = x[0] or x[1]\n    return a * a", V5),
    "and": ("a = x[0] and x[1]\n    return a * a", V5),
    "or_first_zero": ("a = x[0] * 0.0 or x[1] * 2.0\n    return a * a * x[2]", V5),
    "with_a_comparison": ("s = 0.0\n    for i in range(4):\n"
                          "        s += (x[i] > 0 and x[i]) or x[i + 1] ** 2\n    return s", V5),
}


@pytest.mark.parametrize("body,x", list(BOOL_OPERATIONS.values()), ids=list(BOOL_OPERATIONS))
def test_or_and_return_the_operand_that_decides(folder, body, x):
    check_both_modes(load(folder, f"def f(x):\n    {body}\n"), (x,))


def test_or_of_scalar_arguments(folder):
    f = load(folder, """
        def f(a, b):
            c = a and b
            return c * c * a
        """)
    check_both_modes(f, (0.7, 1.3), argnums=(0, 1))
