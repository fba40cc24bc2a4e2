"""Compile latency: how long a derivative takes to compile, beside numba's compile of the primal
and JAX's ``jit(grad)`` (issue 20, item 1).

A script, not a test (``make bench-compile``; JAX is the optional extra ``nbautodiff[jax]``,
never imported by the package). For every benchmark kernel (``reverse_mode.kernels``: Rosenbrock,
heat, Lennard-Jones, gravity, logistic regression, Horner, GMM, MLP and RNN in loops, NumPy
logistic regression; plus Black-Scholes from ``batching.py`` and a scalar Newton loop, below) it
times the *compile* of

* ``numba``: ``numba.njit(f)``, the primal (the floor of anything numba compiles from ``f``);
* ``grad``: ``nad.grad(f, argnums)``;
* ``fwd1``, ``fwd16`` (and ``fwd28`` for the kernels of ``WIDTH28``): ``nad.forward(f, Dual...,
  width=W)``, ``Dual`` for the differentiated arguments, ``Const`` for the others;
* ``hvp``: ``nad.jvp(nad.grad(f, argnums), args, tangents)``, the Hessian-vector product (forward
  over the generated reverse code: what ``nad.hessian`` compiles, without its many passes);
* ``batch``: ``nad.batch(f, in_axes)``, the first differentiated argument batched (every
  argument for the all-scalar kernels), 8 slices;
* ``jax``: ``jax.jit(jax.grad(f_jax, argnums))`` of the kernel's JAX version (``jax_compare.py``'s
  ports, and the two below).

*Compile time* is the first call minus the steady call (median of 3 calls after it), on small
inputs of the kernel's argument types (each array cut to at most ``SMALL`` rows: the compile only
depends on the types). Every measurement compiles a never-seen copy of the function (its source
executed again under a new name, from a file of its own), so that nothing is reused from another
measurement, in memory or in nbautodiff's artifact cache. Two settings:

* **warm**: one process per kernel (``--warm-repeats``), with empty caches, that first compiles
  *another* kernel every way (``warmup_kernel`` below, whose loops use the tape: its numba primal,
  gradient, forward modes, HVP, batch and JAX gradient), then each kind of this kernel once, and
  the primal and gradient once more (the next edit of the cell): the edit-a-cell loop.
* **fresh**: one fresh process per kernel, kind and repeat (``--repeats`` for numba, ``grad`` and
  JAX, ``--repeats-other`` for the other kinds; width 28 is measured warm only), imports done
  (timed apart), the first call of that one kind: what the first cell after a kernel restart
  pays, numba's one-off start-up included. Each with an empty ``NBAUTODIFF_CACHE_DIR`` and
  ``NUMBA_CACHE_DIR``: *fully cold*. For ``grad`` also *helpers cached*
  (``--repeats-helpers``): ``NUMBA_CACHE_DIR`` as the first fully cold process of the same
  gradient left it (nbautodiff's runtime helpers, ``cache=True`` in ``nbautodiff.kernels``, are
  then loaded from numba's cache), the artifact cache empty.

Every process of ours also meters numba's own work: the outermost time inside numba's front end,
type inference and dispatcher compilations, and the dispatchers compiled (one per new signature:
nbautodiff's runtime helpers, the generated code, numba's own). "Ours beyond numba" is the rest:
nbautodiff's passes, emit, cache and API.

Beside the table: a plot of compile time against a loop's trip count, the trip count a Python
constant in the code (``TRIP_TEMPLATE`` below, an RNN-like recurrence), for ours, numba's primal
and JAX with a Python loop (unrolled at trace time), ``lax.fori_loop`` and ``lax.scan``
(``benchmarks/compile_latency.png``), and a profile of one fully cold gradient (GMM) grouped by
where the time goes. All of it, with the acceptance verdicts of issue 20, replaces the section of
``benchmarks/RESULTS.md`` between its markers.

BLAS and XLA run on one thread (as in ``jax_compare.py``); processes are not pinned to a core.
Each measurement records wall time (the verdicts) and the process's CPU time (less inflated by
other processes on a shared machine).

Options: ``--quick`` (two kernels, one process each, three trip counts: a few minutes, for
development), ``--only NAME[,NAME]`` (substrings of kernel names), ``--kinds KIND[,KIND]``,
``--repeats N`` (default 3), ``--repeats-other N`` (default 1), ``--repeats-helpers N`` (default
1), ``--warm-repeats N`` (default 1), ``--no-jax``, ``--no-warm``, ``--no-fresh``,
``--no-profile``, ``--no-trip``, ``--no-write``, ``--results PATH``, ``--plot PATH``, ``--json
PATH`` (the raw data), ``--from-json PATH`` (the report of such data, measuring nothing) and
``--what-if`` (fully cold first gradients with the tape's ``_grown`` copying by a loop beside
as it is, printed only: the first cut the profile points to). The
full run is about 20 minutes of CPU time: on the shared 2-core machine, loaded by other work, it
takes longer in wall time.
"""
from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")     # before NumPy loads BLAS
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA_ONE_THREAD).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")   # no persistent XLA cache

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import inspect  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

SEED = 20261121
SMALL = 64                        # rows of each array argument: compile depends on types only
BATCH = 8                         # slices of the batched calls
SECTION_BEGIN = "<!-- compile latency: begin (written by benchmarks/compile_latency.py) -->"
SECTION_END = "<!-- compile latency: end -->"
OURS = ("grad", "fwd1", "fwd16", "fwd28", "hvp", "batch")
KINDS = ("numba",) + OURS + ("jax",)
WIDTH28 = ("rosenbrock", "Black-Scholes", "Gaussian mixture NLL")   # kernels also timed at width 28
TRIP_COUNTS = (10, 30, 100, 300, 1000)
TRIP_SIDES = ("ours", "numba", "jax loop", "jax fori_loop", "jax scan")
UNROLLED_MAX = 300                # JAX's unrolled loop beyond this: minutes (1000 took 100 s)
PROFILE_KERNEL = "Gaussian mixture NLL"
QUICK = ("rosenbrock", "Newton (Kepler, scalar)")
CASES_VARIABLE = "NAD_COMPILE_LATENCY_CASES"
KINDS_VARIABLE = "NAD_COMPILE_LATENCY_KINDS"
WHAT_IF_VARIABLE = "NAD_COMPILE_LATENCY_WHAT_IF"
WHAT_IF_KERNELS = ("logistic regression", "Horner polynomial fit", "Gaussian mixture NLL",
                   "MLP loss (loops)", "RNN over time (loops)", "Newton (Kepler, scalar)")

# Acceptance of issue 20.
TARGET_SUM_RATIO = 1.5            # warm: sum of gradient compiles / sum of numba primal compiles
GOAL_SUM_RATIO = 1.2
TARGET_MAX_RATIO = 3.0            # warm: no kernel above
TARGET_BEYOND_S = 0.050           # warm: per derivative beyond numba's own work
TARGET_FRESH_RATIO = 2.0          # fresh: first gradient / first numba.njit(f) call
TARGET_WIDTH_RATIO = 2.0          # width 28 / width 1 forward compile


# --------------------------------------------------------------------------------------------
# Kernels: those of reverse_mode.py (small inputs of the same types), Black-Scholes, Newton.
# --------------------------------------------------------------------------------------------

def black_scholes(s, k, t, r, v):
    """Black-Scholes call price (batching.py's kernel, repeated here: its module times on import)."""
    sqrt_t = math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * sqrt_t)
    d2 = d1 - v * sqrt_t
    n1 = 0.5 * math.erfc(-d1 / math.sqrt(2.0))
    n2 = 0.5 * math.erfc(-d2 / math.sqrt(2.0))
    return s * n1 - k * math.exp(-r * t) * n2


def kepler_newton(m, e):
    """Eccentric anomaly E of Kepler's equation E - e sin E = m, by 12 Newton steps from E = m."""
    E = m
    for it in range(12):
        f = E - e * math.sin(E) - m
        fp = 1.0 - e * math.cos(E)
        E = E - f / fp
    return E


