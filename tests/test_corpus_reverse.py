"""Reverse mode on the corpus: ``nad.grad`` / ``nad.value_and_grad`` against central differences.

Every corpus function (tests/corpus.py) is differentiated at random inputs for a couple of seeds
and compared with Richardson-extrapolated central differences (tests/fd.py), computed in float64
(float32 inputs are upcast for the reference, the AD result keeps float32 rounding and gets a
looser tolerance). Derived functions are built once per (function, argnums) and reused across
seeds and variants, so each is compiled once per argument types.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import nbautodiff as nad

import corpus
from fd import assert_grad_close, central_diff, copy_args, evaluate, max_abs

SEEDS = (0, 1)
RTOL64, ATOL64 = 1e-6, 1e-8      # atol is scaled by max(1, |gradient|, |value|)
RTOL32, ATOL32 = 2e-3, 2e-4
VALUE_RTOL64, VALUE_RTOL32 = 1e-9, 1e-4

_DERIVED: dict = {}


def derived(kind, fun, argnums):
    """``nad.<kind>(fun, argnums=argnums)``, built once and reused (compiled once per types)."""
    key = (kind, fun, argnums)
    if key not in _DERIVED:
        _DERIVED[key] = getattr(nad, kind)(fun, argnums=argnums)
    return _DERIVED[key]


def as_tuple(grads, argnums):
    """The gradients as a tuple, checking the single/tuple convention of ``argnums``."""
    if isinstance(argnums, int):
        assert not isinstance(grads, tuple), \
            f"argnums={argnums} (an int) must give a single gradient, got a tuple"
        return (grads,)
    assert isinstance(grads, tuple), f"argnums={argnums} (a tuple) must give a tuple, got {type(grads)}"
    assert len(grads) == len(argnums), f"argnums={argnums}: got {len(grads)} gradients"
    return grads


def check_kind(ad, arg, label):
    """A float for a scalar argument, an ndarray of the same shape and float kind for an array."""
    if isinstance(arg, np.ndarray):
        assert isinstance(ad, np.ndarray), f"{label}: expected an ndarray, got {type(ad).__name__}"
        assert ad.shape == arg.shape, f"{label}: shape {ad.shape} != argument shape {arg.shape}"
        assert ad.dtype.kind == "f", f"{label}: dtype {ad.dtype} is not a float dtype"
    else:
        assert isinstance(ad, float), f"{label}: expected a float, got {type(ad).__name__}"


def assert_as_primal(fun, args, saved, when):
    """The caller's arrays ``args`` end as ``fun(*saved)`` leaves its own copies (the
    function's side effects, to rounding: NumPy against numba)."""
    expected = copy_args(saved)
    fun(*expected)
    for k, (a, b) in enumerate(zip(args, expected)):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype, f"{when}: argument {k} changed dtype"
            assert np.allclose(a, b, rtol=1e-12, atol=1e-300, equal_nan=True), \
                f"{when}: argument {k} does not end as the function leaves it"


def tolerances(case, args):
    if case.is_float32(args):
        return RTOL32, ATOL32
    return RTOL64, ATOL64


def compare(case, args, ad, label):
    """Compare the AD gradients ``ad`` (as given by grad) with central differences."""
    argnums = case.argnums
    fd = central_diff(case.fun, args, case.wrt())
    ads = as_tuple(ad, argnums)
    rtol, atol = tolerances(case, args)
    value = evaluate(case.fun, args)
    scale = max(1.0, max_abs(*fd), abs(value))
    for k, (a, f) in enumerate(zip(ads, fd)):
        num = case.wrt()[k]
        check_kind(a, args[num], f"{label} d/d(arg {num})")
        assert_grad_close(a, f, rtol=case.rtol or rtol, atol=atol * scale,
                          label=f"{label} d/d(arg {num}) AD vs FD")


