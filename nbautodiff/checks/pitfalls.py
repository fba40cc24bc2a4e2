"""Pitfall detectors: what a gradient check's numbers cannot say about a derivative.

A derivative computed correctly by AD can still mislead (Hückelheim, Menon, Moses, Christianson,
Hovland, Hascoët, "Understanding Automatic Differentiation Pitfalls", 2023). Each detector
reads the evidence of one :func:`nbautodiff.checks.check.check_grad` call and returns
:class:`Finding`\\ s, each with a short explanation and what to do:

* :func:`boundaries` - a kink (``abs``, ``min``, ``max``), a branch (a comparison of values
  that depend on the inputs) or a rounding jump at or near the point: the replay's probes
  (:mod:`nbautodiff.checks.probes`) measure the relative change of the inputs that reaches each boundary;
  many boundaries close by (a sampled, probabilistic program) make a note;
* :func:`rounding` - ``floor``, ``round``, ``int``... of such values: zero derivative;
* :func:`lookups` - an array indexed with a rounded value (a lookup table);
* :func:`loops` - a ``while`` loop whose condition depends on the inputs (fixed-point and
  solver loops): the loop is run further, and the derivative's change compared with the value's;
* :func:`loop_length` - an integer argument bounding a loop: the gradient at shorter loop
  lengths, for exponential growth (chaos) or a derivative that does not settle while the value
  does (time averages of oscillations);
* :func:`nonfinite_adjoints` - NaN or inf in the gradient, with the user's line that produced
  the first one (:mod:`nbautodiff.checks.nonfinite`);
* :func:`finite_differences` - central differences disagreeing with AD and the complex step
  alike: the step sweep cannot resolve this function.

A ``warning`` finding puts the derivative at this point in doubt; a ``note`` describes a
property of the function worth knowing (a zero derivative from rounding, a lookup table).
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

import numpy as np

from nbautodiff.codegen import parameters
from . import probes, replay

#: Relative distance (a change of every input by this fraction of max(1, |x|)) under which a
#: kink, branch boundary or rounding jump is near the point.
NEAR = 1e-6
#: A branch with at least this many boundaries within :data:`CROWDED` relative distance makes
#: the function piecewise at a scale where its derivative means little.
MANY, CROWDED = 10, 1e-2
#: Extra iterations of data-dependent loops (at least as many as they ran) for the convergence test.
EXTRA_ITERATIONS = 20
#: A derivative changing by more than this (relatively) when its loop runs further, and by more
#: than ten times the value (or twice, when the value is within the check's tolerance and the
#: derivative is not), has not converged with the value.
LAG = 1e-7
#: Loop lengths tried by the loop-length detector: these fractions of the given one.
LENGTHS = tuple(k / 8 for k in range(1, 9))
#: Smallest loop length worth scaling down.
MIN_LENGTH = 8


@dataclass(frozen=True)
class Finding:
    """One pitfall found by a detector.

    ``category`` names the detector (``kink``, ``branch``, ``rounding``, ``lookup``, ``loop``,
    ``chaos``, ``oscillation``, ``nonfinite``, ``finite differences``); ``severity`` is
    ``warning`` or ``note``; ``title`` one line saying what and where, ``explanation`` what is
    going on, ``advice`` what to do. ``lineno``/``filename``/``source`` locate it in the user's
    code when it has a place; ``data`` holds its numbers; ``curve`` (``x``, ``y``, ``xlabel``,
    ``ylabel``, ``title``, ``logy``) what :meth:`GradientCheck.plot` draws next to the error
    curve."""

    category: str
    severity: str
    title: str
    explanation: str
    advice: str
    lineno: int | None = None
    filename: str = ""
    source: str = ""
    data: dict = field(default_factory=dict)
    curve: dict | None = None


@dataclass
class Evidence:
    """What the detectors read: the check's arguments, its result so far, the gradient function
    it checked, and the replay that computed the complex step with what its probes recorded."""

    fun: object
    args: tuple
    argnums: tuple
    check: object
    gradient: object
    replay: object
    recorder: probes.Recorder
    near: float = NEAR


def detect(evidence: Evidence) -> list:
    """Every detector's findings, warnings first."""
    found = []
    for detector in DETECTORS:
        found += detector(evidence)
    if any(f.severity == "warning" and f.category in _EXPLAINS_STEPS for f in found):
        found = [f for f in found if f.category != "finite differences"]
    unique = {}
    for finding in found:                    # one finding per construct and line
        unique.setdefault((finding.category, finding.severity, finding.title), finding)
    return sorted(unique.values(), key=lambda f: f.severity != "warning")


