"""nbautodiff against JAX on the CPU: every kernel of ``reverse_mode.py`` side by side (issue 8).

A script, not a test (``make bench-jax``; JAX is the optional extra ``nbautodiff[jax]``, never
imported by the package). For each kernel of ``benchmarks/reverse_mode.py`` (imported from there,
with its inputs) it

1. runs the kernel as we do (``numba.njit(f)`` for the primal, ``nad.grad(f, argnums)`` for the
   gradient) and an idiomatic JAX version of it (below: vectorised ``jnp`` where a JAX user would
   write that, ``lax.scan``/``lax.fori_loop`` for the time loops), ``jax.jit(f)`` and
   ``jax.jit(jax.grad(f, argnums))``, float64 on both sides, on the same inputs;
2. checks that the two agree (values within 1e-10, gradients within 1e-8, relative) and does not
   time a kernel where they do not: one of the two versions would be wrong;
3. times primal and gradient of both in interleaved rounds after warm-up (``block_until_ready``
   on JAX's outputs) and keeps the medians;
4. measures the cold time to the first gradient of each side in a fresh subprocess (ours with an
   empty ``NBAUTODIFF_CACHE_DIR``: transformation plus numba compilation; JAX's: tracing plus XLA
   compilation of ``jit(grad(f))``), imports and input construction not counted, and beside it
   that of ``numba.njit(f)`` alone, the floor of any gradient numba compiles;
5. prints a markdown table, the geometric means and the acceptance verdicts of issue 8, writes a
   bar chart (``--plot``, default ``build/jax_compare.png``) and, unless ``--no-write``, replaces
   its section of ``benchmarks/RESULTS.md``.

Both sides run on one thread of the CPU: BLAS through ``OPENBLAS_NUM_THREADS=1`` and friends,
XLA through ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` and
``JAX_PLATFORMS=cpu`` (a JAX with CUDA would take a GPU), all set here before NumPy or JAX is
imported (and inherited by the cold-start subprocesses); on Linux the process is also pinned to
one core (``sched_setaffinity``), since newer XLA CPU runtimes start worker threads whatever the
flags say (measured on a 16-core machine: JAX's CPU time several times its wall time).

Options: ``--repeats N`` (interleaved rounds, default 11), ``--only NAME[,NAME]`` (substrings of
kernel names), ``--cold {subprocess,inprocess,skip}``, ``--plot PATH``, ``--no-write``,
``--results PATH``, ``--max-load L`` and ``--wait-load S`` (wait up to S seconds for the 1-minute
load average to fall below L before timing; the machine is shared), ``--fastmath`` (ours with
``nad.grad(f, argnums, fastmath=True)``: products recognised in loop nests computed by BLAS;
such a run never writes RESULTS.md).
"""
from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")     # before NumPy/SciPy load BLAS
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA_ONE_THREAD).strip()
os.environ["JAX_PLATFORMS"] = "cpu"           # a JAX built with CUDA would otherwise use the GPU
if hasattr(os, "sched_setaffinity"):           # one core: XLA's CPU runtime starts threads anyway
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import reverse_mode as rm  # noqa: E402  (the kernels, their inputs, timing and machine helpers)

SEED = 20261121                 # reverse_mode.py's seed: the same inputs as `make bench`
VALUE_TOLERANCE = 1e-10         # relative, primal values of the two sides
GRAD_TOLERANCE = 1e-8           # relative, each gradient component (see relative_error)
TARGET_GEOMEAN_VS_JAX = 1.0     # issue 8: geometric mean of ours/JAX gradient time
TARGET_MAX_VS_JAX = 2.0         # issue 8: no kernel slower than 2x JAX
TARGET_GEOMEAN_RATIO = 3.0      # issue 8: geometric mean of our gradient/primal
TARGET_COLD_VS_JAX = 2.0        # issue 8: cold time to first gradient within 2x of JAX's compile
SECTION_BEGIN = "<!-- jax comparison: begin (written by benchmarks/jax_compare.py) -->"
SECTION_END = "<!-- jax comparison: end -->"


