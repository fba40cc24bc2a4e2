"""Vectorisable double-precision math functions for numba-compiled loops.

llvmlite's wheels are built without Intel SVML, so a numba loop that calls ``math.exp`` (or
``log``, ``tanh``...) keeps one scalar libm call per element and LLVM cannot vectorise it. The
functions here compute the same results in plain IEEE arithmetic, with no branches (lane
selects instead) and no calls, so that inside a loop such as

    for i in range(n):
        out[i] = vecmath.exp(x[i])

of a ``numba.njit`` function LLVM inlines them and vectorises the loop (``<4 x double>`` with
AVX2). Bits are manipulated through tiny ``@intrinsic`` bitcasts; integer exponents are turned
into doubles with the 1.5*2**52 "shifter" (no int64 -> double conversion, which AVX2 lacks).

Contracts (every function):

* float64 in, float64 out; C99/libm special values: +-0, subnormals, overflow and underflow
  thresholds, +-inf, NaN (see each docstring);
* at most 1 ulp from the correctly rounded result. Each docstring states the maximum error
  measured on 10**6 random arguments per function (log-uniform magnitudes, both signs, dense
  near range-reduction boundaries and 0) against an extended-precision reference
  (``benchmarks/vecmath.py --accuracy``; ``tests/test_vecmath.py`` checks a sample);
* IEEE operations and explicit fused multiply-adds only (no fastmath, no contraction of a*b + c
  left to the compiler, no libm), so a scalar call and the same function inside a vectorised
  loop give bit-identical results.

Exact products and polynomials use ``_fma``, LLVM's ``llvm.fma.f64``: one rounding, the same in
scalar code and in the vectorised loop (``@llvm.fma.v<N>f64``, N doubles per vector: 4 with AVX2,
8 with AVX-512; ``vfmadd...pd`` on x86 with FMA3, which every AVX2 CPU has; the test suite
checks both on the host). On a CPU without FMA, LLVM lowers each one to a call of libm's
correctly rounded ``fma``: the results are the same, bit for bit, but the functions are then
many times slower (not measured here: this host has FMA3).

float32 arguments are converted to float64 by numba and the result is float64: float32 is not
part of the contract (rounding the result to float32 is the caller's business).

The exp/log family shares three kernels: ``_exp_rt``/``_exp_hl`` (exp(x) = 2**k * (1 + r + t), one
polynomial in fma form, for exp and tanh, which round once), ``_exp_dd`` (the same with Taylor odd
and even tails and exact leading terms, for expm1, sinh, cosh and erf, which need
exp(x) - 1 or exp(-x) too) and ``_log_sum`` (fdlibm's log1p polynomial). erf and erfc live in
``vecmath_erf``; sin/cos, atan and pow are not provided yet.
"""
from __future__ import annotations

from .vecmath_core import (INF, NAN, _bits, _copysign, _exp_dd_pm, _exp_hl, _exp_rt,
                           _expm1_reduced, _fabs, _fast_two_sum, _float, _fma, _int_to_float,
                           _jit, _ldexp, _odd_even, _pow2, _public, _reduce, _two_prod, _two_sum,
                           _where)
from .vecmath_erf import erf, erfc  # noqa: F401  (public here: vectorised() finds them by name)


@_public
def exp(x):
    """e**x. exp(+inf) = inf, exp(-inf) = +0, exp(NaN) = NaN; overflows to inf above
    709.782712893384, gradual underflow to +0 below -745.1332191019411.

    Max error measured: 0.741 ulp (at subnormal results, rounded twice; 0.647 ulp elsewhere)."""
    xc = _where(x > 709.8, 709.8, x)
    xc = _where(xc < -745.2, -745.2, xc)
    h, l, k = _exp_hl(xc)
    return _ldexp(h + l, k)   # rounded twice below 2**-1022 (at most 0.78 ulp in all)