#: Warnings that already explain why central differences disagree.
_EXPLAINS_STEPS = {"kink", "branch", "rounding", "loop", "chaos"}


# ---- kinks, branches, rounding, lookups: what the probes saw ---------------------------------

_EXPLAIN = {
    "kink": ("{what} is not differentiable where its arguments tie (at 0 for abs). AD returns "
             "the derivative of the side the evaluation falls on; a step of the inputs by more "
             "than {distance} of their size crosses to the other side, where the slope differs. "
             "Central differences with larger steps straddle the kink and average the two "
             "slopes."),
    "branch": ("The comparison {what} decides on values that depend on the differentiated "
               "inputs. AD differentiates the branch taken and ignores that a change of the "
               "inputs by {distance} of their size takes the other branch, where the function "
               "may jump or bend."),
    "rounding": ("{what} jumps at {jumps}; a change of the inputs by {distance} of their size "
                 "reaches the next jump, where the function is discontinuous."),
}
_ADVICE = {
    "kink": ("Check another point, or replace the kink by a smooth approximation (sqrt(x*x + "
             "eps) for abs, a softmax/log-sum-exp for max) if the optimiser needs derivatives "
             "there. At the kink itself any value between the one-sided slopes is a valid "
             "subgradient."),
    "branch": ("Make sure the two branches join smoothly at the boundary (same value and "
               "slope), or evaluate away from it; a derivative at the boundary is one-sided."),
    "rounding": ("The derivative through the rounding is zero; a derivative across the jumps "
                 "needs a smooth model (interpolation, a relaxation)."),
}
_JUMPS = {"integer": "every integer", "half": "every half-integer", "zero": "zero"}


def boundaries(e: Evidence) -> list:
    """Kinks, branch boundaries and rounding jumps within :attr:`Evidence.near` of the point
    (warnings); branches with many boundaries close by (a note)."""
    found = []
    for record in e.recorder.records.values():
        site = record.site
        if site.kind not in ("kink", "branch", "rounding") or not record.executions:
            continue
        distances = record.distances()
        closest = float(distances.min()) if distances.size else math.inf
        what = f"'{site.what}'" if site.kind == "branch" else site.what
        if closest <= e.near:
            at = "at" if closest == 0.0 else "near"
            kind = {"kink": "a kink", "branch": "a branch boundary",
                    "rounding": "a rounding jump"}[site.kind]
            found.append(_located(
                site, site.kind, "warning",
                f"evaluated {at} {kind}: {what} at {site.where}",
                _EXPLAIN[site.kind].format(what=what, distance=_fraction(closest),
                                           jumps=_JUMPS.get(probes.ROUNDING.get(site.what), "")),
                _ADVICE[site.kind], closest=closest, executions=record.executions))
            continue
        crowded = int(np.sum(distances <= CROWDED))
        if site.kind == "branch" and crowded >= MANY:
            found.append(_located(
                site, "branch", "note",
                f"many branch decisions close to their boundary: '{site.what}' at {site.where}",
                f"The comparison '{site.what}' was decided {record.executions} times on values "
                f"that depend on the differentiated inputs, {crowded} of them within "
                f"{_fraction(CROWDED)} of the boundary. The function is piecewise at that "
                "scale: AD (and central differences with small steps) give the slope of one "
                "piece, which ignores how the decisions move with the inputs. This is how "
                "sampled (probabilistic) programs and Monte Carlo estimates with accept/reject "
                "steps behave: the derivative of the expectation is not the expectation of the "
                "pathwise derivative.",
                "For an expectation, differentiate a smooth reformulation: reparametrise the "
                "samples (x = mu + sigma * z), weight instead of branching, or use a "
                "score-function (likelihood ratio) estimator.",
                executions=record.executions, crowded=crowded, closest=closest))
    return found


