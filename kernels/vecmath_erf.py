"""erf and erfc for ``vecmath``: fdlibm's rational approximations, evaluated branch-free.

fdlibm s_erf.c (Sun Microsystems, 1993; coefficients below are fdlibm's published ones) splits
|x| into four intervals, each with a rational fit:

* [0, 0.84375): erf(x) = x + x*pp(z)/qq(z), z = x*x (|R - (erf(x) - x)/x| < 2**-57.90);
* [0.84375, 1.25): erf(x) = sign(x)*(erx + pa(s)/qa(s)), s = |x| - 1, erx = (float)erf(1);
* [1.25, 1/0.35) and [1/0.35, 6): erf(x) = sign(x)*(1 - erfc(|x|)),
  erfc(a) = exp(-a*a - 0.5625 + R(1/a**2)/S(1/a**2))/a, two sets of coefficients;
* [6, inf]: erf(x) = sign(x).

Here every lane evaluates the two small-argument fits as one rational function whose
coefficients are selected per lane, and the tail with the other selected set; exp(-a*a...)
is computed with ``vecmath``'s double-double exp (a*a exact through an fma product).

erfc uses the same fits, but its results are smaller than erf's, down to 0.077 at 1.25 and to
subnormals near 27: rounding errors that erf's 1 - erfc hides (fdlibm's x*R/S above 0.25, the
last Horner steps, 1/(x*x), the quotient) are each kept in double-double there. That makes
erfc about twice erf's cost: every lane evaluates both rational functions and an exp.

A faster erfc through erfcx was measured and rejected (2 shared cores, AMD EPYC, ns/element of a
vectorised loop over [-4, 4]; exp 1.9, this erfc 24-26, libm 29-33): erfc(x) = exp(-x**2) * erfcx(x)
with erfcx(x) * (x + K) as ONE polynomial in t = (x - K)/(x + K) on [0.5, 27.3] (K = 3.69) needs
degree 22-24 for 2**-59..2**-64 relative (mpmath chebyfit), and its monomial terms cancel near
x = 27 (sum |c_i t**i| is 4 times the value), so the first five Horner steps must be
double-double and t's rounding corrected; a cost skeleton of that (no correction) took
15.5 ns, and the bare degree-23 polynomial + double-double exp + one division 10.2 ns. On
[0, 27.3] the fit needs degree 26; exp(F(t)) with F = log(erfcx(x) * (x + K)) is well
conditioned but converges slower (2**-47 at degree 20); x*erfcx(x) in 1/x**2 converges slowly
(asymptotic series). None reaches the 5 ns a batched Black-Scholes wants at 1 ulp.
"""
from __future__ import annotations

from .vecmath_core import (_copysign, _exp_dd, _fabs, _fast_two_sum, _fma, _jit, _ldexp, _public,
                           _two_prod, _two_sum, _where)

ERX = 8.45062911510467529297e-01
EFX8 = 1.02703333676410069053e+00
PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
      -5.77027029648944159157e-03, -2.37630166566501626084e-05, 0.0, 0.0)
QQ = (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
      1.32494738004321644526e-04, -3.96022827877536812320e-06, 0.0)
PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
      3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
      -2.16637559486879084300e-03)
QA = (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
      1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
      -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
      -8.12874355063065934246e+01, -9.81432934416914548592e+00)
SA = (1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
      6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
      6.57024977031928170135e+00, -6.04244152148580987438e-02)
RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
      -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
      -4.83519191608651397019e+02, 0.0)
SB = (3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
      3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
      -2.24409524465858183362e+01, 0.0)


@_jit
def _poly7(c, v, a0, a1, a2, a3, a4, a5, a6, b0, b1, b2, b3, b4, b5, b6):
    """Horner (fma) on coefficients chosen per lane: a_i where c, else b_i (degree 6)."""
    return _fma(v, _fma(v, _fma(v, _fma(v, _fma(v, _fma(v, _where(c, a6, b6), _where(c, a5, b5)),
                                                 _where(c, a4, b4)), _where(c, a3, b3)),
                                  _where(c, a2, b2)), _where(c, a1, b1)), _where(c, a0, b0))


