"""nbautodiff.kernels.vecmath: accuracy, special values, scalar/vector bit identity, vectorisation.

References: NumPy on ``np.longdouble`` (x87 80-bit, 64-bit significand: about 2**-10 ulp of a
double) for the exp/log family, mpmath at 100 bits for erf and erfc. The full 10**6-argument
measurement is ``benchmarks/vecmath.py --accuracy``; here a seeded sample keeps the file fast.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from nbautodiff.kernels import vecmath as vm

LD = np.longdouble
FUNCTIONS = ["exp", "expm1", "log", "log1p", "sinh", "cosh", "tanh", "erf", "erfc"]
LONGDOUBLE_REF = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
                  "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh}
EXTENDED = np.finfo(LD).nmant >= 63


def loop_of(f):
    @numba.njit
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


LOOPS = {name: loop_of(getattr(vm, name)) for name in FUNCTIONS}


def ulp_error(y, ref):
    """|y - ref| in units of the last place of ref as a double (subnormal spacing below)."""
    _, e = np.frexp(ref)
    ulp = np.ldexp(LD(1), np.maximum(e.astype(np.int64) - 53, -1074))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(y.astype(LD) - ref) / ulp
        rounded = ref.astype(np.float64)
    out = ~np.isfinite(rounded) | ~np.isfinite(y)         # overflow, inf, NaN: exact agreement
    err[out] = np.where(
        (y[out] == rounded[out]) | (np.isnan(y[out]) & np.isnan(rounded[out])), 0.0, np.inf)
    return err


def arguments(name, n, seed):
    """Log-uniform magnitudes of both signs, a uniform slice of the interesting range, and
    arguments within a few ulps of the range-reduction boundaries."""
    rng = np.random.default_rng(seed)
    q = n // 4
    ln2 = math.log(2)

    def log_uniform(lo, hi, signed=True):
        x = np.exp2(rng.uniform(lo, hi, q))
        return x * rng.choice([-1.0, 1.0], q) if signed else x

    def near(points, spread=64):
        p = rng.choice(np.asarray(points, dtype=float), q)
        return p + rng.integers(-spread, spread + 1, q) * np.spacing(p)

    halves = [(k + 0.5) * ln2 for k in range(-1076, 1026)]
    table = {
        "exp": (rng.uniform(-746, 710, q), log_uniform(-1074, 9.5), near(halves)),
        "expm1": (rng.uniform(-45, 710, q), log_uniform(-1074, 6), near(halves[1016:])),
        "log": (log_uniform(-1074, 1024, False), rng.uniform(0.5, 2, q),
                near([2.0**k * math.sqrt(0.5) for k in range(-1070, 1020)] + [1.0], 1000)),
        "log1p": (log_uniform(-1074, 1024), rng.uniform(-1, 2, q),
                  near([math.sqrt(0.5) - 1, math.sqrt(2) - 1, 2.0**53], 1000)),
        "sinh": (rng.uniform(-711, 711, q), log_uniform(-1074, 9.5), near(halves + [0.5, -0.5])),
        "cosh": (rng.uniform(-711, 711, q), log_uniform(-1074, 9.5), near(halves)),
        "tanh": (rng.uniform(-25, 25, q), log_uniform(-1074, 5), near(halves[1036:1116] + [0.55])),
        "erf": (rng.uniform(-6.5, 6.5, q), log_uniform(-1074, 2.7),
                near([0.84375, 1.25, 2.857142857142857, 6.0, -0.84375, -1.25], 10**6)),
        "erfc": (rng.uniform(-6.5, 28, q), log_uniform(-1074, 4.8),
                 near([0.84375, 1.25, 2.857142857142857, 26.55, -0.84375, -1.25], 10**6)),
    }
    x = np.concatenate(table[name] + (log_uniform(-60, 1),))
    return x[np.isfinite(x)]


def reference(name, x):
    if name in LONGDOUBLE_REF:
        with np.errstate(all="ignore"):
            return LONGDOUBLE_REF[name](x.astype(LD))
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(100), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # erfc(1e308): "overflow" parsing 0
        f = getattr(mpmath, name)
        return np.array([_extended(f, name, float(v)) for v in x])


def _extended(f, name, v):
    """``f(v)`` in mpmath at the working precision; where mpmath without gmpy2 overflows
    (erfc(1e308)), the C library's result, exact there (0 or 2)."""
    import mpmath
    try:
        return LD(mpmath.nstr(f(mpmath.mpf(v)), 25))
    except OverflowError:
        return LD(getattr(math, name)(v))


