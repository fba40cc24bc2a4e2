"""Complex-step versions of the primitives of :mod:`nbautodiff.rules`, for :mod:`nbautodiff.checks.replay`.

The complex step evaluates ``f(x + i h e_k)`` with a tiny ``h``: the imaginary part of the
result is ``h`` times the derivative, without the cancellation of a finite difference. That
needs every primitive to extend analytically to complex arguments near the real axis. This
module gives each one such an extension, by the name of its rule in :mod:`nbautodiff.rules`
(:data:`BY_RULE`), built from NumPy/SciPy complex functions rather than from the derivative
rules, so that the complex step stays independent of them. Where a primitive is not analytic
(``abs``, ``min``, comparisons, rounding) the extension follows the real part, the usual
convention: the complex step then differentiates the branch taken, as AD does.

Every function accepts Python/NumPy scalars and NumPy arrays, real or complex.
"""
from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def re(value):
    """The real part of a complex scalar or array; anything else unchanged (ints stay ints)."""
    if isinstance(value, (complex, np.complexfloating)):
        return value.real
    if isinstance(value, np.ndarray) and value.dtype.kind == "c":
        return value.real
    return value


def is_complex(value) -> bool:
    return isinstance(value, (complex, np.complexfloating)) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "c")


def _pick(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (np.where for arrays)."""
    if np.ndim(condition) == 0 and np.ndim(a) == 0 and np.ndim(b) == 0:
        return a if condition else b
    return np.where(condition, a, b)


def _int_power(x, n: int):
    """``x ** n`` by repeated squaring (exact for a negative real base, unlike exp(n log x))."""
    result = np.ones_like(x) if isinstance(x, np.ndarray) else 1.0
    base, k = x, abs(n)
    while k:
        if k & 1:
            result = result * base
        base = base * base
        k >>= 1
    return 1.0 / result if n < 0 else result


def power(x, y):
    """``x ** y``. Where ``x <= 0`` the real function exists for integral ``y`` only, so a
    perturbation of ``y`` is dropped there (its rule gives zero too)."""
    if is_complex(y) and not np.any(np.imag(y)):
        y = re(y)
    if not (is_complex(x) or is_complex(y)):
        return x ** y
    if not is_complex(y):
        if np.ndim(y) == 0 and float(y) == int(y) and abs(y) <= 1024:
            return _int_power(x, int(y))
        return np.power(x, y)          # NumPy multiplies for integral exponents up to 100
    with np.errstate(all="ignore"):
        return _pick(re(x) > 0, np.exp(y * np.log(x)), power(x, re(y)))


def absolute(x):
    return _pick(re(x) >= 0, x, -x)


def minimum(x, y):
    return _pick(re(x) <= re(y), x, y)


def maximum(x, y):
    return _pick(re(x) >= re(y), x, y)


def atan2(y, x):
    """atan2 is atan(y/x) plus a constant near any point off the origin: the real part is the
    real atan2, the imaginary part that of atan(y/x) (or of -atan(x/y) near the y axis)."""
    yr, xr = re(y), re(x)
    with np.errstate(all="ignore"):
        along_x = np.imag(np.arctan(y / x)) if is_complex(y / x) else 0.0 * xr
        along_y = np.imag(-np.arctan(x / y)) if is_complex(x / y) else 0.0 * xr
    return np.arctan2(yr, xr) + 1j * _pick(np.abs(xr) >= np.abs(yr), along_x, along_y)


def cbrt(x):
    sign = np.sign(re(x))
    return sign * np.exp(np.log(sign * x) / 3.0) if is_complex(x) else np.cbrt(x)


def hypot(x, y):
    return np.sqrt(x * x + y * y)


def copysign(x, y):
    return _pick(np.copysign(1.0, re(x)) == np.copysign(1.0, re(y)), x, -x)


def fmod(x, y):
    return x - y * np.trunc(re(x) / re(y))


def mod(x, y):
    """Python's ``%``: ``x - y * floor(x / y)``; ints keep integer arithmetic."""
    if not (is_complex(x) or is_complex(y)):
        return x % y
    return x - y * np.floor(re(x) / re(y))


def floordiv(x, y):
    return re(x) // re(y)


def erf(x):
    from scipy.special import erf as complex_erf
    return complex_erf(x)


def erfc(x):
    from scipy.special import erfc as complex_erfc
    return complex_erfc(x)


def identity(x):
    return x


def real_call(function, *args, **keywords):
    """``function`` on the real parts of its arguments: the primitives whose derivative is zero
    (rounding, ``len``, ``sign``...) and functions declared non-differentiable."""
    return function(*[re(a) for a in args], **keywords)


def constructed(function, *args, **keywords):
    """An array constructor's result, complex where it holds floats, so that complex values
    stored into it keep their imaginary parts."""
    result = function(*[re(a) for a in args], **keywords)
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        return result.astype(np.complex128)
    return result


#: Rule name (:mod:`nbautodiff.rules`) -> complex-step function.
BY_RULE = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y, "pow_": power, "mod": mod, "floordiv": floordiv,
    "neg": lambda x: -x, "pos": lambda x: +x,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "atan2": atan2, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "exp": np.exp,
    "expm1": np.expm1, "exp2": lambda x: np.exp(LN2 * x), "log": np.log, "log1p": np.log1p,
    "log10": np.log10, "log2": lambda x: np.log(x) / LN2, "sqrt": np.sqrt, "cbrt": cbrt,
    "square": lambda x: x * x, "power": power, "hypot": hypot, "erf": erf, "erfc": erfc,
    "abs_": absolute, "fabs": absolute, "minimum": minimum, "maximum": maximum,
    "copysign": copysign, "fmod": fmod, "to_float": identity,
    # whole-array primitives: NumPy's own functions are complex-analytic (max/min compare
    # complex numbers by their real parts first)
    "sum_": np.sum, "sum_axis": lambda x, axis: np.sum(x, axis=axis), "mean": np.mean,
    "mean_axis": lambda x, axis: np.mean(x, axis=axis), "prod": np.prod,
    "max_": lambda x: x.flat[np.argmax(re(x))], "min_": lambda x: x.flat[np.argmin(re(x))],
    "max_axis": lambda x, axis: np.take_along_axis(
        x, np.expand_dims(np.argmax(re(x), axis=axis), axis), axis).squeeze(axis),
    "min_axis": lambda x, axis: np.take_along_axis(
        x, np.expand_dims(np.argmin(re(x), axis=axis), axis), axis).squeeze(axis),
    "dot": np.dot, "outer": np.outer, "transpose": np.transpose, "reshape": np.reshape,
    "where": np.where, "cumsum": np.cumsum, "det": np.linalg.det, "inv": np.linalg.inv,
    "solve": np.linalg.solve, "atleast_1d": np.atleast_1d, "atleast_2d": np.atleast_2d,
    "atleast_3d": np.atleast_3d,
}
