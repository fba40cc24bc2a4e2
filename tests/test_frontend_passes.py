"""Each frontend pass on its own: a small input function, the source it must come out as.

Tangent's ``test_anf.py`` model. The passes run in this order (see ``nbautodiff/pipeline/passes.py``
and ``python -m nbautodiff.pipeline``): lifting, the fence, then inside normalisation the
checkpoint markers, iteration, control flow, three-address form and bindings. A pass that works
on a bare syntax tree is fed source text; one that resolves names (lifting, the fence,
normalisation) is fed a function of this module.
"""
from __future__ import annotations

import ast
import math
import textwrap

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff import annotations as anno
from nbautodiff.errors import AutodiffError, UnsupportedConstructError
from nbautodiff.frontend import bindings, checkpoint_markers, fence, iteration, lifting
from nbautodiff.frontend.controlflow import structure
from nbautodiff.frontend.normalize import normalize
from nbautodiff.frontend.source import function_source


def _tree(source: str) -> ast.FunctionDef:
    return ast.parse(textwrap.dedent(source)).body[0]


def _same(tree: ast.AST, expected: str) -> None:
    assert ast.unparse(tree) == textwrap.dedent(expected).strip()


def _normalized(func):
    fs = lifting.lift(function_source(func))
    fence.check(fs)
    return normalize(fs)


def _refusal(func) -> AutodiffError:
    """The error the frontend raises for ``func``; its line counted from the ``def`` (0)."""
    with pytest.raises(AutodiffError) as info:
        _normalized(func)
    info.value.relative_line = info.value.lineno - func.__code__.co_firstlineno
    return info.value


# ---- lifting ------------------------------------------------------------------------------------

def lifted(x, c):
    def scale(v):
        return c * v
    square = lambda v: v * v         # noqa: E731 (a named lambda is lifted too)
    return scale(x) + square(x)


def test_lifting_makes_inner_functions_callees_that_take_what_they_read():
    fs = lifting.lift(function_source(lifted))
    _same(fs.tree, """
        def lifted(x, c):
            return scale(x, c) + square(x)
    """)
    _same(function_source(fs.closure["scale"]).tree, """
        def scale(v, c):
            return c * v
    """)
    _same(function_source(fs.closure["square"]).tree, """
        def square(v):
            return v * v
    """)


def returns_inner(x):
    def g(v):
        return v
    return g


def test_lifting_refuses_an_inner_function_not_called():
    error = _refusal(returns_inner)
    assert isinstance(error, UnsupportedConstructError) and error.relative_line == 3


# ---- the fence: refusals with their lines -------------------------------------------------------

def uses_try(x):
    try:
        y = x
    except ValueError:
        y = 0.0
    return y


def uses_print(x):
    y = x * x
    print(y)
    return y


def uses_global_statement(x):
    global counter
    return x


def uses_nonlocal(x):
    y = x

    def bump():
        nonlocal y
        y = y + 1.0
    bump()
    return y


@pytest.mark.parametrize("func, line, construct", [
    (uses_try, 1, "try/except"),
    (uses_print, 2, "call to 'print'"),
    (uses_global_statement, 1, "global statement"),
    (uses_nonlocal, 4, "nonlocal statement"),
])
def test_fence_refuses_with_the_construct_and_its_line(func, line, construct):
    error = _refusal(func)
    assert isinstance(error, UnsupportedConstructError)
    assert (error.relative_line, error.construct, error.function) == (line, construct,
                                                                      func.__name__)
    assert f"line {func.__code__.co_firstlineno + line}" in str(error)


# ---- iteration: loops over sequences become loops over indices ----------------------------------

def test_iteration_lowers_loops_over_arrays_enumerate_and_zip():
    tree = _tree("""
        def f(x, y):
            s = 0.0
            for v in x:
                s += v
            for i, v in enumerate(x, 1):
                s += i * v
            for a, b in zip(x, y[1:]):
                s += a * b
            return s
    """)
    _same(iteration.lower(tree, iteration.is_range), """
        def f(x, y):
            s = 0.0
            for _nad_it1 in range(len(x)):
                v = x[_nad_it1]
                s += v
            for _nad_it2 in range(len(x)):
                i = _nad_it2 + 1
                v = x[_nad_it2]
                s += i * v
            _nad_seq3_1 = y[1:]
            for _nad_it3 in range(min(len(x), len(_nad_seq3_1))):
                a = x[_nad_it3]
                b = _nad_seq3_1[_nad_it3]
                s += a * b
            return s
    """)


