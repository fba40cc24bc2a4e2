"""Time to the first gradient value in a fresh process, cold cache against warm cache (issue 6).

A script, not a test (``make bench-cache``). For each kernel of ``benchmarks/reverse_mode.py`` a
fresh Python process imports numba, NumPy and nbautodiff, builds the kernel's arguments (not
timed) and computes ``nad.grad(f, argnums)(*args)`` once. The *time to the first gradient value*
is the imports plus that call: what a notebook pays after a kernel restart before its first
gradient. It is measured

* **cold**: with an empty cache folder (``NBAUTODIFF_CACHE_DIR``, a new temporary folder each
  time): the whole pipeline runs and numba compiles;
* **warm**: in another fresh process on the folder the cold run filled: the generated sources and
  numba's compiled code come from the cache.

Each is the median of ``--repeats`` processes. The warm gradient must equal the cold one bit for
bit (compared by a digest of its bytes) (the benchmark stops otherwise: the cache must never change a result). The import of numba
alone is timed the same way (median of fresh processes): the targets of issue 6 are warm <= 20%
of cold, and warm <= numba's import + 0.5 s. A last row computes every kernel's gradient in one
process (a notebook that differentiates them all after a restart).

The processes write and use Python's bytecode cache (``__pycache__``) as a usual installation does,
even where ``PYTHONDONTWRITEBYTECODE`` is set (as on our CI machines): without it nbautodiff's own
modules are compiled from source at every import, about 0.13 s more, cold and warm alike.

The table, with the date and the machine, replaces the section of ``benchmarks/RESULTS.md``
between its markers. Options: ``--repeats N`` (default 3), ``--only NAME[,NAME]``,
``--no-write``, ``--results PATH``; ``--offload``: the same for the first call of two kernels of
``benchmarks/gpu.py`` offloaded to a CUDA GPU (the heat step, the stencil loss's gradient), whose
host code, kernels and the kernels' compiled code come from the cache when warm (printed only).
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()        # a child's clocks start before its first import
STARTED_CPU = time.process_time()

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_FRACTION = 0.20               # warm <= 20% of cold
TARGET_BEYOND_NUMBA_S = 0.5          # warm <= numba import + 0.5 s
SECTION_BEGIN = "<!-- issue-6 cache benchmark: begin (written by benchmarks/cache.py) -->"
SECTION_END = "<!-- issue-6 cache benchmark: end -->"
ALL = "all"


# ---- the child: one fresh process, one measurement ---------------------------------------------

def child(which: str) -> None:
    """Import, build the arguments (not timed), compute the first gradient(s); print JSON."""
    import numba  # noqa: F401
    import numpy as np

    import nbautodiff as nad
    imported, imported_cpu = time.perf_counter(), time.process_time()
    sys.path.insert(0, str(HERE))
    if which in OFFLOADED:
        calls = [_offloaded_call(which, nad, np)]
    else:
        import reverse_mode
        kernels = reverse_mode.kernels(np.random.default_rng(0))
        chosen = kernels if which == ALL else [k for k in kernels if k.name == which]
        calls = [lambda k=k: nad.grad(k.fun, k.argnums)(*k.args) for k in chosen]
    started, started_cpu = time.perf_counter(), time.process_time()
    values = [call() for call in calls]
    finished, finished_cpu = time.perf_counter(), time.process_time()
    digest = hashlib.sha256()
    for value in values:
        for part in value if isinstance(value, tuple) else (value,):
            digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
    info = nad.cache.info()
    print(json.dumps({"seconds": (imported - STARTED) + (finished - started),
                      "cpu": (imported_cpu - STARTED_CPU) + (finished_cpu - started_cpu),
                      "imports": imported - STARTED, "gradient": digest.hexdigest(),
                      "hits": info.hits, "misses": info.misses,
                      "compiled_hits": info.compiled_hits,
                      "compiled_misses": info.compiled_misses}))


OFFLOADED = {"offloaded heat step (GPU)": "heat_step",
             "offloaded stencil-loss gradient (GPU)": "stencil_loss"}


def _offloaded_call(which: str, nad, np):
    """The first call of an offloaded kernel of ``benchmarks/gpu.py`` (``--offload``): the heat
    step, or the gradient of the stencil loss, on 2^20 points."""
    import gpu as kernels
    from numba import config
    u = np.sin(np.linspace(0.0, 3.0, 1 << (10 if config.ENABLE_CUDASIM else 20)))

    def heat_step():
        un = np.zeros_like(u)
        nad.offload(kernels.heat_step)(u, un, 0.1)
        return un
    if OFFLOADED[which] == "heat_step":
        return heat_step
    return lambda: nad.offload(nad.grad(kernels.stencil_loss))(u, 0.1)


# ---- the parent: processes side by side ------------------------------------------------------

def _run(arguments: list, folder: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)      # see the module docstring
    if folder is not None:
        env["NBAUTODIFF_CACHE_DIR"] = folder
    done = subprocess.run([sys.executable, *arguments], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def numba_import_seconds(repeats: int) -> tuple[float, float]:
    """Median wall and CPU time of ``import numba`` in fresh processes."""
    code = ("import time, json; t, c = time.perf_counter(), time.process_time(); import numba; "
            "print(json.dumps({'seconds': time.perf_counter() - t, "
            "'cpu': time.process_time() - c}))")
    runs = [_run(["-c", code]) for _ in range(repeats)]
    return (statistics.median(r["seconds"] for r in runs),
            statistics.median(r["cpu"] for r in runs))


FLOOR_KERNEL = """import math
import numba