@pytest.mark.parametrize("case", corpus.CORPUS, ids=lambda c: c.name)
def test_grad_matches_central_differences(case):
    g = derived("grad", case.fun, case.argnums)
    for seed in SEEDS:
        args = corpus.args_for(case, seed)
        saved = copy_args(args)
        ad = g(*args)
        assert_as_primal(case.fun, args, saved, f"{case.name} seed {seed}: grad")
        compare(case, saved, ad, f"{case.name} seed {seed}")


@pytest.mark.parametrize("case", corpus.share(corpus.CORPUS, 2), ids=lambda c: c.name)
def test_value_and_grad(case):
    """``value_and_grad`` returns the primal's value and grad's gradient. Every other corpus
    function (each compiles a derivative of its own, returning the value as well; grad's
    gradients are checked on all of them above); ``NBAUTODIFF_FULL_CORPUS=1`` runs all."""
    vg = derived("value_and_grad", case.fun, case.argnums)
    g = derived("grad", case.fun, case.argnums)
    for seed in SEEDS:
        args = corpus.args_for(case, seed)
        saved = copy_args(args)
        out = vg(*args)
        assert isinstance(out, tuple) and len(out) == 2, "value_and_grad must return (value, grad)"
        value, grads = out
        assert_as_primal(case.fun, args, saved, f"{case.name} seed {seed}: value_and_grad")
        expected = evaluate(case.fun, saved)
        rtol = VALUE_RTOL32 if case.is_float32(saved) else VALUE_RTOL64
        assert isinstance(value, (float, np.floating)), f"value is a {type(value).__name__}"
        assert math.isclose(value, expected, rel_tol=rtol, abs_tol=rtol), \
            f"{case.name} seed {seed}: value {value!r} != primal {expected!r}"
        # the gradient part is the same as grad's
        for a, b in zip(as_tuple(grads, case.argnums), as_tuple(g(*saved), case.argnums)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def _takes_a_copy(case) -> bool:
    return "copy" in case.python_function.__code__.co_names


@pytest.mark.parametrize("case", [c for c in corpus.CORPUS if _takes_a_copy(c)],
                         ids=lambda c: c.name)
def test_grad_of_each_argument_alone_through_a_copy(case):
    """``state = arg.copy()`` where ``arg`` is not differentiated but ``state`` becomes active
    (the heat equation w.r.t. its coefficient alone, an RNN w.r.t. its weights alone): the
    copy's adjoint must not flow into the shadow ``arg`` does not have."""
    for num in case.wrt():
        alone = dataclasses.replace(case, argnums=num)
        g = derived("grad", case.fun, num)
        args = corpus.args_for(case, 0)
        saved = copy_args(args)
        compare(alone, saved, g(*args), f"{case.name} w.r.t. argument {num} alone")


def _several_parameters(case) -> bool:
    return case.python_function.__code__.co_argcount >= 2 and case.name.isidentifier()


@pytest.fixture(scope="module")
def reversed_order(tmp_path_factory):
    """``case`` -> a function taking ``case``'s arguments in reversed order and calling it, from
    a real module file (so it has source), built once per case."""
    folder = tmp_path_factory.mktemp("reversed_order")
    built = {}

    def build(case):
        if case.name not in built:
            fun = case.python_function
            names = list(fun.__code__.co_varnames[:fun.__code__.co_argcount])
            path = folder / f"reversed_{case.name}.py"
            path.write_text(f"from corpus import {fun.__name__} as target\n\n\n"
                            f"def reversed_{case.name}({', '.join(reversed(names))}):\n"
                            f"    return target({', '.join(names)})\n")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            built[case.name] = getattr(module, path.stem)
        return built[case.name]
    return build


@pytest.mark.parametrize("case", corpus.share([c for c in corpus.CORPUS if _several_parameters(c)], 4),
                         ids=lambda c: c.name)
def test_grad_in_reversed_argument_order(case, reversed_order):
    """Functions of several arguments, called through a wrapper that takes their arguments in
    the other order: the same gradients, argument by argument (another activity pattern of the
    same code, differentiated as a callee). Every fourth of them, spread over the corpus (each
    wrapper compiles a derivative of its own, and test_grad_matches_central_differences checks
    every function's gradient already); ``NBAUTODIFF_FULL_CORPUS=1`` runs all of them."""
    count = case.python_function.__code__.co_argcount
    wrapper = reversed_order(case)
    wrt = case.wrt()
    g = derived("grad", case.fun, wrt)
    g_reversed = derived("grad", wrapper, tuple(count - 1 - k for k in wrt))
    args = corpus.args_for(case, 0)
    expected = g(*copy_args(args))
    got = g_reversed(*copy_args(args[::-1]))
    rtol = 1e-4 if case.is_float32(args) else 1e-9
    for k, a, b in zip(wrt, got, expected):
        scale = max(1.0, max_abs(b))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{case.name}: d/d(argument {k}) in reversed order")


def test_corpus_size():
    distinct = {c.python_function for c in corpus.CORPUS}
    assert len(distinct) >= 90, f"only {len(distinct)} distinct corpus functions"


# ---- coverage: every item of issue 2, item 2 is exercised by several functions ---------------

def _profile(case):
    prof = set(corpus.features(case.fun)) | set(case.tags)
    args = corpus.args_for(case, 0)
    for k, a in enumerate(args):
        if isinstance(a, np.ndarray):
            prof.add(f"array{a.ndim}d")
            if a.dtype == np.float32:
                prof.add("float32")
        elif isinstance(a, bool):
            pass
        elif isinstance(a, int):
            prof.add("int_arg")
        elif isinstance(a, float) and k in case.wrt():
            prof.add("float_arg")
    return prof


REQUIRED = [
    "float_arg", "int_arg", "array1d", "array2d", "array3d", "float32",
    "index_read", "index_write", "aug_assign_index", "aug_Add", "aug_Sub", "aug_Mult",
    "shape", "len", "copy", "np.empty", "np.zeros", "np.ones", "np.empty_like", "np.zeros_like",
    "reassign", "reassign_loop", "inplace", "writes_input",
    "range1", "range2", "range3", "range_negative_step", "nested_loop", "data_bounds",
    "while", "if", "elif", "else", "break", "continue", "early_return", "return_in_loop",
    "call_same_module", "call_imported", "call_njit", "njit_toplevel",
    "nondiff", "ternary", "boolop", "not", "tuple_assign", "int_mixed", "**",
    "inner_def", "lambda", "tuple_pack", "tuple_unpack", "tuple_result",
]


def test_corpus_covers_every_item():
    counts = {}
    for case in corpus.CORPUS:
        for item in _profile(case):
            counts.setdefault(item, set()).add(case.python_function)
    missing = {item: len(counts.get(item, ())) for item in REQUIRED if len(counts.get(item, ())) < 2}
    assert not missing, f"items covered by fewer than 2 functions: {missing}"
    spellings = [s for names in corpus.MATH_NAMES.values() for s in names]
    missing = [s for s in spellings if f"call:{s}" not in counts]
    assert not missing, f"math/NumPy spellings never used: {missing}"
    thin = {fn: sum(len(counts.get(f"call:{s}", ())) for s in names)
            for fn, names in corpus.MATH_NAMES.items()}
    thin = {fn: n for fn, n in thin.items() if n < 2}
    assert not thin, f"math functions used by fewer than 2 functions: {thin}"


# ---- the reference itself: central differences against closed forms ------------------------

def test_fd_reference_against_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.5, 1.5, 6)
    g = central_diff(corpus.rosenbrock, (x,), 0)
    exact = np.zeros_like(x)
    exact[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    exact[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    assert_grad_close(g, exact, rtol=1e-9, atol=1e-9)
    a, v = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 4)
    ga, gv = central_diff(corpus.matvec_quad, (a, v), (0, 1))
    y = a @ v
    assert_grad_close(ga, np.outer(y, v), rtol=1e-9, atol=1e-10)
    assert_grad_close(gv, a.T @ y, rtol=1e-9, atol=1e-10)
    # float32 inputs are evaluated in float64
    g32 = central_diff(corpus.matvec_quad, (a.astype(np.float32), v), 1)
    a64 = a.astype(np.float32).astype(np.float64)
    assert_grad_close(g32, a64.T @ (a64 @ v), rtol=1e-9, atol=1e-10)
    # scalar argument, and a function that writes into its input
    assert abs(central_diff(corpus.rule_exp, (0.3,), 0) - (math.exp(0.3) + 0.6 * math.exp(-0.09))) < 1e-9
    x = rng.uniform(-1, 1, 5)
    before = x.copy()
    central_diff(corpus.normalize_inplace, (x,), 0)
    assert np.array_equal(x, before)


def test_assert_grad_close_reports_components():
    with pytest.raises(AssertionError, match=r"d/dx: 1 of 3 component\(s\) differ[\s\S]*index \(1,\)"
                       r"[\s\S]*AD= 2\.5[\s\S]*FD= 2\.0"):
        assert_grad_close(np.array([1.0, 2.5, 3.0]), np.array([1.0, 2.0, 3.0]), label="d/dx")
    with pytest.raises(AssertionError, match="value"):
        assert_grad_close(1.0, 1.1, rtol=1e-6, atol=0.0)
    with pytest.raises(AssertionError, match="differ"):
        assert_grad_close(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(AssertionError, match="shape"):
        assert_grad_close(np.zeros(2), np.zeros(3))
    assert_grad_close(np.array([1.0, 2.0 + 1e-9]), np.array([1.0, 2.0]), rtol=1e-6)


# ---- hypothesis: loop bounds, shapes and trip counts drawn at random ------------------------

HYP = settings(max_examples=20, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ranges(draw):
    n = draw(st.integers(1, 12))
    step = draw(st.sampled_from([-4, -3, -2, -1, 1, 2, 3, 4]))
    if step > 0:
        start = draw(st.integers(0, n))
        stop = draw(st.integers(0, n))
    else:
        start = draw(st.integers(0, n - 1))
        stop = draw(st.integers(-1, n - 1))
    return n, start, stop, step


@HYP
@given(r=ranges(), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_strided_range(r, seed):
    n, start, stop, step = r
    x = np.random.default_rng(seed).uniform(-1, 1, n)
    g = derived("grad", corpus.strided_sum, 0)(x, start, stop, step)
    exact = np.zeros(n)
    for i in range(start, stop, step):
        exact[i] += 2.0 * x[i] * (i + 1) + math.cos(x[i])
    assert_grad_close(g, exact, rtol=1e-12, atol=1e-14, label=f"range({start}, {stop}, {step})")


@HYP
@given(n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_matvec_shapes(n, m, seed):
    rng = np.random.default_rng(seed)
    a, x = rng.uniform(-1, 1, (n, m)), rng.uniform(-1, 1, m)
    ga, gx = derived("grad", corpus.matvec_quad, (0, 1))(a, x)
    y = a @ x
    assert_grad_close(ga, np.outer(y, x), rtol=1e-12, atol=1e-13, label=f"dA, shape {(n, m)}")
    assert_grad_close(gx, a.T @ y, rtol=1e-12, atol=1e-13, label=f"dx, shape {(n, m)}")


@HYP
@given(deg=st.integers(0, 8), x=st.floats(-1.5, 1.5), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_horner_degree(deg, x, seed):
    c = np.random.default_rng(seed).uniform(-1, 1, deg + 1)
    gc, gx = derived("grad", corpus.horner, (0, 1))(c, x)
    powers = np.array([x ** k for k in range(deg + 1)])
    dpoly = sum(k * c[k] * x ** (k - 1) for k in range(1, deg + 1))
    assert_grad_close(gc, powers, rtol=1e-12, atol=1e-13, label="dc")
    assert_grad_close(gx, float(dpoly), rtol=1e-10, atol=1e-12, label="dx")


@HYP
@given(n=st.integers(3, 9), steps=st.integers(0, 15), kappa=st.floats(0.05, 0.45),
       seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_heat_trip_counts(n, steps, kappa, seed):
    u0 = np.random.default_rng(seed).uniform(-1, 1, n)
    saved = u0.copy()
    gu, gk = derived("grad", corpus.heat_explicit, (0, 1))(u0, kappa, steps)
    assert np.array_equal(u0, saved)
    fu, fk = central_diff(corpus.heat_explicit, (saved, kappa, steps), (0, 1))
    scale = max(1.0, max_abs(fu, fk))
    assert_grad_close(gu, fu, rtol=1e-6, atol=1e-8 * scale, label=f"du0, n={n}, steps={steps}")
    assert_grad_close(gk, fk, rtol=1e-6, atol=1e-8 * scale, label=f"dkappa, n={n}, steps={steps}")


# ---- hypothesis: random loop programs written to a module file -------------------------------

_UNARY = [  # bounded, smooth everywhere: the output stays in [-2, 2]
    "math.sin({})", "np.cos({})", "math.tanh({})", "np.arctan({})", "math.erf({})",
    "math.exp(-({0}) * ({0}))", "({0}) / (1.0 + ({0}) * ({0}))",
    "math.log(1.0 + ({0}) * ({0})) - 1.0", "math.sqrt(1.0 + ({0}) * ({0})) - 1.5",
    "helper({0}, 0.5)",
]
_BINARY = ["({} + {})", "({} - {})", "({} * {})", "(0.5 * {} + 0.25 * {})"]


@st.composite
def expressions(draw, leaves, depth):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        leaf = draw(st.sampled_from(leaves + ["0.7", "-1.3"]))
        return leaf
    if draw(st.booleans()):
        return draw(st.sampled_from(_UNARY)).format(draw(expressions(leaves, depth - 1)))
    op = draw(st.sampled_from(_BINARY))
    return op.format(draw(expressions(leaves, depth - 1)), draw(expressions(leaves, depth - 1)))


_FORMS = [  # statement templates inside `for i in range(n)`; {t} a scalar, {e} an expression
    ["{t} = {e}"], ["{t} += {e}"], ["{t} -= {e}"], ["{t} *= 0.9"],
    ["w[i] = {e}"], ["w[n - 1 - i] += {e}"], ["w[i] *= 0.5"],
    ["if i % 2 == 0:", "    {t} = {e}"],
    ["if i < n // 2:", "    {t} = {e}", "else:", "    {t} += {e2}"],
    ["if i == 1:", "    continue"],
    ["if i == 3:", "    break"],
    ["for j in range(i):", "    {t} += 0.5 * {e}"],
    ["if i % 3 == 1:", "    k = k * 0.5 + 0.25"],
    ["m = 0", "while m < i:", "    {t} += 0.3 * {e}", "    m += 1"],
    ["if i == 2:", "    return a * c + {e}"],
    ["{t} = window(x, w, i) * {e}"],
]


@st.composite
def loop_programs(draw):
    """A random loop over an array with scalar and array state, branches on the loop index,
    break/continue and an inner loop; every expression is smooth and bounded."""
    names = ["a", "b", "c"]
    body = []
    for _ in range(draw(st.integers(1, 5))):
        form = draw(st.sampled_from(_FORMS))
        inner = "for j" in form[0]
        leaves = names + ["x[i]", "y", "x[n - 1 - i]", "w[i]", "w[n - 1 - i]", "k"] + (["x[j]", "w[j]"] if inner else [])
        def expr():
            return draw(st.sampled_from(_UNARY)).format(draw(expressions(leaves, 3)))
        target = draw(st.sampled_from(names))
        for line in form:
            body.append("        " + line.format(t=target, e=expr() if "{e}" in line else "",
                                                 e2=expr() if "{e2}" in line else ""))
    lines = ["def prog(x, y):", "    n = len(x)", "    w = np.zeros(n)", "    a = y", "    b = x[0]",
             "    c = 0.5", "    k = 1.0", "    for i in range(n):", *body, "        x2 = a * b",
             "    s = 0.0", "    for i in range(n):", "        s += w[i] * (i + 1)",
             "    return a + b * c + 0.1 * s"]
    return "\n".join(lines) + "\n"


_PROG_DIR = None
_PROG_COUNT = [0]


def _load_program(text):
    import tempfile
    global _PROG_DIR
    if _PROG_DIR is None:
        _PROG_DIR = tempfile.mkdtemp(prefix="nad_progs_")
    _PROG_COUNT[0] += 1
    name = f"nad_random_prog_{_PROG_COUNT[0]}"
    path = f"{_PROG_DIR}/{name}.py"
    with open(path, "w") as fh:
        fh.write("import math\nimport numpy as np\n\n\n"
                 "def helper(u, v):\n    return math.sin(u) * v + 0.5 * u\n\n\n"
                 "def window(x, w, i):\n    s = 0.0\n    for j in range(max(i - 1, 0), min(i + 2, len(x))):\n"
                 "        s += x[j] * 0.3 + w[j] * 0.2\n        w[j] += 0.1 * x[j]\n    return math.tanh(s)\n\n\n"
                 + text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.prog


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])     # no shrinking: each example compiles
@given(text=loop_programs(), n=st.integers(1, 5), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_random_loop_programs(text, n, seed):
    prog = _load_program(text)
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, n), float(rng.uniform(-1, 1))
    gx, gy = nad.grad(prog, argnums=(0, 1))(x, y)
    fx, fy = central_diff(prog, (x, y), (0, 1))
    scale = max(1.0, max_abs(fx, fy), abs(prog(x, y)))
    assert_grad_close(gx, fx, rtol=1e-6, atol=1e-8 * scale, label=f"dx of\n{text}")
    assert_grad_close(gy, fy, rtol=1e-6, atol=1e-8 * scale, label=f"dy of\n{text}")


# Inactive state (no derivative of its own, but needed by the adjoint) changed under a branch, in an
# inner loop with a varying trip count, before a break, in a while loop: the reverse pass must
# replay the same control flow as the forward pass.
_CONTROL_PROGRAMS = {
    "branch": ["if i % 2 == 0:", "    c = c + 0.5"],
    "branch_else": ["if i % 3 == 1:", "    c = c * 0.5", "else:", "    c = c + 0.25"],
    "inner_for": ["for j in range(i):", "    c += 0.25"],
    "inner_for_step": ["for j in range(len(x) - 1, i, -2):", "    c += 0.125"],
    "inner_while": ["m = 0", "while m < i:", "    c += 0.25", "    m += 1"],
    "break": ["c = c * 0.5 + 0.25", "if i == 2:", "    break"],
    "continue": ["c = c * 0.5 + 0.25", "if i == 1:", "    continue"],
}


@pytest.mark.parametrize("kind", sorted(_CONTROL_PROGRAMS))
def test_inactive_state_under_control_flow(kind):
    body = "\n".join("        " + line for line in _CONTROL_PROGRAMS[kind])
    text = (f"def prog(x, y):\n    a = y\n    c = 1.0\n    for i in range(len(x)):\n{body}\n"
            f"        a = math.sin(a * c) + x[i] * c\n    return a * c\n")
    prog = _load_program(text)
    g = nad.grad(prog, argnums=(0, 1))
    for n in (1, 3, 5):
        rng = np.random.default_rng(n)
        x, y = rng.uniform(-1, 1, n), float(rng.uniform(-1, 1))
        gx, gy = g(x, y)
        fx, fy = central_diff(prog, (x, y), (0, 1))
        scale = max(1.0, max_abs(fx, fy))
        assert_grad_close(gx, fx, rtol=1e-6, atol=1e-8 * scale, label=f"dx, n={n}, of\n{text}")
        assert_grad_close(gy, fy, rtol=1e-6, atol=1e-8 * scale, label=f"dy, n={n}, of\n{text}")