@_jit
def _erfc_tail(a):
    """erfc(a) for 1.25 <= a < 28 as (m, k): erfc(a) = m * 2**k, m rounded once."""
    z = 1.0 / (a * a)
    near = a < 2.857142857142857
    r = _where(near, RA[0], RB[0]) + z * _poly7(
        near, z, RA[1], RA[2], RA[3], RA[4], RA[5], RA[6], RA[7],
        RB[1], RB[2], RB[3], RB[4], RB[5], RB[6], RB[7])
    s = 1.0 + z * (_where(near, SA[0], SB[0]) + z * _poly7(
        near, z, SA[1], SA[2], SA[3], SA[4], SA[5], SA[6], SA[7],
        SB[1], SB[2], SB[3], SB[4], SB[5], SB[6], SB[7]))
    # -a*a - 0.5625 + r/s as t + t_lo, a*a exact
    p, p_lo = _two_prod(a, a)
    t1, e1 = _two_sum(-p, -0.5625)
    t, e2 = _two_sum(t1, r / s)
    t_lo = (e1 + e2) - p_lo
    h, l, k = _exp_dd(t)
    return (h + (l + h * t_lo)) / a, k


@_public
def erf(x):
    """The error function. erf(+-0) = +-0, erf(+-inf) = +-1, erf(NaN) = NaN; erf(x) = +-1 for
    |x| >= 5.93; no spurious underflow for subnormal x.

    Max error measured: 0.958 ulp (fdlibm's small-argument fits: about 5% of results
    are not correctly rounded, all within 1 ulp)."""
    a = _fabs(x)
    # [0, 0.84375) and [0.84375, 1.25): one rational function, coefficients per lane
    small = a < 0.84375
    v = _where(small, x * x, a - 1.0)
    num = _poly7(small, v, PP[0], PP[1], PP[2], PP[3], PP[4], PP[5], PP[6],
                 PA[0], PA[1], PA[2], PA[3], PA[4], PA[5], PA[6])
    den = 1.0 + v * _poly7(small, v, QQ[0], QQ[1], QQ[2], QQ[3], QQ[4], QQ[5], 0.0,
                           QA[0], QA[1], QA[2], QA[3], QA[4], QA[5], 0.0)
    y = num / den
    tiny = 0.125 * (8.0 * x + EFX8 * x)      # |x| < 2**-28, no underflow in x*y
    y_small = _where(a < 3.725290298461914e-09, tiny, x + x * y)
    y_mid = _copysign(ERX + y, x)
    # [1.25, 6): 1 - erfc(|x|)
    ac = _where(a < 1.25, 1.25, _where(a > 6.0, 6.0, a))
    m, k = _erfc_tail(ac)
    y_tail = _copysign(1.0 - _ldexp(m, k), x)
    y_tail = _where(a >= 6.0, _copysign(1.0, x), y_tail)
    return _where(small, y_small, _where(a < 1.25, y_mid, _where(a == a, y_tail, x)))


# ---- erfc ---------------------------------------------------------------------------------------
# The same fits, evaluated so that erfc's smaller results are still rounded once: the last three
# Horner steps of each numerator and denominator in double-double (the argument too: x*x and
# 1/(x*x) carry their rounding error), the quotient corrected by one fma, and 1 - erf or the
# tail's exponent and division by |x| summed in double-double.

@_jit
def _dd_step(h, l, v, vl, c):
    """(h + l) * (v + vl) + c as a double-double."""
    m, me = _two_prod(h, v)
    s, se = _two_sum(c, m)
    return s, se + (me + _fma(h, vl, l * v))


@_jit
def _dd_quotient(nh, nl, dh, dl):
    """(nh + nl) / (dh + dl) as q + ql, one division: q = nh * (1/dh) is within 2 ulps, and
    the fma residual corrects it."""
    r = 1.0 / dh
    q = nh * r
    return q, (_fma(-q, dh, nh) + (nl - q * dl)) * r


@_jit
def _sel(c, a, b):
    return _where(c, a, b)


