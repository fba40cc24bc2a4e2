"""vecmath: ns per element of a numba loop calling libm (``math.<f>``, scalar) against the same
loop calling ``nbautodiff.kernels.vecmath.<f>`` (vectorised), and, with ``--accuracy``, the
maximum error in ulps of each function on 10**6 arguments.

A script, not a test. ``out[i] = f(x[i])`` over N = 10**6 float64 arguments drawn from each
function's interesting range, median of ``--repeats`` runs, compilation excluded. The accuracy
sample and references are the test file's (tests/test_vecmath.py): longdouble NumPy for the
exp/log family, mpmath at 100 bits for erf and erfc (slow: about a minute each).

    .venv/bin/python benchmarks/vecmath.py [--accuracy] [--repeats 7]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from nbautodiff.kernels import vecmath as vm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_vecmath import arguments, is_vectorised, loop_of, reference, ulp_error  # noqa: E402

N = 10**6
RANGES = {"exp": (-700, 700), "expm1": (-5, 5), "log": (1e-3, 1e3), "log1p": (-0.9, 10),
          "sinh": (-20, 20), "cosh": (-20, 20), "tanh": (-5, 5), "erf": (-4, 4),
          "erfc": (-4, 4)}


def per_element_ns(loop, x, repeats):
    out = np.empty_like(x)
    loop(x, out)                                   # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        loop(x, out)
        times.append(time.perf_counter() - t)
    return statistics.median(times) / x.size * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", action="store_true", help="measure max ulp on 10**6 arguments")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'function':<9} {'libm ns/elt':>12} {'vecmath ns/elt':>15} {'speedup':>8} "
          f"{'vectorised':>11} {'max ulp':>8}")
    for name in vm.MAX_ULP:
        ours = loop_of(getattr(vm, name))
        libm = loop_of(getattr(math, name))
        lo, hi = RANGES[name]
        x = rng.uniform(lo, hi, N)
        t_libm = per_element_ns(libm, x, args.repeats)
        t_ours = per_element_ns(ours, x, args.repeats)
        ir_text = ours.inspect_llvm(ours.signatures[0])
        vector = is_vectorised(ir_text)
        ulp = "-"
        if args.accuracy:
            xs = arguments(name, N, seed=1000 + len(name))
            out = np.empty_like(xs)
            ours(xs, out)
            ulp = f"{float(np.max(ulp_error(out, reference(name, xs)))):.3f}"
        print(f"{name:<9} {t_libm:>12.2f} {t_ours:>15.2f} {t_libm / t_ours:>7.1f}x "
              f"{str(vector):>11} {ulp:>8}", flush=True)


if __name__ == "__main__":
    main()