def rounding(e: Evidence) -> list:
    """Rounding of values that depend on the inputs (a note; near a jump is a warning of
    :func:`boundaries`)."""
    found = []
    for record in e.recorder.records.values():
        site = record.site
        if site.kind != "rounding" or not record.executions or record.closest() <= e.near:
            continue
        found.append(_located(
            site, "rounding", "note",
            f"zero derivative through {site.what} at {site.where}",
            f"{site.what} of a value that depends on the differentiated inputs has derivative "
            f"zero: the function is piecewise constant in it, jumping at "
            f"{_JUMPS.get(probes.ROUNDING.get(site.what), 'its jumps')}. AD is right between "
            "the jumps and says nothing about them; the nearest one is "
            f"{_fraction(record.closest())} of the inputs' size away.",
            _ADVICE["rounding"], executions=record.executions, closest=record.closest()))
    return found


def lookups(e: Evidence) -> list:
    """Arrays indexed with values rounded from the inputs: lookup tables (a note)."""
    found = []
    for record in e.recorder.records.values():
        site = record.site
        if site.kind != "lookup" or not record.executions:
            continue
        found.append(_located(
            site, "lookup", "note",
            f"lookup table: {site.what}[...] indexed by a rounded input at {site.where}",
            f"The index into {site.what} is computed by rounding a value that depends on the "
            "differentiated inputs. The entry read does not change with the inputs until the "
            "index jumps, so AD gives the derivative through the entry zero; across cell "
            "boundaries the function jumps (or, when interpolating, bends).",
            "Interpolate between entries (linear or spline) so that the value moves with the "
            "input; for derivatives across cells, use a smooth fit of the table.",
            executions=record.executions))
    return found


# ---- loops whose count depends on the inputs ------------------------------------------------

def loops(e: Evidence) -> list:
    """``while`` loops whose condition depends on the inputs: does the derivative converge
    with the value? The loops are run further (:data:`EXTRA_ITERATIONS`) along a random
    direction by the complex step."""
    ran = [r for r in e.recorder.records.values() if r.site.kind == "loop" and r.iterations]
    if not ran or e.replay is None:
        return []
    rng = np.random.default_rng(0)
    direction = {}
    for k in e.argnums:
        x = np.asarray(e.args[k], dtype=float)
        signs = rng.choice([-1.0, 1.0], size=x.shape)
        direction[k] = signs * np.maximum(1.0, np.abs(x))
    budget = 100 * sum(sum(r.iterations) for r in ran) + 10_000
    try:
        base = _directional(e, direction, 0, budget)
        further = _directional(e, direction, EXTRA_ITERATIONS, budget)
    except Exception:                                   # running further broke the loop's code
        return []
    (f0, d0), (f1, d1) = base, further
    if not all(math.isfinite(v) for v in (f0, d0, f1, d1)):
        return []
    value_change = abs(f1 - f0) / max(abs(f0), abs(f1), 1e-300)
    derivative_change = abs(d1 - d0) / max(abs(d0), abs(d1), 1e-300)
    rtol = e.check.rtol
    lagging = derivative_change > LAG and (
        derivative_change > 10.0 * value_change
        or value_change <= rtol < derivative_change and derivative_change > 2.0 * value_change)
    if not lagging:
        return []
    first = ran[0]
    counts = ", ".join(f"{r.site.where}: {_iterations(r.iterations)}" for r in ran)
    title = ("the derivative has not converged when the loop stops: while loop at "
             f"{first.site.where}")
    story = ("AD differentiates the iterations that ran, and the derivative of an iteration "
             "converges more slowly than its value: running the loop further changes the value "
             f"by {value_change:.1e} (relative) but the derivative by {derivative_change:.1e}. "
             "The derivative you get is that of a solution truncated where the value, not the "
             "derivative, met the stopping test; the check agrees with it because it "
             "differentiates the same truncated code.")
    return [_located(
        first.site, "loop", "warning", title,
        f"The number of iterations depends on the differentiated inputs ({counts}). {story}",
        "Tighten the stopping test (or also test the change of the derivative), or "
        "differentiate the converged solution implicitly: at a fixed point x = g(x, p) the "
        "derivative solves (I - dg/dx) dx/dp = dg/dp, one linear solve (a custom_vjp rule); "
        "for a linear system use a direct solver (np.linalg.solve), whose derivative is one "
        "solve with the transpose.",
        value_change=value_change, derivative_change=derivative_change,
        iterations=[list(r.iterations) for r in ran])]