@_public
def expm1(x):
    """e**x - 1, accurate for small |x|. expm1(+-0) = +-0, expm1(+inf) = inf,
    expm1(-inf) = -1, expm1(NaN) = NaN; overflows to inf above 709.782712893384.

    Max error measured: 0.531 ulp."""
    xc = _where(x > 709.8, 709.8, x)
    xc = _where(xc < -40.0, -40.0, xc)
    r, dr, k = _reduce(xc)
    z, z_lo = _two_prod(r, r)
    so, ce = _odd_even(z)
    s, e = _expm1_reduced(r, dr, z, z_lo, r * z * so, z * z * ce)
    # k == 0 (|x| < ln2/2): s + e. Otherwise e**x - 1 = 2**k * (1 + s + e - 2**-k), rounded
    # once, then scaled exactly (|result| > 0.29, never subnormal).
    m = _pow2(-_where(k > 1000, 1000, k))
    a, a_lo = _two_sum(s, -m)
    b, b_lo = _two_sum(1.0, a)
    y = _where(k == 0, s + e, _ldexp(b + ((b_lo + a_lo) + e), k))
    return _where(x == 0.0, x, y)   # keeps the sign of zero


# ---- hyperbolic functions ---------------------------------------------------------------------
# Small |x|: odd polynomials. Larger |x|: e**|x| and e**-|x| from one reduction, combined in
# double-double and rounded once.

# sinh(x) = x + x**3 * S(x**2) for |x| < 0.5: Taylor coefficients 1/(2n+1)! (the x**17 term is
# below 2**-62 relative there).
S1 = 1.0 / 6.0
S2 = 1.0 / 120.0
S3 = 1.0 / 5040.0
S4 = 1.0 / 362880.0
S5 = 1.0 / 39916800.0
S6 = 1.0 / 6227020800.0
S7 = 1.0 / 1307674368000.0
S8 = 1.0 / 355687428096000.0

# tanh(x) = x + x**3 * T(x**2) for |x| < 0.55: a degree-10 Chebyshev fit of
# (tanh(sqrt(z))/sqrt(z) - 1)/z on [0, 0.3025] (mpmath.chebyfit, 256-bit; relative error
# 2**-55 of the x**3 term, which is at most 10% of tanh there).
T0 = -0.3333333333333333
T1 = 0.13333333333332714
T2 = -0.053968253967434016
T3 = 0.021869488493666944
T4 = -0.008863234397814355
T5 = 0.003592110378689024
T6 = -0.001455661830100716
T7 = 0.0005889360520074057
T8 = -0.0002346347410887237
T9 = 8.511313685577672e-05
T10 = -2.060276537636634e-05


@_jit
def _exp_pm_scaled(a):
    """e**a = 2**(k+1) * (h + l) / 2 and e**-a = 2**(k+1) * m * (hm + lm) / 2 for a >= 0:
    returns (h, l, m*hm, m*lm, k), m = 2**-2k (0 where negligible, k > 30)."""
    h, l, hm, lm, k = _exp_dd_pm(a)
    m = _where(k > 30, 0.0, _pow2(-2 * _where(k > 30, 30, k)))
    return h, l, m * hm, m * lm, k


@_public
def cosh(x):
    """Hyperbolic cosine. cosh(+-0) = 1, cosh(+-inf) = inf, cosh(NaN) = NaN; overflows to inf
    for |x| above 710.4758600739439.

    Max error measured: 0.521 ulp."""
    a = _fabs(x)
    a = _where(a > 711.0, 711.0, a)
    h, l, hm, lm, k = _exp_pm_scaled(a)
    s, e = _two_sum(h, hm)
    return _ldexp(s + (e + l + lm), k - 1)


