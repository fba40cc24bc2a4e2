"""Functions with prange loops, offloaded in tests/test_offload.py (simulator) and
tests/test_offload_gpu.py (a real GPU)."""
import dataclasses
import math
from collections import namedtuple

import numpy as np
from numba import prange


def axpy(a, x, y):
    for i in prange(len(x)):
        y[i] = a * x[i] + y[i]


def heat(u, alpha, steps):
    n = len(u)
    un = np.empty_like(u)
    un[0] = u[0]
    un[n - 1] = u[n - 1]
    for t in range(steps):
        for i in prange(1, n - 1):
            un[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        u, un = un, u
    return u


def heat_loss(u, alpha):
    n = len(u)
    un = np.empty_like(u)
    un[0] = u[0]
    un[n - 1] = u[n - 1]
    for i in prange(1, n - 1):
        un[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
    s = 0.0
    for i in prange(n):
        s += un[i] * un[i] * math.sin(un[i])
    return s


def dot_and_max(x, y):
    s = 0.0
    m = -1e300
    for i in prange(len(x)):
        s += x[i] * y[i]
        m = max(m, x[i])
    return s, m


def exp_scaled(x, c):
    out = np.empty_like(x)
    for i in prange(len(x)):
        out[i] = np.exp(c * x[i]) + math.sqrt(x[i])
    return out


def histogram(idx, w, nbins):
    h = np.zeros(nbins)
    for i in prange(len(idx)):
        h[idx[i]] += w[i]
    return h


def squared(v):
    return v * v


def matvec(A, v):
    out = np.zeros(A.shape[0])
    for i in prange(A.shape[0]):
        row = A[i]
        acc = 0.0
        for j in range(A.shape[1]):
            acc += row[j] * squared(v[j])
        out[i] = acc
    return out


State = namedtuple("State", "u v")


@dataclasses.dataclass
class Fields:
    p: np.ndarray
    q: np.ndarray
    scale: float


def scale_state(s, c):
    for i in prange(len(s.u)):
        s.v[i] = c * s.u[i]


def scale_fields(f, pair):
    total = 0.0
    for i in prange(len(f.p)):
        f.q[i] = f.scale * f.p[i] + pair[0][i] * pair[1][i]
        total += f.q[i]
    return total


def stencil_loss(u, w):
    s = 0.0
    for i in prange(1, len(u) - 1):
        v = w * (u[i - 1] + u[i + 1]) - u[i] * u[i]
        s += v * v
    return s


# -- not offloadable: each must be refused with its line --------------------------------------

def carried(u):
    for i in prange(1, len(u)):
        u[i] = u[i - 1] + 1.0


def scalar_carried(x):
    t = 0.0
    out = np.zeros_like(x)
    for i in prange(len(x)):
        out[i] = t
        t = x[i]
    return out


def allocates_in_loop(x):
    out = np.zeros_like(x)
    for i in prange(len(x)):
        tmp = np.zeros(3)
        out[i] = tmp[0] + x[i]
    return out


def host_numpy(x):
    out = np.zeros_like(x)
    for i in prange(len(x)):
        out[i] = 2.0 * x[i]
    return np.sum(out)


def no_prange(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s


def call_price(s, k, t, r, v):
    """Black-Scholes price of a European call: scalar code, for offload(batch(...))."""
    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    return (s * 0.5 * math.erfc(-d1 / math.sqrt(2.0))
            - k * math.exp(-r * t) * 0.5 * math.erfc(-d2 / math.sqrt(2.0)))


def transpose_into(A, B):
    for i in prange(A.shape[0]):
        for j in range(A.shape[1]):
            B[j, i] = 2.0 * A[i, j]


def scale_then_sum(x, y):
    """Writes ``y``, then reads ``x`` and ``y``: called with one array twice (or overlapping
    views), the CPU sees the write through ``x``."""
    for i in prange(len(y)):
        y[i] = 2.0 * y[i]
    s = 0.0
    for i in prange(len(x)):
        s += x[i] * x[i] + y[i]
    return s
