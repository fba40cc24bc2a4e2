"""GradBench's JAX tool, timed to completion: ``python peer_jax.py <gradbench checkout>``.

GradBench's ``tools/jax`` modules time ``function(input)`` with ``gradbench.wrap``, which stops
the clock when JAX returns, before the asynchronously dispatched computation has finished (the
conversion to lists, outside the timed region, then waits for it). This wrapper runs the same
tool (``python/gradbench/gradbench/tools/jax/run.py``, its modules unchanged) with
``gradbench.wrap.multiple_runs`` replaced by a copy that calls ``jax.block_until_ready`` on the
output inside the timed region. Everything else is GradBench's: the tool pins itself to CPU 0
(no ``--multithreaded``), the runner sets XLA's one-thread flags.
"""
import runpy
import sys
import time
from pathlib import Path

root = Path(sys.argv[1]).resolve()
tool_dir = root / "python/gradbench/gradbench/tools/jax"
sys.path[:0] = [str(tool_dir), str(root / "python/gradbench")]

import jax  # noqa: E402
from gradbench import wrap  # noqa: E402


def multiple_runs(*, min_runs=lambda x: x["min_runs"], min_seconds=lambda x: x["min_seconds"],
                  pre, post):
    """``gradbench.wrap.multiple_runs`` with ``jax.block_until_ready`` inside each run."""
    def decorator(function):
        def wrapped(input_raw):
            timings = []
            elapsed = 0.0
            input = pre(input_raw)
            runs, seconds = min_runs(input_raw), min_seconds(input_raw)
            while len(timings) < runs or elapsed < seconds:
                start = time.perf_counter_ns()
                output = jax.block_until_ready(function(input))
                end = time.perf_counter_ns()
                timings.append(wrap.Timing(name="evaluate", nanoseconds=end - start))
                elapsed += (end - start) / 1e9
            return wrap.OutputAndTimings(success=True, output=post(output), timings=timings)
        return wrap.Wrapped(function=function, wrapped=wrapped)
    return decorator


wrap.multiple_runs = multiple_runs
sys.argv = [str(tool_dir / "run.py")]
runpy.run_path(str(tool_dir / "run.py"), run_name="__main__")
