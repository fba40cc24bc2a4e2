"""What an eval module of this tool exports, and how one evaluate message is timed.

Each eval module (``lse.py``, ``gmm.py``, ...) defines ``FUNCTIONS``, a dict from the function
names the eval sends (``"primal"``, ``"gradient"``, ``"objective"``, ...) to :class:`Function`
values, and ``EXAMPLES``, tiny inputs of the eval's JSON shape (one per variant of the input, such
as ``ht``'s simple and complicated ones). ``define`` runs every function once on each example:
that compiles every derivative (numba compiles once per argument types, and the examples have
the types of the real inputs), so no evaluate message pays for compilation.

:func:`evaluate` follows GradBench's ``Runs`` contract (``gradbench.wrap.multiple_runs``): the
input is converted once (not timed), then the computation runs at least ``min_runs`` times and
until the runs add up to ``min_seconds``, one ``"evaluate"`` timing per run; the output of the
last run is converted to JSON (not timed). Everything the tool computes from the input to the
result the eval asks for (the derivative, and assembling it into the eval's layout) is inside
the timed region; parsing JSON and building Python lists for the reply are not. The results are
NumPy arrays or floats computed synchronously, so a run's time is the time to completion.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Function:
    """One function of an eval: ``compute(*prepare(input))`` is timed, ``output`` makes JSON.

    ``repeated`` is False for evals whose input is a bare value without ``min_runs`` /
    ``min_seconds`` (``hello``): such a function runs once.
    """
    prepare: Callable[[Any], tuple]
    compute: Callable[..., Any]
    output: Callable[[Any], Any]
    repeated: bool = True


def function(*, prepare: Callable[[Any], tuple], output: Callable[[Any], Any],
             repeated: bool = True) -> Callable[[Callable[..., Any]], Function]:
    """Decorator: ``@function(prepare=..., output=...)`` over the computation."""
    def wrap(compute: Callable[..., Any]) -> Function:
        return Function(prepare=prepare, compute=compute, output=output, repeated=repeated)
    return wrap


def evaluate(fn: Function, raw_input: Any) -> dict:
    """``{"success": True, "output": ..., "timings": [...]}`` for one evaluate message."""
    args = fn.prepare(raw_input)
    if fn.repeated:
        min_runs = int(raw_input.get("min_runs", 1))
        min_seconds = float(raw_input.get("min_seconds", 0.0))
    else:
        min_runs, min_seconds = 1, 0.0
    timings = []
    elapsed = 0
    result = None
    while len(timings) < min_runs or elapsed < min_seconds * 1e9:
        start = time.perf_counter_ns()
        result = fn.compute(*args)
        ns = time.perf_counter_ns() - start
        timings.append({"name": "evaluate", "nanoseconds": ns})
        elapsed += ns
    return {"success": True, "output": fn.output(result), "timings": timings}


def as_float(x) -> float:
    return float(x)


def as_list(a) -> list:
    return a.tolist()