def warmup_kernel(x, A):
    """The other kernel a warm process compiled first (not one of the measured ones): loops over
    a vector and a matrix whose reverse sweep needs the tape."""
    s = 0.0
    for i in range(x.shape[0]):
        t = x[i]
        for j in range(A.shape[1]):
            t = math.tanh(t * A[i, j] + 0.1)
        if t > 0.0:
            s += t * t
        else:
            s -= t
    return s


TRIP_TEMPLATE = '''
def trip_{T}(W, h0):
    n = h0.shape[0]
    h = h0.copy()
    hn = np.empty(n)
    for t in range({T}):
        for i in range(n):
            z = 0.0
            for j in range(n):
                z += W[i, j] * h[j]
            hn[i] = math.tanh(z)
        for i in range(n):
            h[i] = hn[i]
    s = 0.0
    for i in range(n):
        s += h[i] * h[i]
    return s
'''


@dataclass
class Case:
    name: str
    fun: object
    args: tuple
    argnums: tuple
    in_axes: tuple                 # nad.batch's in_axes
    jax_name: str                  # key of jax_versions()
    static: tuple = ()             # JAX static_argnums


def _small(value):
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value[:SMALL]).copy()
    return value


def cases(only=None):
    """The measured kernels, with small arguments of the benchmark's types."""
    import reverse_mode as rm
    out = []
    for kernel in rm.kernels(np.random.default_rng(SEED)):
        argnums = kernel.argnums if isinstance(kernel.argnums, tuple) else (kernel.argnums,)
        args = tuple(_small(a) for a in kernel.args)
        if kernel.fun is rm.heat:
            args = (args[0], args[1], 50)              # 50 time steps (an int: same types)
        in_axes = tuple(0 if k == argnums[0] else None for k in range(len(args)))
        out.append(Case(kernel.name, kernel.fun, args, argnums, in_axes, kernel.fun.__name__,
                        (2,) if kernel.fun is rm.heat else ()))
    out.append(Case("Black-Scholes", black_scholes, (100.0, 95.0, 0.75, 0.02, 0.3),
                    (0, 1, 2, 3, 4), (0, 0, 0, 0, 0), "black_scholes"))
    out.append(Case("Newton (Kepler, scalar)", kepler_newton, (1.1, 0.4), (0, 1), (0, 0),
                    "kepler_newton"))
    if only:
        wanted = [s.strip().lower() for s in only.split(",") if s.strip()]
        out = [c for c in out if any(w in c.name.lower() for w in wanted)]
    return out


def warmup_case():
    rng = np.random.default_rng(1)
    return Case("warm-up", warmup_kernel, (rng.standard_normal(32),
                                           rng.standard_normal((32, 4))),
                (0, 1), (0, None), "warmup_kernel")


def case_named(name):
    """The case ``name`` (from the parent's pickle when given: inputs built once)."""
    path = os.environ.get(CASES_VARIABLE)
    if path and os.path.exists(path):
        with open(path, "rb") as handle:
            return next(c for c in pickle.load(handle) if c.name == name)
    if name == "warm-up":
        return warmup_case()
    return next(c for c in cases() if c.name == name)


# --------------------------------------------------------------------------------------------
# JAX versions (jax_compare.py's ports, plus the kernels added here)
# --------------------------------------------------------------------------------------------

def jax_versions():
    """{name: JAX function}; new function objects at each call (nothing traced is reused)."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.special import erfc
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    import jax_compare                            # pins the process to one core on import ...
    if affinity is not None:
        os.sched_setaffinity(0, affinity)         # ... undone: nothing here is pinned
    versions = dict(jax_compare.jax_kernels())

    def black_scholes(s, k, t, r, v):
        sqrt_t = jnp.sqrt(t)
        d1 = (jnp.log(s / k) + (r + 0.5 * v * v) * t) / (v * sqrt_t)
        d2 = d1 - v * sqrt_t
        return (s * 0.5 * erfc(-d1 / jnp.sqrt(2.0))
                - k * jnp.exp(-r * t) * 0.5 * erfc(-d2 / jnp.sqrt(2.0)))

    def kepler_newton(m, e):
        def step(_, E):
            return E - (E - e * jnp.sin(E) - m) / (1.0 - e * jnp.cos(E))
        return lax.fori_loop(0, 12, step, m)

    def warmup_kernel(x, A):
        def step(t, a):
            return jnp.tanh(t * a + 0.1), None
        t, _ = lax.scan(step, x, A.T)
        return jnp.sum(jnp.where(t > 0.0, t * t, -t))

    versions.update(black_scholes=black_scholes, kepler_newton=kepler_newton,
                    warmup_kernel=warmup_kernel)
    del jax
    return versions


def jax_trip_versions(T):
    """The trip-count kernel in JAX: a Python loop (unrolled), lax.fori_loop, lax.scan."""
    import jax.numpy as jnp
    from jax import lax

    def python_loop(W, h0):
        h = h0
        for _ in range(T):
            h = jnp.tanh(W @ h)
        return jnp.sum(h * h)

    def fori(W, h0):
        h = lax.fori_loop(0, T, lambda _, h: jnp.tanh(W @ h), h0)
        return jnp.sum(h * h)

    def scan(W, h0):
        h, _ = lax.scan(lambda h, _: (jnp.tanh(W @ h), None), h0, None, length=T)
        return jnp.sum(h * h)

    return {"jax loop": python_loop, "jax fori_loop": fori, "jax scan": scan}


def import_jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_enable_compilation_cache", False)
    except (AttributeError, KeyError):
        pass
    return jax


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Never-seen copies of a function
# --------------------------------------------------------------------------------------------

_COPIES = {"folder": None, "count": 0}


def fresh_copy(fun, source=None):
    """``fun`` defined again under a new name from a file of its own: a function nothing has
    compiled or cached (nbautodiff's keys hash the name, line and source; numba's dispatchers
    are per function object). Its globals are a copy of ``fun``'s."""
    if _COPIES["folder"] is None:
        _COPIES["folder"] = tempfile.mkdtemp(prefix="nad-compile-copies-")
    _COPIES["count"] += 1
    text = textwrap.dedent(source if source is not None else inspect.getsource(fun))
    old = re.search(r"def (\w+)\(", text).group(1)
    new = f"{old}__copy{_COPIES['count']}_{os.getpid()}"
    text = re.sub(rf"\bdef {old}\(", f"def {new}(", text, count=1)
    path = os.path.join(_COPIES["folder"], f"{new}.py")
    with open(path, "w") as handle:
        handle.write(text)
    namespace = dict(fun.__globals__) if fun is not None else {"np": np, "math": math}
    namespace["__name__"] = f"nad_compile_copies.{new}"
    exec(compile(text, path, "exec"), namespace)
    return namespace[new]


# --------------------------------------------------------------------------------------------
# numba's own work, metered (outermost time inside numba; dispatchers compiled)
# --------------------------------------------------------------------------------------------

class NumbaMeter:
    """Wraps numba's entry points once: ``seconds`` inside numba (outermost calls only) and the
    dispatchers compiled (new overloads), by kind, since the last :meth:`reset`."""

    installed = None

    def __init__(self):
        self.depth = 0
        self.seconds = 0.0
        self.compiled = {"helpers": 0, "generated": 0, "numba": 0}
        self.loaded = 0
        self.names = []
        self.inclusive = []          # (dispatcher, signature, seconds including nested compiles)

    @classmethod
    def install(cls):
        if cls.installed is not None:
            return cls.installed
        from numba.core import compiler, dispatcher, typed_passes
        meter = cls()

        def timed(fn):
            def wrapper(*args, **kwargs):
                meter.depth += 1
                start = time.perf_counter() if meter.depth == 1 else None
                try:
                    return fn(*args, **kwargs)
                finally:
                    meter.depth -= 1
                    if start is not None:
                        meter.seconds += time.perf_counter() - start
            wrapper.__wrapped__ = fn
            return wrapper

        original_compile = dispatcher.Dispatcher.compile

        def compile_(self, sig):
            before, hits = len(self.overloads), sum(self._cache_hits.values())
            start = time.perf_counter()
            result = timed(original_compile)(self, sig)
            elapsed = time.perf_counter() - start
            if len(self.overloads) > before:
                module = getattr(self.py_func, "__module__", "") or ""
                kind = ("helpers" if module.startswith("nbautodiff.kernels")
                        else "numba" if module.startswith("numba") else "generated")
                if sum(self._cache_hits.values()) > hits:
                    meter.loaded += 1            # from numba's on-disk cache, not compiled
                else:
                    meter.compiled[kind] += 1
                    meter.names.append(f"{module}.{self.py_func.__name__}")
                    meter.inclusive.append((f"{module}.{self.py_func.__name__}", str(sig),
                                            elapsed))
            return result

        dispatcher.Dispatcher.compile = compile_
        compiler.run_frontend = timed(compiler.run_frontend)
        typed_passes.type_inference_stage = timed(typed_passes.type_inference_stage)
        compiler.compile_ir = timed(compiler.compile_ir)
        compiler.compile_extra = timed(compiler.compile_extra)
        cls.installed = meter
        return meter

    def reset(self):
        self.seconds = 0.0
        self.compiled = {k: 0 for k in self.compiled}
        self.loaded = 0
        self.names = []
        self.inclusive = []          # (dispatcher, signature, seconds including nested compiles)


