"""``%%batch --compare``: time a batched function against the ways of doing without it.

From one example call ``f(*example)``, inputs of N examples are built by stacking perturbed
copies of each batched argument along its axis (unbatched arguments, axis None, are passed as
they are). Three methods evaluate ``f`` on the N examples:

* ``batch``: one call of the batched function;
* ``loop of compiled calls``: a Python loop of N calls of ``f`` compiled alone (numba, the same
  compiled arithmetic), one per slice;
* ``np.vectorize``: ``np.vectorize(f, signature=...)`` of the plain Python function, what NumPy
  offers for a function that is not written with arrays.

A derived function (``nbautodiff.grad(f)``...) is compiled already: it is the single compiled
call, and what ``np.vectorize`` applies.

The batched result is compared with the loop's, at the smallest N, and the comparison's note says
whether they agree exactly.
"""
from __future__ import annotations

import numpy as np

from nbautodiff.errors import AutodiffError
from nbautodiff.frontend.source import python_function
from nbautodiff.pipeline import program
from .speedup import SpeedComparison, measure

BATCHED, LOOP, VECTORIZE = "batch", "loop of compiled calls", "np.vectorize"
METHODS = (BATCHED, LOOP, VECTORIZE)
DEFAULT_SIZES = (10, 100, 1_000, 10_000, 100_000)
#: Relative size of the perturbation of the copies of a float example (so that the N examples
#: differ and a result taken from the wrong slice shows in the agreement check).
PERTURBATION = 1e-3


def compare(fun, batched, example: tuple, in_axes: list, out_axes, sizes=DEFAULT_SIZES,
            budget_s: float | None = None, seed: int = 0, step=None) -> SpeedComparison:
    """Time ``batched`` (``nbautodiff.batch(fun, in_axes, out_axes)``) against a loop of single
    compiled calls and ``np.vectorize`` of ``fun``, on ``len(sizes)`` batch sizes built from
    ``example`` (one argument tuple of ``fun``). ``in_axes`` has one entry per argument.
    ``step(label)`` is called before each method at each size (progress)."""
    sizes = tuple(sorted(sizes))
    single, plain = _single_and_plain(fun)
    reference = single(*example)
    rng = np.random.default_rng(seed)

    def inputs(n):
        return [_stacked(value, axis, n, rng) for value, axis in zip(example, in_axes)]

    def slices(args, n):
        return [tuple(value if axis is None else np.take(value, i, axis=axis)
                      for value, axis in zip(args, in_axes)) for i in range(n)]

    def batched_run(n):
        args = inputs(n)
        return lambda: batched(*args)

    def loop_run(n):
        calls = slices(inputs(n), n)
        return lambda: [single(*call) for call in calls]

    vectorized, front = _vectorized(plain, example, in_axes, reference)

    def vectorize_run(n):
        args = front(inputs(n))
        return lambda: vectorized(*args)

    note = _agreement(batched, single, inputs(sizes[0]), slices, sizes[0], out_axes)
    methods = {BATCHED: batched_run, LOOP: loop_run, VECTORIZE: vectorize_run}
    options = {} if budget_s is None else {"budget_s": budget_s}
    times = measure(methods, sizes, step=step, **options)
    return SpeedComparison(title=f"{getattr(fun, '__name__', 'function')}: N evaluations", sizes=sizes, times=times,
                           reference=BATCHED, note=note, unit="examples")


def _single_and_plain(fun):
    """``fun`` compiled alone (its numba primal) and as plain Python; a derived function, with
    no Python source of its own, is both."""
    try:
        plain = python_function(fun)
    except AutodiffError:
        return fun, fun
    return program.primal(fun).dispatcher, plain


def _stacked(value, axis, n: int, rng) -> object:
    """``n`` copies of ``value`` stacked along ``axis`` (floats perturbed), or ``value`` for an
    unbatched argument."""
    if axis is None:
        return value
    array = np.asarray(value)
    copies = np.repeat(array[np.newaxis], n, axis=0)
    if np.issubdtype(array.dtype, np.floating):
        copies = copies * (1.0 + PERTURBATION * rng.standard_normal(copies.shape))
    return np.ascontiguousarray(np.moveaxis(copies, 0, axis))


def _vectorized(fun, example: tuple, in_axes: list, reference):
    """``np.vectorize`` of ``fun`` with a core signature read from ``example`` and the
    ``reference`` result, and the function putting the batch axes of inputs first."""
    batched_positions = [k for k, axis in enumerate(in_axes) if axis is not None]
    core = ",".join(_core_dims(f"a{k}", example[k]) for k in batched_positions)
    results = reference if isinstance(reference, tuple) else (reference,)
    out = ",".join(_core_dims(f"r{k}", value) for k, value in enumerate(results))
    excluded = {k for k, axis in enumerate(in_axes) if axis is None}
    vectorized = np.vectorize(fun, excluded=excluded, signature=f"{core}->{out}")

    def front(args):
        return [value if axis is None else np.moveaxis(value, axis, 0)
                for value, axis in zip(args, in_axes)]
    return vectorized, front


def _core_dims(prefix: str, value) -> str:
    return "(" + ",".join(f"{prefix}_{d}" for d in range(np.ndim(value))) + ")"


def _agreement(batched, single, args, slices, n: int, out_axes) -> str:
    """A sentence saying whether ``batched(*args)`` equals the loop of single calls stacked
    along ``out_axes``, exactly or up to the largest difference."""
    together = batched(*args)
    one_by_one = [single(*call) for call in slices(args, n)]
    parts = together if isinstance(together, tuple) else (together,)
    worst = 0.0
    for k, part in enumerate(parts):
        pieces = [r[k] if isinstance(r, tuple) else r for r in one_by_one]
        axis = out_axes[k] if isinstance(out_axes, (tuple, list)) else out_axes
        expected = np.stack([np.asarray(p) for p in pieces], axis=axis if axis is not None else 0)
        if axis is None:
            expected = expected[0]
        part = np.asarray(part)
        if part.shape != expected.shape:
            return (f"the batched result {k} has shape {part.shape}, the loop of single calls "
                    f"gives {expected.shape}")
        worst = max(worst, float(np.max(np.abs(part - expected), initial=0.0)))
    if worst == 0.0:
        return (f"at N = {n}, the batched results equal the loop of single compiled calls "
                "exactly")
    return (f"at N = {n}, the batched results differ from the loop of single compiled calls "
            f"by up to {worst:.3g}")
