"""The building blocks of :mod:`nbautodiff.kernels.vecmath` and :mod:`nbautodiff.kernels.vecmath_erf`.

Bit-level intrinsics (bitcasts, lane selects, fused multiply-add), error-free transformations
(two-sum, two-product, double-double division), range reduction and the shared exp kernels
(``_exp_rt``/``_exp_hl``, ``_exp_dd``), all compiled with the options of :data:`_OPTIONS`. The
contracts and the method are described in :mod:`nbautodiff.kernels.vecmath`.
"""
from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .compiled import helper

# forceinline: LLVM's ``alwaysinline``, since its inliner alone leaves the larger functions as
# calls, which keeps the caller's loop scalar. fastmath=False is explicit because numba
# otherwise inherits the caller's fastmath flag, which would break the error-free
# transformations below. error_model="numpy": no zero-division checks.
_OPTIONS = dict(cache=True, error_model="numpy", fastmath=False, forceinline=True)
_jit = helper(**_OPTIONS)
_public = numba.njit("float64(float64)", **_OPTIONS)   # float32/int arguments are converted


# ---- bit-level primitives --------------------------------------------------------------------

@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (a bitcast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _float(typingctx, i):
    """The float64 whose IEEE bits are the int64 ``i``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _where(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` (no branch); ``a`` and ``b`` are unified."""
    ty = typingctx.unify_types(types.unliteral(a), types.unliteral(b))

    def codegen(context, builder, signature, args):
        (tc, ta, tb), (c, x, y) = signature.args, args
        c = context.cast(builder, c, tc, types.boolean)
        x = context.cast(builder, x, ta, ty)
        y = context.cast(builder, y, tb, ty)
        return builder.select(c, x, y)
    return ty(cond, a, b), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a*b + c rounded once: LLVM's ``llvm.fma.f64`` (``@llvm.fma.v<N>f64`` once the
    loop is vectorised, ``vfmadd`` on FMA hardware, a libm ``fma`` call elsewhere)."""
    def codegen(context, builder, signature, args):
        args = [context.cast(builder, v, t, types.float64) for v, t in zip(args, signature.args)]
        return builder.fma(*args)
    return types.float64(a, b, c), codegen


SHIFTER = 6755399441055744.0        # 1.5 * 2**52: x + SHIFTER rounds x to an integer in its low bits
SIGN = -0x8000000000000000           # the sign bit of a float64, as an int64
ABS = 0x7FFFFFFFFFFFFFFF
INF = float("inf")
NAN = float("nan")


@_jit
def _fabs(x):
    return _float(_bits(x) & ABS)


@_jit
def _copysign(y, x):
    """|y| with the sign of x."""
    return _float((_bits(y) & ABS) | (_bits(x) & SIGN))


@_jit
def _int_to_float(k):
    """float(k) for |k| < 2**51, through the shifter (vectorises without AVX-512)."""
    return _float(k + _bits(SHIFTER)) - SHIFTER


@_jit
def _pow2(k):
    """2.0**k for -1022 <= k <= 1023."""
    return _float((k + 1023) << 52)


@_jit
def _ldexp(y, k):
    """y * 2**k for normal y and |k| <= 2044, rounded once (gradual underflow, overflow to inf)."""
    k1 = k >> 1
    return y * _pow2(k1) * _pow2(k - k1)


# ---- error-free transformations (Knuth, Dekker) -------------------------------------------------

@_jit
def _two_sum(a, b):
    """s + e == a + b exactly, s = fl(a + b)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_jit
