"""``nad.batch`` never gives a silently wrong result: the batch equals a loop of single calls of
the compiled function on each slice, bit for bit (results and what it leaves in the caller's
arrays; and the Python function's to rounding), or it refuses with a located :class:`nad.AutodiffError`.

The programs are the differential tester's findings (aliases and views written in place, batched
parameters rebound, local arrays that must start fresh for every slice) and variants of each
class. ``layout="auto"`` must be right (the inner layout where it is sound, else the outer one
with the reason in ``layout_note``), ``layout="outer"`` too, and ``layout="inner"`` right or a
refusal naming the function's own line.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.pipeline import program

_FOLDER = tempfile.mkdtemp(prefix="nad_batch_soundness_")
_rng = np.random.default_rng(7)
X = _rng.standard_normal((3, 6))            # three slices x of shape (6,)
A = _rng.standard_normal((3, 3, 3))         # three slices A of shape (3, 3)
S = _rng.standard_normal(3)                 # three scalars s


def _load(name: str, src: str):
    module = _load_module(name, src)
    return module.f, module.__file__


def _load_module(name: str, src: str):
    path = os.path.join(_FOLDER, f"{name.replace('-', '_')}.py")
    with open(path, "w") as file:
        file.write("import math\nimport numpy as np\n" + src)
    spec = importlib.util.spec_from_file_location(f"nad_soundness_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case(name, src, args, inner=None):
    """``inner``: True where the inner layout must be kept (sound as it is), False where it
    must be refused, None either."""
    return pytest.param(name, src, args, inner, id=name)


PROGRAMS = [
    # -- a batched parameter rebound (then written, or to another shape): the new binding is a
    #    variable of its own (nbautodiff/frontend/bindings.py), so the inner layout stays right -------
    case("param-copy-then-write", """
def f(x):
    x = x * 1.0
    x[0] = x[1] * 2.0
    return np.sum(x * x)
""", (X,), inner=True),
    case("param-rebound-to-sin", """
def f(x):
    x = np.sin(x)
    x[2] = x[0] + x[5]
    return np.sum(x)
""", (X,), inner=True),
    case("param-in-place", """
def f(x):
    x += 1.5
    return np.sum(x * x)
""", (X,), inner=False),
    case("param-rebound-other-shape", """
def f(A):
    A = A.copy()
    A = A[0] * 2.0
    return np.sum(A * A)
""", (A,), inner=True),
    case("param-rebound-to-view", """
def f(A):
    A = A[1:]
    return np.sum(A * A)
""", (A,), inner=True),
    case("scalar-param-rebound", """
def f(x, s):
    s = s * 2.0
    return np.sum(x) * s
""", (X, S), inner=True),
    # -- in-place through an alias ----------------------------------------------------------
    case("alias-in-place", """
def f(x):
    y = x * 1.0
    B = y
    B += y * B
    return np.sum(y * y)
""", (X,), inner=False),
    case("alias-in-place-scaled", """
def f(x):
    y = np.cos(x)
    B = y
    B *= 2.0
    return np.sum(y) + B[0]
""", (X,), inner=False),
    case("alias-of-alias-in-place", """
def f(x):
    y = x + 0.0
    B = y
    C = B
    C -= 1.0
    return np.sum(y * y)
""", (X,), inner=False),
    case("alias-element-store", """
def f(x):
    y = x * 1.0
    B = y
    B[3] = 5.0
    return np.sum(y * y)
""", (X,), inner=False),
    case("alias-in-place-by-element-2d", """
def f(A):
    L = np.sin(A) + A
    B = L
    B -= L[0, 0]
    return np.sum(L * L)
""", (A,), inner=False),
    # -- in-place through a view ------------------------------------------------------------
    case("full-view-in-place", """
def f(x):
    y = x * 1.0
    V = y[:]
    V += np.sin(y)
    return np.sum(y * y)
""", (X,), inner=False),
    case("view-in-place-by-own-element", """
def f(x):
    y = x.copy()
    V = y[1:5]
    V *= V[-1]
    return np.sum(y * y)
""", (X,), inner=False),
    case("strided-view-element-store", """
def f(x):
    y = x * 2.0
    V = y[::2]
    V[1] = V[0] * V[2]
    return np.sum(y)
""", (X,), inner=False),
    case("row-view-in-place-2d", """
def f(A):
    L = A * 1.0
    R = L[1]
    R += 1.0
    return np.sum(L * L)
""", (A,), inner=False),
    case("base-in-place-read-through-view", """
def f(x):
    y = x * 1.0
    V = y[1:]
    y -= 0.5
    return np.sum(V * V)
""", (X,), inner=False),
    case("base-element-store-read-through-view", """
def f(x):
    y = x * 1.0
    V = y[2:]
    y[3] = 7.0
    return np.sum(V * V)
""", (X,), inner=False),
    # -- local arrays must start fresh for every slice ---------------------------------------
    case("zeros-augmented-then-rebound", """