# --------------------------------------------------------------------------------------------
# One measurement: build the callable of a kind on a fresh copy, first call, steady calls
# --------------------------------------------------------------------------------------------

def _tangent(value, rng):
    if isinstance(value, np.ndarray):
        return rng.standard_normal(value.shape)
    return float(rng.standard_normal())


def build(kind, case, rng):
    """A zero-argument callable: the first call compiles ``kind`` of a new copy of the kernel."""
    args = case.args
    if kind == "jax":
        jax = import_jax()
        import jax.numpy as jnp
        fun = jax_versions()[case.jax_name]
        jargs = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
        argnums = case.argnums if len(case.argnums) > 1 else case.argnums[0]
        gradient = jax.jit(jax.grad(fun, argnums=argnums), static_argnums=case.static)
        return lambda: jax.block_until_ready(gradient(*jargs))
    fun = fresh_copy(case.fun)
    if kind == "numba":
        import numba
        primal = numba.njit(fun)
        return lambda: primal(*args)
    import nbautodiff as nad
    argnums = case.argnums if len(case.argnums) > 1 else case.argnums[0]
    if kind == "grad":
        gradient = nad.grad(fun, argnums=argnums)
        return lambda: gradient(*args)
    if kind.startswith("fwd"):
        width = int(kind[3:])
        activities = [nad.Dual if k in case.argnums else nad.Const for k in range(len(args))]
        derived = nad.forward(fun, *activities, width=width)
        call = []
        for k, value in enumerate(args):
            call.append(value)
            if k in case.argnums:
                call += [_tangent(value, rng) for _ in range(width)]
        return lambda: derived(*call)
    if kind == "hvp":
        gradient = nad.grad(fun, argnums=argnums)
        tangents = tuple(_tangent(a, rng) if k in case.argnums else None
                         for k, a in enumerate(args))
        return lambda: nad.jvp(gradient, args, tangents)
    if kind == "batch":
        batched = nad.batch(fun, in_axes=case.in_axes)
        call = tuple(np.stack([a] * BATCH) if axis == 0 and isinstance(a, np.ndarray)
                     else np.full(BATCH, a) if axis == 0 else a
                     for a, axis in zip(args, case.in_axes))

        def run_batch():
            return batched(*call)
        run_batch.derived = batched
        return run_batch
    raise ValueError(kind)


def measure(fn, meter=None):
    """{compile, first, steady, cpu, numba_s, compiled...}: first call minus steady call."""
    if meter is not None:
        meter.reset()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    first, first_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    numba_s = meter.seconds if meter is not None else None
    compiled = dict(meter.compiled, loaded=meter.loaded) if meter is not None else None
    steady, steady_cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        steady.append(time.perf_counter() - start)
        steady_cpu.append(time.process_time() - start_cpu)
    s, s_cpu = statistics.median(steady), statistics.median(steady_cpu)
    return {"compile": max(first - s, 0.0), "cpu": max(first_cpu - s_cpu, 0.0), "first": first,
            "first_cpu": first_cpu,
            "steady": s, "numba_s": numba_s, "compiled": compiled}


def kinds_of(case, with_jax, fresh=False):
    """The kinds measured for ``case``: width 28 only for WIDTH28 and only warm; JAX if there;
    only those of ``--kinds`` (environment, for the children) when given."""
    kinds = ["numba", "grad", "fwd1", "fwd16"]
    if case.name in WIDTH28 and not fresh:
        kinds.append("fwd28")
    kinds += ["hvp", "batch"]
    if with_jax:
        kinds.append("jax")
    wanted = os.environ.get(KINDS_VARIABLE)
    if wanted:
        kinds = [k for k in kinds if k in wanted.split(",")]
    return kinds


# --------------------------------------------------------------------------------------------
# Children: one fresh interpreter each
# --------------------------------------------------------------------------------------------

def child_warm(name, with_jax):
    """One warm process: the warm-up kernel compiled every way, then every kind of ``name``."""
    import numba  # noqa: F401
    import nbautodiff  # noqa: F401
    if with_jax:
        import_jax()
    meter = NumbaMeter.install()
    rng = np.random.default_rng(0)
    warm = warmup_case()
    for kind in kinds_of(warm, with_jax):
        if kind != "fwd28":
            build(kind, warm, rng)()
    case = case_named(name)
    results = {}
    for kind in kinds_of(case, with_jax):
        try:
            fn = build(kind, case, rng)
            results[kind] = measure(fn, None if kind == "jax" else meter)
            variant = getattr(getattr(fn, "derived", None), "variant", None)
            if variant is not None:
                results[kind]["layout"] = getattr(variant, "layout", None)
                results[kind]["layout_note"] = getattr(variant, "layout_note", None)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            results[kind] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    # The edit-a-cell loop once more: the same kernel's primal and gradient again (new copies).
    for kind in ("numba", "grad"):
        if kind not in results:
            continue
        try:
            results[f"{kind} again"] = measure(build(kind, case, rng), meter)
        except Exception as exc:  # noqa: BLE001
            results[f"{kind} again"] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def _grown_copying_by_a_loop():
    """``--what-if``: the tape's ``_grown`` with its copy written as a loop, not ``new[:top] =
    tape[:top]`` (numba compiles slice assignment with its broadcasting checks and their error
    messages: dozens of its own functions, unicode formatting included)."""
    import numba
    from nbautodiff.kernels import memory, tape

    @numba.njit
    def _grown(old, top, extra):
        length, needed, itemsize = max(2 * old.shape[0], top + extra), top + extra, old.itemsize
        if length * itemsize >= memory.CHECKED_FROM:
            length = memory.affordable(length, needed, itemsize)
        new = np.empty(length, old.dtype)
        for i in range(top):
            new[i] = old[i]
        return new

    tape._grown = _grown


def child_fresh(name, kind):
    """One fresh process: imports (timed), then the first call of ``kind`` of kernel ``name``."""
    start = time.perf_counter()
    if kind == "jax":
        import_jax()
    else:
        import numba  # noqa: F401
        if kind != "numba":
            import nbautodiff  # noqa: F401
    imports = time.perf_counter() - start
    if os.environ.get(WHAT_IF_VARIABLE) == "loop copy":
        _grown_copying_by_a_loop()
    meter = NumbaMeter.install() if kind not in ("jax",) else None
    case = case_named(name)
    result = measure(build(kind, case, np.random.default_rng(0)), meter)
    result["imports"] = imports
    return result