# --------------------------------------------------------------------------------------------
# The JAX versions, keyed by the name of the reverse_mode.py function they mirror. Each takes
# the same arguments; ``STATIC`` names the arguments JAX must see as Python values (loop counts).
# --------------------------------------------------------------------------------------------

STATIC = {"heat": (2,)}


def jax_kernels():
    """{name of the reverse_mode.py function: its JAX version}; imports JAX."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.special import logsumexp

    def rosenbrock(x):
        a = x[1:] - x[:-1] ** 2
        return jnp.sum(100.0 * a * a + (1.0 - x[:-1]) ** 2)

    def heat(u0, alpha, steps):
        def step(_, u):
            inner = u[1:-1] + alpha * (u[:-2] - 2.0 * u[1:-1] + u[2:])
            return jnp.pad(inner, 1)            # zero Dirichlet ends
        u = lax.fori_loop(0, steps, step, u0)   # static trip count: differentiable (a scan)
        return jnp.sum(u * u)

    def pair_mask(n):
        return jnp.triu(jnp.ones((n, n), dtype=bool), k=1)     # i < j, as the loops

    def pair_r2(pos):
        diff = pos[:, None, :] - pos[None, :, :]
        return jnp.sum(diff * diff, axis=-1)

    def lennard_jones(pos, eps, sigma):
        mask = pair_mask(pos.shape[0])
        r2 = jnp.where(mask, pair_r2(pos), 1.0)   # keeps r2 = 0 on the diagonal out of grad
        q6 = (sigma * sigma / r2) ** 3
        return jnp.sum(jnp.where(mask, 4.0 * eps * (q6 * q6 - q6), 0.0))

    def gravity(pos, mass, soft):
        mask = pair_mask(pos.shape[0])
        r = jnp.sqrt(pair_r2(pos) + soft * soft)
        return -jnp.sum(jnp.where(mask, jnp.outer(mass, mass) / r, 0.0))

    def logistic_loss(w, X, y, lam):
        t = -y * (X @ w)
        return jnp.mean(jax.nn.softplus(t)) + 0.5 * lam * jnp.dot(w, w)

    def horner_fit(c, x, y):
        r = jnp.polyval(c[::-1], x) - y          # c[k] multiplies x**k
        return jnp.sum(r * r)

    def gmm_nll(mu, alpha, X, prec):
        d = X.shape[1]
        log_weights = alpha - logsumexp(alpha)
        const = (log_weights + 0.5 * jnp.sum(jnp.log(prec), axis=1)
                 - 0.5 * d * jnp.log(2.0 * jnp.pi))
        diff = X[:, None, :] - mu[None, :, :]
        logp = const - 0.5 * jnp.sum(prec * diff * diff, axis=-1)
        return -jnp.mean(logsumexp(logp, axis=1))

    def mlp_loss(W1, b1, W2, b2, X, Y):
        hidden = jnp.tanh(X @ W1.T + b1)
        r = hidden @ W2.T + b2 - Y
        return jnp.sum(r * r) / X.shape[0]

    def rnn_loss(W, U, xs, h0, target):
        def step(h, ux):
            return jnp.tanh(W @ h + ux), None
        h, _ = lax.scan(step, h0, xs @ U.T)
        r = h - target
        return jnp.sum(r * r)

    def logistic_regression_np(w, b, X, y):
        p = jax.nn.sigmoid(X @ w + b)
        return -jnp.mean(y * jnp.log(p) + (1.0 - y) * jnp.log(1.0 - p))

    return {f.__name__: f for f in (rosenbrock, heat, lennard_jones, gravity, logistic_loss,
                                    horner_fit, gmm_nll, mlp_loss, rnn_loss,
                                    logistic_regression_np)}


def import_jax():
    """JAX with float64 enabled; a clear message when the optional extra is missing."""
    try:
        import jax
    except ImportError:
        sys.exit("JAX is not installed: `make bench-jax` installs it into .venv "
                 "(or: pip install 'nbautodiff[jax]')")
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_callables(kernel):
    """(jit(f), jit(grad(f, argnums)), args for JAX): arrays as jnp arrays, statics as given."""
    jax = import_jax()
    import jax.numpy as jnp
    fun = jax_kernels()[kernel.fun.__name__]
    static = STATIC.get(kernel.fun.__name__, ())
    primal = jax.jit(fun, static_argnums=static)
    gradient = jax.jit(jax.grad(fun, argnums=kernel.argnums), static_argnums=static)
    args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in kernel.args)
    return primal, gradient, args


# --------------------------------------------------------------------------------------------
# Pure helpers (no JAX): comparison, statistics, verdicts.
# --------------------------------------------------------------------------------------------

def relative_error(ours, theirs):
    """Largest componentwise relative difference of two gradients (tuples for tuple argnums).

    |a - b| / max(|a|, |b|, 1e-6 max|b|) per component: components that are nearly zero
    (cancellations) do not count more than components of the size of the gradient.
    """
    pairs = zip(ours, theirs) if isinstance(ours, tuple) else [(ours, theirs)]
    worst = 0.0
    for a, b in pairs:
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            return math.inf
        floor = 1e-6 * float(np.max(np.abs(b), initial=0.0)) + 1e-300
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
        worst = max(worst, float(np.max(np.abs(a - b) / scale, initial=0.0)))
    return worst


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def verdicts(rows):
    """The acceptance checks of issue 8 over the timed ``rows``: [(target, measured, passed)]."""
    timed = [r for r in rows if not r.get("failure")]
    if not timed:
        return [("at least one kernel timed", "none", False)]
    vs_jax = {r["name"]: r["grad"] / r["jax_grad"] for r in timed}
    worst = max(vs_jax, key=vs_jax.get)
    geo_vs_jax = geomean(vs_jax.values())
    geo_ratio = geomean(r["grad"] / r["primal"] for r in timed)
    checks = [
        (f"geometric mean ours/JAX gradient <= {TARGET_GEOMEAN_VS_JAX:g}", f"{geo_vs_jax:.2f}",
         geo_vs_jax <= TARGET_GEOMEAN_VS_JAX),
        (f"no kernel slower than {TARGET_MAX_VS_JAX:g}x JAX",
         f"largest {vs_jax[worst]:.2f} ({worst})", vs_jax[worst] <= TARGET_MAX_VS_JAX),
        (f"geometric mean gradient/primal (ours) <= {TARGET_GEOMEAN_RATIO:g}", f"{geo_ratio:.2f}",
         geo_ratio <= TARGET_GEOMEAN_RATIO),
    ]
    cold = [r for r in timed if r.get("cold") is not None and r.get("jax_cold") is not None]
    if cold:
        over = [r["name"] for r in cold if r["cold"] > TARGET_COLD_VS_JAX * r["jax_cold"]]
        worst_cold = max(cold, key=lambda r: r["cold"] / r["jax_cold"])
        checks.append((f"cold time to first gradient <= {TARGET_COLD_VS_JAX:g}x JAX's, each kernel",
                       f"largest {worst_cold['cold'] / worst_cold['jax_cold']:.2f} "
                       f"({worst_cold['name']})" + (f"; over: {', '.join(over)}" if over else ""),
                       not over))
    failed = [r["name"] for r in rows if r.get("failure")]
    if failed:
        checks.append(("every kernel timed", f"failed: {', '.join(failed)}", False))
    return checks


# --------------------------------------------------------------------------------------------
# Cold start: one fresh interpreter per side and kernel.
# --------------------------------------------------------------------------------------------

def cold_first_gradient(side, kernel_name):
    """(start-up, first gradient) seconds of one side in this process (see ``--child``).

    Meant to run in a fresh interpreter. Imports and inputs come first and are not counted. The
    library's one-off start-up at its first compilation (numba: LLVM and its type system; JAX:
    the XLA client) is timed apart on a trivial function, so that the second number is what this
    kernel costs: ours, ``nad.grad`` (transformation, numba compilation of the primal and reverse
    variants) and the first call; side "numba", ``numba.njit`` of the primal alone and its first
    call (the floor of any gradient numba compiles); JAX's, ``jax.jit(jax.grad)`` (tracing, XLA
    compilation) and the first call, ``block_until_ready``.
    """
    kernel = next(k for k in rm.kernels(np.random.default_rng(SEED)) if k.name == kernel_name)
    if side in ("ours", "numba"):
        import numba
        if side == "ours":
            import nbautodiff as nad
        start = time.perf_counter()
        numba.njit(lambda x: x + 1.0)(1.0)
        startup = time.perf_counter() - start
        start = time.perf_counter()
        if side == "ours":
            nad.grad(kernel.fun, argnums=kernel.argnums, fastmath=_fastmath())(*kernel.args)
        else:
            numba.njit(kernel.fun)(*kernel.args)
        return startup, time.perf_counter() - start
    jax = import_jax()
    import jax.numpy as jnp
    fun = jax_kernels()[kernel.fun.__name__]
    start = time.perf_counter()
    args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in kernel.args)
    jax.block_until_ready(jax.jit(lambda x: x + 1.0)(1.0))
    startup = time.perf_counter() - start
    start = time.perf_counter()
    gradient = jax.jit(jax.grad(fun, argnums=kernel.argnums),
                       static_argnums=STATIC.get(kernel.fun.__name__, ()))
    jax.block_until_ready(gradient(*args))
    return startup, time.perf_counter() - start


def _fastmath() -> bool:
    """Whether our gradients are ``nad.grad(..., fastmath=True)`` (``--fastmath``; inherited by
    the cold-start subprocesses through the environment)."""
    return os.environ.get("NBAUTODIFF_BENCH_FASTMATH") == "1"


def cold_in_subprocess(side, kernel_name):
    """``cold_first_gradient`` in a fresh interpreter (ours: with an empty cache directory)."""
    with tempfile.TemporaryDirectory(prefix="nad-cold-") as cache:
        env = dict(os.environ, NBAUTODIFF_CACHE_DIR=cache, NUMBA_CACHE_DIR=cache)
        done = subprocess.run([sys.executable, __file__, "--child", side, kernel_name],
                              env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold start of {side} {kernel_name!r} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["startup"], result["seconds"]


def time_interleaved(callables, repeats):
    """Median wall and process-CPU seconds of each callable, in rounds (a, b, c, a, b, c, ...).

    Process CPU time (``time.process_time``, all threads) rather than this thread's: XLA runs a
    jitted call on a thread of its own. With both sides on one thread it is the work done, which
    other processes on a shared machine do not inflate (wall time is what the verdicts use).
    """
    wall = [[] for _ in callables]
    cpu = [[] for _ in callables]
    for _ in range(repeats):
        for slot, fn in enumerate(callables):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[slot].append(time.perf_counter() - start)
            cpu[slot].append(time.process_time() - start_cpu)
    return [statistics.median(s) for s in wall], [statistics.median(s) for s in cpu]


# --------------------------------------------------------------------------------------------
# One kernel
# --------------------------------------------------------------------------------------------

def run_kernel(kernel, repeats, cold_mode):
    """Check, then time one kernel both ways; a row with ``failure`` set when it is not timed."""
    import numba
    import nbautodiff as nad
    jax = import_jax()
    row = {"name": kernel.name, "size": kernel.size, "failure": None}
    args = kernel.args
    primal = numba.njit(kernel.fun)
    gradient = nad.grad(kernel.fun, argnums=kernel.argnums, fastmath=_fastmath())
    jax_primal, jax_gradient, jax_args = jax_callables(kernel)

    start = time.perf_counter()
    value = primal(*args)
    g = gradient(*args)
    row["first"] = time.perf_counter() - start                      # in-process, numba warm
    start = time.perf_counter()
    jax_value = float(jax.block_until_ready(jax_primal(*jax_args)))
    jg = jax.block_until_ready(jax_gradient(*jax_args))
    row["jax_first"] = time.perf_counter() - start

    row["value_error"] = abs(value - jax_value) / max(abs(value), abs(jax_value), 1e-300)
    row["error"] = relative_error(g, jg)
    if not (row["value_error"] <= VALUE_TOLERANCE and row["error"] <= GRAD_TOLERANCE):
        row["failure"] = (f"MISMATCH with JAX: value {row['value_error']:.1e}, gradient "
                          f"{row['error']:.1e} (relative); not timed")
        return row

    def jax_call(fn):
        return lambda: jax.block_until_ready(fn(*jax_args))

    timed = [lambda: primal(*args), lambda: gradient(*args),
             jax_call(jax_primal), jax_call(jax_gradient)]
    for fn in timed:                                                # one more warm-up each
        fn()
    wall, cpu = time_interleaved(timed, repeats)
    row.update(primal=wall[0], grad=wall[1], jax_primal=wall[2], jax_grad=wall[3],
               cpu_grad=cpu[1], cpu_jax_grad=cpu[3])

    if cold_mode == "subprocess":
        row["startup"], row["cold"] = cold_in_subprocess("ours", kernel.name)
        row["jax_startup"], row["jax_cold"] = cold_in_subprocess("jax", kernel.name)
        _, row["njit_cold"] = cold_in_subprocess("numba", kernel.name)
    elif cold_mode == "inprocess":
        row["cold"], row["jax_cold"] = row["first"], row["jax_first"]
    else:
        row["cold"] = row["jax_cold"] = None
    return row


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _ms(seconds):
    return f"{seconds * 1e3:.2f}"


def _s(seconds):
    return "n/a" if seconds is None else f"{seconds:.2f}"


def table(rows):
    lines = [
        "| kernel | primal ours (ms) | primal JAX (ms) | grad ours (ms) | grad JAX (ms) | "
        "grad/primal ours | grad/primal JAX | **ours/JAX grad** | cold 1st grad ours (s) | "
        "cold 1st grad JAX (s) | cold ours/JAX | cold `numba.njit(f)`, the primal alone (s) | "
        "its cold / JAX's cold grad | ours/JAX grad, CPU time | grad rel diff |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if r["failure"]:
            lines.append(f"| {r['name']} | | | | | | | **{r['failure']}** | | | | | | | |")
            continue
        cold_ratio = _ratio(r["cold"], r["jax_cold"])
        njit_ratio = _ratio(r.get("njit_cold"), r["jax_cold"])
        lines.append(
            f"| {r['name']} | {_ms(r['primal'])} | {_ms(r['jax_primal'])} | {_ms(r['grad'])} | "
            f"{_ms(r['jax_grad'])} | {r['grad'] / r['primal']:.2f} | "
            f"{r['jax_grad'] / r['jax_primal']:.2f} | **{r['grad'] / r['jax_grad']:.2f}** | "
            f"{_s(r['cold'])} | {_s(r['jax_cold'])} | {cold_ratio} | {_s(r.get('njit_cold'))} | "
            f"{njit_ratio} | {r['cpu_grad'] / r['cpu_jax_grad']:.2f} | {r['error']:.0e} |")
    timed = [r for r in rows if not r["failure"]]
    if timed:
        cold = [r for r in timed if r["cold"] is not None and r["jax_cold"] is not None]
        geo_cold = (f"{geomean(r['cold'] / r['jax_cold'] for r in cold):.2f}"
                    if cold else "n/a")
        lines.append(
            "| **geometric mean** | | | | | "
            f"{geomean(r['grad'] / r['primal'] for r in timed):.2f} | "
            f"{geomean(r['jax_grad'] / r['jax_primal'] for r in timed):.2f} | "
            f"**{geomean(r['grad'] / r['jax_grad'] for r in timed):.2f}** | | | {geo_cold} | | | "
            f"{geomean(r['cpu_grad'] / r['cpu_jax_grad'] for r in timed):.2f} | |")
    return "\n".join(lines)


def _ratio(a, b) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}"


def verdict_lines(rows):
    return [f"- {'PASS' if ok else 'FAIL'}: {target} (measured {measured})"
            for target, measured, ok in verdicts(rows)]


def plot(rows, path):
    """Bar chart of ours/JAX per kernel (gradient, primal), log scale; 1 = as fast as JAX."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    timed = [r for r in rows if not r["failure"]]
    if not timed:
        return None
    x = np.arange(len(timed))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(timed) + 2.0), 4.5))
    ax.bar(x - 0.2, [r["grad"] / r["jax_grad"] for r in timed], 0.4, label="gradient")
    ax.bar(x + 0.2, [r["primal"] / r["jax_primal"] for r in timed], 0.4, label="primal")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(TARGET_MAX_VS_JAX, color="red", linewidth=0.8, linestyle="--",
               label=f"{TARGET_MAX_VS_JAX:g}x JAX (limit per kernel)")
    ax.set_yscale("log")
    ax.set_xticks(x, [r["name"] for r in timed], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("time ours / time JAX (below 1: we are faster)")
    ax.set_title("nbautodiff (numba) vs JAX (jit), CPU, one thread, float64")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _median_of(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.median(values):.2f}" if values else "n/a"


def section(rows, info, repeats, cold_mode, today):
    jax = import_jax()
    import jaxlib
    cold_text = {
        "subprocess": "each side in a fresh interpreter (ours with an empty `NBAUTODIFF_CACHE_DIR`"
                      "), from building the gradient to its first result: ours `nad.grad` "
                      "(transformation, numba compilation) and the first call, JAX's `jit(grad)` "
                      "(tracing, XLA compilation) and the first call; imports, inputs and each "
                      "library's one-off start-up (timed apart on a trivial function: median "
                      f"{_median_of(rows, 'startup')} s numba, {_median_of(rows, 'jax_startup')} s"
                      " JAX) not counted; beside it, the same for `numba.njit(f)` of the loop "
                      "code alone (compiling the primal, the least any numba-compiled gradient "
                      "costs)",
        "inprocess": "first call in this process (libraries already warm)",
        "skip": "not measured",
    }[cold_mode]
    return "\n".join([
        SECTION_BEGIN,
        "## Against JAX on the CPU (issue 8)",
        "",
        f"Run of {today} by `make bench-jax` (`benchmarks/jax_compare.py`): {info['cores']} cores, "
        f"{info['cpu']}; numba {info['numba']}, NumPy {info['numpy']}, JAX {jax.__version__} "
        f"(jaxlib {jaxlib.__version__}), Python {info['python']}; one thread on both sides "
        f"(BLAS threads 1, `XLA_FLAGS={_XLA_ONE_THREAD}`, the process pinned to one core); "
        f"load average at start {info['load']}, "
        f"at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}.",
        "",
        f"Medians of {repeats} interleaved rounds after warm-up, float64 on both sides, same "
        "inputs as `make bench`; ours: `numba.njit(f)` and `nad.grad(f, argnums)` on the loop "
        "code of `benchmarks/reverse_mode.py`; JAX: `jax.jit(f)` and `jax.jit(jax.grad(f, "
        "argnums))` on an idiomatic JAX version (in `jax_compare.py`). Each gradient agrees with "
        f"JAX's within {GRAD_TOLERANCE:g} relative (last column) before it is timed. Cold first "
        f"gradient: {cold_text}. \"CPU time\": the same ratio from the process's CPU time (all "
        "threads), which other processes on the shared machine do not inflate.",
        "",
        table(rows),
        "",
        "Acceptance of issue 8:",
        "",
        *verdict_lines(rows),
        SECTION_END,
    ])


def write_results(path, block):
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.S)
    new = (pattern.sub(lambda _: block, old, count=1) if pattern.search(old)
           else old.rstrip("\n") + "\n\n" + block + "\n")
    path.write_text(new)