def _directional(e: Evidence, direction: dict, extra: int, budget: int) -> tuple:
    """(value, directional derivative) by one complex-step run along ``direction``, the data-
    dependent loops running ``extra`` more iterations (at most ``budget`` in all)."""
    args = replay.complex_arguments(e.args, e.argnums)
    for k, v in direction.items():
        args[k] = args[k] + 1j * probes.H * v
    with probes.recording(probes.Recorder(extra_iterations=extra, budget=budget)):
        out = replay.run(e.replay, args)
    return float(np.real(out)), float(np.imag(out)) / probes.H


def _iterations(counts: list) -> str:
    if len(counts) == 1:
        return f"{counts[0]} iterations"
    return f"{len(counts)} runs of {min(counts)} to {max(counts)} iterations"


# ---- loop length: chaos, time averages --------------------------------------------------------

def loop_length(e: Evidence) -> list:
    """For an int argument that bounds a loop, the gradient at fractions :data:`LENGTHS` of
    its value: exponential growth relative to the value (chaos), or a derivative that keeps
    changing while the value settles (long-time averages of oscillations)."""
    found = []
    for k in _loop_bounds(e):
        n = e.args[k]
        lengths = sorted({max(1, round(n * f)) for f in LENGTHS})
        values, norms, grads = [], [], []
        try:
            for m in lengths:
                args = list(e.args)
                args[k] = m
                values.append(float(e.fun(*_copies(args))))
                g = e.gradient(*_copies(args))
                g = g if isinstance(g, tuple) else (g,)
                flat = np.concatenate([np.ravel(np.asarray(x, dtype=float)) for x in g])
                grads.append(flat)
                norms.append(float(np.linalg.norm(flat)))
        except Exception:                                # other lengths are not valid inputs
            continue
        if not all(math.isfinite(v) for v in values + norms) or len(lengths) < 4:
            continue
        name = e.check.argnames[k]
        curve = dict(x=lengths, y=norms, xlabel=f"{name} (loop length)",
                     ylabel="|gradient|", title=f"gradient norm against {name}", logy=True)
        finding = _chaos(e, name, n, lengths, values, norms, curve) or \
            _unsettled(e, name, n, lengths, values, grads, norms, curve)
        if finding:
            found.append(finding)
    return found