def child_trip(counts, with_jax):
    """Compile time against the trip count, in one warm process (see TRIP_TEMPLATE)."""
    import numba
    import nbautodiff as nad
    rng = np.random.default_rng(2)
    n = 8
    W = 0.5 * rng.standard_normal((n, n)) / math.sqrt(n)
    h0 = rng.standard_normal(n)
    warm = warmup_case()
    for kind in ("numba", "grad"):
        build(kind, warm, rng)()
    if with_jax:
        jax = import_jax()
        import jax.numpy as jnp
        build("jax", warm, rng)()
        jW, jh0 = jnp.asarray(W), jnp.asarray(h0)
    # This kernel's own helpers (the tape of its signature) compiled once, not timed.
    nad.grad(fresh_copy(None, TRIP_TEMPLATE.format(T=3)))(W, h0)
    numba.njit(fresh_copy(None, TRIP_TEMPLATE.format(T=3)))(W, h0)
    # Two passes, the trip counts ascending then descending (the position in the process does
    # not favour one end); JAX's unrolled loop in the first pass only (the slow one).
    runs = {str(T): {} for T in counts}
    for order in (list(counts), list(reversed(counts))):
        for T in order:
            row = runs[str(T)]
            gradient = nad.grad(fresh_copy(None, TRIP_TEMPLATE.format(T=T)))
            row.setdefault("ours", []).append(measure(lambda: gradient(W, h0))["compile"])
            primal = numba.njit(fresh_copy(None, TRIP_TEMPLATE.format(T=T)))
            row.setdefault("numba", []).append(measure(lambda: primal(W, h0))["compile"])
            if with_jax:
                for side, f in jax_trip_versions(T).items():
                    if side == "jax loop" and (T > UNROLLED_MAX or side in row):
                        continue
                    g = jax.jit(jax.grad(f))
                    row.setdefault(side, []).append(
                        measure(lambda: jax.block_until_ready(g(jW, jh0)))["compile"])
            print(json.dumps({"progress": T, "row": row}), file=sys.stderr, flush=True)
    return {T: {side: statistics.median(v) for side, v in row.items()}
            for T, row in runs.items()}


# Profile groups, by the file of the code that runs (self time); the self time of code of no
# group (the standard library, built-ins) goes to the groups of its callers.
GROUPS = [
    ("LLVM: optimisation and machine code (llvmlite.binding)", ("llvmlite/binding",)),
    ("numba lowering: LLVM IR generation", (
        "numba/core/lowering", "numba/core/base.py", "numba/core/cgutils", "numba/core/callconv",
        "numba/core/pythonapi", "numba/core/imputils", "numba/core/datamodel", "numba/np/",
        "numba/cpython/", "numba/core/boxing", "numba/core/optional", "numba/misc/",
        "numba/core/runtime", "numba/core/unsafe", "llvmlite/ir", "numba/core/codegen",
        "numba/core/funcdesc", "numba/typed/", "numba/core/environment")),
    ("numba type inference", (
        "numba/core/typeinfer", "numba/core/typing/", "numba/core/types/", "numba/core/typeconv",
        "numba/core/typed_passes", "numba/core/extending", "numba/experimental/")),
    ("numba IR passes: bytecode to IR, SSA, analysis, inlining, rewrites", (
        "numba/core/ir.py", "numba/core/ssa", "numba/core/analysis", "numba/core/controlflow",
        "numba/core/byteflow", "numba/core/interpreter", "numba/core/bytecode",
        "numba/core/ir_utils", "numba/core/postproc", "numba/core/inline_closurecall",
        "numba/core/untyped_passes", "numba/core/rewrites/", "numba/core/consts",
        "numba/core/transforms", "numba/core/dataflow")),
    ("numba caching (index, pickles)", ("numba/core/caching", "numba/core/serialize")),
    ("numba compiler machinery, events, locks", ("numba/",)),
    ("nbautodiff runtime helpers (overload definitions)", ("/kernels/",)),
    ("nbautodiff passes (frontend, analysis, transforms, emit, cache, API)", ("/nbautodiff/",)),
]
OTHER = "other (imports, interpreter)"


def _group_of(filename):
    path = filename.replace(os.sep, "/")
    for group, parts in GROUPS:
        if any(p in path for p in parts):
            return group
    return None


def grouped_profile(stats: pstats.Stats):
    """{group: seconds} from a profile: the self time of each function goes to its file's group;
    a function of no group passes its self time on to its callers' groups, in proportion to the
    time each caller spent in it."""
    raw = stats.stats            # {func: (cc, nc, tt, ct, callers{func: (cc, nc, tt, ct)})}
    memo = {}

    def shares(func, stack):
        """{group: fraction} of ``func``'s self time."""
        if func in memo:
            return memo[func]
        own = _group_of(func[0])
        if own is not None:
            memo[func] = {own: 1.0}
            return memo[func]
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        total = sum(v[3] for v in callers.values()) or sum(v[2] for v in callers.values())
        if not callers or not total or func in stack or len(stack) > 40:
            return {OTHER: 1.0}
        out = {}
        for caller, value in callers.items():
            weight = (value[3] if sum(v[3] for v in callers.values()) else value[2]) / total
            for group, fraction in shares(caller, stack | {func}).items():
                out[group] = out.get(group, 0.0) + weight * fraction
        if not stack:
            memo[func] = out
        return out

    grouped = {}
    for func, (_, _, tt, _, _) in raw.items():
        for group, fraction in shares(func, frozenset()).items():
            grouped[group] = grouped.get(group, 0.0) + tt * fraction
    return grouped


def _cumulative(stats, file_part, name):
    """Cumulative seconds and calls of the functions named ``name`` in files containing
    ``file_part`` (outermost calls, as cProfile counts them)."""
    seconds, calls = 0.0, 0
    for (filename, _, function), (_, nc, _, ct, _) in stats.stats.items():
        if function == name and file_part in filename.replace(os.sep, "/"):
            seconds += ct
            calls += nc
    return seconds, calls


def child_profile(name):
    """A fully cold gradient of ``name``, profiled; grouped seconds and counts."""
    import numba
    import nbautodiff as nad
    case = case_named(name)
    meter = NumbaMeter.install()
    numba.njit(lambda x: x + 1.0)(1.0)          # numba's one-off start-up, not profiled
    fun = fresh_copy(case.fun)
    argnums = case.argnums if len(case.argnums) > 1 else case.argnums[0]
    gradient = nad.grad(fun, argnums=argnums)
    profiler = cProfile.Profile()
    meter.reset()
    start = time.perf_counter()
    profiler.enable()
    gradient(*case.args)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    grouped = grouped_profile(stats)
    counts = {
        "call resolutions (BaseContext.resolve_function_type)":
            _cumulative(stats, "numba/core/typing/context", "resolve_function_type")[1],
        "type inference runs (TypeInferer.propagate)":
            _cumulative(stats, "numba/core/typeinfer", "propagate")[1],
        "IR inlinings (InlineWorker.inline_function, inline='always' helpers)":
            _cumulative(stats, "numba/core/inline_closurecall", "inline_function")[1],
        "LLVM module optimisations (CPUCodeLibrary._optimize_final_module)":
            _cumulative(stats, "numba/core/codegen", "_optimize_final_module")[1],
    }
    phases = {
        "nbautodiff's type inference of the primal (analysis.typeinfer.infer)":
            _cumulative(stats, "nbautodiff/analysis/typeinfer", "infer")[0],
        "dispatcher compilations (Dispatcher.compile, outermost)":
            _cumulative(stats, "numba/core/dispatcher", "compile")[0],
        "numba type inference (type_inference_stage, all nested)":
            _cumulative(stats, "numba/core/typed_passes", "type_inference_stage")[0],
        "numba lowering (NativeLowering.run_pass, all nested)":
            _cumulative(stats, "numba/core/typed_passes", "run_pass")[0],
    }
    helpers = sorted({n for n in meter.names if n.startswith("nbautodiff.kernels")})
    by_file = {}
    for (filename, _, _), (_, _, tt, _, _) in stats.stats.items():
        short = re.sub(r".*site-packages/", "", filename)
        by_file[short] = by_file.get(short, 0.0) + tt
    # The unprofiled time of the same gradient (another new copy, same process: warm helpers).
    return {"total": total, "grouped": grouped, "counts": counts, "phases": phases,
            "files": sorted(by_file.items(), key=lambda kv: -kv[1])[:40],
            "compiled": dict(meter.compiled), "numba_s": meter.seconds,
            "helper_names": helpers, "generated_names": sorted(
                {n for n in meter.names if not n.startswith(("nbautodiff.kernels", "numba"))}),
            "generated_lines": len(gradient.source.splitlines())
            if hasattr(gradient, "source") else None}