def test_iteration_leaves_counted_loops_alone():
    tree = _tree("""
        def f(n):
            for i in range(n):
                pass
    """)
    assert iteration.lower(tree, iteration.is_range) is tree


# ---- control flow: break, continue and early returns become flags ------------------------------

def test_controlflow_break_and_continue_become_flags():
    _same(structure(_tree("""
        def f(x, n):
            s = 0.0
            for i in range(n):
                if x[i] < 0.0:
                    break
                if x[i] == 0.0:
                    continue
                s += x[i]
            return s
    """)), """
        def f(x, n):
            s = 0.0
            _nad_k1 = 0
            _nad_hi1 = n
            _nad_step1 = 1
            _nad_break1 = False
            while not _nad_break1 and _nad_k1 < _nad_hi1:
                i = _nad_k1
                _nad_k1 = _nad_k1 + _nad_step1
                _nad_continue1 = False
                if x[i] < 0.0:
                    _nad_break1 = True
                if not _nad_break1:
                    if x[i] == 0.0:
                        _nad_continue1 = True
                    if not _nad_continue1:
                        s += x[i]
            return s
    """)


def test_controlflow_one_return_at_the_end():
    _same(structure(_tree("""
        def f(x):
            if x > 0.0:
                return x * x
            y = -x
            return y
    """)), """
        def f(x):
            _nad_returned = False
            if x > 0.0:
                _nad_retval = x * x
                _nad_returned = True
            if not _nad_returned:
                y = -x
                _nad_retval = y
                _nad_returned = True
            return _nad_retval
    """)


# ---- bindings: one name per web of a reused name ------------------------------------------------

def test_bindings_give_each_web_of_a_reused_name_its_own_name():
    tree = _tree("""
        def f(x, n):
            y = x
            z = y * 2.0
            y = z + 1.0
            for i in range(0, n, 1):
                y = y + 1.0
            return y
    """)
    assert bindings.split(tree) == {"y_2": "y"}
    _same(tree, """
        def f(x, n):
            y = x
            z = y * 2.0
            y_2 = z + 1.0
            for i in range(0, n, 1):
                y_2 = y_2 + 1.0
            return y_2
    """)


def reused(x):
    y = x[0] * 2.0
    y = x * y
    return np.sum(y)


def test_bindings_inside_normalisation_show_the_users_name_in_errors():
    normalized = _normalized(reused)
    _same(normalized.tree, """
        def reused(x):
            _nad_t1 = x[0]
            y = _nad_t1 * 2.0
            _nad_t2 = x * y
            y_2 = _nad_t2
            _nad_t3 = np.sum(y_2)
            return _nad_t3
    """)
    assert normalized.source.display_names == {"y_2": "y"}


# ---- normalisation: three-address form, calls resolved and annotated ----------------------------

def three_address(x, y):
    return math.sin(x * y) + 2.0 * x


def test_normalize_writes_three_address_form_and_annotates_calls():
    normalized = _normalized(three_address)
    _same(normalized.tree, """
        def three_address(x, y):
            _nad_t1 = x * y
            _nad_t2 = math.sin(_nad_t1)
            _nad_t3 = 2.0 * x
            _nad_t4 = _nad_t2 + _nad_t3
            return _nad_t4
    """)
    call = normalized.tree.body[1].value
    assert anno.get(call, anno.KIND) == "rule" and anno.get(call, anno.TARGET).name == "sin"


def in_place(a, b):
    a += b
    return np.sum(a)


def test_normalize_marks_the_rebinding_of_an_in_place_operator():
    normalized = _normalized(in_place)
    _same(normalized.tree, """
        def in_place(a, b):
            _nad_t1 = a + b
            a = _nad_t1
            _nad_t2 = np.sum(a)
            return _nad_t2
    """)
    rebinding, total = normalized.tree.body[1], normalized.tree.body[2].value
    assert anno.get(rebinding, anno.IN_PLACE) is True
    assert anno.get(rebinding, anno.AUGMENTED) == 0
    assert anno.get(total, anno.KIND) == "array"