def f(x, s):
    L1 = np.zeros((6,))
    L1[1] -= math.exp(-L1[-1] * L1[-1]) * s
    L1 = L1 + 1.0
    return np.sum(L1 * L1)
""", (X, S)),
    case("ones-element-updated-then-scaled", """
def f(x):
    L = np.ones(6)
    L[0] += x[0]
    L[5] = L[5] * x[1] + L[0]
    L = L * 2.0
    return np.sum(L)
""", (X,)),
    case("zeros-augmented-in-place", """
def f(x, s):
    L = np.zeros(6)
    L[2] = L[2] + s
    L += x
    L = L * L
    return np.sum(L) + L[2]
""", (X, S)),
    case("uniform-array-aliased-and-written", """
def f(x):
    W = np.zeros(4)
    B = W
    B[0] = B[0] + x[0]
    return np.sum(W) + x[1]
""", (X,), inner=False),
    case("ones-reassigned-in-loop", """
def f(x):
    acc = 0.0
    for k in range(2):
        L = np.ones(6)
        L[k] = L[k] + x[k]
        L = L * x[3]
        acc += np.sum(L)
    return acc
""", (X,)),
    case("arange-written-per-slice", """
def f(x):
    W = np.arange(6.0)
    W[1] = W[1] * x[2]
    W = W + x
    return np.sum(W * W)
""", (X,)),
    case("param-alias-element-store", """
def f(x):
    B = x
    B[0] = B[1] + 1.0
    return np.sum(x)
""", (X,), inner=False),
    case("reshape-view-written", """
def f(x):
    y = x * 1.0
    B = y.reshape(2, 3)
    B[1, 0] = B[0, 0] * B[1, 1]
    return np.sum(y * y)
""", (X,), inner=False),
    case("transpose-view-in-place-2d", """
def f(A):
    L = A + 0.0
    T = L.T
    T[0, 1] = T[1, 0] * 3.0
    return np.sum(L * L)
""", (A,), inner=False),
    case("uniform-array-reshaped-and-written", """
def f(x):
    W = np.zeros(4)
    B = W.reshape(2, 2)
    B[0, 1] = x[0]
    return np.sum(W) + x[1]
""", (X,), inner=False),
    case("uniform-array-through-tuple-written", """
def f(x):
    W = np.zeros(3)
    p = (W, x[0])
    B = p[0]
    B[0] = B[0] + p[1]
    return np.sum(W) + x[1]
""", (X,), inner=False),
    # -- a callee returning a tuple that holds its argument (or a view of it): the tuple's
    #    elements name the argument's memory (differential tester, seed 30000090077)
    case("callee-returns-argument-in-tuple-then-written", """
def h(a):
    a[-1] = a[0] + a[-1] * 0.5
    return a, np.sum(a * a)

def f(x):
    y = x * 1.0
    Z1, c2 = h(y)
    y += y[-1]
    return np.sum(Z1 * Z1) + c2
""", (X,), inner=False),
    case("callee-returns-view-in-tuple-then-written", """
def h(a):
    return a[1:], a[0]

def f(x):
    y = x * 1.0
    V, c = h(y)
    y[2] = y[2] * c
    return np.sum(V * V)
""", (X,), inner=False),
    # -- sound programs the inner layout keeps -------------------------------------------------
    case("copy-then-write-kept-inner", """
def f(x):
    y = x * 1.0
    y[0] = y[1] * 2.0
    return np.sum(y * y)
""", (X,), inner=True),
    case("read-only-view-kept-inner", """
def f(x):
    V = x[1:4]
    return np.sum(V * V) + x[0]