def child_unprofiled(name):
    """The same fully cold gradient without the profiler (its overhead, for comparison)."""
    import numba
    import nbautodiff as nad
    case = case_named(name)
    meter = NumbaMeter.install()
    numba.njit(lambda x: x + 1.0)(1.0)
    fun = fresh_copy(case.fun)
    argnums = case.argnums if len(case.argnums) > 1 else case.argnums[0]
    gradient = nad.grad(fun, argnums=argnums)
    from numba.core import event
    llvm = {"s": 0.0}
    with event.install_timer("numba:llvm_lock", lambda s: llvm.__setitem__("s", s)):
        meter.reset()
        start = time.perf_counter()
        gradient(*case.args)
        total = time.perf_counter() - start
    return {"total": total, "numba_s": meter.seconds, "llvm_s": llvm["s"],
            "inclusive": sorted(meter.inclusive, key=lambda t: -t[2]),
            "compiled": dict(meter.compiled, loaded=meter.loaded)}


def run_child(argv, env_extra=None, timeout=900):
    env = dict(os.environ)
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, __file__, "--child", *argv], env=env,
                          capture_output=True, text=True, check=False, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def empty_caches():
    """Environment of a fully cold process: empty artifact and numba caches (new folders)."""
    root = tempfile.mkdtemp(prefix="nad-compile-cold-")
    os.makedirs(os.path.join(root, "nad"))
    os.makedirs(os.path.join(root, "numba"))
    return root, {"NBAUTODIFF_CACHE_DIR": os.path.join(root, "nad"),
                  "NUMBA_CACHE_DIR": os.path.join(root, "numba")}