def nested(x, w, n):
    s = 0.0
    for i in range(n):
        if x[i] * w > 0.5 and i % 2 == 0:
            s = s + math.exp(-x[i] ** 2) * w
        else:
            s -= np.tanh(x[i] + w) / (1.0 + i)
    return (s, x[0] * s)


_ATOMS = (ast.Name, ast.Constant)


def _atom(node) -> bool:
    return isinstance(node, _ATOMS) or isinstance(node, ast.UnaryOp) \
        and isinstance(node.operand, ast.Constant)


def _three_address(value) -> bool:
    """Whether ``value`` has one of the forms the normalize module docstring promises."""
    if _atom(value):
        return True
    if isinstance(value, ast.BinOp):
        return _atom(value.left) and _atom(value.right)
    if isinstance(value, ast.UnaryOp):
        return _atom(value.operand)
    if isinstance(value, ast.Call):
        return all(_atom(a) for a in value.args)
    if isinstance(value, ast.Subscript):
        index = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
        return isinstance(value.value, ast.Name) and all(_atom(part) for part in index)
    if isinstance(value, ast.Tuple):
        return all(_atom(e) for e in value.elts)
    return isinstance(value, (ast.Compare, ast.BoolOp))   # conditions stay whole


def test_normalize_leaves_only_three_address_statements():
    body = _normalized(nested).tree.body
    for statement in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(statement, ast.Assign):
            assert len(statement.targets) == 1 and _three_address(statement.value), \
                ast.unparse(statement)
        elif isinstance(statement, (ast.If, ast.While)):
            assert isinstance(statement.test, ast.Name), ast.unparse(statement.test)
        elif isinstance(statement, ast.For):
            assert all(_atom(a) for a in statement.iter.args), ast.unparse(statement.iter)
        elif isinstance(statement, ast.Return):
            assert _atom(statement.value)
        assert not isinstance(statement, ast.AugAssign), ast.unparse(statement)
    assert isinstance(body[-1], ast.Return)


# ---- checkpoint markers -------------------------------------------------------------------------

def marked(u, steps):
    for t in nad.checkpointed(range(steps)):
        u = u * 0.5
    return u


def test_checkpoint_marker_becomes_an_annotation_of_its_loop():
    normalized = _normalized(marked)
    _same(normalized.tree, """
        def marked(u, steps):
            _nad_t1 = steps
            for t in range(0, _nad_t1, 1):
                _nad_t2 = u * 0.5
                u = _nad_t2
            return u
    """)
    loop = normalized.tree.body[1]
    assert anno.get(loop, anno.CHECKPOINT) == checkpoint_markers.SQRT   # the default schedule


def marked_inner(u, steps):
    for s in range(2):
        for t in nad.checkpointed(range(steps)):
            u = u * 0.5
    return u


def test_checkpoint_marker_on_a_nested_loop_is_refused_at_its_line():
    error = _refusal(marked_inner)
    assert error.relative_line == 2 and "nested in another loop" in error.message


# ---- parameter names: one way to read them ------------------------------------------------------

def test_parameter_names_are_read_one_way():
    """nbautodiff.codegen.parameters reads a definition's or a function's positional
    parameters; no other module reads them from ``args.args``, ``co_varnames`` or
    ``inspect.signature(...).parameters``."""
    import re
    from pathlib import Path

    from nbautodiff import _layout
    from nbautodiff.codegen import parameters

    assert parameters(_tree("def f(a, b, /, c, *d, e, **g): pass")) == ["a", "b", "c"]
    assert parameters(lifted) == ["x", "c"] == function_source(lifted).parameters
    assert parameters(nad.custom_vjp(three_address)) == ["x", "y"]
    other_ways = re.compile(r"\.arg for \w+ in [\w.]*args\.args|co_varnames"
                            r"|signature\([^)]*\)\)?\.parameters\)")
    found = [f"{module}: {line.strip()}" for module, path in _layout.modules().items()
             if not module.startswith("nbautodiff.magics")
             for line in Path(path).read_text().splitlines()
             if other_ways.search(line) and module != "nbautodiff.codegen"]
    assert found == []