""", (X,), inner=True),
]


def _singles(f, args):
    """Results of single calls on copies of each slice, and the arguments they leave."""
    after = [a.copy() for a in args]
    results = [f(*[a[i] for a in after]) for i in range(len(args[0]))]
    return np.array(results), after


def _check(batched, f, args, label):
    """Bit for bit against single calls of the compiled function (NumPy's own sums may round
    differently from compiled code's: against the Python function, to 1e-12)."""
    compiled = program.in_place_dispatcher(program.primal(f))
    expected, expected_args = _singles(compiled, args)
    python, python_args = _singles(f, args)
    given = [a.copy() for a in args]
    got = np.asarray(batched(*given))
    assert np.array_equal(got, expected), f"{label}: batch {got} != single calls {expected}"
    assert np.allclose(got, python, rtol=1e-12, atol=0), f"{label}: {got} != f: {python}"
    for k, (left, want, py) in enumerate(zip(given, expected_args, python_args)):
        assert np.array_equal(left, want), f"{label}: argument {k} left {left}, single calls {want}"
        assert np.allclose(left, py, rtol=1e-12, atol=0), f"{label}: argument {k} {left} != {py}"


@pytest.mark.parametrize("name, src, args, inner", PROGRAMS)
def test_batch_equals_single_calls(name, src, args, inner):
    f, path = _load(name, src)
    auto = nad.batch(f)
    _check(auto, f, args, "auto")
    note = auto.variant.layout_note
    assert (auto.variant.layout == "inner") == (not note), note
    if inner is not None:
        assert (auto.variant.layout == "inner") == inner, note
    if auto.variant.layout == "inner":        # (else "auto" built the outer layout's code)
        _check(nad.batch(f, layout="outer"), f, args, "outer")
    else:
        # the inner layout refuses, naming the construct's line in the function's own file
        with pytest.raises(nad.AutodiffError) as refusal:
            nad.batch(f, layout="inner")(*[a.copy() for a in args])
        assert refusal.value.lineno is not None and refusal.value.filename == path, \
            str(refusal.value)


@pytest.mark.parametrize("name", ["param-copy-then-write", "alias-in-place",
                                  "zeros-augmented-then-rebound"])
def test_batch_of_grad_equals_single_gradients(name):
    _, src, args, _ = next(p.values for p in PROGRAMS if p.id == name)
    f, _ = _load(name + "-grad", src)
    grad = nad.grad(f)
    try:
        got = nad.batch(grad)(*[a.copy() for a in args])
    except nad.AutodiffError as refusal:          # refused: with the function's own line
        assert refusal.lineno is not None
        return
    want = np.stack([grad(*[a[i].copy() for a in args]) for i in range(len(args[0]))])
    assert np.array_equal(np.asarray(got), want)


# -- what numba cannot compile for the slices: a located refusal, or contiguous copies ---------

NOT_CONTIGUOUS = """
def row_block_reshaped(A):
    V1 = A[1:, :]
    V4 = V1.reshape(6)
    return np.sum(A * A)

def reshaped(A):
    V = A.reshape(9)
    return np.sum(V * V) + V[0]

def reshaped_written(A):
    V = A.reshape(9)
    V[0] = V[1] * 2.0
    return np.sum(A * A)
"""


@pytest.mark.parametrize("layout", ["auto", "outer", "inner"])
def test_function_numba_cannot_compile_is_refused_with_its_line(layout):
    """numba types ``A[1:, :]`` as a non-contiguous array and has no ``reshape`` for it: the
    batch is refused naming that line (it crashed in numba's type inference)."""
    path = os.path.join(_FOLDER, "not_contiguous.py")
    module = _load_module("not_contiguous", NOT_CONTIGUOUS)
    with pytest.raises(nad.AutodiffError) as refusal:
        nad.batch(module.row_block_reshaped, layout=layout)(A.copy())
    assert refusal.value.lineno == 6 and refusal.value.filename == path, str(refusal.value)


def test_slices_numba_compiles_only_when_contiguous_are_passed_as_copies():
    """Batched along axis 1, the slices are not contiguous and numba's ``reshape`` refuses them:
    the batch passes C-contiguous copies of an array the function only reads (equal to single
    calls on contiguous slices), and refuses one it writes, naming the line numba cannot
    compile (a copy would not carry the writes through the reshaped view back to the batch)."""
    path = os.path.join(_FOLDER, "not_contiguous.py")
    module = _load_module("not_contiguous", NOT_CONTIGUOUS)
    batch = np.ascontiguousarray(np.moveaxis(A, 0, 1))          # slices batch[:, i]
    compiled = program.primal(module.reshaped).dispatcher
    want = np.array([compiled(np.ascontiguousarray(batch[:, i])) for i in range(3)])
    for layout in ("auto", "outer"):
        given = batch.copy()
        batched = nad.batch(module.reshaped, in_axes=1, layout=layout)
        assert np.array_equal(batched(given), want)
        assert np.array_equal(given, batch)
        assert batched.variant.layout == "outer"
    with pytest.raises(nad.AutodiffError) as inner:
        nad.batch(module.reshaped, in_axes=1, layout="inner")(batch.copy())
    assert inner.value.lineno == 10 and inner.value.filename == path, str(inner.value)
    with pytest.raises(nad.AutodiffError) as written:
        nad.batch(module.reshaped_written, in_axes=1)(batch.copy())
    assert written.value.lineno == 14 and written.value.filename == path, str(written.value)


def test_writes_through_views_made_by_calls_count_as_writes_of_the_argument():
    """``V = A.reshape(9); V[0] = ...`` writes ``A``: the batch (parallel refusal, staging,
    contiguous copies) and the derivatives' copies of written arguments rely on it."""
    module = _load_module("view_writes", """
def by_reshape(A):
    V = A.reshape(9)
    V[0] = 2.0
    return np.sum(A * A)

def by_transpose(A, B):
    V = A.T
    V[0, 1] = B[0, 0]
    return np.sum(A * A)

def by_ravel(A):
    V = np.ravel(A)
    V[0] = 2.0
    return np.sum(A * A)

def element_augmented(A, B):
    s = A[0, 0]
    s += 1.0
    return s + np.sum(B)
""")
    assert program.primal(module.by_reshape).writes == {0}
    assert program.primal(module.by_transpose).writes == {0}
    assert program.primal(module.by_ravel).writes == {0}
    assert program.primal(module.element_augmented).writes == set()
