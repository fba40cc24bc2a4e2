"""Reverse mode against the primal: time(nad.grad(f)) / time(numba.njit(f)), side by side.

A script, not a test (``make bench``). For each kernel below (plain loop-style Python, and one
written with whole-array NumPy expressions) it

1. compiles the primal with ``numba.njit`` and the gradient with ``nad.grad`` (warm-up calls, so
   compilation is never timed);
2. checks the gradient once against central differences of the compiled primal on a few random
   components of each differentiated argument, and stops before timing if it is wrong (a
   benchmark must never time a wrong gradient);
3. times primal and gradient interleaved (primal, gradient, primal, ...) with
   ``time.perf_counter`` (and ``time.thread_time``, CPU time) and keeps the median of each, so a
   change of machine load hits both;
4. prints two markdown tables with the ratio time(gradient) / time(primal): the issue-2 kernels
   against the targets of issue 2 (each ratio <= 4, geometric mean <= 3), the kernels added for
   issue 3, and a summary of all kernels against the targets of issue 3 (geometric mean <= 3,
   none above 5).

The tables, with the date and the machine, replace the section of ``benchmarks/RESULTS.md``
between its markers (the rest of the file is kept).

BLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1`` and friends, unless already set): every
kernel, primal and gradient, is then timed on one core, like the loop kernels, and the CPU-time
column (this thread's) counts all of its work. On the shared 2-core VM a two-thread BLAS measured
contention instead: ``X @ w`` (200,000 x 20) took 1.2 ms on one thread and a median of 12 ms
(5-20 ms) on two while the other core was busy.

Options: ``--repeats N`` (interleaved rounds, default 21), ``--only NAME[,NAME]``,
``--no-write`` (print only), ``--results PATH``.
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
from dataclasses import dataclass
from pathlib import Path

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")     # before NumPy/SciPy load BLAS: see the docstring

import numba  # noqa: E402
import numpy as np  # noqa: E402

import nbautodiff as nad  # noqa: E402

TARGET_RATIO = 4.0            # issue 2: each ratio
TARGET_GEOMEAN = 3.0          # issue 2 and issue 3: geometric mean of the ratios
TARGET_MAX_RATIO_3 = 5.0      # issue 3: each ratio, over all kernels
# A wrong gradient is off by O(1); central differences of sums of 10^6 terms are good to ~1e-5.
FD_TOLERANCE = 1e-4
SECTION_BEGIN = "<!-- reverse-mode benchmark: begin (written by benchmarks/reverse_mode.py) -->"
SECTION_END = "<!-- reverse-mode benchmark: end -->"


# --------------------------------------------------------------------------------------------
# The kernels: plain loop-style Python, differentiated with respect to their first argument.
# --------------------------------------------------------------------------------------------

def rosenbrock(x):
    """Extended Rosenbrock function, sum over i of 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2."""
    s = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        s += 100.0 * a * a + b * b
    return s


def heat(u0, alpha, steps):
    """1-D heat equation, explicit Euler, zero Dirichlet ends; loss = sum of squares at the end."""
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in range(steps):
        unew[0] = 0.0
        unew[n - 1] = 0.0
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def lennard_jones(pos, eps, sigma):
    """Lennard-Jones potential energy of n particles (rows of pos), double loop over pairs."""
    n = pos.shape[0]
    e = 0.0
    s2 = sigma * sigma
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            dz = pos[i, 2] - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            q = s2 / r2
            q6 = q * q * q
            e += 4.0 * eps * (q6 * q6 - q6)
    return e


def gravity(pos, mass, soft):
    """Softened gravitational potential energy of n bodies, double loop over pairs."""
    n = pos.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            dz = pos[i, 2] - pos[j, 2]
            r = math.sqrt(dx * dx + dy * dy + dz * dz + soft * soft)
            e -= mass[i] * mass[j] / r
    return e


def logistic_loss(w, X, y, lam):
    """L2-regularised logistic-regression loss, written with loops (stable log(1 + exp(t)))."""
    m = X.shape[0]
    d = X.shape[1]
    loss = 0.0
    for i in range(m):
        z = 0.0
        for j in range(d):
            z += X[i, j] * w[j]
        t = -y[i] * z
        if t > 0.0:
            loss += t + math.log1p(math.exp(-t))
        else:
            loss += math.log1p(math.exp(t))
    r = 0.0
    for j in range(d):
        r += w[j] * w[j]
    return loss / m + 0.5 * lam * r


def horner_fit(c, x, y):
    """Least-squares misfit of a polynomial (coefficients c, Horner's scheme) at many points."""
    deg = c.shape[0]
    loss = 0.0
    for i in range(x.shape[0]):
        p = c[deg - 1]
        for k in range(deg - 2, -1, -1):
            p = p * x[i] + c[k]
        r = p - y[i]
        loss += r * r
    return loss


# Issue 3 adds these four: a mixture model, a neural network and a recurrent network written
# with loops, and a model written with whole-array NumPy expressions.

def gmm_nll(mu, alpha, X, prec):
    """Negative log-likelihood per point of a Gaussian mixture with diagonal covariances.

    Cluster c has mean mu[c], precisions prec[c] (inverse variances) and weight softmax(alpha)[c];
    both the weights' normalisation and each point's log-sum-exp over clusters are max-shifted.
    """
    n = X.shape[0]
    d = X.shape[1]
    k = mu.shape[0]
    amax = alpha[0]
    for c in range(1, k):
        if alpha[c] > amax:
            amax = alpha[c]
    asum = 0.0
    for c in range(k):
        asum += math.exp(alpha[c] - amax)
    log_norm = amax + math.log(asum)
    const = np.empty(k)              # log weight + log normalising constant of each Gaussian
    for c in range(k):
        log_det = 0.0
        for j in range(d):
            log_det += math.log(prec[c, j])
        const[c] = alpha[c] - log_norm + 0.5 * log_det - 0.5 * d * math.log(2.0 * math.pi)
    logp = np.empty(k)
    total = 0.0
    for i in range(n):
        mx = -math.inf
        for c in range(k):
            q = 0.0
            for j in range(d):
                diff = X[i, j] - mu[c, j]
                q += prec[c, j] * diff * diff
            logp[c] = const[c] - 0.5 * q
            if logp[c] > mx:
                mx = logp[c]
        s = 0.0
        for c in range(k):
            s += math.exp(logp[c] - mx)
        total += mx + math.log(s)
    return -total / n


def mlp_loss(W1, b1, W2, b2, X, Y):
    """Mean squared error of a one-hidden-layer tanh network over a batch, written with loops."""
    n = X.shape[0]
    d = X.shape[1]
    h = W1.shape[0]
    o = W2.shape[0]
    hidden = np.empty(h)
    loss = 0.0
    for i in range(n):
        for a in range(h):
            z = b1[a]
            for j in range(d):
                z += W1[a, j] * X[i, j]
            hidden[a] = math.tanh(z)
        for k in range(o):
            y = b2[k]
            for a in range(h):
                y += W2[k, a] * hidden[a]
            r = y - Y[i, k]
            loss += r * r
    return loss / n


def rnn_loss(W, U, xs, h0, target):
    """Elman RNN, h = tanh(W h + U x_t) over the time steps, squared error of the last state."""
    steps = xs.shape[0]
    m = xs.shape[1]
    n = h0.shape[0]
    h = h0.copy()
    h_new = np.empty(n)
    for t in range(steps):
        for i in range(n):
            z = 0.0
            for j in range(n):
                z += W[i, j] * h[j]
            for j in range(m):
                z += U[i, j] * xs[t, j]
            h_new[i] = math.tanh(z)
        for i in range(n):
            h[i] = h_new[i]
    loss = 0.0
    for i in range(n):
        r = h[i] - target[i]
        loss += r * r
    return loss


def logistic_regression_np(w, b, X, y):
    """Mean log-loss of logistic regression (labels 0/1), written with array expressions."""
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    return -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def _jittered_lattice(rng, n, spacing, jitter):
    """n points of a cubic lattice, each moved a little: no two particles too close."""
    k = math.ceil(n ** (1.0 / 3.0))
    grid = np.stack(np.meshgrid(np.arange(k), np.arange(k), np.arange(k), indexing="ij"), -1)
    points = grid.reshape(-1, 3)[:n].astype(np.float64)
    return spacing * points + jitter * rng.standard_normal((n, 3))


@dataclass
class Kernel:
    """A benchmark: ``fun(*args)`` differentiated with respect to ``args[argnums]``."""
    name: str
    size: str
    fun: object
    args: tuple
    argnums: int | tuple = 0
    issue: int = 2                   # the issue whose table it belongs to


def kernels(rng):
    """Every kernel: those of issue 2, then those added for issue 3."""
    return issue2_kernels(rng) + issue3_kernels(rng)


def issue2_kernels(rng):
    n_rosen, n_heat, t_heat, n_lj, n_grav, m_log, d_log, m_poly, deg_poly = (
        2_000_000, 2_000, 5_000, 1_500, 1_500, 100_000, 20, 300_000, 16)
    x_log = rng.standard_normal((m_log, d_log))
    w_true = rng.standard_normal(d_log)
    y_log = np.where(x_log @ w_true + 0.5 * rng.standard_normal(m_log) > 0.0, 1.0, -1.0)
    x_poly = rng.uniform(-1.0, 1.0, m_poly)
    return [
        Kernel("rosenbrock", f"n={n_rosen:,}", rosenbrock,
               (rng.uniform(-2.0, 2.0, n_rosen),)),
        Kernel("heat 1-D (explicit)", f"n={n_heat:,}, T={t_heat:,}", heat,
               (rng.standard_normal(n_heat), 0.25, t_heat)),
        Kernel("Lennard-Jones pairs", f"n={n_lj:,} ({n_lj * (n_lj - 1) // 2:,} pairs)",
               lennard_jones, (_jittered_lattice(rng, n_lj, 1.2, 0.05), 1.0, 1.0)),
        Kernel("gravity pairs (sqrt)", f"n={n_grav:,} ({n_grav * (n_grav - 1) // 2:,} pairs)",
               gravity, (rng.standard_normal((n_grav, 3)), rng.uniform(0.5, 1.5, n_grav), 0.1)),
        Kernel("logistic regression", f"m={m_log:,}, d={d_log}", logistic_loss,
               (0.3 * rng.standard_normal(d_log), x_log, y_log, 0.1)),
        Kernel("Horner polynomial fit", f"{m_poly:,} points, degree {deg_poly - 1}", horner_fit,
               (0.5 * rng.standard_normal(deg_poly), x_poly, np.sin(3.0 * x_poly))),
    ]


def issue3_kernels(rng):
    n_gmm, k_gmm, d_gmm = 40_000, 8, 8
    n_mlp, d_mlp, h_mlp, o_mlp = 3_000, 16, 32, 4
    t_rnn, n_rnn, m_rnn = 500, 64, 16
    m_np, d_np = 200_000, 20
    centres = 3.0 * rng.standard_normal((k_gmm, d_gmm))
    x_gmm = centres[rng.integers(0, k_gmm, n_gmm)] + rng.standard_normal((n_gmm, d_gmm))
    x_mlp = rng.standard_normal((n_mlp, d_mlp))
    y_mlp = np.sin(x_mlp[:, :o_mlp]) + 0.1 * rng.standard_normal((n_mlp, o_mlp))
    x_np = rng.standard_normal((m_np, d_np))
    y_np = (x_np @ rng.standard_normal(d_np) + 0.5 * rng.standard_normal(m_np) > 0.0) * 1.0
    return [
        Kernel("Gaussian mixture NLL", f"n={n_gmm:,}, K={k_gmm}, D={d_gmm}; d/d(means, logits)",
               gmm_nll, (centres + 0.5 * rng.standard_normal((k_gmm, d_gmm)),
                         0.3 * rng.standard_normal(k_gmm), x_gmm,
                         rng.uniform(0.5, 2.0, (k_gmm, d_gmm))), (0, 1), 3),
        Kernel("MLP loss (loops)", f"n={n_mlp:,}, {d_mlp}-{h_mlp}-{o_mlp}; d/d(W1, b1, W2, b2)",
               mlp_loss, (rng.standard_normal((h_mlp, d_mlp)) / math.sqrt(d_mlp),
                          0.1 * rng.standard_normal(h_mlp),
                          rng.standard_normal((o_mlp, h_mlp)) / math.sqrt(h_mlp),
                          0.1 * rng.standard_normal(o_mlp), x_mlp, y_mlp), (0, 1, 2, 3), 3),
        Kernel("RNN over time (loops)", f"T={t_rnn}, hidden {n_rnn}, input {m_rnn}; d/dW",
               rnn_loss, (0.9 * rng.standard_normal((n_rnn, n_rnn)) / math.sqrt(n_rnn),
                          rng.standard_normal((n_rnn, m_rnn)) / math.sqrt(m_rnn),
                          rng.standard_normal((t_rnn, m_rnn)), 0.1 * rng.standard_normal(n_rnn),
                          0.5 * rng.standard_normal(n_rnn)), 0, 3),
        Kernel("logistic regression (NumPy)", f"m={m_np:,}, d={d_np}; d/d(w, b)",
               logistic_regression_np, (0.3 * rng.standard_normal(d_np), 0.1, x_np, y_np),
               (0, 1), 3),
    ]


# --------------------------------------------------------------------------------------------
# Correctness: AD against central differences of the compiled primal.
# --------------------------------------------------------------------------------------------

def check_against_fd(primal, gradient, args, argnums, rng, components=5):
    """Largest relative error of ``gradient`` (w.r.t. ``args[argnums]``) on a few random components.

    ``gradient`` is what ``nad.grad(f, argnums)`` returns (a tuple for tuple ``argnums``); each
    differentiated argument, array or float, is checked on up to ``components`` components.
    Central differences of the compiled primal, each with the best of a few step sizes (the
    truncation/round-off trade-off depends on the component); the relative error of a component is
    |ad - fd| / max(|ad|, |fd|, 1e-3 max|ad|), so components that are nearly zero do not count
    more than they should.
    """
    numbers = argnums if isinstance(argnums, tuple) else (argnums,)
    grads = gradient if isinstance(argnums, tuple) else (gradient,)
    worst = 0.0
    for number, grad_of_arg in zip(numbers, grads):
        x = np.array(args[number], dtype=np.float64, copy=True)
        flat = x.reshape(-1)

        def at(value):
            call = list(args)
            call[number] = x if x.ndim else float(value)
            return primal(*call)

        g = np.asarray(grad_of_arg, dtype=np.float64).reshape(-1)
        floor = 1e-3 * float(np.max(np.abs(g))) + 1e-300
        for k in rng.choice(flat.size, size=min(components, flat.size), replace=False):
            x0 = flat[k]
            best = math.inf
            for rel_step in (1e-3, 1e-4, 1e-5, 1e-6):
                h = rel_step * max(1.0, abs(x0))
                flat[k] = x0 + h
                up = at(x0 + h)
                flat[k] = x0 - h
                down = at(x0 - h)
                flat[k] = x0
                fd = (up - down) / (2.0 * h)
                best = min(best, abs(g[k] - fd) / max(abs(g[k]), abs(fd), floor))
            worst = max(worst, best)
    return worst


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def _reverse_kernel_call(gradient, args):
    """The compiled reverse variant alone (no API overhead), or None if it cannot be reached.

    Diagnostic only: reads the derived function's latest variant (an internal of the API), calls
    it with a preallocated shadow that is zeroed outside the timed region.
    """
    try:
        variant = gradient.variant
        call, shadows = [], []
        for value, has in zip(args, variant.shadows):
            call.append(value)
            if has:
                shadow = np.zeros_like(value)
                shadows.append(shadow)
                call.append(shadow)
        call.append(1.0)
        dispatcher = variant.dispatcher
        dispatcher(*call)
    except Exception:  # noqa: BLE001 - diagnostics only; the benchmark does not depend on it
        return None

    def reset():
        for shadow in shadows:
            shadow.fill(0.0)

    return (lambda: dispatcher(*call)), reset


def time_side_by_side(callables, repeats):
    """Medians of each callable, timed in interleaved rounds (a, b, c, a, b, c, ...).

    Each entry is ``fn`` or ``(fn, reset)``; ``reset`` runs before each timed call, untimed.
    Returns (wall, cpu): median ``time.perf_counter`` seconds and median ``time.thread_time``
    seconds (CPU time of this thread: on a shared machine, time lost to other processes is not
    counted in it).
    """
    entries = [c if isinstance(c, tuple) else (c, None) for c in callables]
    wall = [[] for _ in entries]
    cpu = [[] for _ in entries]
    for _ in range(repeats):
        for slot, (fn, reset) in enumerate(entries):
            if reset is not None:
                reset()
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            end, end_cpu = time.perf_counter(), time.thread_time()
            wall[slot].append(end - start)
            cpu[slot].append(end_cpu - start_cpu)
    return [statistics.median(s) for s in wall], [statistics.median(s) for s in cpu]


def run_kernel(kernel: Kernel, repeats, rng):
    """Check, then time one kernel; a row with ``failure`` set when it cannot be timed."""
    args = kernel.args
    primal = numba.njit(kernel.fun)
    gradient = nad.grad(kernel.fun, argnums=kernel.argnums)
    row = {"name": kernel.name, "size": kernel.size, "issue": kernel.issue, "failure": None}

    start = time.perf_counter()
    primal(*args)
    compile_primal = time.perf_counter() - start
    start = time.perf_counter()
    try:
        g = gradient(*args)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other kernels still run
        row["failure"] = f"nad.grad raised {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        return row
    compile_grad = time.perf_counter() - start

    error = check_against_fd(primal, g, args, kernel.argnums, rng)
    row["error"] = error
    if not error < FD_TOLERANCE:
        row["failure"] = (f"WRONG GRADIENT: max relative error {error:.1e} against central "
                          "differences; not timed")
        return row

    # One more warm-up of each (caches, page faults of first allocations), then the rounds.
    primal(*args)
    gradient(*args)
    timed = [lambda: primal(*args), lambda: gradient(*args)]
    kernel = _reverse_kernel_call(gradient, args)
    if kernel is not None:
        timed.append(kernel)
    times, cpu = time_side_by_side(timed, repeats)
    t_primal, t_grad = times[0], times[1]
    t_kernel = times[2] if kernel is not None else None
    row.update(primal=t_primal, grad=t_grad, kernel=t_kernel, ratio=t_grad / t_primal,
               cpu_ratio=cpu[1] / cpu[0], compile=compile_primal + compile_grad)
    return row


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def machine():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    return {"cores": cores, "cpu": cpu, "numba": numba.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "nbautodiff": nad.__version__, "load": load,
            "blas_threads": blas}


def _ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def table(rows, max_ratio, with_geomean):
    """A markdown table of ``rows``, each ratio against ``max_ratio``; optionally a last row with
    the geometric means."""
    target = f"ratio <= {max_ratio:g}"
    lines = [
        "| kernel | size | primal `njit` (ms) | `nad.grad` (ms) | ratio grad/primal | "
        f"ratio, CPU time | reverse kernel alone / primal | FD max rel err | {target} |",
        "|---|---|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for r in rows:
        if r["failure"]:
            lines.append(f"| {r['name']} | {r['size']} | | | **{r['failure']}** | | | | NO |")
            continue
        kernel_ratio = "n/a" if r["kernel"] is None else f"{r['kernel'] / r['primal']:.2f}"
        lines.append(
            f"| {r['name']} | {r['size']} | {_ms(r['primal'])} | {_ms(r['grad'])} | "
            f"**{r['ratio']:.2f}** | {r['cpu_ratio']:.2f} | {kernel_ratio} | {r['error']:.1e} | "
            f"{'yes' if r['ratio'] <= max_ratio else 'NO'} |")
    timed = [r for r in rows if not r["failure"]]
    if with_geomean and timed:
        stats = summary(timed)
        kernels_ = [r["kernel"] / r["primal"] for r in timed if r["kernel"] is not None]
        geo_kernel = f"{geomean(kernels_):.2f}" if len(kernels_) == len(timed) else "n/a"
        lines.append(f"| **geometric mean** | | | | **{stats['geo']:.2f}** | "
                     f"{stats['geo_cpu']:.2f} | {geo_kernel} | | "
                     f"{'yes' if stats['geo'] <= TARGET_GEOMEAN else 'NO'} "
                     f"(target <= {TARGET_GEOMEAN:g}) |")
    return "\n".join(lines)


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(rows):
    """Geometric mean and largest ratio of the timed ``rows``, wall and CPU time."""
    timed = [r for r in rows if not r["failure"]]
    if not timed:
        return {"geo": math.inf, "geo_cpu": math.inf, "max": math.inf, "max_cpu": math.inf,
                "argmax": "none timed", "argmax_cpu": "none timed"}
    top = max(timed, key=lambda r: r["ratio"])
    top_cpu = max(timed, key=lambda r: r["cpu_ratio"])
    return {"geo": geomean([r["ratio"] for r in timed]),
            "geo_cpu": geomean([r["cpu_ratio"] for r in timed]),
            "max": top["ratio"], "argmax": top["name"],
            "max_cpu": top_cpu["cpu_ratio"], "argmax_cpu": top_cpu["name"]}


def verdict_issue2(rows):
    stats = summary(rows)
    misses = [r["name"] for r in rows if r["failure"] or r["ratio"] > TARGET_RATIO]
    return (("all ratios <= 4" if not misses else f"ratio > 4 or failed: {', '.join(misses)}")
            + f"; geometric mean {stats['geo']:.2f} "
            + ("<= 3" if stats["geo"] <= TARGET_GEOMEAN else "> 3"))


def verdict_issue3(rows):
    stats = summary(rows)
    failed = [r["name"] for r in rows if r["failure"]]
    misses = [r["name"] for r in rows if not r["failure"] and r["ratio"] > TARGET_MAX_RATIO_3]
    return (f"{len(rows) - len(failed)} kernels timed"
            + (f", FAILED: {', '.join(failed)}" if failed else "")
            + f"; geometric mean {stats['geo']:.2f} "
            + ("<= 3" if stats["geo"] <= TARGET_GEOMEAN else "> 3")
            + f" (CPU time {stats['geo_cpu']:.2f}); largest ratio {stats['max']:.2f}, "
            f"{stats['argmax']} (CPU time: {stats['max_cpu']:.2f}, {stats['argmax_cpu']}); "
            + ("none above 5" if not misses else f"above 5: {', '.join(misses)}"))


def section(rows, info, repeats, today):
    issue2 = [r for r in rows if r["issue"] == 2]
    issue3 = [r for r in rows if r["issue"] == 3]
    return "\n".join([
        SECTION_BEGIN,
        "## Reverse mode, time(`nad.grad(f)`) / time(`numba.njit(f)`)",
        "",
        f"Run of {today} by `make bench` (`benchmarks/reverse_mode.py`): {info['cores']} cores "
        f"(`nproc`), {info['cpu']}; numba {info['numba']}, NumPy {info['numpy']}, "
        f"Python {info['python']}, nbautodiff {info['nbautodiff']}; BLAS threads "
        f"{info['blas_threads']}; load average at start {info['load']}.",
        "",
        f"Median of {repeats} interleaved rounds (primal, gradient, kernel alone, primal, ...) "
        "after warm-up; compilation not timed. `nad.grad` is the public call as a user makes it "
        "(argument checks, shadow allocation, the compiled reverse pass); \"reverse kernel "
        "alone\" calls the compiled reverse variant directly with preallocated shadows "
        "(diagnostic: the difference is per-call Python overhead). \"Ratio, CPU time\" is the "
        "same ratio from `time.thread_time` (CPU time of the benchmark thread), which does not "
        "count time lost to other processes when the machine is shared. Each gradient is checked "
        "once against central differences on 5 random components of each differentiated "
        "argument before it is timed.",
        "",
        "### Issue 2 kernels",
        "",
        table(issue2, TARGET_RATIO, with_geomean=True),
        "",
        f"Targets of issue 2: each ratio <= 4, geometric mean <= 3. This run: "
        f"{verdict_issue2(issue2)}.",
        "",
        "### Kernels added for issue 3",
        "",
        table(issue3, TARGET_MAX_RATIO_3, with_geomean=False),
        "",
        f"Targets of issue 3, over all {len(rows)} kernels (both tables): geometric mean <= 3, "
        f"none above 5. This run: {verdict_issue3(rows)}.",
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
    parser.add_argument("--repeats", type=int, default=21, help="interleaved timing rounds")
    parser.add_argument("--only", default="", help="comma-separated substrings of kernel names")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    opts = parser.parse_args(argv)

    wall = time.perf_counter()
    rng = np.random.default_rng(20261121)
    every = kernels(rng)
    selected = [k for k in every
                if not opts.only or any(s.strip().lower() in k.name.lower()
                                        for s in opts.only.split(","))]
    if not selected:
        parser.error(f"no kernel matches --only {opts.only!r}")
    info = machine()
    print(f"nbautodiff reverse mode vs numba.njit primal: {info['cores']} cores, {info['cpu']}, "
          f"numba {info['numba']}, NumPy {info['numpy']}; BLAS threads {info['blas_threads']}; "
          f"load average {info['load']}", flush=True)
    rows = []
    for kernel in selected:
        row = run_kernel(kernel, opts.repeats, rng)
        rows.append(row)
        if row["failure"]:
            print(f"  {kernel.name:28s} {row['failure']}", flush=True)
            continue
        print(f"  {kernel.name:28s} primal {_ms(row['primal']):>7s} ms  grad "
              f"{_ms(row['grad']):>7s} ms  ratio {row['ratio']:5.2f} (CPU time "
              f"{row['cpu_ratio']:.2f}; kernel alone {_ms(row['kernel'])} ms; FD max rel err "
              f"{row['error']:.1e}; compile {row['compile']:.1f} s)", flush=True)
    issue2 = [r for r in rows if r["issue"] == 2]
    issue3 = [r for r in rows if r["issue"] == 3]
    for title, subset, max_ratio, with_geomean in (
            ("issue 2 kernels", issue2, TARGET_RATIO, True),
            ("kernels added for issue 3", issue3, TARGET_MAX_RATIO_3, False)):
        if subset:
            print(f"\n{title}:\n{table(subset, max_ratio, with_geomean)}")
    print()
    if issue2:
        print(f"issue 2 (each <= {TARGET_RATIO:g}, geometric mean <= {TARGET_GEOMEAN:g}): "
              f"{verdict_issue2(issue2)}")
    print(f"issue 3, all kernels run (geometric mean <= {TARGET_GEOMEAN:g}, each <= "
          f"{TARGET_MAX_RATIO_3:g}): {verdict_issue3(rows)}")
    failures = [r["name"] for r in rows if r["failure"]]
    if failures:
        print(f"FAILED (not timed): {', '.join(failures)}")
    today = datetime.date.today().isoformat()
    if not opts.no_write and len(rows) == len(every):
        write_results(Path(opts.results), section(rows, info, opts.repeats, today))
        print(f"wrote the benchmark section of {opts.results}")
    elif not opts.no_write:
        print("(a subset was run: RESULTS.md left as it is)")
    print(f"total {time.perf_counter() - wall:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
