"""offload on a real CUDA GPU (``pytest -m gpu`` with ``NUMBA_ENABLE_CUDASIM=0``; skipped
elsewhere): the simulator's checks at sizes where every thread of the grid has work, and the
gradient of a stencil on the device."""
import numpy as np
import pytest
from numba import config, cuda

import nbautodiff as nad

import offload_cases as cases

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    config.ENABLE_CUDASIM or not cuda.is_available(), reason="needs a CUDA GPU")]

N = 1_000_003      # not a multiple of the block size


def close(actual, expected, rtol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_axpy(rng):
    x, y = rng.random(N), rng.random(N)
    expected = 3.0 * x + y
    nad.offload(cases.axpy)(3.0, x, y)
    close(y, expected)


def test_heat(rng):
    u = rng.random(N)
    close(nad.offload(cases.heat)(u.copy(), 0.2, 7), cases.heat(u.copy(), 0.2, 7))


def test_reductions(rng):
    x, y = rng.random(N) - 0.5, rng.random(N)
    s, m = nad.offload(cases.dot_and_max)(x, y)
    s_ref, m_ref = cases.dot_and_max(x, y)
    close(s, s_ref, rtol=1e-11)           # a different summation order
    assert m == m_ref


def test_math_histogram_views_and_callees(rng):
    x = rng.random(N)
    close(nad.offload(cases.exp_scaled)(x, 0.7), cases.exp_scaled(x, 0.7))
    idx, w = rng.integers(0, 64, N), rng.random(N)
    close(nad.offload(cases.histogram)(idx, w, 64), cases.histogram(idx, w, 64), rtol=1e-11)
    A, v = rng.random((2000, 300)), rng.random(300)
    close(nad.offload(cases.matvec)(A, v), cases.matvec(A, v))


def test_aggregates(rng):
    s = cases.State(rng.random(N), np.zeros(N))
    nad.offload(cases.scale_state)(s, 3.0)
    close(s.v, 3.0 * s.u)


def test_gradient_of_the_stencil(rng):
    u = rng.random(N)
    g = nad.grad(cases.heat_loss, argnums=(0, 1))
    expected = g(u, 0.3)
    got = nad.offload(g)(u, 0.3)
    close(got[0], expected[0], rtol=1e-11)
    close(got[1], expected[1], rtol=1e-10)


@pytest.mark.skipif(config.ENABLE_CUDASIM or not cuda.is_available() or len(cuda.gpus) < 2,
                    reason="needs two GPUs")
def test_two_devices(rng):
    x, y = rng.random(N), rng.random(N)
    expected = 3.0 * x + y
    f = nad.offload(cases.axpy, devices=[0, 1])
    f(3.0, x, y)
    close(y, expected)
    assert {k[7] for k in f.plan.kernels} == {0, 1}
    u = rng.random(N)
    close(nad.offload(cases.heat, devices="all")(u.copy(), 0.2, 7), cases.heat(u.copy(), 0.2, 7))
    xs, ys = rng.random(N) - 0.5, rng.random(N)
    close(nad.offload(cases.dot_and_max, devices=[0, 1])(xs, ys)[0],
          cases.dot_and_max(xs, ys)[0], rtol=1e-11)
    idx, w = rng.integers(0, 64, N), rng.random(N)
    close(nad.offload(cases.histogram, devices=[0, 1])(idx, w, 64), cases.histogram(idx, w, 64),
          rtol=1e-11)
    A = rng.random((3000, 200))
    B = np.zeros((200, 3000))
    nad.offload(cases.transpose_into, devices=[0, 1])(A, B)
    close(B, 2.0 * A.T)
    g = nad.grad(cases.heat_loss, argnums=(0, 1))
    expected = g(u, 0.3)
    got = nad.offload(g, devices=[0, 1])(u, 0.3)
    close(got[0], expected[0], rtol=1e-11)
    close(got[1], expected[1], rtol=1e-10)