@_public
def sinh(x):
    """Hyperbolic sine. sinh(+-0) = +-0, sinh(+-inf) = +-inf, sinh(NaN) = NaN; overflows to
    +-inf for |x| above 710.4758600739439; sinh(x) == x for subnormal x.

    Max error measured: 0.581 ulp."""
    a = _fabs(x)
    z = x * x
    small = x + x * (z * (S1 + z * (S2 + z * (S3 + z * (S4 + z * (S5 + z * (S6 + z * (
        S7 + z * S8))))))))
    ac = _where(a > 711.0, 711.0, a)
    ac = _where(ac < 0.5, 0.5, ac)
    h, l, hm, lm, k = _exp_pm_scaled(ac)
    s, e = _two_sum(h, -hm)
    large = _copysign(_ldexp(s + (e + l - lm), k - 1), x)
    return _where(a < 0.5, small, large)


@_public
def tanh(x):
    """Hyperbolic tangent. tanh(+-0) = +-0, tanh(+-inf) = +-1, tanh(NaN) = NaN; tanh(x) == x for
    subnormal x, +-1 for |x| > 19.06.

    |x| < 0.55: the odd polynomial; above, 1 - 2/(e**2|x| + 1) with e**2|x| from ``_exp_rt``,
    the quotient corrected to double-double by one fma, so that 1 - q is rounded once.

    Max error measured: 0.700 ulp (in the polynomial; 0.523 ulp above 0.55)."""
    a = _fabs(x)
    z = x * x
    z2 = z * z
    z4 = z2 * z2
    p = _fma(z4, _fma(z4, _fma(z2, T10, _fma(z, T9, T8)),
                      _fma(z2, _fma(z, T7, T6), _fma(z, T5, T4))),
             _fma(z2, _fma(z, T3, T2), _fma(z, T1, T0)))
    small = _fma(x, z * p, x)
    ac = _where(a > 20.0, 20.0, a)
    ac = _where(ac < 0.55, 0.55, ac)
    r, t, k = _exp_rt(2.0 * ac)                  # e**2a = 2**k * (1 + r + t), 2 <= k <= 58
    m = _pow2(-k)
    d, dl = _fast_two_sum(1.0 + m, r)            # 1 + m is exact for k <= 52, and irrelevant
    d, dl = _fast_two_sum(d, dl + t)             # above: e**2a + 1 = 2**k * (d + dl)
    u = 2.0 / d
    ul = (_fma(-u, d, 2.0) - u * dl) * (0.5 * u)  # 2/(d + dl) = u + ul
    qh = u * m
    s, e = _fast_two_sum(1.0, -qh)
    large = s + (e - ul * m)
    return _copysign(_where(a < 0.55, small, large), x)   # also tanh(-0) = -0


# ---- log kernel -------------------------------------------------------------------------------
# fdlibm e_log.c / s_log1p.c (Sun Microsystems, 1993): log(1 + f) for f in
# [sqrt(2)/2 - 1, sqrt(2) - 1] as f - hfsq + s*(hfsq + R(s*s)), s = f/(2 + f), hfsq = f*f/2,
# R a Remez polynomial (error below 2**-58.45); x = 2**k * (1 + f) split as in musl's log.

LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01
LN2_HI32 = 6.93147180369123816490e-01   # 0x3fe62e42 fee00000: k*LN2_HI32 exact for |k| < 2**20
LN2_LO32 = 1.90821492927058770002e-10   # 0x3dea39ef 35793c76
SQRT_HALF_BITS = 0x3FE6A09E00000000   # the bits of ~sqrt(2)/2: 1 + f lands in [that, twice that)
MANTISSA_MASK = 0x000FFFFFFFFFFFFF


@_jit
def _log_reduce(x):
    """x = 2**k * (1 + f), f in [sqrt(2)/2 - 1, sqrt(2) - 1), for finite positive normal x."""
    ix = _bits(x)
    tmp = ix - SQRT_HALF_BITS
    k = tmp >> 52
    return _float(ix - (k << 52)) - 1.0, k


