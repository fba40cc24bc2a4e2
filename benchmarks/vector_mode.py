"""Vector-mode forward against scalar passes: the Jacobian of a 16-input function.

A script, not a test (``make bench-vector``). The Jacobian of ``chain`` (16 inputs, 16 outputs,
loops and transcendental functions) by one vector-mode pass (``nad.forward(..., width=16)``, the
primal evaluated once) against 16 scalar forward passes (``width=1``), both through the public
call, timed interleaved after warm-up (median of CPU time). Both Jacobians are checked against
``nad.jacrev`` before timing. Target of issue 4: vector mode at least 3x faster.
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

import nbautodiff as nad

N = 16
STEPS = 200


def chain(x, out, steps):
    """``steps`` rounds of a coupled nonlinear map of 16 values, written into ``out``."""
    n = x.shape[0]
    for i in range(n):
        out[i] = x[i]
    for t in range(steps):
        for i in range(n):
            left = out[(i + n - 1) % n]
            out[i] = math.tanh(out[i] + 0.1 * left * left) + 0.01 * math.sin(x[i] * t)


def outputs(x):
    out = np.zeros(N)
    chain(x, out, STEPS)
    return out


def jacobian_vector_mode(forward16, x, basis):
    out = np.zeros(N)
    tangents = [np.zeros(N) for _ in range(N)]
    arguments = [x] + list(basis) + [out] + tangents + [STEPS]
    forward16(*arguments)
    return np.stack(tangents, axis=1)


def jacobian_scalar_passes(forward1, x, basis):
    columns = []
    for direction in basis:
        out, tangent = np.zeros(N), np.zeros(N)
        forward1(x, direction, out, tangent, STEPS)
        columns.append(tangent)
    return np.stack(columns, axis=1)


def main(repeats: int = 51):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, N)
    basis = [np.eye(N)[k] for k in range(N)]
    forward16 = nad.forward(chain, nad.Dual, nad.Dual, nad.Const, ret="Const", width=N)
    forward1 = nad.forward(chain, nad.Dual, nad.Dual, nad.Const, ret="Const")

    reference = nad.jacrev(outputs)(x)
    vector = jacobian_vector_mode(forward16, x, basis)
    scalar = jacobian_scalar_passes(forward1, x, basis)
    assert np.allclose(vector, reference, rtol=1e-10, atol=1e-12), "vector mode is wrong"
    assert np.allclose(scalar, reference, rtol=1e-10, atol=1e-12), "scalar passes are wrong"
    times = {"vector": [], "scalar": []}
    for _ in range(repeats):
        start = time.thread_time()
        jacobian_vector_mode(forward16, x, basis)
        times["vector"].append(time.thread_time() - start)
        start = time.thread_time()
        jacobian_scalar_passes(forward1, x, basis)
        times["scalar"].append(time.thread_time() - start)
    vector_ms = 1e3 * statistics.median(times["vector"])
    scalar_ms = 1e3 * statistics.median(times["scalar"])
    print(f"| Jacobian 16x16 of `chain` ({STEPS} steps) | 16 scalar passes {scalar_ms:.3f} ms | "
          f"vector mode, width 16 {vector_ms:.3f} ms | **{scalar_ms / vector_ms:.1f}x** "
          f"(target >= 3x) |")


if __name__ == "__main__":
    main()