def wait_for_load(max_load, wait_s):
    """Wait (up to ``wait_s`` seconds) for the 1-minute load average to fall below ``max_load``."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        if load < max_load:
            return load
        if time.monotonic() >= deadline:
            print(f"load average still {load:.2f} >= {max_load:g} after {wait_s:g} s: timing "
                  "anyway (numbers are less reliable)", flush=True)
            return load
        print(f"load average {load:.2f} >= {max_load:g}: waiting", flush=True)
        time.sleep(30)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="interleaved timing rounds")
    parser.add_argument("--only", default="", help="comma-separated substrings of kernel names")
    parser.add_argument("--cold", choices=("subprocess", "inprocess", "skip"),
                        default="subprocess", help="how the time to the first gradient is taken")
    parser.add_argument("--plot", default="build/jax_compare.png")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--max-load", type=float, default=math.inf)
    parser.add_argument("--wait-load", type=float, default=0.0)
    parser.add_argument("--fastmath", action="store_true",
                        help="our gradients with nad.grad(..., fastmath=True) (products in loop "
                             "nests by BLAS); never written to RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "KERNEL"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.fastmath:
        os.environ["NBAUTODIFF_BENCH_FASTMATH"] = "1"
        opts.no_write = True
    if opts.child:
        startup, seconds = cold_first_gradient(*opts.child)
        print(json.dumps({"startup": startup, "seconds": seconds}))
        return 0

    wall = time.perf_counter()
    jax = import_jax()
    every = rm.kernels(np.random.default_rng(SEED))
    selected = [k for k in every
                if not opts.only or any(s.strip().lower() in k.name.lower()
                                        for s in opts.only.split(","))]
    if not selected:
        parser.error(f"no kernel matches --only {opts.only!r}")
    wait_for_load(opts.max_load, opts.wait_load)
    info = rm.machine()
    print(f"nbautodiff{' (fastmath=True)' if _fastmath() else ''} vs JAX {jax.__version__}: "
          f"{info['cores']} cores, {info['cpu']}; one thread each; load average {info['load']}",
          flush=True)
    rows = []
    for kernel in selected:
        row = run_kernel(kernel, opts.repeats, opts.cold)
        rows.append(row)
        if row["failure"]:
            print(f"  {kernel.name:28s} {row['failure']}", flush=True)
            continue
        print(f"  {kernel.name:28s} grad ours {_ms(row['grad']):>7s} ms  JAX "
              f"{_ms(row['jax_grad']):>7s} ms  ours/JAX {row['grad'] / row['jax_grad']:5.2f}  "
              f"(primal {_ms(row['primal'])} / {_ms(row['jax_primal'])} ms; cold "
              f"{_s(row['cold'])} / {_s(row['jax_cold'])} s; in-process first "
              f"{row['first']:.2f} / {row['jax_first']:.2f} s; rel diff {row['error']:.0e})",
              flush=True)
    print()
    print(table(rows))
    print()
    print("\n".join(verdict_lines(rows)))
    path = plot(rows, opts.plot)
    if path:
        print(f"wrote {path}")
    if not opts.no_write and len(rows) == len(every):
        today = datetime.date.today().isoformat()
        write_results(Path(opts.results), section(rows, info, opts.repeats, opts.cold, today))
        print(f"wrote the JAX section of {opts.results}")
    elif not opts.no_write:
        print("(a subset was run: RESULTS.md left as it is)")
    print(f"total {time.perf_counter() - wall:.1f} s")
    return 1 if any(r["failure"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