def run_loop(name, x):
    out = np.empty_like(x)
    LOOPS[name](x, out)
    return out


@pytest.mark.skipif(not EXTENDED, reason="np.longdouble is not 80-bit extended here")
@pytest.mark.parametrize("name", FUNCTIONS)
def test_within_one_ulp(name):
    x = arguments(name, 20_000 if name in ("erf", "erfc") else 400_000, seed=FUNCTIONS.index(name))
    err = ulp_error(run_loop(name, x), reference(name, x))
    worst = int(np.argmax(err))
    assert err[worst] < 1.0, f"{name}({x[worst]!r}): {err[worst]:.3f} ulp"


SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308,
           1.0, -1.0, 0.5, -0.5, 0.55, -0.55, 0.84375, 1.25, 6.0, -6.0, 19.1, 22.0, -40.0,
           709.782712893384, 709.7827128933841, 710.4758600739439, 710.475860073944,
           -710.4758600739439, -745.1332191019411, -745.1332191019412, -746.0,
           1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308,
           math.inf, -math.inf, math.nan]
EXACT = [  # (function, argument, result), from C99 Annex F
    ("exp", 0.0, 1.0), ("exp", -0.0, 1.0), ("exp", math.inf, math.inf), ("exp", -math.inf, 0.0),
    ("exp", 709.7827128933841, math.inf), ("exp", -745.1332191019412, 0.0),
    ("exp", -745.1332191019411, 5e-324),
    ("expm1", 0.0, 0.0), ("expm1", -0.0, -0.0), ("expm1", math.inf, math.inf),
    ("expm1", -math.inf, -1.0), ("expm1", -40.0, -1.0), ("expm1", 709.7827128933841, math.inf),
    ("log", 0.0, -math.inf), ("log", -0.0, -math.inf), ("log", 1.0, 0.0),
    ("log", math.inf, math.inf), ("log", -1.0, math.nan), ("log", -5e-324, math.nan),
    ("log", -math.inf, math.nan),
    ("log1p", 0.0, 0.0), ("log1p", -0.0, -0.0), ("log1p", -1.0, -math.inf),
    ("log1p", math.inf, math.inf), ("log1p", -math.inf, math.nan), ("log1p", -1e308, math.nan),
    ("log1p", 5e-324, 5e-324),
    ("sinh", 0.0, 0.0), ("sinh", -0.0, -0.0), ("sinh", math.inf, math.inf),
    ("sinh", -math.inf, -math.inf), ("sinh", 710.475860073944, math.inf),
    ("sinh", -5e-324, -5e-324),
    ("cosh", 0.0, 1.0), ("cosh", -0.0, 1.0), ("cosh", math.inf, math.inf),
    ("cosh", -math.inf, math.inf), ("cosh", -710.475860073944, math.inf),
    ("tanh", 0.0, 0.0), ("tanh", -0.0, -0.0), ("tanh", math.inf, 1.0),
    ("tanh", -math.inf, -1.0), ("tanh", 22.0, 1.0), ("tanh", -5e-324, -5e-324),
    ("erf", 0.0, 0.0), ("erf", -0.0, -0.0), ("erf", math.inf, 1.0), ("erf", -math.inf, -1.0),
    ("erf", 6.0, 1.0), ("erf", -6.0, -1.0),
    ("erfc", 0.0, 1.0), ("erfc", -0.0, 1.0), ("erfc", math.inf, 0.0), ("erfc", -math.inf, 2.0),
    ("erfc", -6.0, 2.0), ("erfc", 28.0, 0.0), ("erfc", 1e308, 0.0),
]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_special_values(name):
    f = getattr(vm, name)
    assert math.isnan(f(math.nan)), name
    for fname, x, expected in EXACT:
        if fname == name:
            assert same(f(x), expected), (name, x, f(x))
    # every special argument: the correctly rounded result within 1 ulp (or exactly, off range)
    x = np.array(SPECIAL)
    if EXTENDED:
        err = ulp_error(np.array([f(v) for v in SPECIAL]), reference(name, x))
        assert np.all(err < 1.0), dict(zip(SPECIAL, err))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_scalar_call_and_vector_loop_bit_identical(name):
    x = np.concatenate([arguments(name, 4000, seed=99)[:3000], np.array(SPECIAL)])
    scalar = np.array([getattr(vm, name)(v) for v in x])
    assert np.array_equal(scalar.view(np.int64), run_loop(name, x).view(np.int64))