def _chaos(e, name, n, lengths, values, norms, curve):
    """Exponential growth of the gradient relative to the value: log(|g| / |f|) grows
    linearly with the loop length (a good linear fit, over three decades or more)."""
    scale = max(np.median(np.abs(values)), 1e-300)
    kept = [(m, g, v) for m, g, v in zip(lengths, norms, values) if g > 0.0]
    if len(kept) < 4:
        return None
    x = np.array([m for m, _, _ in kept], dtype=float)
    sensitivity = np.log10(np.array([g / max(abs(v), scale) for _, g, v in kept]))
    slope, intercept = np.polyfit(x, sensitivity, 1)
    residual = sensitivity - (slope * x + intercept)
    spread = np.sum((sensitivity - sensitivity.mean()) ** 2)
    fit = 1.0 - np.sum(residual ** 2) / spread if spread > 0 else 0.0
    decades = slope * (x[-1] - x[0])
    if decades < 3.0 or sensitivity[-1] - sensitivity[0] < 3.0 or fit < 0.8:
        return None
    rate = slope * math.log(10.0)
    return Finding(
        "chaos", "warning",
        f"the gradient grows exponentially with the loop length {name}",
        f"From {name} = {lengths[0]} to {lengths[-1]} the gradient norm grows from "
        f"{norms[0]:.2g} to {norms[-1]:.2g} (about e^({rate:.2g} {name})) while the value stays "
        f"of size {scale:.2g}: small changes of the inputs are amplified exponentially along the "
        "loop, as in a chaotic system. The derivative is correct for this trajectory but says "
        "nothing useful about nearby inputs: a step of 1e-8 already lands on a different "
        "trajectory.",
        "Differentiate a quantity that is robust to the chaos: a long-time average with "
        "shadowing methods (least-squares shadowing), an ensemble average over initial "
        "conditions, or shorter windows; do not trust gradient descent on this objective.",
        data=dict(lengths=lengths, norms=norms, values=values, rate=rate), curve=curve)


def _unsettled(e, name, n, lengths, values, grads, norms, curve):
    tail = len(lengths) // 2
    last_values = np.array(values[tail:])
    value_spread = np.ptp(last_values) / max(np.max(np.abs(last_values)), 1e-300)
    last = np.array(grads[tail:])
    size = max(np.max(np.linalg.norm(last, axis=1)), e.check.scale, 1e-300)
    gradient_spread = float(np.max(np.linalg.norm(last - last[-1], axis=1))) / size
    if not (value_spread < 0.02 and gradient_spread > 0.25 and size > 1e-8):
        return None
    return Finding(
        "oscillation", "warning",
        f"the derivative does not settle as the loop length {name} grows, the value does",
        f"Over {name} = {lengths[tail]} ... {lengths[-1]} the value changes by "
        f"{value_spread:.1e} (relative) but the gradient by {gradient_spread:.2g} of its size. "
        "The limit of the derivatives is not the derivative of the limit: averaging an "
        "oscillation over a longer window smooths the value, while the derivative keeps a "
        "term that oscillates (or grows) with the window.",
        "If the long-time average is the quantity of interest, differentiate its limit: "
        "average the derivative of the integrand over the window, or use a window that holds "
        "whole periods; check the derivative's convergence as the window grows.",
        data=dict(lengths=lengths, norms=norms, values=values), curve=curve)