# --------------------------------------------------------------------------------------------
# The parent: runs the children, collects, reports
# --------------------------------------------------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_all(opts):
    with_jax = not opts.no_jax and jax_available()
    selected = cases(opts.only)
    if opts.quick and not opts.only:
        selected = [c for c in selected if c.name in QUICK]
    data = {"kernels": [c.name for c in selected], "with_jax": with_jax, "warm": {},
            "load_before": loadavg(),
            "fresh": {}, "helpers_cached": {}, "errors": [],
            "options": {"repeats": opts.repeats, "repeats_other": opts.repeats_other,
                        "repeats_helpers": opts.repeats_helpers,
                        "warm_repeats": opts.warm_repeats, "quick": opts.quick}}
    t0 = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="nad-compile-latency-")
    cases_file = os.path.join(scratch, "cases.pkl")
    with open(cases_file, "wb") as handle:               # children skip building the inputs
        pickle.dump(cases() + [warmup_case()], handle)
    os.environ[CASES_VARIABLE] = cases_file
    jax_flag = "1" if with_jax else "0"

    def child(argv, env, where):
        try:
            return run_child(argv, env)
        except Exception as exc:  # noqa: BLE001 - reported with the results
            data["errors"].append(f"{where}: {exc}")
            print(f"ERROR {where}: {str(exc)[-1500:]}", flush=True)
            return None

    def stamp():
        return f"[{time.perf_counter() - t0:6.0f} s]"

    # Warm: per kernel and repeat, one process (empty caches) that compiles the warm-up kernel
    # every way first, then each kind of this kernel.
    if not opts.no_warm:
        for r in range(opts.warm_repeats):
            for case in selected:
                root, env = empty_caches()
                res = child(["warm", case.name, jax_flag], env, f"warm {case.name}") or {}
                shutil.rmtree(root, ignore_errors=True)
                for kind, value in res.items():
                    data["warm"].setdefault(case.name, {}).setdefault(kind, []).append(value)
                print(f"{stamp()} warm {r + 1}/{opts.warm_repeats} {case.name}: " + ", ".join(
                    f"{k} {v['compile']:.2f}" if "compile" in v else f"{k} ERROR"
                    for k, v in res.items()), flush=True)
    # Fresh: one kind per process, fully cold; kernels and kinds interleaved within a repeat.
    # After each fully cold gradient, one with numba's cache as the first such process left it.
    if not opts.no_fresh:
        helper_folders = {}
        for r in range(opts.repeats):
            for case in selected:
                for kind in kinds_of(case, with_jax, fresh=True):
                    if kind not in ("numba", "grad", "jax") and r >= opts.repeats_other:
                        continue
                    root, env = empty_caches()
                    res = child(["fresh", case.name, kind], env, f"fresh {case.name} {kind}")
                    if res is not None:
                        data["fresh"].setdefault(case.name, {}).setdefault(kind, []).append(res)
                    if kind == "grad" and res is not None and case.name not in helper_folders:
                        helper_folders[case.name] = root          # kept: helpers cached
                    else:
                        shutil.rmtree(root, ignore_errors=True)
                    if kind == "grad" and case.name in helper_folders \
                            and r < opts.repeats_helpers:
                        env = {"NUMBA_CACHE_DIR": os.path.join(helper_folders[case.name],
                                                               "numba"),
                               "NBAUTODIFF_CACHE_DIR": os.path.join(scratch, "nad-helpers")}
                        _renew(env["NBAUTODIFF_CACHE_DIR"])
                        res = child(["fresh", case.name, "grad"], env,
                                    f"helpers cached {case.name}")
                        if res is not None:
                            data["helpers_cached"].setdefault(case.name, []).append(res)
                got = data["fresh"].get(case.name, {})
                print(f"{stamp()} fresh {r + 1}/{opts.repeats} {case.name} (first calls): "
                      + ", ".join(f"{k} {v[-1]['first']:.2f}" for k, v in got.items())
                      + "; helpers cached grad " + ", ".join(
                          f"{v['first']:.2f}" for v in data["helpers_cached"].get(case.name, [])),
                      flush=True)
        for root in helper_folders.values():
            shutil.rmtree(root, ignore_errors=True)
    # Trip counts.
    if not opts.no_trip:
        counts = (10, 100, 1000) if opts.quick else TRIP_COUNTS
        root, env = empty_caches()
        trip = child(["trip", ",".join(map(str, counts)), jax_flag], env, "trip counts")
        if trip is not None:
            data["trip"] = trip
        shutil.rmtree(root, ignore_errors=True)
        print(f"{stamp()} trip counts: {data.get('trip')}", flush=True)
    # Profile of one fully cold gradient, and the same without the profiler.
    if not opts.no_profile:
        for what in ("profile", "unprofiled"):
            root, env = empty_caches()
            got = child([what, PROFILE_KERNEL], env, what)
            if got is not None:
                data[what] = got
            shutil.rmtree(root, ignore_errors=True)
        print(f"{stamp()} profile done", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    data["elapsed"] = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    data["children_cpu"] = usage.ru_utime + usage.ru_stime
    data["load_after"] = loadavg()
    return data


def what_if(opts):
    """Fresh, fully cold first gradients with ``_grown`` as it is and copying by a loop
    (printed, not written): what the first cut of issue 20's item 2 would gain."""
    scratch = tempfile.mkdtemp(prefix="nad-compile-what-if-")
    cases_file = os.path.join(scratch, "cases.pkl")
    with open(cases_file, "wb") as handle:
        pickle.dump(cases() + [warmup_case()], handle)
    os.environ[CASES_VARIABLE] = cases_file
    names = [c.name for c in cases(opts.only)] if opts.only else list(WHAT_IF_KERNELS)
    got = {}
    for r in range(opts.repeats):
        for name in names:
            for variant in ("as it is", "loop copy"):
                root, env = empty_caches()
                env[WHAT_IF_VARIABLE] = variant
                res = run_child(["fresh", name, "grad"], env)
                shutil.rmtree(root, ignore_errors=True)
                got.setdefault((name, variant), []).append(res)
        print(f"repeat {r + 1}/{opts.repeats} done", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    print("\n| kernel | first `grad` call, fully cold: `_grown` as it is (s) | copying by a loop "
          "(s) | CPU s, as it is | CPU s, loop copy |\n|---|--:|--:|--:|--:|")
    for name in names:
        a, b = got[(name, "as it is")], got[(name, "loop copy")]
        print(f"| {name} | {_median([v['first'] for v in a]):.2f} | "
              f"{_median([v['first'] for v in b]):.2f} | "
              f"{_median([v['first_cpu'] for v in a]):.2f} | "
              f"{_median([v['first_cpu'] for v in b]):.2f} |")
    return 0


def _renew(folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)


# ---- summaries ---------------------------------------------------------------------------------

def warm_value(data, name, kind, key="compile", setting="warm"):
    values = data[setting].get(name, {}).get(kind, [])
    return _median([v.get(key) for v in values if "error" not in v])


def warm_error(data, name, kind):
    for v in data["warm"].get(name, {}).get(kind, []):
        if "error" in v:
            return v["error"]
    return None


def fresh_value(data, name, kind, key="compile"):
    return _median([v.get(key) for v in data["fresh"].get(name, {}).get(kind, [])])


def helpers_value(data, name, key="compile"):
    return _median([v.get(key) for v in data["helpers_cached"].get(name, [])])


def acceptance(data):
    """[(line, measured, passed)] for the acceptance of issue 20 (wall time; CPU time beside)."""
    out = []
    names = [n for n in data["kernels"]
             if warm_value(data, n, "grad") is not None and warm_value(data, n, "numba")]
    if names:
        def sums(key):
            g = sum(warm_value(data, n, "grad", key) for n in names)
            p = sum(warm_value(data, n, "numba", key) for n in names)
            return g, p, g / p
        g, p, ratio = sums("compile")
        _, _, ratio_cpu = sums("cpu")
        out.append((f"warm: sum of gradient compiles <= {TARGET_SUM_RATIO:g}x the sum of numba's "
                    f"primal compiles (goal {GOAL_SUM_RATIO:g}x)",
                    f"{g:.2f} s / {p:.2f} s = **{ratio:.2f}x**; CPU time {ratio_cpu:.2f}x",
                    ratio <= TARGET_SUM_RATIO))
        per = {n: warm_value(data, n, "grad") / warm_value(data, n, "numba") for n in names}
        worst = max(per, key=per.get)
        over = [n for n in names if per[n] > TARGET_MAX_RATIO]
        out.append((f"warm: no kernel's gradient compile above {TARGET_MAX_RATIO:g}x its numba "
                    "primal compile",
                    f"worst **{per[worst]:.1f}x** ({worst}); {len(over)} of {len(names)} above"
                    f"{': ' + ', '.join(over) if over else ''}; median "
                    f"{statistics.median(per.values()):.1f}x", not over))
        beyond = {n: warm_value(data, n, "grad") - warm_value(data, n, "numba") for n in names}
        worst_b = max(beyond, key=beyond.get)
        out.append((f"warm: at most {TARGET_BEYOND_S * 1e3:.0f} ms per derivative beyond numba's "
                    "own work, read as: gradient compile minus numba's compile of the primal",
                    f"median **{1e3 * statistics.median(beyond.values()):.0f} ms**, worst "
                    f"{1e3 * beyond[worst_b]:.0f} ms ({worst_b})",
                    max(beyond.values()) <= TARGET_BEYOND_S))
        own = {n: warm_value(data, n, "grad") - warm_value(data, n, "grad", "numba_s")
               for n in names if warm_value(data, n, "grad", "numba_s") is not None}
        if own:
            worst_o = max(own, key=own.get)
            out.append((f"the same, read as: nbautodiff's own time outside numba per gradient <= "
                        f"{TARGET_BEYOND_S * 1e3:.0f} ms",
                        f"median **{1e3 * statistics.median(own.values()):.0f} ms**, worst "
                        f"{1e3 * own[worst_o]:.0f} ms ({worst_o})",
                        max(own.values()) <= TARGET_BEYOND_S))
    fresh = [n for n in data["kernels"]
             if fresh_value(data, n, "grad", "first") and fresh_value(data, n, "numba", "first")]
    for label, value in (("fully cold", lambda n, k="first": fresh_value(data, n, "grad", k)),
                         ("numba's cache holding the helpers",
                          lambda n, k="first": helpers_value(data, n, k))):
        got = [n for n in fresh if value(n)]
        if not got:
            continue
        per = {n: value(n) / fresh_value(data, n, "numba", "first") for n in got}
        per_cpu = {n: value(n, "first_cpu") / fresh_value(data, n, "numba", "first_cpu")
                   for n in got if value(n, "first_cpu")}
        worst = max(per, key=per.get)
        over = [n for n in got if per[n] > TARGET_FRESH_RATIO]
        out.append((f"fresh process ({label}): first gradient <= {TARGET_FRESH_RATIO:g}x the "
                    "first `numba.njit(f)` call, each kernel",
                    f"worst **{per[worst]:.1f}x** ({worst}), median "
                    f"{statistics.median(per.values()):.1f}x; {len(over)} of {len(got)} above"
                    + (f"; CPU time: worst {max(per_cpu.values()):.1f}x, median "
                       f"{statistics.median(per_cpu.values()):.1f}x" if per_cpu else ""),
                    not over))
    width = [n for n in data["kernels"]
             if warm_value(data, n, "fwd28") is not None and warm_value(data, n, "fwd1")]
    if width:
        per = {n: warm_value(data, n, "fwd28") / warm_value(data, n, "fwd1") for n in width}
        worst = max(per, key=per.get)
        out.append((f"vector forward mode: width 28 compiles in <= {TARGET_WIDTH_RATIO:g}x the "
                    "time of width 1 (warm)",
                    "; ".join(f"{n} {warm_value(data, n, 'fwd28'):.2f} s / "
                              f"{warm_value(data, n, 'fwd1'):.2f} s = **{per[n]:.1f}x**"
                              for n in width), per[worst] <= TARGET_WIDTH_RATIO))
    trip = data.get("trip")
    if trip:
        counts = sorted(trip, key=int)
        ours = [trip[c]["ours"] for c in counts]
        unrolled = [c for c in counts if "jax loop" in trip[c]]
        flat = max(ours) <= 1.5 * min(ours) + 0.1
        out.append(("compile time against trip count: ours flat (here: every trip count's "
                    "compile within 1.5x the fastest + 0.1 s)",
                    f"ours {min(ours):.2f}-{max(ours):.2f} s over trip counts "
                    f"{counts[0]}-{counts[-1]}" + (
                        f"; JAX with a Python loop {trip[counts[0]]['jax loop']:.2f} s at "
                        f"{counts[0]}, {trip[unrolled[-1]]['jax loop']:.2f} s at {unrolled[-1]}"
                        if unrolled else ""), flat))
    return out


# ---- report ------------------------------------------------------------------------------------

def _s(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def kernel_table(data, setting):
    """Markdown: per kernel, the compile seconds of each kind measured in ``setting``."""
    get = warm_value if setting == "warm" else fresh_value
    err = warm_error if setting == "warm" else (lambda *_: None)
    kinds = [k for k in KINDS if any(get(data, n, k) is not None or err(data, n, k)
                                     for n in data["kernels"])]
    head = {"numba": "`njit(f)` primal", "grad": "`grad`", "fwd1": "fwd w1", "fwd16": "fwd w16",
            "fwd28": "fwd w28", "hvp": "HVP `jvp(grad)`", "batch": "`batch`",
            "jax": "JAX `jit(grad)`"}
    with_jax = "jax" in kinds
    lines = ["| kernel | " + " | ".join(head[k] for k in kinds) + " | grad / primal |"
             + (" grad / JAX |" if with_jax else ""),
             "|---|" + "--:|" * (len(kinds) + 1 + with_jax)]
    totals = {k: 0.0 for k in kinds}
    complete = {k: True for k in kinds}
    for name in data["kernels"]:
        cells = []
        for k in kinds:
            v = get(data, name, k)
            if v is None:
                cells.append("**error**" if err(data, name, k) else "-")
                complete[k] = complete[k] and k == "fwd28"
            else:
                cells.append(_s(v))
                totals[k] += v
        g, p = get(data, name, "grad"), get(data, name, "numba")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ratio(g, p)} |"
                     + (f" {_ratio(g, get(data, name, 'jax'))} |" if with_jax else ""))
    lines.append("| **sum** | " + " | ".join(
        f"**{totals[k]:.2f}**" if complete[k] else f"{totals[k]:.2f} (incomplete)"
        for k in kinds) + f" | **{_ratio(totals.get('grad'), totals.get('numba'))}** |"
        + (f" **{_ratio(totals.get('grad'), totals.get('jax'))}** |" if with_jax else ""))
    return "\n".join(lines)


def _ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.1f}x"