@_jit
def _erfc_tail_dd(a):
    """erfc(a) for 1.25 <= a <= 28 as (m, k): erfc(a) = m * 2**k, m rounded once."""
    p, p_lo = _two_prod(a, a)
    inv = 1.0 / a
    z = inv * inv
    zl = z * (_fma(-z, p, 1.0) - z * p_lo)         # z + zl = 1/a**2 to about 2**-100
    c = a < 2.857142857142857
    u = _fma(z, _fma(z, _fma(z, _fma(z, _sel(c, RA[7], RB[7]), _sel(c, RA[6], RB[6])),
                             _sel(c, RA[5], RB[5])), _sel(c, RA[4], RB[4])), _sel(c, RA[3], RB[3]))
    rh, rl = _dd_step(u, 0.0, z, zl, _sel(c, RA[2], RB[2]))
    rh, rl = _dd_step(rh, rl, z, zl, _sel(c, RA[1], RB[1]))
    rh, rl = _dd_step(rh, rl, z, zl, _sel(c, RA[0], RB[0]))
    w = _fma(z, _fma(z, _fma(z, _fma(z, _fma(z, _sel(c, SA[7], SB[7]), _sel(c, SA[6], SB[6])),
                                     _sel(c, SA[5], SB[5])), _sel(c, SA[4], SB[4])),
                     _sel(c, SA[3], SB[3])), _sel(c, SA[2], SB[2]))
    sh, sl = _dd_step(w, 0.0, z, zl, _sel(c, SA[1], SB[1]))
    sh, sl = _dd_step(sh, sl, z, zl, _sel(c, SA[0], SB[0]))
    sh, sl = _dd_step(sh, sl, z, zl, 1.0)
    fh, fl = _dd_quotient(rh, rl, sh, sl)
    # exponent -a*a - 0.5625 + R/S as t + t_lo
    t1, e1 = _two_sum(-p, -0.5625)
    t, e2 = _two_sum(t1, fh)
    t_lo = ((e1 + e2) - p_lo) + fl
    h, l, k = _exp_dd(t)
    nl = l + h * t_lo                              # e**(t + t_lo) = h + nl
    q = h * inv
    return q + (_fma(-q, a, h) + nl) * inv, k


@_public
def erfc(x):
    """The complementary error function 1 - erf(x), accurate where erf(x) is close to 1.
    erfc(+-0) = 1, erfc(+inf) = +0, erfc(-inf) = 2, erfc(NaN) = NaN; erfc(x) = 2 below -5.864,
    subnormal above 26.543 (rounded twice there), +0 above 27.226.

    Max error measured: 0.818 ulp (near 1.25, where fdlibm's fits change)."""
    a = _fabs(x)
    # |x| < 0.84375: 1 - x - x*y, y = pp(z)/qq(z), z = x*x; below 1.25: 1 -+ (erx + P/Q)(a - 1)
    small = a < 0.84375
    z, zl = _two_prod(x, x)
    v = _where(small, z, a - 1.0)
    vl = _where(small, zl, 0.0)
    u = _fma(v, _fma(v, _fma(v, _sel(small, PP[6], PA[6]), _sel(small, PP[5], PA[5])),
                     _sel(small, PP[4], PA[4])), _sel(small, PP[3], PA[3]))
    nh, nl = _dd_step(u, 0.0, v, vl, _sel(small, PP[2], PA[2]))
    nh, nl = _dd_step(nh, nl, v, vl, _sel(small, PP[1], PA[1]))
    nh, nl = _dd_step(nh, nl, v, vl, _sel(small, PP[0], PA[0]))
    w = _fma(v, _fma(v, _fma(v, _sel(small, QQ[5], QA[5]), _sel(small, QQ[4], QA[4])),
                     _sel(small, QQ[3], QA[3])), _sel(small, QQ[2], QA[2]))
    dh, dl = _dd_step(w, 0.0, v, vl, _sel(small, QQ[1], QA[1]))
    dh, dl = _dd_step(dh, dl, v, vl, _sel(small, QQ[0], QA[0]))
    dh, dl = _dd_step(dh, dl, v, vl, 1.0)
    yh, yl = _dd_quotient(nh, nl, dh, dl)
    # small: 1 - x - x*(yh + yl)
    xy, xy_lo = _two_prod(x, yh)
    s1, e1 = _fast_two_sum(1.0, -x)
    s2, e2 = _two_sum(s1, -xy)
    y_small = s2 + ((e1 + e2) - (xy_lo + x * yl))
    # 0.84375 <= |x| < 1.25: 1 - erx - P/Q (x > 0), 1 + erx + P/Q (x < 0); 1 -+ erx is exact
    sg = _copysign(1.0, x)
    s3, e3 = _two_sum(1.0 - sg * ERX, -sg * yh)
    y_mid = s3 + (e3 - sg * yl)
    # |x| >= 1.25: the tail; 2 - erfc(|x|) for x < 0
    ac = _where(a < 1.25, 1.25, _where(a > 28.0, 28.0, a))
    m, k = _erfc_tail_dd(ac)
    tail = _ldexp(m, k)
    y_tail = _where(x < 0.0, 2.0 - tail, tail)
    y = _where(small, y_small, _where(a < 1.25, y_mid, y_tail))
    return _where(x == x, y, x)
