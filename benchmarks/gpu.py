"""Offloaded code on a CUDA GPU against a hand-written numba.cuda kernel and numba parallel=True.

A script, not a test (``make bench-gpu``, on a machine with a GPU: see shared/GPU.md for the lent
H200). For each kernel, float64, after warm-up, median of repeated runs:

* **axpy** on 2^28 elements: the offloaded ``axpy`` called with device arrays (no transfers:
  kernel launch through the offload call path) against a hand-written grid-stride numba.cuda
  kernel with the same launch configuration; bandwidth = bytes read + written / time.
  Target of issue 5: at least 90% of the hand-written kernel.
* **heat** stencil (one step, 2^27 points) and **dot** product reduction (2^27): time against the
  bandwidth floor (bytes that must move / the hand-written axpy's bandwidth). Target: >= 70%.
* **gradient** of a stencil loss (2^24 points) on the GPU against the CPU gradient.
* speedups of the GPU (kernel only, and end to end with the NumPy arrays copied in and out)
  against the same function compiled by ``numba.njit(parallel=True)`` on all CPU cores.

Timings on the GPU use CUDA events around the call; CPU timings use ``time.perf_counter``.
Prints a table last; with ``--out DIR`` also writes it as JSON there.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numba
import numpy as np
from numba import cuda, prange

import nbautodiff as nad
from nbautodiff.kernels import gpu

from batching import timed      # benchmarks/batching.py: median of perf_counter runs

REPEATS = 15


def axpy(a, x, y):
    for i in prange(len(x)):
        y[i] = a * x[i] + y[i]


def heat_step(u, un, alpha):
    n = len(u)
    for i in prange(1, n - 1):
        un[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])


def dot(x, y):
    s = 0.0
    for i in prange(len(x)):
        s += x[i] * y[i]
    return s


def logistic_orbits(r, out, steps):
    """Compute-bound: ``steps`` iterations of the logistic map per element."""
    for i in prange(len(r)):
        x = 0.5
        for t in range(steps):
            x = r[i] * x * (1.0 - x)
        out[i] = x


def stencil_loss(u, alpha):
    n = len(u)
    s = 0.0
    for i in prange(1, n - 1):
        v = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        s += v * v * math.sin(v)
    return s


@cuda.jit
def axpy_by_hand(a, x, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = a * x[i] + y[i]


def gpu_time(call) -> float:
    """Median seconds of ``call()`` between CUDA events, after one warm-up call."""
    call()
    cuda.synchronize()
    times = []
    for _ in range(REPEATS):
        start, stop = cuda.event(), cuda.event()
        start.record()
        call()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    return statistics.median(times)


def end_to_end_time(call) -> float:
    """Median seconds of a call with NumPy arguments (transfers included), synchronised."""
    def synced():
        call()
        cuda.synchronize()
    return timed(synced, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for results.json")
    parser.add_argument("--scale", type=int, default=0, help="log2 size reduction (for trials)")
    parser.add_argument("--devices", action="store_true",
                        help="only the comparison of one GPU with all of them")
    options = parser.parse_args()
    if options.devices:
        return several_devices(options)
    rng = np.random.default_rng(0)
    rows, details = [], {"device": gpu.device_name(0), "cpu_threads": numba.get_num_threads()}

    n = 2 ** (28 - options.scale)
    x, y = rng.random(n), rng.random(n)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    config = gpu.launch_config(n)
    hand = gpu_time(lambda: axpy_by_hand[config.blocks, config.threads](2.0, dx, dy))
    offloaded_axpy = nad.offload(axpy)
    ours = gpu_time(lambda: offloaded_axpy(2.0, dx, dy))
    bandwidth = 24 * n / hand
    cpu_axpy = numba.njit(parallel=True)(axpy)
    cpu = timed(lambda: cpu_axpy(2.0, x, y), REPEATS)
    e2e = end_to_end_time(lambda: offloaded_axpy(2.0, x, y))
    rows.append(("axpy", n, 24 * n / ours / 1e12, hand / ours, cpu / ours, cpu / e2e))
    details["axpy"] = {"n": n, "hand_s": hand, "offload_s": ours, "cpu_parallel_s": cpu,
                       "end_to_end_s": e2e, "plan": str(offloaded_axpy.plan)}

    n = 2 ** (27 - options.scale)
    u = rng.random(n)
    un = u.copy()
    du, dun = cuda.to_device(u), cuda.to_device(un)
    offloaded_heat = nad.offload(heat_step)
    ours = gpu_time(lambda: offloaded_heat(du, dun, 0.1))
    floor = 16 * n / bandwidth
    cpu_heat = numba.njit(parallel=True)(heat_step)
    cpu = timed(lambda: cpu_heat(u, un, 0.1), REPEATS)
    e2e = end_to_end_time(lambda: offloaded_heat(u, un, 0.1))
    rows.append(("heat step", n, 16 * n / ours / 1e12, floor / ours, cpu / ours, cpu / e2e))
    details["heat"] = {"n": n, "offload_s": ours, "floor_s": floor, "cpu_parallel_s": cpu,
                       "end_to_end_s": e2e, "plan": str(offloaded_heat.plan)}

    offloaded_dot = nad.offload(dot)
    ours = gpu_time(lambda: offloaded_dot(du, dun))
    cpu_dot = numba.njit(parallel=True)(dot)
    cpu = timed(lambda: cpu_dot(u, un), REPEATS)
    e2e = end_to_end_time(lambda: offloaded_dot(u, un))
    rel = abs(offloaded_dot(du, dun) - cpu_dot(u, un)) / abs(cpu_dot(u, un))
    rows.append(("dot", n, 16 * n / ours / 1e12, floor / ours, cpu / ours, cpu / e2e))
    details["dot"] = {"n": n, "offload_s": ours, "floor_s": floor, "cpu_parallel_s": cpu,
                      "end_to_end_s": e2e, "relative_error": rel}

    n = 2 ** (24 - options.scale)
    u = rng.random(n)
    grad = nad.grad(stencil_loss, argnums=(0, 1))
    offloaded_grad = nad.offload(grad)
    expected = grad(u, 0.1)
    got = offloaded_grad(u, 0.1)
    error = float(np.max(np.abs(got[0] - expected[0])) / np.max(np.abs(expected[0])))
    cpu = timed(lambda: grad(u, 0.1), 3)
    e2e = end_to_end_time(lambda: offloaded_grad(u, 0.1))
    offloaded_grad.timed = True
    kernel_times = []
    for _ in range(5):
        offloaded_grad(u, 0.1)
        kernel_times.append(offloaded_grad.plan.kernel_seconds)
    ours = statistics.median(kernel_times)
    rows.append(("grad stencil", n, None, None, cpu / ours, cpu / e2e))
    details["grad"] = {"n": n, "offload_s": ours, "cpu_grad_s": cpu, "end_to_end_s": e2e,
                       "max_rel_error": error, "plan": str(offloaded_grad.plan)}

    print(f"device: {details['device']}; CPU: numba parallel=True on {details['cpu_threads']} "
          "threads (gradient: nad.grad on the CPU)")
    print(f"hand-written axpy kernel: {bandwidth / 1e12:.2f} TB/s")
    print(f"{'kernel':<13} {'n':>11} {'TB/s':>6} {'of ref':>7} {'GPU/CPU':>8} {'e2e/CPU':>8}")
    for name, size, tbs, of_ref, speedup, e2e_speedup in rows:
        def fmt(v, spec):
            width = int(spec.split(".")[0])
            return "-".rjust(width) if v is None else format(v, spec)
        print(f"{name:<13} {size:>11} {fmt(tbs, '6.2f')} {fmt(of_ref, '7.0%')} "
              f"{fmt(speedup, '7.1f')}x {fmt(e2e_speedup, '7.2f')}x")
    print("of ref: axpy, the hand-written kernel's bandwidth; others, the bandwidth floor. "
          "GPU/CPU: speedup of the kernel (device arrays) over numba parallel=True; e2e: with "
          "NumPy arrays moved in and out.")
    print(f"dot relative error {details['dot']['relative_error']:.1e}; gradient max relative "
          f"error {details['grad']['max_rel_error']:.1e}")
    write_json(options.out, "results.json", details)


def several_devices(options) -> None:
    """One GPU against all of them, NumPy arrays in and out (several devices take NumPy
    arrays): a bandwidth-bound axpy and a compute-bound loop."""
    count = len(cuda.gpus)
    rng = np.random.default_rng(1)
    n = 2 ** (26 - options.scale)
    x, y = rng.random(n), rng.random(n)
    r, out = 3.5 + 0.5 * rng.random(n), np.zeros(n)
    print(f"{count} x {gpu.device_name(0)}")
    print(f"{'kernel':<22} {'n':>10} {'1 GPU':>10} {f'{count} GPUs':>10} {'speedup':>8}")
    cases = (("axpy", axpy, lambda: (2.0, x, y)), ("logistic map x2000", logistic_orbits,
                                                   lambda: (r, out, 2000)))
    results = {}
    for name, function, arguments in cases:
        one, every = nad.offload(function), nad.offload(function, devices="all")
        t_one = end_to_end_time(lambda: one(*arguments()))
        t_every = end_to_end_time(lambda: every(*arguments()))
        results[name] = {"one_s": t_one, "all_s": t_every, "devices": count,
                         "plan": str(every.plan)}
        print(f"{name:<22} {n:>10} {t_one * 1e3:>8.1f}ms {t_every * 1e3:>8.1f}ms "
              f"{t_one / t_every:>7.2f}x")
    write_json(options.out, "devices.json", results)


def write_json(folder: str | None, name: str, data: dict) -> None:
    """``data`` as ``folder/name`` (nothing without a folder)."""
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w") as handle:
            json.dump(data, handle, indent=1)


if __name__ == "__main__":
    main()