def detail_table(data):
    """Per kernel: warm gradient beside numba's work in it, dispatchers compiled; fresh firsts."""
    lines = ["| kernel | warm `grad` | of it inside numba | ours beyond numba (ms) | "
             "dispatchers compiled: helpers / generated / numba's (+ loaded from numba's cache) "
             "| warm, the next edit of the cell: `njit(f)` / `grad` | "
             "fresh: 1st `njit(f)` call | fresh: 1st `grad` call, fully cold | fresh: helpers "
             "cached | fresh: 1st JAX `jit(grad)` call | imports: numba + nbautodiff / JAX |",
             "|---|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|"]
    for name in data["kernels"]:
        g = warm_value(data, name, "grad")
        n = warm_value(data, name, "grad", "numba_s")
        runs = [v for v in data["warm"].get(name, {}).get("grad", []) if v.get("compiled")]
        comp = runs[0]["compiled"] if runs else None
        comp_s = (f"{comp['helpers']} / {comp['generated']} / {comp['numba']} "
                  f"(+{comp.get('loaded', 0)})" if comp else "n/a")
        beyond = None if g is None or n is None else 1e3 * (g - n)
        lines.append(
            f"| {name} | {_s(g)} | {_s(n)} | {_s(beyond, 0)} | {comp_s} | "
            f"{_s(warm_value(data, name, 'numba again'))} / "
            f"{_s(warm_value(data, name, 'grad again'))} | "
            f"{_s(fresh_value(data, name, 'numba', 'first'))} | "
            f"{_s(fresh_value(data, name, 'grad', 'first'))} | "
            f"{_s(helpers_value(data, name, 'first'))} | "
            f"{_s(fresh_value(data, name, 'jax', 'first'))} | "
            f"{_s(fresh_value(data, name, 'grad', 'imports'))} / "
            f"{_s(fresh_value(data, name, 'jax', 'imports'))} |")
    return "\n".join(lines)


def batch_notes(data):
    """One line: which layout each kernel's batch took (and why not inner), or its error."""
    parts = []
    for name in data["kernels"]:
        runs = data["warm"].get(name, {}).get("batch", [])
        error = warm_error(data, name, "batch")
        if error:
            parts.append(f"{name}: **not batched**, {error}")
        elif runs and runs[0].get("layout"):
            note = runs[0].get("layout_note")
            parts.append(f"{name} {runs[0]['layout']}"
                         + (f" ({note.rstrip('.')})" if note and runs[0]["layout"] != "inner"
                            else ""))
    return "; ".join(parts)


def trip_table(data):
    trip = data.get("trip")
    if not trip:
        return ""
    counts = sorted(trip, key=int)
    sides = [s for s in TRIP_SIDES if s in trip[counts[0]]]
    lines = ["| trip count | " + " | ".join(sides) + " |", "|--:|" + "--:|" * len(sides)]
    for c in counts:
        lines.append(f"| {c} | " + " | ".join(_s(trip[c].get(s)) if s in trip[c]
                                               else "not run" for s in sides) + " |")
    return "\n".join(lines)