def _fast_two_sum(a, b):
    """s + e == a + b exactly for |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


@_jit
def _two_prod(a, b):
    """p + e == a * b exactly, p = fl(a * b) (one fused multiply-add)."""
    p = a * b
    return p, _fma(a, b, -p)


@_jit
def _dd_div(nh, nl, dh, dl):
    """(nh + nl) / (dh + dl) rounded once, relative error about 2**-104 before rounding."""
    q = nh / dh
    return q + (_fma(-q, dh, nh) + _fma(-q, dl, nl)) / dh


# ---- exp kernel -------------------------------------------------------------------------------
# x = k*ln2 + r + dr, k = round(x/ln2), |r| <= ln2/2 + 2**-44: ln2 = LN2_HI + LN2_LO (LN2_HI
# the double nearest ln2), x - k*LN2_HI exact in one fma, the rest carried as dr (|dr| < 2**-45).
# exp(r) - 1 = r + r**2/2 + r**3*SO(r**2) + r**4*CE(r**2), SO and CE the Taylor series of the odd
# and even parts, truncated after r**13 and r**14 (remainder below 2**-62 on the interval); the
# leading terms are exact (two_prod, fast_two_sum), so callers round once. The odd/even split
# gives exp(-r) - 1 for the price of a few additions (cosh, sinh).

INVLN2 = 1.44269504088896338700e+00
LN2_HI = 0.6931471805599453            # 0x3fe62e42 fefa39ef, ln2 rounded
LN2_LO = 2.3190468138462996e-17        # ln2 - LN2_HI
SO0, SO1, SO2, SO3, SO4, SO5 = (1 / 6, 1 / 120, 1 / 5040, 1 / 362880, 1 / 39916800,
                                1 / 6227020800)
CE0, CE1, CE2, CE3, CE4, CE5 = (1 / 24, 1 / 720, 1 / 40320, 1 / 3628800, 1 / 479001600,
                                1 / 87178291200)


@_jit
def _reduce(x):
    """x = k*ln2 + r + dr, k = round(x/ln2), for |x| < 746 (or NaN): returns r = fl(r + dr), dr
    (below 2**-53 |r| and 2**-99 relative to x - k*ln2) and k (int64)."""
    kd = _fma(x, INVLN2, SHIFTER)
    k = _bits(kd) - _bits(SHIFTER)
    kf = kd - SHIFTER
    rh = _fma(kf, -LN2_HI, x)                    # exact: a multiple of 2**-54 below 0.5
    rl = kf * -LN2_LO
    r = rh + rl
    return r, (rh - r) + rl, k


@_jit
def _odd_even(z):
    """SO(z), CE(z) in fma Horner form."""
    so = _fma(z, _fma(z, _fma(z, _fma(z, _fma(z, SO5, SO4), SO3), SO2), SO1), SO0)
    ce = _fma(z, _fma(z, _fma(z, _fma(z, _fma(z, CE5, CE4), CE3), CE2), CE1), CE0)
    return so, ce


@_jit
def _expm1_reduced(r, dr, z, z_lo, odd, even):
    """exp(r + dr) - 1 as s + e (|e| <= ulp(s)), given z + z_lo == r**2 exactly and the odd and
    even tails r**3*SO(z), r**4*CE(z)."""
    s, e0 = _fast_two_sum(r, 0.5 * z)             # |r| >= r**2/2
    e = e0 + ((0.5 * z_lo + (odd + even)) + _fma(dr, s, dr))   # dr*exp(r)
    return _fast_two_sum(s, e)


@_jit
def _exp_dd(x):
    """exp(x) == (h + l) * 2**k, h in [0.7, 1.42], relative error below 2**-60; finite x."""
    r, dr, k = _reduce(x)
    z, z_lo = _two_prod(r, r)
    so, ce = _odd_even(z)
    s, e = _expm1_reduced(r, dr, z, z_lo, r * z * so, z * z * ce)
    h, l = _fast_two_sum(1.0, s)
    return h, l + e, k


@_jit
def _exp_dd_pm(x):
    """exp(x) and exp(-x) as (h + l) * 2**k and (hm + lm) * 2**-k, sharing one reduction."""
    r, dr, k = _reduce(x)
    z, z_lo = _two_prod(r, r)
    so, ce = _odd_even(z)
    odd = r * z * so
    even = z * z * ce
    s, e = _expm1_reduced(r, dr, z, z_lo, odd, even)
    h, l = _fast_two_sum(1.0, s)
    sm, em = _expm1_reduced(-r, -dr, z, z_lo, -odd, even)
    hm, lm = _fast_two_sum(1.0, sm)
    return h, l + e, hm, lm + em, k


@_jit
def _scale_exp(h, l, k):
    """(h + l) * 2**k rounded once, also when subnormal (h in [0.7, 1.42], |l| < 2**-50,
    -1080 < k <= 1025): below 2**-1022 the sum is rounded at the subnormal grid by adding 1
    (musl's exp specialcase), above it is rounded, then scaled exactly or to inf. No
    floating-point operation has a subnormal result, except in lanes that return one."""
    normal = _ldexp(h + l, k)
    scale = _pow2(_where(k < -1020, k + 1022, 0))
    a = scale * h                                 # exact
    b = scale * l
    v = a + b
    vl = (a - v) + b
    t = 1.0 + v
    tl = ((1.0 - t) + v) + vl
    # t + tl in [1, 2], rounded at 2**-52: its fraction bits are those of the subnormal result
    # (a bit-level scaling: a floating-point multiply with a subnormal result is microcoded)
    sub = _float(_bits(t + tl) - _bits(1.0))
    return _where((k < -1020) & (v < 1.0), sub, normal)


# exp alone (and tanh) need one exponential rounded once, not a double-double: there
# exp(r) = 1 + r + r**2*Q(r), Q a degree-10 Chebyshev fit of (exp(r) - 1 - r)/r**2 on
# [-0.3466, 0.3466] (mpmath.chebyfit, 300 bits; error of r**2*Q below 2**-61 relative to exp(r)),
# 1 + r split exactly and r**2 taken exactly from two_prod, so that the last addition dominates.
Q0, Q1, Q2, Q3, Q4, Q5, Q6, Q7, Q8, Q9, Q10 = (
    0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326136, 0.001388888888888375,
    0.00019841269874815834, 2.480158732554432e-05, 2.7557255406285044e-06,
    2.7557273647451087e-07, 2.5105214474751694e-08, 2.0914685161418266e-09)


@_jit
def _exp_rt(x):
    """exp(x) == (1 + r + t) * 2**k, |r| <= 0.3466, |t| < 0.07, relative error below 2**-60
    before the caller's roundings; |x| < 746."""
    r, dr, k = _reduce(x)
    z = r * r
    z2 = z * z
    # Estrin's scheme: shorter dependency chains than Horner, for the same rounding here
    q = _fma(z2 * z2, _fma(z, Q10, _fma(r, Q9, Q8)),
             _fma(z2, _fma(z, _fma(r, Q7, Q6), _fma(r, Q5, Q4)),
                  _fma(z, _fma(r, Q3, Q2), _fma(r, Q1, Q0))))
    return r, _fma(z, q, _fma(dr, r, dr)), k


@_jit
def _exp_hl(x):
    """exp(x) == (h + l) * 2**k, h = fl(1 + r) in [0.7, 1.42], |l| < 0.07."""
    r, t, k = _exp_rt(x)
    h, hl = _fast_two_sum(1.0, r)
    return h, hl + t, k
