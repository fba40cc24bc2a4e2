"""Central finite differences and a gradient comparison helper, independent of nbautodiff.

``central_diff(fun, args, argnums)`` differentiates ``fun(*args)`` (a scalar-valued function of
Python floats/ints and NumPy arrays of any rank) with respect to the chosen arguments:

* the step is scaled to the value, ``h = rel_step * max(1, |x|)``, and rounded so that ``x + h``
  is exactly representable;
* each partial is a Richardson-extrapolated central difference,
  ``(4 D(h/2) - D(h)) / 3`` with ``D(h) = (f(x + h) - f(x - h)) / 2h`` (error O(h^4));
* float32 arrays are evaluated in float64 (``upcast=True``), so the reference is as accurate as
  the float64 one and only the AD result carries float32 rounding;
* every evaluation gets fresh copies of the array arguments, so functions that write into their
  inputs are differentiated at the right point.

``assert_grad_close(ad, fd, rtol=..., atol=..., label=...)`` compares one gradient component-wise
(``|ad - fd| <= atol + rtol * |fd|``) and, on failure, says which components differ, with AD and
FD side by side.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["central_diff", "directional_diff", "fd_vjp", "evaluate", "copy_args", "assert_grad_close", "max_abs"]


def copy_args(args):
    """A copy of ``args`` in which every ndarray is copied (scalars are immutable)."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _upcast(args):
    return tuple(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a
                 for a in args)


def evaluate(fun, args):
    """``fun(*args)`` on copies of the array arguments."""
    return fun(*copy_args(args))


def _as_float(value, what):
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise TypeError(f"{what}: expected a scalar result, got an array of shape {value.shape}")
        value = value[()]
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{what}: expected a real scalar result, got {type(value).__name__}")
    return float(value)


def _step(x0, rel_step):
    h = rel_step * max(1.0, abs(x0))
    # make x0 + h exactly representable so the divided difference uses the true step
    return (x0 + h) - x0


def _partial(phi, x0, rel_step, richardson):
    """d phi / dx at x0 for a scalar function phi of one float."""
    h = _step(x0, rel_step)

    def d(step):
        return (phi(x0 + step) - phi(x0 - step)) / (2.0 * step)

    if not richardson:
        return d(h)
    return (4.0 * d(h / 2.0) - d(h)) / 3.0


def central_diff(fun, args, argnums=0, *, rel_step=1e-4, richardson=True, upcast=True):
    """Gradient of scalar ``fun(*args)`` w.r.t. ``args[argnums]`` by central differences.

    Returns a float (scalar argument) or a float64 array of the argument's shape; a tuple of
    those when ``argnums`` is a tuple or list.
    """
    single = isinstance(argnums, numbers.Integral)
    nums = (int(argnums),) if single else tuple(argnums)
    base = _upcast(args) if upcast else tuple(args)
    out = []
    for k in nums:
        a = base[k]
        if isinstance(a, np.ndarray):
            if a.dtype.kind != "f":
                raise TypeError(f"argument {k}: cannot differentiate an array of dtype {a.dtype}")
            g = np.zeros(a.shape, dtype=np.float64)
            for idx in np.ndindex(*a.shape):
                def phi(v, idx=idx, k=k):
                    call = list(copy_args(base))
                    call[k][idx] = v
                    return _as_float(fun(*call), "fun")
                g[idx] = _partial(phi, float(a[idx]), rel_step, richardson)
            out.append(g)
        elif isinstance(a, numbers.Real) and not isinstance(a, (bool, numbers.Integral)):
            def phi(v, k=k):
                call = list(copy_args(base))
                call[k] = v
                return _as_float(fun(*call), "fun")
            out.append(_partial(phi, float(a), rel_step, richardson))
        else:
            raise TypeError(f"argument {k}: cannot differentiate a {type(a).__name__}")
    return out[0] if single else tuple(out)


def directional_diff(fun, args, argnums, directions, *, rel_step=1e-4):
    """Derivative of scalar ``fun(*args)`` along ``directions`` (one per argument of
    ``argnums``, a float or an array of the argument's shape) by a Richardson-extrapolated
    central difference of ``t -> fun(args + t * directions)`` at 0."""
    base = _upcast(args)
    scale = max([1.0] + [float(np.max(np.abs(base[k]))) if isinstance(base[k], np.ndarray)
                         else abs(base[k]) for k in argnums])

    def phi(t):
        call = list(copy_args(base))
        for k, direction in zip(argnums, directions):
            call[k] = call[k] + t * (np.asarray(direction, np.float64)
                                     if isinstance(call[k], np.ndarray) else direction)
        return _as_float(fun(*call), "fun")

    return _partial(phi, 0.0, rel_step * scale, True)


def fd_vjp(fun, args, cotangent, argnums=0, **options):
    """Vector-Jacobian product by central differences: gradient of ``sum(cotangent * fun(*args))``.

    ``fun`` may return a scalar (then ``cotangent`` is a float) or an array.
    """
    cot = np.asarray(cotangent, dtype=np.float64)

    def scalarised(*a):
        return float(np.sum(cot * np.asarray(fun(*a), dtype=np.float64)))

    return central_diff(scalarised, args, argnums, **options)


def max_abs(*values):
    """The largest absolute value over scalars and arrays (0.0 for none)."""
    m = 0.0
    for v in values:
        arr = np.abs(np.asarray(v, dtype=np.float64))
        if arr.size:
            m = max(m, float(np.max(arr)))
    return m


def _fmt(v):
    return f"{v: .10e}"


def assert_grad_close(ad, fd, *, rtol=1e-6, atol=1e-9, label="gradient", max_report=6):
    """Assert ``|ad - fd| <= atol + rtol * |fd|`` component-wise, with a readable message.

    ``ad`` and ``fd`` are scalars or arrays of the same shape. The message names ``label``, every
    differing component (up to ``max_report``) with AD, FD, absolute and relative error, and how
    many components differ in all.
    """
    if isinstance(fd, np.ndarray) and fd.shape != ():
        if not isinstance(ad, np.ndarray):
            raise AssertionError(f"{label}: AD returned {type(ad).__name__}, expected an ndarray "
                                 f"of shape {fd.shape}")
        if ad.shape != fd.shape:
            raise AssertionError(f"{label}: AD shape {ad.shape} != expected shape {fd.shape}")
    a = np.asarray(ad, dtype=np.float64)
    f = np.asarray(fd, dtype=np.float64)
    err = np.abs(a - f)
    bound = atol + rtol * np.abs(f)
    bad = ~(err <= bound)          # also catches NaN in AD
    if not np.any(bad):
        return
    idxs = list(zip(*np.nonzero(bad))) if a.ndim else [()]
    worst = sorted(idxs, key=lambda i: -(err[i] / bound[i]) if np.isfinite(err[i]) else -np.inf)
    lines = [f"{label}: {len(idxs)} of {max(a.size, 1)} component(s) differ "
             f"(rtol={rtol:g}, atol={atol:g})"]
    for i in worst[:max_report]:
        where = "value" if i == () else f"index {tuple(int(j) for j in i)}"
        rel = err[i] / abs(f[i]) if f[i] != 0 else np.inf
        lines.append(f"  {where}: AD={_fmt(a[i])}  FD={_fmt(f[i])}  "
                     f"abs err={err[i]:.3e}  rel err={rel:.3e}")
    if len(idxs) > max_report:
        lines.append(f"  ... and {len(idxs) - max_report} more")
    raise AssertionError("\n".join(lines))