def test_fastmath_caller_does_not_change_results():
    """numba passes a caller's fastmath flag to callees that do not set theirs: ours do."""
    @numba.njit(fastmath=True)
    def loop(x, out):
        for i in range(x.size):
            out[i] = vm.tanh(x[i]) + vm.log1p(x[i] * x[i])

    x = arguments("tanh", 4000, seed=5)
    out = np.empty_like(x)
    loop(x, out)
    expected = np.array([vm.tanh(v) + vm.log1p(v * v) for v in x])
    assert np.array_equal(out.view(np.int64), expected.view(np.int64))


LIBM = {"exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "sinh": "sinh",
        "cosh": "cosh", "tanh": "tanh", "erf": "erf", "erfc": "erfc"}
HOST_FEATURES = llvm.get_host_cpu_features().flatten()
VECTOR_DOUBLE = re.compile(r"<(\d+) x double>")
VECTOR_FMA = re.compile(r"@llvm\.fma\.v(\d+)f64\b")


def vector_widths(ir_text: str, pattern: re.Pattern = VECTOR_DOUBLE) -> set[int]:
    """The lane counts (2 or more) of ``pattern``'s matches in LLVM IR ``ir_text``: vectors of
    doubles by default, whatever width the host's vector unit gives (2 with SSE2, 4 with AVX2,
    8 with AVX-512)."""
    return {int(width) for width in pattern.findall(ir_text) if int(width) >= 2}


def is_vectorised(ir_text: str) -> bool:
    """Whether ``ir_text`` computes on vectors of doubles."""
    return bool(vector_widths(ir_text))


def has_vector_fma(ir_text: str) -> bool:
    """Whether ``ir_text`` calls LLVM's fused multiply-add on vectors of doubles."""
    return bool(vector_widths(ir_text, VECTOR_FMA))


def scalar_calls(ir_text: str, name: str) -> list[str]:
    """Calls in ``ir_text`` of libm's ``name``, of LLVM's intrinsic for it, or of a (non-inlined)
    function of nbautodiff.kernels."""
    calls = [line for line in ir_text.splitlines() if " call " in line]
    return [c for c in calls if f"@{LIBM[name]}(" in c or f"@llvm.{LIBM[name]}." in c
            or "@_ZN10nbautodiff7kernels" in c]


def recorded_loop(lanes: int) -> str:
    """A recorded vectorised loop body (shape of numba's IR) with ``lanes`` doubles per vector;
    1 lane is the scalar loop, spelled as LLVM spells it (no vector types)."""
    vector = "double" if lanes == 1 else f"<{lanes} x double>"
    fma = "f64" if lanes == 1 else f"v{lanes}f64"
    return (f"vector.body:\n"
            f"  %wide.load = load {vector}, ptr %p, align 8\n"
            f"  %m = fmul {vector} %wide.load, %wide.load\n"
            f"  %f = call {vector} @llvm.fma.{fma}({vector} %m, {vector} %wide.load, "
            f"{vector} %m)\n"
            f"  store {vector} %f, ptr %q, align 8\n"
            f"declare {vector} @llvm.fma.{fma}({vector}, {vector}, {vector})\n")


