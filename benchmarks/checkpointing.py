"""Checkpointing in reverse mode: memory and time of ``nad.grad(f, checkpoint=...)`` vs the plain tape.

A script, not a test (``make bench-checkpoint``). The kernel is a 1-D heat equation with a cubic
reaction term (Allen-Cahn), N = 10,000 points and T = 10,000 explicit steps, loss = sum of
squares at the end. The cubic term is what makes the reverse pass need the state of every step
(one value per point and step: a tape of N * T * 8 bytes = 0.8 GB); the linear heat equation of
``benchmarks/reverse_mode.py`` needs no tape at all (its reversal is transposed stencils), so
there is nothing to checkpoint there.

Each variant runs in a fresh subprocess (``--variant NAME``), which

1. compiles the gradient on a small problem (compilation is not measured);
2. resets the process's peak resident set size (``/proc/self/clear_refs``), notes the resident
   size, starts ``tracemalloc``;
3. calls the gradient ``--repeats`` times, timing each call (wall and CPU time);
4. reports the ``tracemalloc`` peak over the calls (every array: numba's runtime allocates
   through Python's raw allocator, so the tape, its copies while it grows, the checkpoints, the
   shadows and work arrays of the compiled code are all traced), the peak RSS increase
   (``VmHWM`` after - ``VmRSS`` before), the tape and checkpoint bytes the derived function
   reports (``.memory``), and saves the gradient.

The parent checks every gradient against the plain one (they must agree to rounding) and the
plain one against central differences of the compiled primal on a few components, prints the
variants side by side, and writes the table, with the date, into the issue-3 checkpointing
section of ``benchmarks/RESULTS.md`` (between its markers; the rest of the file is kept).

Targets (issue 3): the checkpointed gradient's peak memory (the larger of the tracemalloc peak
and the RSS increase) under 10% of the plain tape's size (the 0.8 GB it needs), at under 3x the
plain gradient's time.

Options: ``--n``, ``--steps``, ``--repeats`` (default 3), ``--variants plain,sqrt,binomial``,
``--no-write``, ``--results PATH``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np

import nbautodiff as nad

SECTION_BEGIN = ("<!-- issue-3 checkpointing benchmark: begin (written by "
                 "benchmarks/checkpointing.py) -->")
SECTION_END = "<!-- issue-3 checkpointing benchmark: end -->"
TARGET_MEMORY = 0.10          # of the plain tape's size
TARGET_TIME = 3.0             # times the plain gradient's time
VARIANTS = {"plain": None, "sqrt": True, "binomial": "binomial"}
DESCRIPTIONS = {"plain": "plain tape", "sqrt": "`checkpoint=True` (segments of sqrt(T))",
                "binomial": "`checkpoint='binomial'` (revolve)"}


def allen_cahn(u0, alpha, beta, steps):
    """1-D heat equation with a cubic sink, explicit Euler, zero Dirichlet ends."""
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in range(steps):
        unew[0] = 0.0
        unew[n - 1] = 0.0
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - beta * u[i] ** 3
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


ALPHA, BETA = 0.25, 0.05


def arguments(n, steps):
    rng = np.random.default_rng(20261121)
    return (rng.uniform(-1.0, 1.0, n), ALPHA, BETA, steps)


# -- one variant, in its own process ------------------------------------------------------------

def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_variant(name, n, steps, repeats, out_dir):
    """Measure one variant (in this process); returns a JSON-able dict."""
    derived = nad.grad(allen_cahn, checkpoint=VARIANTS[name])
    small = arguments(64, 16)
    derived(*small)                                          # compile
    args = arguments(n, steps)
    Path("/proc/self/clear_refs").write_text("5")            # reset the peak RSS (VmHWM)
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        gradient = derived(*args)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_kib("VmHWM")
    np.save(os.path.join(out_dir, f"{name}.npy"), gradient)
    report = derived.memory
    return {"variant": name, "wall": wall, "cpu": cpu,
            "rss_increase": (rss_peak - rss_before) * 1024, "traced_peak": traced_peak,
            "tape_bytes": report.tape_bytes, "checkpoint_bytes": report.checkpoint_bytes,
            "checkpointed": [list(x) for x in report.checkpointed]}


def measure(name, n, steps, repeats, out_dir):
    """Run one variant in a fresh interpreter; its dict."""
    command = [sys.executable, __file__, "--variant", name, "--n", str(n), "--steps", str(steps),
               "--repeats", str(repeats), "--out", out_dir]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"variant {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- checks -------------------------------------------------------------------------------------

def check_against_fd(gradient, args, components=3):
    """Largest relative error of ``gradient`` on a few components against central differences
    of the compiled primal (best of a few steps per component)."""
    primal = numba.njit(allen_cahn)
    x = np.array(args[0], copy=True)
    rest = args[1:]
    rng = np.random.default_rng(7)
    floor = 1e-3 * float(np.max(np.abs(gradient))) + 1e-300
    worst = 0.0
    for k in rng.choice(x.size, size=components, replace=False):
        x0, best = x[k], math.inf
        for rel_step in (1e-3, 1e-4, 1e-5):
            h = rel_step * max(1.0, abs(x0))
            x[k] = x0 + h
            up = primal(x, *rest)
            x[k] = x0 - h
            down = primal(x, *rest)
            x[k] = x0
            fd = (up - down) / (2.0 * h)
            best = min(best, abs(gradient[k] - fd) / max(abs(gradient[k]), abs(fd), floor))
        worst = max(worst, best)
    return worst


# -- report -------------------------------------------------------------------------------------

def _mb(nbytes):
    return f"{nbytes / 1e6:,.1f}"


def peak(row):
    """Peak memory of a variant's calls: the larger of the two measures."""
    return max(row["rss_increase"], row["traced_peak"])


