"""Batching: ``nad.batch(f)`` over N inputs against N single compiled calls from Python.

A script, not a test (``make bench-batch``). Three scalar-heavy kernels, N = 10^5 inputs each:

* Black-Scholes call price of one option (five floats in, every one batched);
* a small MLP forward on one example (4 inputs, 16 tanh units, 1 output; weights unbatched);
* Rosenbrock of a short vector (8 elements; the batch is the rows of an N x 8 array).

For each kernel it times (median of ``--repeats``; compilation excluded):

* "loop of calls": ``for i in range(N): f(args_i)`` from Python, ``f`` the compiled primal
  nbautodiff batches (``program.primal(f).dispatcher``), the slices prepared beforehand;
* ``batch(f)`` in its two layouts: ``layout="outer"`` (a loop over the batch calling the inlined
  primal once per slice) and ``layout="inner"`` (the batch loop innermost, over blocks of lanes,
  see ``nbautodiff/transforms/lanes.py``), the inner layout with ``vector_math=True`` (math functions of
  lane loops from ``nbautodiff.kernels.vecmath``), and both with ``parallel=True`` (the
  blocks spread over every core);
* "hand loop": the same batch loop written by hand around the user's function compiled with
  ``numba.njit`` (what a user would write).

It checks that the outer, inner and parallel batches equal the loop exactly and reports the
largest relative difference of ``vector_math``, reports whether the optimised LLVM IR of the
inner layout holds vector instructions (``<N x double>``, N = 2, 4 or 8 by the CPU), prints the
table and writes it, with the date, between the markers of the batching section of
``benchmarks/RESULTS.md`` (``--no-write`` to skip). Target (issue 4): batched >= 20x faster than the loop of calls; the
verdict is given for the fastest single-core batch and for the fastest parallel one.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

import nbautodiff as nad
from nbautodiff.pipeline import program

BEGIN = "<!-- issue-4 batching benchmark: begin (written by benchmarks/batching.py) -->"
END = "<!-- issue-4 batching benchmark: end -->"


def black_scholes(s, k, t, r, v):
    sqrt_t = math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * sqrt_t)
    d2 = d1 - v * sqrt_t
    n1 = 0.5 * math.erfc(-d1 / math.sqrt(2.0))
    n2 = 0.5 * math.erfc(-d2 / math.sqrt(2.0))
    return s * n1 - k * math.exp(-r * t) * n2


def mlp(x, w1, b1, w2, b2):
    out = b2
    for j in range(w1.shape[0]):
        h = b1[j]
        for i in range(x.shape[0]):
            h += w1[j, i] * x[i]
        out += w2[j] * math.tanh(h)
    return out


def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] * x[i]) ** 2 + (1.0 - x[i]) ** 2
    return s


def kernels(n: int, rng):
    """(name, function, batched arguments, in_axes, hand-written batch loop)."""
    bs_args = (rng.uniform(50, 150, n), rng.uniform(80, 120, n), rng.uniform(0.1, 2.0, n),
               rng.uniform(0.0, 0.1, n), rng.uniform(0.1, 0.6, n))
    mlp_args = (rng.normal(size=(n, 4)), rng.normal(size=(16, 4)), rng.normal(size=16),
                rng.normal(size=16), 0.1)
    rosen_args = (rng.uniform(-2, 2, (n, 8)),)
    bs, mlp_jit, rosen = (numba.njit(f) for f in (black_scholes, mlp, rosenbrock))

    @numba.njit
    def bs_loop(s, k, t, r, v):
        out = np.empty(s.shape[0])
        for i in range(s.shape[0]):
            out[i] = bs(s[i], k[i], t[i], r[i], v[i])
        return out

    @numba.njit
    def mlp_loop(x, w1, b1, w2, b2):
        out = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = mlp_jit(x[i], w1, b1, w2, b2)
        return out

    @numba.njit
    def rosen_loop(x):
        out = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = rosen(x[i])
        return out

    return [("Black-Scholes price", black_scholes, bs_args, 0, bs_loop),
            ("MLP forward (4-16-1, tanh)", mlp, mlp_args, (0, None, None, None, None), mlp_loop),
            ("Rosenbrock, 8 elements", rosenbrock, rosen_args, 0, rosen_loop)]


def timed(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def slices(args, in_axes, n):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    return [tuple(a if ax is None else (a[i].item() if a.ndim == 1 else a[i])
                  for a, ax in zip(args, axes)) for i in range(n)]


def vector_width(dispatcher) -> int:
    """The widest ``<k x double>`` in the optimised LLVM IR of ``dispatcher`` (1: scalar)."""
    widths = [int(w) for ir in dispatcher.inspect_llvm().values()
              for w in re.findall(r"<(\d+) x double>", ir)]
    return max(widths, default=1)


LAYOUTS = {"outer": dict(layout="outer"), "inner": dict(layout="inner"),
           "inner_vm": dict(layout="inner", vector_math=True),
           "parallel": dict(layout="inner", parallel=True),
           "parallel_vm": dict(layout="inner", vector_math=True, parallel=True)}


def run(n: int, repeats: int):
    rng = np.random.default_rng(0)
    rows = []
    for name, fun, args, in_axes, hand in kernels(n, rng):
        single = program.primal(fun).dispatcher
        calls = slices(args, in_axes, n)

        def loop():
            return [single(*c) for c in calls]

        batched = {label: nad.batch(fun, in_axes, **options) for label, options in LAYOUTS.items()}
        reference = np.array(loop())
        outputs = {label: b(*args) for label, b in batched.items()}
        exact = all(np.array_equal(outputs[label], reference)
                    for label in ("outer", "inner", "parallel"))
        vm_error = max(float(np.max(np.abs(outputs[label] - reference) / np.abs(reference)))
                       for label in ("inner_vm", "parallel_vm"))
        loop_time = timed(loop, max(1, repeats // 3))
        times = {label: timed(lambda b=b: b(*args), repeats) for label, b in batched.items()}
        times["hand"] = timed(lambda: hand(*args), repeats)
        rows.append({"name": name, "loop": loop_time, **times, "exact": exact,
                     "vm_error": vm_error,
                     "vector": vector_width(batched["inner"].variant.dispatcher),
                     "vector_vm": vector_width(batched["inner_vm"].variant.dispatcher)})
    return rows


def _width(w: int) -> str:
    return f"<{w} x double>" if w > 1 else "scalar"


def table(rows, n: int) -> str:
    head = ("| kernel | loop of N calls (ms) | outer layout (ms) | loop / outer | inner layout "
            "(ms) | loop / inner | inner + `vector_math` (ms) | **loop / inner + vm** | inner, "
            "`parallel=True` (ms) | loop / parallel | inner + vm, `parallel=True` (ms) | **loop / "
            "parallel + vm** | hand-written loop (ms) | widest vector, inner / + vm | outer, "
            "inner, parallel equal to the loop | + vm, max rel. difference |\n"
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|:-:|--:|\n")
    body = "".join(
        f"| {r['name']} | {r['loop'] * 1e3:,.1f} | {r['outer'] * 1e3:.2f} | "
        f"{r['loop'] / r['outer']:,.0f}x | {r['inner'] * 1e3:.2f} | "
        f"{r['loop'] / r['inner']:,.0f}x | {r['inner_vm'] * 1e3:.2f} | "
        f"**{r['loop'] / r['inner_vm']:,.0f}x** | {r['parallel'] * 1e3:.2f} | "
        f"{r['loop'] / r['parallel']:,.0f}x | {r['parallel_vm'] * 1e3:.2f} | "
        f"**{r['loop'] / r['parallel_vm']:,.0f}x** | {r['hand'] * 1e3:.2f} | "
        f"{_width(r['vector'])} / {_width(r['vector_vm'])} | "
        f"{'yes' if r['exact'] else 'NO'} | {r['vm_error']:.1e} |\n" for r in rows)
    return head + body


def best(r) -> float:
    """The fastest single-core batch."""
    return min(r["outer"], r["inner"], r["inner_vm"])


def best_parallel(r) -> float:
    return min(r["parallel"], r["parallel_vm"])


def verdict(rows, fastest) -> str:
    ratios = [r["loop"] / fastest(r) for r in rows]
    return (f"{'met' if min(ratios) >= 20 else 'NOT met'} (loop / batch: "
            + ", ".join(f"{ratio:,.0f}x" for ratio in ratios) + ")")


def explanation(rows, n: int) -> str:
    """Where the time goes: the dispatch of a call from Python against one input's compute."""
    parts = [f"{r['name']}: {(r['loop'] - r['hand']) / n * 1e9:,.0f} ns of dispatch per call, "
             f"{r['hand'] / n * 1e9:,.0f} ns of compute per input in a loop of libm calls, "
             f"{best(r) / n * 1e9:,.1f} ns in the fastest batch" for r in rows]
    return ("The ratio is (dispatch + compute per call) / (compute per input in the batch): "
            + "; ".join(parts) + ". The inner layout vectorises the arithmetic across slices "
            "(the MLP's loop over inputs); what remains scalar are calls of the C library's "
            "`exp`/`log`/`erfc`/`tanh` (llvmlite has no SVML), which `vector_math=True` "
            "replaces by `nbautodiff.kernels.vecmath` where it has a function within 1 ulp. "
            f"`parallel=True` spreads the blocks over the {os.cpu_count()} cores.\n")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else ""
    section = f"{BEGIN}\n{text}{END}\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    options = parser.parse_args()
    rows = run(options.n, options.repeats)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (f"## Issue 4: batching, `nad.batch(f)` against N single compiled calls\n\n"
            f"Run of {datetime.date.today()} by `make bench-batch` (`benchmarks/batching.py`): "
            f"{os.cpu_count()} cores, {cpu_name()}; numba "
            f"{numba.__version__}, NumPy {np.__version__}, Python {platform.python_version()}; "
            f"load average at start {load}. N = {options.n:,} inputs per kernel, median of "
            f"{options.repeats} runs (the loop of calls: of {max(1, options.repeats // 3)}); "
            "compilation excluded. \"Loop of N calls\": the compiled primal called once per "
            "input from a Python loop, arguments sliced beforehand. \"Hand-written loop\": the "
            "same batch loop written in numba around `numba.njit(f)`.\n\n"
            + table(rows, options.n)
            + "\nTarget of issue 4: `batch` at least 20x faster than the loop of calls. This "
            f"run, fastest single-core batch per kernel: {verdict(rows, best)}; with "
            f"`parallel=True` on {os.cpu_count()} cores: {verdict(rows, best_parallel)}.\n\n"
            + explanation(rows, options.n))
    print(text)
    if not options.no_write:
        write_results(text, Path(options.results))


if __name__ == "__main__":
    sys.exit(main())
