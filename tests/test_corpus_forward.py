"""Forward mode on the corpus: ``nad.forward`` (one direction and vector mode, width 4) against
reverse mode and central differences.

For every corpus function, random directions for its differentiated arguments: the tangent of
one forward pass must equal the directional central difference and the gradient of reverse mode
dotted with the direction; vector mode gives each of four directions the same tangent as four
single passes would (the primal is evaluated once). The primal result of the forward pass must
equal the function's value. Within the suite's time budget (tests/budget.py) the single pass
runs on every other function and vector mode, with the single pass's checks, on the others;
``NBAUTODIFF_FULL_CORPUS=1`` runs both on all of them.
"""
from __future__ import annotations

import numpy as np
import pytest

import nbautodiff as nad

import corpus
from fd import copy_args, directional_diff, evaluate, max_abs
from test_corpus_reverse import derived

WIDTH = 4
_FORWARD: dict = {}


def forward(fun, argnums, count, width):
    key = (fun, argnums, width)
    if key not in _FORWARD:
        activities = [nad.Dual if k in argnums else nad.Const for k in range(count)]
        _FORWARD[key] = nad.forward(fun, *activities, width=width)
    return _FORWARD[key]


def directions(args, wrt, rng):
    return [rng.standard_normal(args[k].shape).astype(args[k].dtype)
            if isinstance(args[k], np.ndarray) else float(rng.standard_normal()) for k in wrt]


def call_arguments(args, wrt, lanes):
    """Arguments for a forward function: each differentiated argument followed by its tangents."""
    call = []
    for k, value in enumerate(copy_args(args)):
        call.append(value)
        if k in wrt:
            call += copy_args([lane[wrt.index(k)] for lane in lanes])   # tangents are written too
    return call


def reverse_directional(case, args, direction):
    grads = derived("grad", case.fun, case.wrt())(*copy_args(args))
    return sum(float(np.sum(np.asarray(g, np.float64) * np.asarray(v, np.float64)))
               for g, v in zip(grads, direction))


def single_pass(case):
    """(args, wrt, lanes, value, tangent, fd, scale, float32): one forward pass along the first of
    ``WIDTH`` random directions, its primal checked against the function's value."""
    wrt = list(case.wrt())
    args = corpus.args_for(case, 0)
    rng = np.random.default_rng(7)
    lanes = [directions(args, wrt, rng) for _ in range(WIDTH)]
    float32 = case.is_float32(args)
    value, tangent = forward(case.fun, tuple(wrt), len(args), 1)(*call_arguments(args, wrt, lanes[:1]))
    expected_value = evaluate(case.fun, args)
    assert np.isclose(value, expected_value, rtol=1e-4 if float32 else 1e-12, atol=1e-12), \
        f"forward primal {value} != {expected_value}"
    fd = directional_diff(case.fun, args, wrt, lanes[0])
    scale = max(1.0, abs(fd), abs(expected_value))
    return args, wrt, lanes, value, tangent, fd, scale, float32


def _check_single_pass(case, single):
    args, wrt, lanes, value, tangent, fd, scale, float32 = single
    rtol = 2e-3 if float32 else 1e-6
    rev = reverse_directional(case, args, lanes[0])
    assert abs(tangent - fd) <= (case.rtol or rtol) * scale, \
        f"{case.name}: forward {tangent!r} vs central differences {fd!r}"
    assert abs(tangent - rev) <= (1e-4 if float32 else 1e-9) * scale, \
        f"{case.name}: forward {tangent!r} vs reverse {rev!r}"


@pytest.mark.parametrize("case", corpus.share(corpus.CORPUS, 2, offset=1), ids=lambda c: c.name)
def test_forward_matches_reverse_and_central_differences(case):
    _check_single_pass(case, single_pass(case))


@pytest.mark.parametrize("case", corpus.share(corpus.CORPUS, 2), ids=lambda c: c.name)
def test_vector_mode_matches_single_passes(case):
    """Vector mode (width 4): the primal of the single pass, and each direction the tangent of
    a single pass (the first, itself checked as above) or of reverse mode (the others)."""
    single = single_pass(case)
    _check_single_pass(case, single)
    args, wrt, lanes, value, tangent, fd, scale, float32 = single
    value4, tangents = forward(case.fun, tuple(wrt), len(args), WIDTH)(*call_arguments(args, wrt, lanes))
    assert len(tangents) == WIDTH
    assert value4 == value
    for k, lane in enumerate(lanes):
        expected = tangent if k == 0 else reverse_directional(case, args, lane)
        assert abs(tangents[k] - expected) <= (1e-4 if float32 else 1e-9) * scale, \
            f"{case.name}: direction {k} of width {WIDTH}: {tangents[k]!r} vs {expected!r}"
