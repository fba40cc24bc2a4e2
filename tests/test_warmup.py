"""The background warm-up that ``%load_ext nbautodiff`` starts (``nbautodiff.warmup``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff import warmup
from fd import assert_grad_close, central_diff


def oscillator(x, k):
    s = 0.0
    for i in range(x.shape[0] - 1):
        d = x[i + 1] - x[i]
        s += k * d * d + math.cos(x[i])
    return s


def test_the_warm_up_loads_numba_and_the_runtime_helpers():
    done = warmup.run()
    assert done[0] == "numba"
    assert any(item.startswith("grown") for item in done)
    assert any(item.startswith("trip_count") for item in done)


def test_a_gradient_taken_while_the_warm_up_runs_is_right(monkeypatch):
    monkeypatch.setattr(warmup, "_started", None)
    thread = warmup.start()
    x = np.random.default_rng(3).standard_normal(7)
    ad = nad.grad(oscillator)(x.copy(), 0.7)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert_grad_close(ad, central_diff(oscillator, (x, 0.7), 0), rtol=1e-6, atol=1e-9)
    assert warmup.start() is thread                       # once per process


def test_the_warm_up_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(warmup, "_started", None)
    monkeypatch.setenv(warmup.VARIABLE, "0")
    assert warmup.start() is None


def test_load_ext_starts_the_warm_up(monkeypatch):
    pytest.importorskip("IPython")
    from IPython.testing.globalipapp import get_ipython
    started = []
    monkeypatch.setattr(warmup, "start", lambda: started.append(True))
    nad.load_ipython_extension(get_ipython())     # what %load_ext nbautodiff calls
    assert started == [True]