def _loop_bounds(e: Evidence) -> list:
    """Positions of int arguments, not differentiated, that bound a loop in the source."""
    from nbautodiff.frontend.source import function_source
    try:
        tree = function_source(getattr(e.fun, "py_func", e.fun)).tree
    except Exception:
        return []
    params = parameters(tree)
    bounding = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "range":
            stop = node.args[0] if len(node.args) == 1 else node.args[1] if node.args else None
            bounding |= {n.id for n in ast.walk(stop) if isinstance(n, ast.Name)} if stop else set()
        if isinstance(node, ast.While):
            bounding |= {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
    return [k for k, p in enumerate(params)
            if k < len(e.args) and p in bounding and k not in e.argnums
            and isinstance(e.args[k], int) and not isinstance(e.args[k], bool)
            and e.args[k] >= MIN_LENGTH]


# ---- NaN and inf ----------------------------------------------------------------------------

def nonfinite_adjoints(e: Evidence) -> list:
    """NaN or inf in the gradient: the user's line whose adjoint code produced the first one."""
    bad = [r for r in e.check.rows if not math.isfinite(r.ad)]
    if not bad:
        return []
    from . import nonfinite
    from nbautodiff.api.reverse import GradFunction, grad
    gradient = e.gradient if isinstance(e.gradient, GradFunction) else \
        grad(e.fun, argnums=e.check.argnums if len(e.check.argnums) > 1 else e.check.argnums[0])
    where, lineno, source = "", None, ""
    try:
        first = nonfinite.first_nonfinite(gradient, e.args)
    except Exception:
        first = None
    if first is not None and first.lineno is not None:
        lineno, source = first.lineno, first.text
        where = f" first produced at line {first.lineno}"
    value = e.check.value
    cause = ("The function's value is itself not finite, and " if not math.isfinite(value)
             else "")
    labels = ", ".join(r.label for r in bad[:4]) + (" ..." if len(bad) > 4 else "")
    return [Finding(
        "nonfinite", "warning",
        f"NaN/inf in the gradient ({labels}){where}",
        f"{cause}{'t' if cause else 'T'}he reverse sweep wrote a NaN or an infinity into an adjoint"
        + (f", first in the derivative code of line {lineno}" if lineno else "")
        + ". Typical causes: a derivative that is infinite at the point (sqrt or a power below "
        "1 at zero, log at zero, asin at 1), 0 * inf where a branch or a mask multiplies an "
        "infinite partial derivative by zero (sqrt(x*x) at 0, np.where over a NaN branch), or "
        "an overflow in a value the derivative needs.",
        "Evaluate away from the singular point, or rewrite the expression so that its "
        "derivative stays finite there (abs(x) instead of sqrt(x*x), sqrt(x*x + eps), compute "
        "both branches of np.where safely, a custom_vjp rule with the limit).",
        lineno=lineno, filename=first.filename if first else "", source=source,
        data=dict(components=[r.label for r in bad]))]


# ---- central differences ---------------------------------------------------------------------

def finite_differences(e: Evidence) -> list:
    """Central differences that disagree while AD agrees with the complex step."""
    c = e.check
    if c.reference != "complex step" or not c.ok:
        return []
    bad = [r for r in c.rows if not r.fd_error <= c.rtol]
    if not bad:
        return []
    worst = max(bad, key=lambda r: r.fd_error if math.isfinite(r.fd_error) else math.inf)
    return [Finding(
        "finite differences", "note",
        f"central differences cannot resolve {len(bad)} component{'s' * (len(bad) > 1)} "
        f"(worst {worst.label}, rel. error {worst.fd_error:.1e} at step {worst.step:.0e})",
        "AD and the complex step agree, but no step of the sweep brings the central difference "
        "within the tolerance: with large steps the truncation error (or a kink, a jump) "
        "dominates, with small ones the rounding error of f(x + h) - f(x - h), amplified by "
        "1/h. The bottom of the V-shaped error curve is above the tolerance.",
        "Trust the complex step here; for central differences scale the variables so that "
        "the function varies on a scale of 1, or accept a looser tolerance.",
        data=dict(components=[r.label for r in bad]))]


DETECTORS = (nonfinite_adjoints, boundaries, rounding, lookups, loops, loop_length,
             finite_differences)


# ---- helpers ---------------------------------------------------------------------------------

def _copies(args) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _located(site, category, severity, title, explanation, advice, **data) -> Finding:
    return Finding(category, severity, title, explanation, advice, lineno=site.lineno,
                   filename=site.filename, source=site.text, data=data)


def _fraction(distance: float) -> str:
    if distance == 0.0:
        return "0 (exactly on the boundary)"
    if not math.isfinite(distance):
        return "an unbounded fraction"
    return f"{distance:.1e}"
