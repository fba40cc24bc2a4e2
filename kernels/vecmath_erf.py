"""erf for ``vecmath``: fdlibm's rational approximations, evaluated branch-free.

fdlibm s_erf.c (Sun Microsystems, 1993; coefficients below are fdlibm's published ones) splits
|x| into four intervals, each with a rational fit:

* [0, 0.84375): erf(x) = x + x*pp(z)/qq(z), z = x*x (|R - (erf(x) - x)/x| < 2**-57.90);
* [0.84375, 1.25): erf(x) = sign(x)*(erx + pa(s)/qa(s)), s = |x| - 1, erx = (float)erf(1);
* [1.25, 1/0.35) and [1/0.35, 6): erf(x) = sign(x)*(1 - erfc(|x|)),
  erfc(a) = exp(-a*a - 0.5625 + R(1/a**2)/S(1/a**2))/a, two sets of coefficients;
* [6, inf]: erf(x) = sign(x).

Here every lane evaluates the two small-argument fits as one rational function whose
coefficients are selected per lane, and the tail with the other selected set; exp(-a*a...)
is computed with ``vecmath``'s double-double exp (a*a exact through Dekker's product).
"""
from __future__ import annotations

from .vecmath import (_copysign, _exp_dd, _fabs, _fma, _jit, _ldexp, _public, _two_prod, _two_sum,
                      _where)

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