@_jit
def _log_sum(f, k, c):
    """log(2**k * (1 + f)) + c for f in [sqrt(2)/2 - 1, sqrt(2) - 1], |c| < 2**-50.

    fdlibm's sum k*ln2 + f - f*f/2 + s*(f*f/2 + R), its leading terms added in double-double
    and rounded once."""
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LG2 + w * (LG4 + w * LG6))
    t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    sq, sq_lo = _two_prod(f, f)
    hfsq = 0.5 * sq
    dk = _int_to_float(k)
    a, a_lo = _two_sum(dk * LN2_HI32, f)           # dk*LN2_HI32 is exact
    b, b_lo = _two_sum(a, -hfsq)
    return b + ((a_lo + b_lo) - 0.5 * sq_lo + (s * (hfsq + t1 + t2) + (dk * LN2_LO32 + c)))


@_public
def log(x):
    """Natural logarithm. log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = inf, log(NaN) = NaN;
    subnormal x are scaled by 2**54 first.

    Max error measured: 0.622 ulp."""
    sub = x < 2.2250738585072014e-308
    xs = _where(sub, x * 18014398509481984.0, x)
    f, k = _log_reduce(xs)
    y = _log_sum(f, k - _where(sub, 54, 0), 0.0)
    y = _where(x == INF, INF, y)
    y = _where(x == 0.0, -INF, y)
    return _where(x >= 0.0, y, _where(x < 0.0, NAN, x))   # x < 0: NaN; NaN: itself


@_public
def log1p(x):
    """log(1 + x), accurate for small |x|. log1p(+-0) = +-0, log1p(-1) = -inf,
    log1p(x < -1) = NaN, log1p(+inf) = inf, log1p(NaN) = NaN.

    Max error measured: 0.634 ulp."""
    u, u_lo = _two_sum(1.0, x)
    f, k = _log_reduce(u)
    c = u_lo / u               # log(u + u_lo) = log(u) + u_lo/u, |u_lo/u| < 2**-53
    near = (x > -0.2928932188134524) & (x < 0.41421356237309503)
    f = _where(near, x, f)     # 1 + x in [sqrt(2)/2, sqrt(2)): f = x exactly, no correction
    k = _where(near, 0, k)
    c = _where(near, 0.0, c)
    y = _log_sum(f, k, c)
    y = _where(x == INF, INF, y)
    y = _where(x == -1.0, -INF, y)
    y = _where(x == 0.0, x, y)     # keeps the sign of zero
    return _where(x < -1.0, NAN, y)


# ---- the table the batching transform reads -----------------------------------------------------
# Only functions measured to the 1-ulp contract (benchmarks/vecmath.py --accuracy) are listed.
# The entries stand for calls with ONE float argument (math.log(x, base) is not log).

_NAMES = {
    "exp": ("math", "np", "numpy"),
    "expm1": ("math", "np", "numpy"),
    "log": ("math", "np", "numpy"),
    "log1p": ("math", "np", "numpy"),
    "sinh": ("math", "np", "numpy"),
    "cosh": ("math", "np", "numpy"),
    "tanh": ("math", "np", "numpy"),
    "erf": ("math",),
    "erfc": ("math",),
}
VECTOR_FUNCTIONS = {f"{prefix}.{name}": name
                    for name, prefixes in _NAMES.items() for prefix in prefixes}

# Maximum error in ulps measured on 10**6 arguments per function (see the module docstring).
MAX_ULP = {"exp": 0.741, "expm1": 0.531, "log": 0.622, "log1p": 0.634, "sinh": 0.581,
           "cosh": 0.521, "tanh": 0.700, "erf": 0.958, "erfc": 0.818}


def vectorised(name):
    """The numba dispatcher computing the dotted ``name`` (``"math.exp"``, ``"np.tanh"``...) of a
    one-argument call, vectorisable in a numba loop, or None when there is none."""
    target = VECTOR_FUNCTIONS.get(name)
    return None if target is None else globals()[target]