def primal_time(n, steps, repeats):
    """Median time of the compiled primal (``numba.njit``) at the benchmark's size."""
    primal = numba.njit(allen_cahn)
    args = arguments(n, steps)
    primal(*arguments(64, 16))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        primal(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(rows, needed, t_primal):
    plain = next(r for r in rows if r["variant"] == "plain")
    t_plain = statistics.median(plain["wall"])
    lines = [
        "| variant | time (s) | time / plain | CPU time / plain | time / primal | tape (MB) | "
        "checkpoints (MB) | "
        "tracemalloc peak (MB) | peak RSS increase (MB) | peak / plain tape | gradient vs plain "
        "| targets |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    verdicts = {}
    for r in rows:
        t = statistics.median(r["wall"])
        ratio = t / t_plain
        cpu_ratio = statistics.median(r["cpu"]) / statistics.median(plain["cpu"])
        share = peak(r) / needed
        ok = r["variant"] == "plain" or (share < TARGET_MEMORY and ratio < TARGET_TIME)
        verdicts[r["variant"]] = ok
        lines.append(
            f"| {DESCRIPTIONS[r['variant']]} | {t:.2f} | {ratio:.2f} | {cpu_ratio:.2f} | "
            f"{t / t_primal:.0f} | "
            f"{_mb(r['tape_bytes'])} | {_mb(r['checkpoint_bytes'])} | {_mb(r['traced_peak'])} | "
            f"{_mb(r['rss_increase'])} | {100 * share:.1f}% | {r['difference']:.1e} | "
            f"{'—' if r['variant'] == 'plain' else 'yes' if ok else 'NO'} |")
    return "\n".join(lines), verdicts


def section(text, info, n, steps, repeats, needed, fd_error, verdicts, today, rows, t_primal):
    checkpointed = [v for v in verdicts if v != "plain"]
    plain = next(r for r in rows if r["variant"] == "plain")
    sqrt = next((r for r in rows if r["variant"] == "sqrt"), None)
    why = "" if sqrt is None else (
        "Why checkpointing is not slower here: the plain reverse pass writes its "
        f"{_mb(plain['tape_bytes'])} MB tape to main memory and reads it back (the tape grows by "
        "doubling, so it is also copied as it grows: the tracemalloc peak), with a page fault "
        "per 4 KiB page on first touch; the checkpointed one reuses one segment's "
        f"{_mb(sqrt['tape_bytes'])} MB tape for every segment, which stays in cache, and pays "
        f"one more forward sweep, about one primal ({t_primal:.3f} s).")
    verdict = ", ".join(f"{v}: {'met' if verdicts[v] else 'MISSED'}" for v in checkpointed)
    return "\n".join([
        SECTION_BEGIN,
        "## Issue 3: checkpointing, memory and time of `nad.grad(f, checkpoint=...)`",
        "",
        f"Run of {today} by `make bench-checkpoint` (`benchmarks/checkpointing.py`): "
        f"{info['cores']} cores, {info['cpu']}; numba {info['numba']}, NumPy {info['numpy']}, "
        f"Python {info['python']}; load average at start {info['load']}.",
        "",
        f"Kernel: 1-D heat equation with a cubic reaction term (`allen_cahn`), N = {n:,} points, "
        f"T = {steps:,} explicit steps; its plain reverse pass needs one value per point and "
        f"step, a tape of {_mb(needed)} MB (allocated by doubling: the plain row's tape column). "
        "Each variant runs in a fresh process: compiled on a small problem first, then "
        f"{repeats} calls, median time (\"time / primal\": over the compiled primal "
        "`numba.njit(allen_cahn)`, median of as many calls). Tape and checkpoints are the sizes the derived function "
        "reports (`.memory`); \"tracemalloc peak\" counts every array, those of the compiled "
        "code included (numba's runtime allocates through Python's raw allocator): the tape, "
        "its copies while it grows, checkpoints, shadows, work arrays; \"peak RSS increase\" is "
        "the process's peak resident size during the calls minus its size before (`VmHWM` reset "
        "through `/proc/self/clear_refs`). \"Peak / plain tape\" is the larger of the two "
        f"measured peaks over the {_mb(needed)} MB tape. The plain gradient agrees with central "
        f"differences of the compiled primal to {fd_error:.1e} (3 components); \"gradient vs "
        "plain\" is the largest relative difference of each variant's gradient from the plain "
        "one.",
        "",
        text,
        "",
        f"Targets of issue 3: peak under {100 * TARGET_MEMORY:.0f}% of the plain tape, time "
        f"under {TARGET_TIME:g}x the plain gradient's. This run: {verdict}.",
        "",
        why,
        SECTION_END,
    ])


def write_results(path: Path, block: str):
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="points")
    parser.add_argument("--steps", type=int, default=10_000, help="time steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--variant", help=argparse.SUPPRESS)      # child process: one variant
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.variant:
        print(json.dumps(run_variant(opts.variant, opts.n, opts.steps, opts.repeats, opts.out)))
        return 0

    sys.path.insert(0, str(Path(__file__).parent))
    from reverse_mode import machine
    info = machine()
    names = [v.strip() for v in opts.variants.split(",") if v.strip()]
    if "plain" not in names or any(v not in VARIANTS for v in names):
        parser.error(f"--variants: a subset of {', '.join(VARIANTS)} that includes plain")
    needed = (opts.n - 2) * opts.steps * 8
    print(f"checkpointing: allen_cahn, N={opts.n:,}, T={opts.steps:,} (plain tape needs "
          f"{_mb(needed)} MB); {info['cores']} cores, {info['cpu']}; load {info['load']}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in names:
            row = measure(name, opts.n, opts.steps, opts.repeats, out_dir)
            rows.append(row)
            print(f"  {name:9s} time {statistics.median(row['wall']):7.2f} s   tape "
                  f"{_mb(row['tape_bytes']):>9s} MB   checkpoints {_mb(row['checkpoint_bytes']):>7s}"
                  f" MB   tracemalloc peak {_mb(row['traced_peak']):>9s} MB   peak RSS "
                  f"+{_mb(row['rss_increase'])} MB", flush=True)
        gradients = {r["variant"]: np.load(os.path.join(out_dir, f"{r['variant']}.npy"))
                     for r in rows}
    reference = gradients["plain"]
    scale = float(np.max(np.abs(reference)))
    for r in rows:
        r["difference"] = float(np.max(np.abs(gradients[r["variant"]] - reference))) / scale
    fd_error = check_against_fd(reference, arguments(opts.n, opts.steps))
    wrong = [r["variant"] for r in rows if not r["difference"] < 1e-10]
    t_primal = primal_time(opts.n, opts.steps, opts.repeats)
    text, verdicts = table(rows, needed, t_primal)
    print(f"\nprimal (numba.njit): {t_primal:.3f} s")
    print(text)
    print(f"\nplain gradient vs central differences: max relative error {fd_error:.1e}")
    if wrong or not fd_error < 1e-4:
        print(f"WRONG GRADIENT ({', '.join(wrong) or 'plain vs central differences'}): "
              "RESULTS.md left as it is")
        return 1
    today = datetime.date.today().isoformat()
    full = opts.n == 10_000 and opts.steps == 10_000 and names == list(VARIANTS)
    if not opts.no_write and full:
        write_results(Path(opts.results), section(text, info, opts.n, opts.steps, opts.repeats,
                                                  needed, fd_error, verdicts, today, rows,
                                                  t_primal))
        print(f"wrote the issue-3 checkpointing section of {opts.results}")
    elif not opts.no_write:
        print("(not the issue's size or not every variant: RESULTS.md left as it is)")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