def plot(data, path):
    trip = data.get("trip")
    if not trip:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = sorted(trip, key=int)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    labels = {"ours": "nbautodiff `grad` (loop kept)", "numba": "numba `njit`, the primal",
              "jax loop": "JAX `jit(grad)`, Python loop (unrolled)",
              "jax fori_loop": "JAX `jit(grad)`, `lax.fori_loop`",
              "jax scan": "JAX `jit(grad)`, `lax.scan`"}
    for side in TRIP_SIDES:
        points = [(int(c), trip[c][side]) for c in counts if side in trip[c]]
        if points:
            ax.plot(*zip(*points), marker="o", label=labels[side])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trip count of the time loop (a constant in the code)")
    ax.set_ylabel("compile time (s), warm process")
    ax.set_title("Compile time against loop trip count (8-unit tanh recurrence)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def profile_text(data):
    prof = data.get("profile")
    if not prof:
        return []
    total = prof["total"]
    grouped = sorted(prof["grouped"].items(), key=lambda kv: -kv[1])
    plain = data.get("unprofiled")
    lines = [f"**Profile of one fully cold gradient** of the {PROFILE_KERNEL} (a fresh process, "
             "empty caches, numba's one-off start-up done before on a trivial function)."]
    if plain:
        lines += ["", f"Without the profiler: {plain['total']:.2f} s, of which "
                  f"{plain['numba_s']:.2f} s inside numba (metered at its entry points; "
                  f"{plain['llvm_s']:.2f} s of it inside LLVM's C++ library, timed by numba's "
                  "LLVM-lock event around every llvmlite call: parsing, optimisation, machine "
                  f"code; {plain['numba_s'] - plain['llvm_s']:.2f} s numba's Python: front end, "
                  "type inference, lowering to LLVM IR) and "
                  f"{plain['total'] - plain['numba_s']:.2f} s in nbautodiff's own passes "
                  f"outside numba; {plain['compiled']['helpers']} runtime helpers, "
                  f"{plain['compiled']['generated']} generated functions and "
                  f"{plain['compiled']['numba']} of numba's own jitted functions compiled."]
    if plain and plain.get("inclusive"):
        lines += ["", "The costliest dispatcher compilations (seconds, each including the "
                  "compilations nested in it; numba specialises a helper per signature, literal "
                  "integer arguments included):", "", "| dispatcher | signature | seconds |",
                  "|---|---|--:|"]
        for name, sig, seconds in plain["inclusive"][:10]:
            short = re.sub(r"__copy\d+_\d+", "", name.split(".")[-1] if "generated" in name
                           else name.replace("nbautodiff.kernels.", "kernels."))
            sig = re.sub(r"Array\((\w+), (\d), '(\w)', False, aligned=True\)",
                         r"array(\1, \2d, \3)", sig)
            lines.append(f"| `{short}` | `{sig[:90]}` | {seconds:.2f} |")
    lines += ["", f"Under cProfile ({total:.2f} s: the profiler slows Python code, not LLVM's "
              "C++, so the Python shares below are inflated), self time grouped by the file of "
              "the code that runs (the standard library's and built-ins' self time goes to "
              "their callers' groups):", "",
             "| where | seconds | share |", "|---|--:|--:|"]
    accounted = sum(v for _, v in grouped)
    for group, seconds in grouped:
        lines.append(f"| {group} | {seconds:.2f} | {100 * seconds / accounted:.0f}% |")
    lines += ["", "| inclusive phases (overlapping) | seconds |", "|---|--:|"]
    for phase, seconds in prof["phases"].items():
        lines.append(f"| {phase} | {seconds:.2f} |")
    lines += ["", "| counts | |", "|---|--:|"]
    comp = prof["compiled"]
    lines.append(f"| dispatcher compilations (new signatures): nbautodiff runtime helpers | "
                 f"{comp['helpers']} |")
    lines.append(f"| dispatcher compilations: generated code and the primal | "
                 f"{comp['generated']} |")
    lines.append(f"| dispatcher compilations: numba's own jitted functions | {comp['numba']} |")
    for what, count in prof["counts"].items():
        lines.append(f"| {what} | {count} |")
    if prof.get("generated_lines"):
        lines.append(f"| lines of the generated gradient (`.source`) | {prof['generated_lines']} |")
    if prof.get("helper_names"):
        names = [n.rsplit(".", 1)[1] for n in prof["helper_names"]]
        lines += ["", f"Runtime helpers compiled ({len(names)} distinct, some in several "
                  f"signatures): {', '.join(names)}."]
    return lines


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return cpu, cores


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return ["n/a"] * 3


def section(data, opts, load_before, load_after, plot_path):
    import numba
    cpu, cores = machine()
    versions = (f"numba {numba.__version__} (`NUMBA_OPT={int(numba.config.OPT)}`), NumPy "
                f"{np.__version__}, Python {platform.python_version()}")
    if data["with_jax"]:
        import jax
        import jaxlib
        versions += f", JAX {jax.__version__} (jaxlib {jaxlib.__version__})"
    try:
        loaded = max(float(load_before[0]), float(load_after[0])) >= 0.5 * cores
    except ValueError:
        loaded = False
    verdicts = acceptance(data)
    command = "make bench-compile" if not opts.quick else "compile_latency.py --quick"
    lines = [
        SECTION_BEGIN,
        "## Compile latency (issue 20)",
        "",
        f"Run of {datetime.date.today().isoformat()} by `{command}` "
        f"(`benchmarks/compile_latency.py`): {data['elapsed'] / 60:.0f} min wall, "
        f"{data.get('children_cpu', 0.0) / 60:.0f} min of CPU in its processes; {cores} cores, "
        f"{cpu}; {versions}. Load average (1, 5, 15 min) {', '.join(load_before)} at the start "
        f"and {', '.join(load_after)} at the end" + (
            ": **the machine was shared with other work and loaded**: our processes got "
            f"{100 * data.get('children_cpu', 0.0) / data['elapsed']:.0f}% of a core on "
            "average (their CPU time over the wall time), so wall times are inflated about "
            f"{data['elapsed'] / max(data.get('children_cpu', 1e-9), 1e-9):.1f}x and single "
            "timings are noisy; the verdicts use medians of wall time, with the same ratio in "
            "CPU time beside them where the table has it (other processes do not inflate it)."
            if loaded else "."),
        "",
        "Compile time = first call minus the steady call, on small inputs of each kernel's "
        "argument types (compiling depends only on the types), every measurement on a "
        "never-seen copy of the function (its source executed again under a new name), so "
        "nothing is reused from another measurement. *Warm*: median of "
        f"{opts.warm_repeats} processes per kernel, each with empty caches, which first compiled "
        "another kernel every way (`warmup_kernel`: its numba primal, gradient, forward modes, "
        "HVP, batch and JAX gradient; its loops use the tape), then each kind of this kernel "
        f"once: the edit-a-cell loop. *Fresh*: median of {opts.repeats} fresh processes per "
        f"kernel for numba, `grad` and JAX ({opts.repeats_other} for the other kinds), each "
        "timing the first call of one kind after the imports (timed apart, not counted), "
        "numba's one-off start-up included, with empty `NBAUTODIFF_CACHE_DIR` and "
        "`NUMBA_CACHE_DIR` (fully cold). `fwd wN`: `nad.forward(f, Dual/Const..., width=N)`, "
        "Dual for the gradient's arguments; HVP: `nad.jvp(nad.grad(f, argnums), args, "
        "tangents)`, the Hessian-vector product (forward over reverse, what `nad.hessian` "
        "compiles); `batch`: `nad.batch(f, in_axes)`, the first differentiated argument batched "
        "(every argument of the scalar kernels); JAX: `jax.jit(jax.grad(f))` of the ports in "
        "`jax_compare.py` (and of Black-Scholes and the Newton loop, in `compile_latency.py`). "
        "Seconds.",
        "",
        "**Warm process:**",
        "",
        kernel_table(data, "warm"),
        "",
        "**Fresh process, fully cold** (first call after the imports):",
        "",
        kernel_table(data, "fresh"),
        "",
        "**The gradient in detail.** Warm: the share inside numba (metered at its entry points: "
        "front end, type inference, dispatcher compilations, nested calls counted once), the "
        "rest is nbautodiff's own work; the dispatchers compiled in it; the same kernel's "
        "primal and gradient compiled once more in that process (new copies: what the next "
        "edit of the cell costs). Fresh: the whole first call (not minus the steady call), numba's "
        "start-up included, fully cold and with numba's cache holding nbautodiff's runtime "
        "helpers (`NUMBA_CACHE_DIR` as the first fully cold process of the same gradient left "
        f"it, the artifact cache empty; median of {opts.repeats_helpers}).",
        "",
        detail_table(data),
        "",
    ]
    notes = batch_notes(data)
    if notes:
        lines += [f"Batch layouts (`layout=\"auto\"`): {notes}.", ""]
    if data.get("trip"):
        lines += [f"**Compile time against trip count** (`benchmarks/{Path(plot_path).name}`): "
                  "`grad` of an 8-unit tanh recurrence `h = tanh(W h)` whose trip count is a "
                  "constant in the code, in one warm process (each trip count a new function); "
                  "JAX's Python loop is unrolled at trace time (not run beyond "
                  f"{UNROLLED_MAX}: 1000 steps took 100 s in a trial run).", "",
                  trip_table(data), "",
                  f"![compile time against trip count]({Path(plot_path).name})", ""]
    lines += profile_text(data)
    lines += ["", "**Acceptance of issue 20** (wall time):", ""]
    for target, measured, ok in verdicts:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {target}. Measured: {measured}.")
    if data["errors"]:
        lines += ["", "Errors: " + "; ".join(e.splitlines()[0][:200] for e in data["errors"])]
    lines.append(SECTION_END)
    return "\n".join(lines), verdicts


def write_results(path, block):
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.S)
    new = (pattern.sub(lambda _: block, old, count=1) if pattern.search(old)
           else old.rstrip("\n") + "\n\n" + block + "\n")
    path.write_text(new)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="two kernels (or --only), one repeat, three trip counts")
    parser.add_argument("--only", default="", help="comma-separated substrings of kernel names")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per kernel/kind")
    parser.add_argument("--repeats-other", type=int, default=1,
                        help="fresh processes for fwd/hvp/batch (default 1)")
    parser.add_argument("--repeats-helpers", type=int, default=1,
                        help="fresh gradients with the helpers in numba's cache (default 1)")
    parser.add_argument("--warm-repeats", type=int, default=1,
                        help="warm processes per kernel (default 1)")
    parser.add_argument("--kinds", default="",
                        help=f"comma-separated subset of {','.join(KINDS)} (development)")
    parser.add_argument("--no-warm", action="store_true")
    parser.add_argument("--no-fresh", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-trip", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--plot", default=str(HERE / "compile_latency.png"))
    parser.add_argument("--json", default="", help="also write the raw data here")
    parser.add_argument("--from-json", default="",
                        help="measure nothing: the report of raw data written by --json")
    parser.add_argument("--what-if", action="store_true",
                        help="fully cold first gradients with the tape's _grown copying by a loop "
                             "beside as it is (printed only)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        what, rest = opts.child[0], opts.child[1:]
        if what == "warm":
            out = child_warm(rest[0], rest[1] == "1")
        elif what == "fresh":
            out = child_fresh(rest[0], rest[1])
        elif what == "trip":
            out = child_trip([int(c) for c in rest[0].split(",")], rest[1] == "1")
        elif what == "profile":
            out = child_profile(rest[0])
        elif what == "unprofiled":
            out = child_unprofiled(rest[0])
        else:
            raise SystemExit(f"unknown child {what}")
        print(json.dumps(out))
        return 0
    if opts.quick:
        opts.repeats, opts.repeats_other, opts.repeats_helpers, opts.warm_repeats = 1, 1, 1, 1
    if opts.kinds:
        unknown = set(opts.kinds.split(",")) - set(KINDS)
        if unknown:
            parser.error(f"unknown kinds {sorted(unknown)}: choose from {', '.join(KINDS)}")
        os.environ[KINDS_VARIABLE] = opts.kinds
    if not cases(opts.only):
        parser.error(f"no kernel matches --only {opts.only!r}")
    if opts.what_if:
        return what_if(opts)
    if opts.from_json:
        data = json.loads(Path(opts.from_json).read_text())
        for key, value in data["options"].items():
            setattr(opts, key, value)
    else:
        data = run_all(opts)
    load_before, load_after = data["load_before"], data["load_after"]
    if opts.json:
        Path(opts.json).write_text(json.dumps(data, indent=1))
    plot_path = plot(data, opts.plot)
    block, verdicts = section(data, opts, load_before, load_after, opts.plot)
    print(block)
    if not opts.no_write:
        write_results(Path(opts.results), block)
        print(f"wrote the compile-latency section of {opts.results}")
    if plot_path:
        print(f"wrote {plot_path}")
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
