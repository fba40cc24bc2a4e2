"""Forward mode and Hessian-vector products against the primal and the gradient, side by side.

A script, not a test (``make bench-second-order``). For each kernel of ``reverse_mode.py`` it
times, interleaved and after warm-up (medians of ``--repeats`` rounds, CPU time of this thread):
the compiled primal, ``nad.grad``, ``nad.jvp`` (forward mode, one direction) and the
Hessian-vector product ``nad.jvp(nad.grad(f), args, tangents)`` (forward over reverse). Before
timing, the HVP is checked against a central difference of gradients along the same direction
(a benchmark never times a wrong derivative). It prints one markdown table of ratios; a kernel
whose second derivative is refused (an ``AutodiffError``) is listed with the reason.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import reverse_mode as bench  # noqa: E402  (its kernels, and BLAS pinned to one thread)

import numba  # noqa: E402

import nbautodiff as nad  # noqa: E402


def _cpu_median(calls, repeats):
    times = [[] for _ in calls]
    for _ in range(repeats):
        for k, call in enumerate(calls):
            start = time.thread_time()
            call()
            times[k].append(time.thread_time() - start)
    return [statistics.median(t) for t in times]


def _direction(args, argnums, rng):
    return [rng.standard_normal(np.shape(args[k])) if k in argnums else None
            for k in range(len(args))]


def measure(kernel, repeats, rng):
    argnums = kernel.argnums if isinstance(kernel.argnums, tuple) else (kernel.argnums,)
    args = kernel.args
    primal = numba.njit(kernel.fun)
    grad = nad.grad(kernel.fun, argnums)
    tangents = _direction(args, argnums, rng)
    try:
        _, hv = nad.jvp(grad, args, tangents)
    except nad.AutodiffError as error:
        return kernel, None, str(error).split(": ", 1)[-1][:90]
    step = 1e-6
    plus = grad(*[a + step * t if t is not None else a for a, t in zip(args, tangents)])
    minus = grad(*[a - step * t if t is not None else a for a, t in zip(args, tangents)])
    for got, p, m in zip(hv, plus, minus):
        reference = (np.asarray(p) - np.asarray(m)) / (2 * step)
        error = np.max(np.abs(got - reference)) / max(1.0, np.max(np.abs(reference)))
        if error > 1e-3:
            raise SystemExit(f"{kernel.name}: HVP differs from differences of gradients ({error:.1e})")
    calls = [lambda: primal(*args), lambda: grad(*args),
             lambda: nad.jvp(kernel.fun, args, tangents), lambda: nad.jvp(grad, args, tangents)]
    for call in calls:
        call()
    return kernel, _cpu_median(calls, repeats), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="")
    options = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for kernel in bench.kernels(rng):
        if options.only and not any(p in kernel.name for p in options.only.split(",")):
            continue
        rows.append(measure(kernel, options.repeats, rng))
    print("| kernel | primal (ms) | grad / primal | jvp / primal | HVP / primal | HVP / grad |")
    print("|---|--:|--:|--:|--:|--:|")
    for kernel, times, refused in rows:
        if times is None:
            print(f"| {kernel.name} | | | | refused: {refused} | |")
            continue
        p, g, j, h = times
        print(f"| {kernel.name} | {1e3 * p:.2f} | {g / p:.2f} | {j / p:.2f} | {h / p:.2f} | "
              f"{h / g:.2f} |")


if __name__ == "__main__":
    main()
