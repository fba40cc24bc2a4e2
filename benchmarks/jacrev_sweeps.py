"""What ``nad.jacrev`` costs, in sweeps and in time (issue 19, item 5): ``make bench-jacrev``.

``jacrev`` of a function with n outputs runs ``vjp`` once (ONE forward sweep, whose residuals
the pullback keeps: ``nbautodiff/api/residuals.py``), then ceil(n / width) calls of the
pullback (``Pullback.batched``), each ONE reverse sweep carrying ``width`` cotangents as adjoint
lanes (reverse vector mode, ``nbautodiff/transforms/reverse/vector.py``): 1 forward + ceil(n /
width) reverse sweeps. The "loop" columns time and count the same calls with vector sweeps
turned off (``residuals.VECTOR_SWEEPS = False``): each call then loops over its ``width``
cotangents, a whole reverse sweep each, so 1 + n sweeps. The sweeps are counted by the
instrumentation counter ``nbautodiff.api.residuals.SWEEPS`` (``forward``, ``reverse``,
``batches``), and checked here against those formulas. Before issue 19 the pullback re-ran the whole generated derivative for
each cotangent: n forward sweeps and n reverse sweeps; the "rerun" column times that (one
call of the whole reverse variant per output, ``nad.reverse(f, ...)`` seeded with each basis
vector), the "jacfwd" column vector-mode forward (ceil(n / 8) passes).

Workloads: a recurrence whose forward sweep carries most of the work (each output reads a
hidden state updated through ``m`` inner steps), at several n. Times are the median of
``--repeats`` calls after a warm-up (compiled at numba's default -O3, as users run it); every
Jacobian is checked equal to the rerun one (to 1e-12) before it is timed. Options:
``--repeats N`` (default 5), ``--sizes 8,32,128``, ``--widths 1,8,32``, ``--inner M``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import nbautodiff as nad
from nbautodiff.api import residuals


def recurrence(x, a, inner):
    """n outputs; the hidden state goes through ``inner`` steps per output (the forward work)."""
    n = x.shape[0]
    out = np.empty(n)
    h = 0.0
    for i in range(n):
        for k in range(inner):
            h = math.tanh(a * h + x[i] * math.cos(0.01 * k))
        out[i] = h * h + x[i]
    return out


def rerun_jacobian(x, a, inner):
    """The cost model before issue 19: each output's row by a whole reverse call (a forward
    sweep and a reverse sweep each)."""
    reverse = nad.reverse(recurrence, nad.Duplicated, nad.Const, nad.Const, ret="ActiveOnly")
    rows = []
    for i in range(x.shape[0]):
        shadow, seed = np.zeros_like(x), np.zeros(x.shape[0])
        seed[i] = 1.0
        reverse(x, shadow, a, inner, seed)
        rows.append(shadow)
    return np.array(rows)


def timed(call, repeats: int) -> float:
    call()                                           # compile, warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--widths", default="1,8,32")
    parser.add_argument("--inner", type=int, default=50)
    options = parser.parse_args(argv)
    sizes = [int(s) for s in options.sizes.split(",")]
    widths = [int(w) for w in options.widths.split(",")]
    rng = np.random.default_rng(20261207)
    a, inner = 0.8, options.inner
    print(f"jacrev of recurrence(x, a, inner={inner}): n outputs, n inputs; median of "
          f"{options.repeats} calls")
    header = ("n", "width", "forward", "reverse", "loop rev", "batches", "vector ms",
              "loop ms", "rerun ms", "jacfwd ms", "loop/vec")
    print("  ".join(f"{h:>10}" for h in header))
    for n in sizes:
        x = rng.uniform(-1, 1, n)
        reference = rerun_jacobian(x, a, inner)
        rerun_ms = 1e3 * timed(lambda: rerun_jacobian(x, a, inner), options.repeats)
        forward = nad.jacfwd(recurrence)
        np.testing.assert_allclose(forward(x, a, inner), reference, rtol=1e-12, atol=1e-12)
        jacfwd_ms = 1e3 * timed(lambda: forward(x, a, inner), options.repeats)
        for width in widths:
            jacobian = nad.jacrev(recurrence, width=width)
            batches = math.ceil(n / width)
            measured = {}
            for vector in (True, False):
                residuals.VECTOR_SWEEPS = vector
                try:
                    measured[vector] = measure(jacobian, (x, a, inner), reference,
                                               options.repeats)
                finally:
                    residuals.VECTOR_SWEEPS = True
            expected = {True: {"forward": 1, "reverse": batches, "batches": batches},
                        False: {"forward": 1, "reverse": n, "batches": batches}}
            for vector, (counts, _) in measured.items():
                if counts != expected[vector]:
                    raise SystemExit(f"n={n}, width={width}, vector={vector}: sweeps {counts}, "
                                     f"expected {expected[vector]}")
            (counts, vector_ms), (loop_counts, loop_ms) = measured[True], measured[False]
            row = (n, width, counts["forward"], counts["reverse"], loop_counts["reverse"],
                   counts["batches"], f"{vector_ms:.2f}", f"{loop_ms:.2f}", f"{rerun_ms:.2f}",
                   f"{jacfwd_ms:.2f}", f"{loop_ms / vector_ms:.2f}x")
            print("  ".join(f"{str(c):>10}" for c in row))
    print("forward/reverse: sweeps counted by nbautodiff.api.residuals.SWEEPS in one jacrev "
          "call (vector: 1 + ceil(n / width); loop: 1 + n); batches: calls of the pullback "
          "(width cotangents each)")


def measure(jacobian, args, reference, repeats: int) -> tuple[dict, float]:
    """(the sweeps of one call, its median time in ms), the Jacobian checked first."""
    residuals.reset_sweeps()
    J = jacobian(*args)
    counts = dict(residuals.SWEEPS)
    np.testing.assert_allclose(J, reference, rtol=1e-12, atol=1e-12)
    return counts, 1e3 * timed(lambda: jacobian(*args), repeats)


if __name__ == "__main__":
    main()