@pytest.mark.parametrize("lanes", [2, 4, 8])
def test_vector_checks_accept_any_width(lanes):
    ir_text = recorded_loop(lanes)
    assert vector_widths(ir_text) == {lanes}
    assert is_vectorised(ir_text) and has_vector_fma(ir_text)
    assert not scalar_calls(ir_text, "exp")


def test_vector_checks_reject_scalar_code():
    ir_text = recorded_loop(1)
    assert not is_vectorised(ir_text) and not has_vector_fma(ir_text)
    assert not is_vectorised("%v = fmul <1 x double> %a, %b")   # one lane is no vector
    assert not has_vector_fma("call <4 x float> @llvm.fma.v4f32(<4 x float> %a)")
    call = "  %r = call double @exp(double %x)\n"
    assert scalar_calls(call, "exp") and scalar_calls(
        "  %r = call fast double @llvm.exp.f64(double %x)\n", "exp")


_OPTIMISED_LOOPS = """
import json, sys
import numba, numpy as np
from nbautodiff.kernels import vecmath as vm
compiled = {}
for name in sys.argv[1:]:
    f = getattr(vm, name)
    @numba.njit
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    x = np.linspace(-2.0, 2.0, 64)
    loop(x, np.empty_like(x))
    signature = loop.signatures[0]
    compiled[name] = [loop.inspect_llvm(signature), loop.inspect_asm(signature)]
print(json.dumps(compiled))
"""


@pytest.fixture(scope="module")
def optimised_loops(tmp_path_factory) -> dict:
    """name -> (LLVM IR, machine code) of ``loop_of`` for each function, compiled at numba's
    default optimisation level (-O3) in a fresh process with a cache of its own: the suite
    itself compiles at -O0 (tests/conftest.py), and what the optimiser makes of the loops is
    the point here."""
    env = {**os.environ, "NUMBA_OPT": "3",
           "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba-o3"))}
    done = subprocess.run([sys.executable, "-c", _OPTIMISED_LOOPS, *FUNCTIONS], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif("+fma" not in HOST_FEATURES,
                    reason="the host CPU lacks FMA: llvm.fma becomes a libm call there")
@pytest.mark.parametrize("name", FUNCTIONS)
def test_loop_vectorises_without_calls(optimised_loops, name):
    ir_text, _ = optimised_loops[name]
    assert is_vectorised(ir_text)
    assert not scalar_calls(ir_text, name)


@pytest.mark.skipif("+fma" not in HOST_FEATURES,
                    reason="the host CPU lacks FMA: llvm.fma becomes a libm call there")
@pytest.mark.parametrize("name", ["exp", "tanh"])
def test_fma_is_fused_in_the_vector_loop(optimised_loops, name):
    """_fma is llvm.fma: vectorised to @llvm.fma.v<N>f64, vfmadd in the machine code."""
    ir_text, machine_code = optimised_loops[name]
    assert has_vector_fma(ir_text)
    assert "vfmadd" in machine_code


def test_table():
    assert vm.VECTOR_FUNCTIONS["math.exp"] == "exp"
    assert vm.VECTOR_FUNCTIONS["np.tanh"] == "tanh"
    assert vm.VECTOR_FUNCTIONS["numpy.log1p"] == "log1p"
    assert vm.vectorised("math.erf") is vm.erf
    assert vm.vectorised("np.log") is vm.log
    assert vm.vectorised("math.erfc") is vm.erfc
    assert vm.vectorised("np.erfc") is None            # NumPy has no erfc
    assert vm.vectorised("math.gamma") is None
    assert set(vm.VECTOR_FUNCTIONS.values()) == set(FUNCTIONS)
    assert set(vm.MAX_ULP) == set(FUNCTIONS)
    assert all(v < 1.0 for v in vm.MAX_ULP.values())
    for name in FUNCTIONS:   # every listed function states its measured error
        assert f"{vm.MAX_ULP[name]:.3f} ulp" in getattr(vm, name).__doc__
