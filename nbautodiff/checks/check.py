"""Gradient checks: an AD gradient against central differences, the complex step and forward
mode, with the pitfalls of the function at that point.

``check_grad(fun, *args, argnums=0)`` evaluates the gradient of ``fun`` at ``args`` (by default
``nbautodiff.grad``) and compares every component of every differentiated argument with

* central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` over a sweep of step sizes (the
  V-shaped error curve of :meth:`GradientCheck.plot`);
* the complex step ``Im f(x + i h e_i) / h`` (:mod:`nbautodiff.checks.replay`), free of cancellation, where the
  function can run on complex numbers (not applicable, with the reason, where it cannot);
* forward mode (``nbautodiff.forward``), one tangent per component.

The verdict rests on the complex step where it applies (it needs no step choice), on central
differences otherwise, and on forward mode agreeing. The pitfall detectors of :mod:`nbautodiff.checks.pitfalls`
then explain what the numbers cannot: kinks and branches near the point, rounding and lookup
tables, loops whose count depends on the inputs, chaos, non-finite adjoints.

Choosing the step does not look at the AD value, so a wrong gradient cannot pick the step that
happens to agree with it. For each step the error of the difference quotient is estimated as

* truncation: how much the quotient moves between the step and its neighbours in the sweep;
* rounding: ``eps * max(|f(x+h)|, |f(x-h)|) / h``;

and the step with the smallest estimate is used. The relative error of a component is
``|AD - FD| / max(|AD|, |FD|, floor * scale)`` where ``scale`` is the largest gradient component
(AD or FD) of the whole check: components far below the largest one are judged on an absolute
scale, since finite differences cannot resolve them relatively.

Rendering (HTML, text, matplotlib) lives in :mod:`nbautodiff.checks.report`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from nbautodiff.api.derivative import resolved_argnums
from nbautodiff.codegen import parameters
from nbautodiff.errors import AutodiffError, NotReplayable
from . import probes, replay
from .report import CENTRAL, COMPLEX, FORWARD, check_figure, check_html, check_text, explanation

#: Relative steps of the default sweep, largest first: 1e-1 down to 1e-12 by half decades.
DEFAULT_STEPS = np.logspace(-1, -12, 23)
#: Default tolerance on the relative error, by the least precise float type involved.
DEFAULT_RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-2}
#: Default floor of the relative error's denominator, as a fraction of the largest component.
DEFAULT_FLOOR = 1e-3
#: Largest relative difference between the complex-step replay's value and the function's
#: (rounding differs, as between any two evaluations); beyond it the replay is not trusted.
REPLAY_RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-3}
#: The methods a gradient is compared with.


@dataclass(frozen=True)
class ComponentCheck:
    """One component of one differentiated argument.

    ``label`` reads like code (``x[2, 0]``, or ``a`` for a scalar); ``index`` is the NumPy index
    (``()`` for a scalar). ``fd_sweep[k]`` is the difference quotient at ``steps[k]`` (relative
    steps of the check; NaN where the step vanished in the argument's precision) and ``errors[k]``
    its relative error against ``ad``. ``step`` is the relative step chosen for ``fd``, whose
    error is ``fd_error``. ``cs`` and ``forward`` are the complex step and forward mode (NaN
    where not applicable), with their errors. ``rel_error`` is the error against the reference
    of the verdict (the complex step where it applies, else ``fd``); ``ok`` says that it is
    within the tolerance and that forward mode agrees.
    """

    label: str
    argnum: int
    index: tuple
    ad: float
    fd: float
    step: float
    rel_error: float
    ok: bool
    fd_sweep: np.ndarray = field(repr=False)
    errors: np.ndarray = field(repr=False)
    fd_error: float = math.nan
    cs: float = math.nan
    cs_error: float = math.nan
    forward: float = math.nan
    forward_error: float = math.nan


@dataclass(frozen=True)
class GradientCheck:
    """The result of :func:`check_grad`.

    ``ok`` is true when every component's relative error is at most ``rtol`` (and finite);
    ``rows`` holds one :class:`ComponentCheck` per component, in argument then C order.
    ``reference`` names the method the verdict rests on; ``unavailable`` maps each method that
    was not used to the reason; ``findings`` are the pitfalls found (:class:`nbautodiff.checks.pitfalls.Finding`).
    Displays as an HTML table in notebooks and as text elsewhere, with the verdict in words and
    the findings; ``plot()`` draws the error against the step size (and the findings' curves).
    """

    function: str
    argnames: tuple
    argnums: tuple
    value: float
    steps: np.ndarray = field(repr=False)
    rows: tuple = field(repr=False)
    rtol: float
    floor: float
    scale: float
    skipped: int = 0
    reference: str = CENTRAL
    unavailable: dict = field(default_factory=dict, repr=False)
    findings: tuple = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((row.rel_error for row in self.rows), default=0.0)

    @property
    def failures(self) -> list:
        """The components whose relative error exceeds ``rtol`` (or is not finite)."""
        return [row for row in self.rows if not row.ok]

    @property
    def methods(self) -> list:
        """The methods the gradient was compared with, in the order of the table."""
        return [m for m in (CENTRAL, COMPLEX, FORWARD) if m not in self.unavailable]

    @property
    def warnings(self) -> list:
        """The findings that put this derivative at this point in doubt."""
        return [f for f in self.findings if f.severity == "warning"]

    def explain(self) -> str:
        """The verdict in words: what agreed, what did not and what it means."""
        return explanation(self)

    def worst(self, n: int) -> list:
        """The ``n`` components with the largest relative errors, worst first."""
        return sorted(self.rows, key=lambda row: _sort_key(row.rel_error), reverse=True)[:n]

    def plot(self, max_curves: int = 10):
        """A matplotlib ``Figure``: relative error against step size, log-log, and a panel per
        finding that has a curve to show (the gradient against the loop length...)."""
        return check_figure(self, max_curves=max_curves)

    def _repr_html_(self) -> str:
        return check_html(self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        return check_text(self)


def check_grad(fun: Callable, *args, argnums=0, gradient: Callable | None = None,
               steps: Sequence[float] | None = None, rtol: float | None = None,
               floor: float = DEFAULT_FLOOR, max_components: int | None = None,
               seed: int = 0, complex_step: bool = True, forward: bool = True,
               pitfalls: bool = True, near: float | None = None) -> GradientCheck:
    """Check the gradient of the scalar-valued ``fun`` at ``args`` against central differences.

    ``argnums`` (an int or a tuple of ints) selects the arguments to differentiate: Python
    floats/ints or float64/float32 arrays of any rank. ``gradient`` is the gradient function
    to check, called as ``gradient(*args)`` with the conventions of ``nbautodiff.grad``
    (default: ``nbautodiff.grad(fun, argnums)``). ``steps`` are relative steps (a component
    ``x_i`` moves by ``step * max(1, |x_i|)``). ``rtol`` defaults to 1e-5, or 1e-2 when a
    float32 array is involved. ``max_components`` checks a random sample (drawn with ``seed``)
    of that many components instead of all of them. The arguments are never modified: each
    evaluation gets fresh copies of the arrays.

    ``complex_step``, ``forward``: compare with the complex step and with forward mode too
    (each reported as not applicable, with the reason, where it cannot run). ``pitfalls``: run
    the detectors of :mod:`nbautodiff.checks.pitfalls`; ``near`` is the relative distance under which a kink,
    branch boundary or rounding jump counts as near the point (default
    :data:`nbautodiff.checks.pitfalls.NEAR`).
    """
    argnums_tuple = resolved_argnums(argnums, len(args), f"check_grad of "
                                     f"{getattr(fun, '__name__', 'the function')}() with "
                                     f"{len(args)} argument{'s' * (len(args) != 1)}")
    names = _argument_names(fun, len(args))
    for k in argnums_tuple:
        _require_differentiable(args[k], names[k])
    if gradient is None:
        from nbautodiff.api.reverse import grad
        gradient = grad(fun, argnums=argnums)
    try:
        grads = gradient(*_copies(args))
    except ArithmeticError:       # numba raises ZeroDivisionError where NumPy would give inf
        grads = tuple(np.full(np.shape(args[k]), np.nan) for k in argnums_tuple)
    else:
        if not isinstance(argnums, tuple):
            grads = (grads,)
    grads = _match_shapes(grads, args, argnums_tuple, names)

    dtype = _least_precise(args, argnums_tuple)
    eps = float(np.finfo(dtype).eps)
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    steps = np.sort(np.asarray(DEFAULT_STEPS if steps is None else steps, dtype=float))[::-1]
    value = _evaluate(fun, _copies(args))

    components = [(k, index) for k in argnums_tuple for index in np.ndindex(np.shape(args[k]))]
    skipped = 0
    if max_components is not None and len(components) > max_components:
        chosen = np.random.default_rng(seed).choice(len(components), max_components, replace=False)
        skipped = len(components) - max_components
        components = [components[i] for i in sorted(chosen)]

    sweeps = []
    for k, index in components:
        fd_sweep, noise = _sweep(fun, args, k, index, steps, eps)
        best = _best_step(fd_sweep, noise)
        ad = float(grads[argnums_tuple.index(k)][index])
        sweeps.append((k, index, ad, fd_sweep, best))

    unavailable = {}
    recorder = probes.Recorder()
    cs_values, replayed = None, None
    if complex_step:
        cs_values, replayed, reason = _complex_step(fun, args, argnums_tuple, components, value,
                                                    dtype, recorder)
        if reason:
            unavailable[COMPLEX] = reason
    else:
        unavailable[COMPLEX] = "not requested"
    fwd_values = None
    if forward:
        fwd_values, reason = _forward_mode(fun, args, argnums_tuple, components)
        if reason:
            unavailable[FORWARD] = reason
    else:
        unavailable[FORWARD] = "not requested"

    magnitudes = [abs(ad) for _, _, ad, _, _ in sweeps]
    magnitudes += [abs(s[b]) for *_, s, b in sweeps if b is not None]
    magnitudes += [abs(v) for v in (cs_values if cs_values is not None else [])]
    scale = max((m for m in magnitudes if math.isfinite(m)), default=0.0)
    floor_abs = floor * scale
    rows = _rows(sweeps, steps, names, cs_values, fwd_values, floor_abs, rtol)
    check = GradientCheck(
        function=getattr(fun, "__name__", repr(fun)), argnames=tuple(names),
        argnums=argnums_tuple, value=value, steps=steps, rows=tuple(rows), rtol=float(rtol),
        floor=floor_abs, scale=scale, skipped=skipped,
        reference=COMPLEX if cs_values is not None else CENTRAL, unavailable=unavailable)
    if pitfalls:
        from . import pitfalls as detectors
        evidence = detectors.Evidence(
            fun=fun, args=tuple(args), argnums=argnums_tuple, check=check, gradient=gradient,
            replay=replayed, recorder=recorder,
            near=detectors.NEAR if near is None else near)
        check = dataclasses.replace(check, findings=tuple(detectors.detect(evidence)))
    return check


def _rows(sweeps, steps, names, cs_values, fwd_values, floor_abs, rtol) -> list:
    """One :class:`ComponentCheck` per component: the AD value against each method. The
    verdict's reference is the complex step where it ran, else central differences; forward
    mode must agree within ``rtol`` too (the two modes differ by rounding, which the problem's
    conditioning may amplify well beyond machine precision)."""
    rows = []
    for j, (k, index, ad, fd_sweep, best) in enumerate(sweeps):
        fd = float(fd_sweep[best]) if best is not None else math.nan
        errors = np.array([_rel_error(ad, f, floor_abs) for f in fd_sweep])
        fd_error = _rel_error(ad, fd, floor_abs)
        cs = float(cs_values[j]) if cs_values is not None else math.nan
        cs_error = _rel_error(ad, cs, floor_abs) if cs_values is not None else math.nan
        fw = float(fwd_values[j]) if fwd_values is not None else math.nan
        fw_error = _rel_error(ad, fw, floor_abs) if fwd_values is not None else math.nan
        rel = cs_error if cs_values is not None else fd_error
        ok = rel <= rtol and (fwd_values is None or fw_error <= rtol)
        rows.append(ComponentCheck(
            label=_label(names[k], index), argnum=k, index=index, ad=ad, fd=fd,
            step=float(steps[best]) if best is not None else math.nan, rel_error=rel,
            ok=bool(ok), fd_sweep=fd_sweep, errors=errors, fd_error=fd_error, cs=cs,
            cs_error=cs_error, forward=fw, forward_error=fw_error))
    return rows


def _complex_step(fun, args, argnums, components, value, dtype, recorder):
    """(derivatives by the complex step, one per component, the replay, None) or
    (None, replay or None, why not) when the function cannot run on complex numbers."""
    try:
        rep = replay.replay_of_arguments(fun, args, argnums)
    except Exception as error:          # shown as the reason the complex step does not apply
        return None, None, _reason(error)
    values = []
    tolerance = REPLAY_RTOL[dtype]
    try:
        with probes.recording(recorder):
            for run, (k, index) in enumerate(components):
                recorder.start_run(run)
                x0 = float(np.asarray(args[k])[index])
                step = probes.H * max(1.0, abs(x0))
                out = replay.run(rep, replay.complex_arguments(args, argnums, (k, index), step))
                if np.ndim(out) != 0:
                    return None, None, "the function does not return a scalar"
                if run == 0 and not abs(out.real - value) <= tolerance * max(1.0, abs(value)):
                    return None, rep, (f"its value on complex numbers ({out.real:.17g}) is not "
                                       f"the function's ({value:.17g})")
                values.append(float(np.imag(out)) / step)
    except Exception as error:                       # the user's code, run on complex numbers
        return None, rep, f"running it on complex numbers raised {_reason(error)}"
    if rep.declared:
        return None, rep, (f"it calls {', '.join(rep.declared)}, whose derivative is declared "
                           "(nbautodiff.custom_vjp): the complex step cannot see the declared rule")
    return np.array(values), rep, None


def _forward_mode(fun, args, argnums, components):
    """(derivatives by forward mode, one per component, None) or (None, why not)."""
    from nbautodiff.api.activities import Const, Dual
    from nbautodiff.api.forward import forward
    try:
        derivative = forward(fun, *[Dual if k in argnums else Const for k in range(len(args))])
        values = []
        for k, index in components:
            call = []
            for j, a in enumerate(_copies(args)):
                call.append(a)
                if j in argnums:
                    tangent = np.zeros_like(a) if isinstance(a, np.ndarray) else 0.0
                    if j == k:
                        if isinstance(a, np.ndarray):
                            tangent[index] = 1.0
                        else:
                            tangent = 1.0
                    call.append(tangent)
            try:
                values.append(float(derivative(*call)[1]))
            except ArithmeticError:               # as the reverse gradient: a NaN/inf finding
                values.append(math.nan)
    except (AutodiffError, TypeError, ValueError) as error:
        return None, _reason(error)
    return np.array(values), None


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if isinstance(error, (NotReplayable, AutodiffError)) else \
        f"{type(error).__name__}: {text}"


def gradient_of_reverse(rev: Callable, activities: Sequence) -> tuple:
    """Turn ``rev = nbautodiff.reverse(fun, *activities, ret="Active")`` into a gradient function
    for :func:`check_grad`; return ``(gradient, argnums)``.

    ``argnums`` are the arguments with an adjoint (``Active``, ``Duplicated``,
    ``DuplicatedOnly``); ``gradient(*args)`` calls ``rev`` with zeroed shadows and seed 1.0 and
    returns their adjoints as a tuple, in argument order.
    """
    from nbautodiff.api.activities import Active, as_activity, has_shadow

    activities = [as_activity(a) for a in activities]
    argnums = tuple(k for k, a in enumerate(activities) if a is Active or has_shadow(a))
    n_active = sum(a is Active for a in activities)

    def gradient(*args):
        call, shadows = [], {}
        for k, (arg, activity) in enumerate(zip(args, activities)):
            call.append(arg)
            if has_shadow(activity):
                shadows[k] = np.zeros_like(arg)
                call.append(shadows[k])
        out = rev(*call, 1.0)
        items = out if isinstance(out, tuple) else (out,)
        active = iter(items[len(items) - n_active:])
        return tuple(shadows[k] if k in shadows else next(active) for k in argnums)

    return gradient, argnums


def _sweep(fun, args, k, index, steps, eps):
    """Difference quotients of ``fun`` along component ``index`` of ``args[k]``, one per step,
    with the rounding noise of each quotient."""
    x0 = float(np.asarray(args[k])[index])
    fd = np.full(len(steps), np.nan)
    noise = np.full(len(steps), np.inf)
    for j, step in enumerate(steps):
        h = step * max(1.0, abs(x0))
        plus, x_plus = _perturbed(args, k, index, x0 + h)
        minus, x_minus = _perturbed(args, k, index, x0 - h)
        width = x_plus - x_minus          # the step actually taken, after rounding to the dtype
        if width == 0.0:
            continue
        try:
            with np.errstate(all="ignore"):          # a step may leave the function's domain
                f_plus, f_minus = _evaluate(fun, plus), _evaluate(fun, minus)
        except (ArithmeticError, ValueError, IndexError):
            continue
        fd[j] = (f_plus - f_minus) / width
        noise[j] = eps * max(abs(f_plus), abs(f_minus)) / width
    return fd, noise


def _best_step(fd_sweep: np.ndarray, noise: np.ndarray):
    """Index of the step with the smallest estimated error, or None when no quotient is finite.

    The estimate adds the rounding noise to the largest change of the quotient towards its
    neighbouring steps (a proxy for the truncation error); ties go to the larger step.
    """
    n = len(fd_sweep)
    estimates = np.full(n, np.inf)
    for j in range(n):
        if not math.isfinite(fd_sweep[j]):
            continue
        neighbours = [fd_sweep[i] for i in (j - 1, j + 1) if 0 <= i < n and math.isfinite(fd_sweep[i])]
        change = max((abs(fd_sweep[j] - f) for f in neighbours), default=0.0)
        estimates[j] = change + noise[j]
    if not np.isfinite(estimates).any():
        return None
    return int(np.argmin(estimates))


def _rel_error(ad: float, fd: float, floor_abs: float) -> float:
    if not (math.isfinite(ad) and math.isfinite(fd)):
        return math.inf
    diff = abs(ad - fd)
    if diff == 0.0:
        return 0.0
    return diff / max(abs(ad), abs(fd), floor_abs)


def _perturbed(args, k, index, x):
    """Fresh copies of ``args`` with component ``index`` of ``args[k]`` set to ``x``; also the
    value actually stored (rounded to the argument's dtype)."""
    copies = _copies(args)
    if np.ndim(args[k]) == 0 and not isinstance(args[k], np.ndarray):
        copies[k] = type(args[k])(x) if isinstance(args[k], np.floating) else float(x)
        return copies, float(copies[k])
    copies[k][index] = x
    return copies, float(copies[k][index])


def _copies(args) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _evaluate(fun, args) -> float:
    result = fun(*args)
    if np.ndim(result) != 0:
        raise TypeError(f"check_grad needs a scalar-valued function; "
                        f"{getattr(fun, '__name__', fun)!s} returned shape {np.shape(result)}")
    return float(result)


def _argument_names(fun, nargs: int) -> list:
    try:
        names = parameters(inspect.unwrap(getattr(fun, "py_func", fun)))
    except (TypeError, ValueError):
        names = []
    return [names[k] if k < len(names) else f"args[{k}]" for k in range(nargs)]


def _require_differentiable(arg, name: str) -> None:
    if isinstance(arg, np.ndarray):
        if arg.dtype not in (np.float64, np.float32):
            raise TypeError(f"argument '{name}' to differentiate must be a float64 or float32 "
                            f"array, not {arg.dtype}")
    elif isinstance(arg, bool) or not isinstance(arg, (int, float, np.integer, np.floating)):
        raise TypeError(f"argument '{name}' to differentiate must be a float, an int or a float "
                        f"array, not {type(arg).__name__}")


def _least_precise(args, argnums) -> np.dtype:
    if any(np.asarray(args[k]).dtype == np.float32 for k in argnums):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _match_shapes(grads, args, argnums, names) -> list:
    if len(grads) != len(argnums):
        raise ValueError(f"the gradient returned {len(grads)} items for {len(argnums)} arguments")
    result = []
    for g, k in zip(grads, argnums):
        g = np.asarray(g, dtype=float)
        if g.shape != np.shape(args[k]):
            raise ValueError(f"the gradient for argument '{names[k]}' has shape {g.shape}, "
                             f"the argument has shape {np.shape(args[k])}")
        result.append(g)
    return result


def _label(name: str, index: tuple) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def _sort_key(value: float) -> float:
    return math.inf if math.isnan(value) else value