@numba.njit(cache=True)
def total(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i])
    return s
"""


def numba_floor_seconds(repeats: int) -> tuple[float, float]:
    """Median time, beyond ``import numba``, of the first call of a small function compiled with
    ``numba.njit(cache=True)`` and already in numba's cache, in fresh processes: what numba
    itself takes to load cached code (its registries, runtime, the BLAS check)."""
    folder = tempfile.mkdtemp(prefix="nbautodiff-bench-floor-")
    try:
        Path(folder, "floor_kernel.py").write_text(FLOOR_KERNEL)
        code = ("import time, json, sys; t = time.perf_counter(); import numba; "
                "i, c = time.perf_counter(), time.process_time(); import numpy; "
                "sys.path.insert(0, %r); import floor_kernel; floor_kernel.total(numpy.ones(10)); "
                "print(json.dumps({'seconds': time.perf_counter() - i, "
                "'cpu': time.process_time() - c, "
                "'hits': sum(floor_kernel.total.stats.cache_hits.values())}))" % folder)
        _run(["-c", code])
        runs = [_run(["-c", code]) for _ in range(repeats)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not all(run["hits"] == 1 for run in runs):
        sys.exit("numba did not load the floor kernel from its cache")
    return (statistics.median(run["seconds"] for run in runs),
            statistics.median(run["cpu"] for run in runs))


def cold_and_warm(which: str, repeats: int) -> dict:
    """Median cold and warm times to the first gradient of kernel ``which`` (or ``all``)."""
    cold, warm, cold_cpu, warm_cpu = [], [], [], []
    for _ in range(repeats):
        folder = tempfile.mkdtemp(prefix="nbautodiff-bench-cache-")
        try:
            first = _run([__file__, "--child", which], folder)
            second = _run([__file__, "--child", which], folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if first["misses"] == 0 or second["misses"] != 0 or second["compiled_misses"] != 0:
            sys.exit(f"{which}: the cold run must build everything and the warm run nothing "
                     f"(cold: {first['misses']} misses; warm: {second['misses']} misses, "
                     f"{second['compiled_misses']} compilations)")
        if second["gradient"] != first["gradient"]:
            sys.exit(f"{which}: the warm gradient differs from the cold one: the cache changed "
                     "a result")
        cold.append(first["seconds"])
        warm.append(second["seconds"])
        cold_cpu.append(first["cpu"])
        warm_cpu.append(second["cpu"])
    return {"cold": statistics.median(cold), "warm": statistics.median(warm),
            "cold_cpu": statistics.median(cold_cpu), "warm_cpu": statistics.median(warm_cpu),
            "imports": second["imports"], "entries": first["misses"]}


def machine() -> dict:
    sys.path.insert(0, str(HERE))
    import reverse_mode
    return reverse_mode.machine()


def table(rows: list, numba_import: tuple) -> list:
    lines = ["| kernel | artifacts | cold (s) | warm (s) | warm / cold | warm - numba import (s) "
             "| CPU s: cold | warm | warm / cold | warm - numba import | <= 20% | <= 0.5 s |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|:-:|"]
    for row in rows:
        fraction, beyond = _fraction(row, ""), row["warm"] - numba_import[0]
        lines.append(f"| {row['name']} | {row['entries']} | {row['cold']:.2f} | "
                     f"{row['warm']:.2f} | {100 * fraction:.0f}% | {beyond:.2f} | "
                     f"{row['cold_cpu']:.2f} | {row['warm_cpu']:.2f} | "
                     f"{100 * _fraction(row, '_cpu'):.0f}% | "
                     f"{row['warm_cpu'] - numba_import[1]:.2f} | "
                     f"{'yes' if fraction <= TARGET_FRACTION else 'no'} | "
                     f"{'yes' if beyond <= TARGET_BEYOND_NUMBA_S else 'no'} |")
    return lines


def _fraction(row: dict, clock: str) -> float:
    return row["warm" + clock] / row["cold" + clock]


def _verdict(kernels: list, numba_import: tuple, clock: str) -> str:
    index = 1 if clock else 0
    met = [r for r in kernels if _fraction(r, clock) <= TARGET_FRACTION]
    fast = [r for r in kernels if r["warm" + clock] - numba_import[index] <= TARGET_BEYOND_NUMBA_S]
    return (f"warm <= 20% of cold: {len(met)} of {len(kernels)} kernels; warm <= numba import "
            f"+ 0.5 s: {len(fast)} of {len(kernels)} kernels")


def section(rows: list, numba_import: tuple, floor: tuple, info: dict, repeats: int) -> str:
    kernels = [r for r in rows if r["name"] != "all kernels, one process"]
    return "\n".join([
        SECTION_BEGIN,
        "## Issue 6: time to the first gradient in a fresh process, cold cache against warm",
        "",
        f"Run of {datetime.date.today().isoformat()} by `make bench-cache` "
        f"(`benchmarks/cache.py`): {info['cores']} cores (`nproc`), {info['cpu']}; numba "
        f"{info['numba']}, NumPy {info['numpy']}, Python {info['python']}; load average at "
        f"start {info['load']}.",
        "",
        "Each time is the median of "
        f"{repeats} fresh processes: imports (numba, NumPy, nbautodiff) plus the first "
        "`nad.grad(f, argnums)(*args)`, argument construction excluded. Cold: empty cache "
        "folder; warm: a second process on the folder the cold one filled (every artifact and "
        "its compiled code from the cache; the warm gradient is checked equal to the cold one "
        "bit for bit). \"Artifacts\" counts the cache entries the gradient needs (primals and "
        f"variants of the function and its callees). `import numba` alone: "
        f"**{numba_import[0]:.2f} s** ({numba_import[1]:.2f} s CPU); numba's own floor, the "
        "first call of a small `numba.njit(cache=True)` function found in numba's cache, beyond "
        f"that import: **{floor[0]:.2f} s** ({floor[1]:.2f} s CPU; medians of fresh processes). "
        "A warm nbautodiff gradient pays both, plus importing nbautodiff, reading its entries "
        "and loading its (larger) compiled code. The CPU columns (`time.process_time` of the "
        "process) count the same work without the time lost to other processes on a shared "
        "machine.",
        "",
        *table(rows, numba_import),
        "",
        f"Targets of issue 6, wall time: {_verdict(kernels, numba_import, '')}. In CPU time: "
        f"{_verdict(kernels, numba_import, '_cpu')}.",
        SECTION_END,
    ])


def write_results(path: Path, block: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.S)
    new = pattern.sub(lambda _: block, old, count=1) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="kernel names, comma separated")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--offload", action="store_true",
                        help="the offloaded kernels on a CUDA GPU instead (printed, not written)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    info = machine()
    from reverse_mode import kernels
    import numpy as np
    names = [k.name for k in kernels(np.random.default_rng(0))]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",")]
        names = [n for n in names if n in wanted]
    if args.offload:
        names, args.only, args.no_write = list(OFFLOADED), "offload", True
    numba_import = numba_import_seconds(max(5, args.repeats))
    floor = numba_floor_seconds(max(5, args.repeats))
    print(f"import numba alone: {numba_import[0]:.2f} s; first call of a cached numba "
          f"function beyond it: {floor[0]:.2f} s; {args.repeats} processes per measurement",
          flush=True)
    rows = []
    for name in names + ([ALL] if not args.only else []):
        row = cold_and_warm(name, args.repeats)
        row["name"] = "all kernels, one process" if name == ALL else name
        rows.append(row)
        print(f"{row['name']:30s} cold {row['cold']:6.2f} s   warm {row['warm']:5.2f} s   "
              f"{100 * row['warm'] / row['cold']:3.0f}%   beyond numba import "
              f"{row['warm'] - numba_import[0]:5.2f} s (CPU: cold {row['cold_cpu']:.2f} s, warm "
              f"{row['warm_cpu']:.2f} s)", flush=True)
    block = section(rows, numba_import, floor, info, args.repeats)
    print("\n" + block)
    if not args.no_write:
        write_results(args.results, block)
        print(f"\nwritten to {args.results}")


if __name__ == "__main__":
    main()
