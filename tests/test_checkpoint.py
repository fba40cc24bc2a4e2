"""Checkpointed loops (``nad.checkpointed`` and ``checkpoint=``), their memory report and refusals.

Every checkpointed gradient is compared with the plain (fully taped) gradient, to rounding, and
with central differences at random inputs, for time loops of several shapes: a 1-D stencil with
a copy back or with swapped arrays, a scalar recurrence, branches, nested inner loops and an
inner ``while``, helper calls that write arrays, whole-array operations, state changed after
the loop; trip counts 0, 1, 2 and ones that are not
a multiple of the segment length; every schedule (segments of sqrt(T), of K, binomial). The
schedules themselves are simulated on their own: each iteration is reversed once, in order,
from the state it had in the forward sweep. Within the suite's time budget (tests/budget.py)
each list of trip counts runs every other one; ``NBAUTODIFF_FULL_CORPUS=1`` runs all.
"""
from __future__ import annotations

import inspect
import math

import numba
import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.kernels import checkpoint as runtime
from nbautodiff.errors import TapeMemoryError

import budget
from fd import assert_grad_close, central_diff, max_abs

RTOL, ATOL = 1e-6, 1e-8
SCHEDULES = [True, 3, "binomial", ("binomial", 2)]


def check(fun, args, argnums=0, checkpoint=True, expect_checkpointed=True):
    """Checkpointed gradient == plain gradient (to rounding) == central differences; returns
    the checkpointed derived function (its ``.memory`` is that of this call)."""
    plain = nad.grad(fun, argnums=argnums)
    derived = nad.grad(fun, argnums=argnums, checkpoint=checkpoint)
    expected = plain(*_copies(args))
    got = derived(*_copies(args))
    expected, got = _tuple(expected, argnums), _tuple(got, argnums)
    fd = _tuple(central_diff(fun, args, argnums), argnums)
    scale = max(1.0, max_abs(*fd))
    for k, (g, e, f) in enumerate(zip(got, expected, fd)):
        assert_grad_close(g, e, rtol=1e-11, atol=1e-13 * max(1.0, max_abs(e)),
                          label=f"{fun.__name__} arg {k}: checkpointed vs plain")
        assert_grad_close(g, f, rtol=RTOL, atol=ATOL * scale,
                          label=f"{fun.__name__} arg {k}: checkpointed vs central differences")
    assert bool(derived.memory.checkpointed) == expect_checkpointed, derived.memory
    return derived


def line_of(fun, text: str) -> int:
    """The line of ``fun``'s file holding ``text`` (first occurrence in ``fun``)."""
    lines, first = inspect.getsourcelines(fun)
    return first + next(k for k, line in enumerate(lines) if text in line)


def _copies(args):
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _tuple(value, argnums):
    return value if isinstance(argnums, tuple) else (value,)


# -- time loops -----------------------------------------------------------------------------------

def heat(u0, alpha, beta, steps):
    """Nonlinear 1-D heat equation (explicit Euler, a cubic sink), copied back each step."""
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in range(steps):
        unew[0] = 0.0
        unew[n - 1] = 0.0
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - beta * u[i] ** 3
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def heat_marked(u0, alpha, beta, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in nad.checkpointed(range(steps)):
        unew[0] = 0.0
        unew[n - 1] = 0.0
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - beta * u[i] ** 3
        for i in range(n):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def heat_every_three(u0, alpha, beta, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.empty(n)
    for t in nad.checkpointed(range(steps), every=3):
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - beta * u[i] ** 3
        for i in range(1, n - 1):
            u[i] = unew[i]
    return u[1] * u[n - 2] + u[n // 2] ** 2


SNAPSHOTS = 2


def heat_binomial(u0, alpha, beta, steps):
    n = u0.shape[0]
    u = u0.copy()
    unew = np.zeros(n)
    for t in nad.checkpointed(range(steps), snapshots=SNAPSHOTS):
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - beta * u[i] ** 3
        for i in range(1, n - 1):
            u[i] = unew[i]
    s = 0.0
    for i in range(n):
        s += math.sin(u[i])
    return s


def recurrence(x0, p, steps):
    """A scalar state: the logistic-like map x <- x + 0.1 sin(p x), with a running sum."""
    x = x0
    total = 0.0
    for t in range(steps):
        x = x + 0.1 * math.sin(p * x)
        total += x * x * (t + 1)
    return total + x


def branchy(u0, c, steps):
    """Branches on the state and on the step inside the time loop."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        for i in range(n):
            if u[i] > 0.0:
                u[i] = u[i] * c - 0.1 * u[i] * u[i]
            else:
                u[i] = math.tanh(u[i]) + 0.5 * c
        if t % 3 == 1:
            first = u[0]
            for i in range(n - 1):
                u[i] = u[i + 1]
            u[n - 1] = math.cos(first)
    s = 0.0
    for i in range(n):
        s += u[i] * (i + 1)
    return s


def nested(u0, w, steps):
    """Inner loops (two sweeps per step, a relaxation) and an inner while loop."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        for sweep in range(2):
            for i in range(1, n - 1):
                u[i] = (1.0 - w) * u[i] + 0.5 * w * math.sin(u[i - 1] + u[i + 1])
        k = 0
        while k < n - 1 and u[k] * u[k] < 4.0:
            u[k] = u[k] * 0.9 + 0.1 * u[k + 1] * u[k + 1]
            k += 1
    return u[0] * u[0] + u[n - 1] + u[n // 2] ** 3


def advance(u, tmp, dt):
    """A helper the time loop calls: one step, written into both arrays."""
    n = u.shape[0]
    for i in range(n):
        tmp[i] = u[i] + dt * math.sin(u[(i + 1) % n])
    for i in range(n):
        u[i] = tmp[i] * tmp[i] * 0.5 + 0.5 * u[i]


def with_helper(u0, dt, steps):
    n = u0.shape[0]
    u = u0.copy()
    tmp = np.zeros(n)
    for t in range(steps):
        advance(u, tmp, dt)
    return u[0] + u[n - 1] * u[1]


def changed_after(u0, c, steps):
    """The loop reads an array and a scalar that the code after it changes, and carries a
    scalar assigned first inside it (``last``) out of the loop."""
    n = u0.shape[0]
    u = u0.copy()
    coef = np.empty(n)
    for i in range(n):
        coef[i] = c * (i + 1) / n
    scale = c * c
    for t in range(steps):
        for i in range(n):
            u[i] = u[i] + 0.1 * math.sin(coef[i] * u[i]) * scale
        last = u[0]
    for i in range(n):
        coef[i] = coef[i] * 2.0
    scale = scale + 1.0
    s = 0.0
    for i in range(n):
        s += u[i] * coef[i] * scale
    if steps > 0:
        s += last
    return s


def int_state(u0, steps):
    """An integer array written in the loop decides a branch: inactive state to checkpoint."""
    n = u0.shape[0]
    u = u0.copy()
    hits = np.zeros(n, np.int64)
    for t in range(steps):
        for i in range(n):
            if hits[i] % 2 == 0:
                u[i] = u[i] * u[i] * 0.5 + 0.1
            else:
                u[i] = math.sqrt(u[i] * u[i] + 1.0)
            if u[i] > 0.3:
                hits[i] += 1
    s = 0.0
    for i in range(n):
        s += u[i]
    return s


def two_loops(u0, steps):
    """Two outermost time loops, and one inside a branch: the option checkpoints all three."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        for i in range(n):
            u[i] = math.sin(u[i]) + 0.5 * u[i]
    if steps > 1:
        for t in range(steps, 0, -2):
            for i in range(n):
                u[i] = u[i] * u[i] * 0.3 + 0.2
    for t in range(steps):
        for i in range(n):
            u[i] = math.cos(u[i]) * u[i]
    s = 0.0
    for i in range(n):
        s += u[i]
    return s


def with_continue(u0, steps):
    """``continue`` in the time loop (a flag after normalisation; the loop keeps its count)."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        if t % 3 == 1:
            continue
        for i in range(n):
            u[i] = math.sin(u[i]) + 0.1 * t
    return u[0] * u[n - 1]


def stencil_then_map(u0, alpha, steps):
    """A linear stencil (reversed as gathers: a transposed stencil) then a nonlinear map that
    needs the tape, in one time loop."""
    n = u0.shape[0]
    u = u0.copy()
    unew = np.zeros(n)
    for t in range(steps):
        for i in range(1, n - 1):
            unew[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(n):
            u[i] = math.sin(unew[i])
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def swapping(u0, steps):
    """The time-stepping idiom: compute into ``unew``, then swap the two arrays."""
    n = u0.shape[0]
    u = u0.copy()
    unew = np.zeros(n)
    for t in range(steps):
        for i in range(1, n - 1):
            unew[i] = u[i] + 0.2 * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - 0.1 * u[i] ** 3
        u, unew = unew, u
    return u[1] * u[2] + u[n // 2] ** 2


def rotating(u0, w, steps):
    """Three arrays rotated each step, and two inactive ones swapped."""
    n = u0.shape[0]
    a = u0.copy()
    b = np.ones(n)
    c = np.ones(n)
    mask = np.zeros(n)
    other = np.ones(n)
    for t in range(steps):
        for i in range(n):
            c[i] = a[i] * b[i] * w + math.sin(a[i]) * mask[i] + 0.3 * c[i]
        a, b, c = c, a, b
        mask, other = other, mask
    s = 0.0
    for i in range(n):
        s += a[i] + b[i] * c[i]
    return s


def fresh_each_step(u0, steps):
    """A work array allocated in every iteration (not carried to the next one)."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        tmp = np.zeros(n)
        for i in range(n):
            tmp[i] = math.sin(u[i]) * u[(i + 1) % n]
        for i in range(n):
            u[i] = tmp[i] + 0.5 * u[i]
    return u[0] * u[1]


def diffusion_2d(u0, kappa, steps):
    """A 2-D state (five-point stencil with a nonlinear conductivity), swapped each step."""
    rows, cols = u0.shape
    u = u0.copy()
    unew = u0.copy()
    for t in range(steps):
        for i in range(1, rows - 1):
            for j in range(1, cols - 1):
                c = kappa * (1.0 + u[i, j] * u[i, j])
                unew[i, j] = u[i, j] + c * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1]
                                            + u[i, j + 1] - 4.0 * u[i, j])
        u, unew = unew, u
    s = 0.0
    for i in range(rows):
        for j in range(cols):
            s += u[i, j] * u[i, j] * (i + 1)
    return s


def array_steps(u0, w, steps):
    """Whole-array operations in the time loop, on an array bound afresh in each step."""
    n = u0.shape[0]
    u = u0.copy()
    for t in range(steps):
        v = np.tanh(u) * w + 0.1 * u
        for i in range(n):
            u[i] = v[i] * v[i] + 0.3 * u[i]
    return np.sum(u * u)


def rnn(h0, W, steps):
    """The state rebound to a new array in each step, as recurrent networks are written."""
    h = h0.copy()
    for t in range(steps):
        h = np.tanh(W @ h)
    return np.sum(h)


def in_place(u, steps):
    """Writes its argument: callers of reverse() see the primal's effect (Enzyme semantics)."""
    for t in range(steps):
        for i in range(u.shape[0]):
            u[i] = u[i] - 0.1 * u[i] ** 3
    return u[0] + u[1]


# -- equal to the plain gradient and to central differences --------------------------------------

@pytest.mark.parametrize("steps", budget.share([0, 1, 2, 7, 10], 2))
@pytest.mark.parametrize("checkpoint", SCHEDULES)
def test_heat_function_option(rng, steps, checkpoint):
    args = (rng.uniform(-1.0, 1.0, 7), 0.2, 0.3, steps)
    check(heat, args, (0, 1, 2), checkpoint)


@pytest.mark.parametrize("fun", [heat_marked, heat_every_three, heat_binomial])
@pytest.mark.parametrize("steps", budget.share([0, 1, 2, 5, 11], 2))
def test_heat_marked_loop(rng, fun, steps):
    args = (rng.uniform(-1.0, 1.0, 6), 0.2, 0.3, steps)
    derived = check(fun, args, (0, 1, 2), checkpoint=None)
    assert "_nad_ckpt.plan" in derived.source


@pytest.mark.parametrize("steps", budget.share([0, 1, 2, 9], 2))
@pytest.mark.parametrize("checkpoint", SCHEDULES)
def test_scalar_recurrence(rng, steps, checkpoint):
    check(recurrence, (rng.uniform(0.2, 1.0), rng.uniform(0.5, 2.0), steps), (0, 1), checkpoint)


@pytest.mark.parametrize("fun,extra", [(branchy, 0.7), (nested, 0.6), (with_helper, 0.3),
                                       (changed_after, 0.8)])
@pytest.mark.parametrize("steps", budget.share([1, 2, 8], 2))
@pytest.mark.parametrize("checkpoint", [True, ("binomial", 2)])
def test_loop_shapes(rng, fun, extra, steps, checkpoint):
    args = (rng.uniform(-0.9, 0.9, 6), extra, steps)
    check(fun, args, (0, 1), checkpoint)


@pytest.mark.parametrize("steps", budget.share([0, 1, 2, 5, 8], 2))
@pytest.mark.parametrize("checkpoint", SCHEDULES)
def test_swapped_arrays(rng, steps, checkpoint):
    check(swapping, (rng.uniform(-1.0, 1.0, 7), steps), 0, checkpoint)


@pytest.mark.parametrize("steps", budget.share([1, 2, 7], 2))
@pytest.mark.parametrize("checkpoint", [True, ("binomial", 2)])
def test_rotated_arrays_and_arrays_allocated_in_each_step(rng, steps, checkpoint):
    check(rotating, (rng.uniform(-1.0, 1.0, 5), 0.7, steps), (0, 1), checkpoint)
    check(fresh_each_step, (rng.uniform(-1.0, 1.0, 5), steps), 0, checkpoint)


@pytest.mark.parametrize("checkpoint", [True, ("binomial", 2)])
def test_whole_array_operations_in_the_loop(rng, checkpoint):
    check(array_steps, (rng.uniform(-1.0, 1.0, 5), 0.7, 6), (0, 1), checkpoint)


def test_state_bound_to_new_arrays_is_refused(rng):
    args = (rng.uniform(size=3), rng.uniform(size=(3, 3)), 4)
    assert_grad_close(nad.grad(rnn)(*args), central_diff(rnn, args, 0), rtol=RTOL, atol=ATOL)
    with pytest.raises(nad.AutodiffError, match="'h' is bound to a new array") as caught:
        nad.grad(rnn, checkpoint=True)(*args)
    assert caught.value.lineno == line_of(rnn, "h = np.tanh")


@pytest.mark.parametrize("checkpoint", [True, ("binomial", 2)])
def test_two_dimensional_state(rng, checkpoint):
    check(diffusion_2d, (rng.uniform(-0.5, 0.5, (5, 4)), 0.1, 6), (0, 1), checkpoint)


def test_vjp_takes_the_option(rng):
    u0 = rng.uniform(-1.0, 1.0, 6)
    out, pullback = nad.vjp(heat, u0, 0.2, 0.3, 9, checkpoint=True)
    d_u0, d_alpha, d_beta, _ = pullback(2.0)
    assert out == pytest.approx(heat(u0, 0.2, 0.3, 9), rel=1e-13)
    assert_grad_close(d_u0, 2.0 * central_diff(heat, (u0, 0.2, 0.3, 9), 0), rtol=RTOL, atol=ATOL)
    assert_grad_close(d_beta, 2.0 * central_diff(heat, (u0, 0.2, 0.3, 9), 2), rtol=RTOL,
                      atol=ATOL)


@pytest.mark.parametrize("steps", budget.share([0, 1, 2, 7], 2))
@pytest.mark.parametrize("checkpoint", [True, "binomial"])
def test_continue_in_the_loop(rng, steps, checkpoint):
    check(with_continue, (rng.uniform(-1.0, 1.0, 4), steps), 0, checkpoint)


@pytest.mark.parametrize("checkpoint", [True, ("binomial", 2)])
def test_composes_with_transposed_stencils(rng, checkpoint):
    derived = check(stencil_then_map, (rng.uniform(-1.0, 1.0, 9), 0.2, 6), 0, checkpoint)
    assert "_nad_j" in derived.source and "_nad_ckpt.plan" in derived.source


@pytest.mark.parametrize("checkpoint", [True, "binomial"])
def test_written_argument_is_written_back(rng, checkpoint):
    u0 = rng.uniform(-1.0, 1.0, 5)
    rev = nad.reverse(in_place, nad.Duplicated, nad.Const, checkpoint=checkpoint)
    u, shadow = u0.copy(), np.zeros(5)
    value = rev(u, shadow, 7, 1.0)
    expected = u0.copy()
    assert value == pytest.approx(in_place(expected, 7), rel=1e-14)
    np.testing.assert_allclose(u, expected, rtol=1e-14)
    assert_grad_close(shadow, central_diff(in_place, (u0, 7), 0), rtol=RTOL, atol=ATOL)
    assert rev.memory.checkpointed


@pytest.mark.parametrize("steps", budget.share([0, 3, 8], 2))
@pytest.mark.parametrize("checkpoint", [True, "binomial"])
def test_inactive_integer_state(rng, steps, checkpoint):
    check(int_state, (rng.uniform(0.1, 0.9, 5), steps), 0, checkpoint)


@pytest.mark.parametrize("steps", budget.share([0, 1, 5], 2))
def test_every_outermost_loop_is_checkpointed(rng, steps):
    derived = check(two_loops, (rng.uniform(0.1, 0.9, 5), steps), 0, True)
    assert len(derived.memory.checkpointed) == 3
    assert derived.source.count("_nad_ckpt.plan") == 3


def test_value_and_grad_and_reverse(rng):
    u0 = rng.uniform(-1.0, 1.0, 6)
    value, gradient = nad.value_and_grad(heat, checkpoint="binomial")(u0.copy(), 0.2, 0.3, 9)
    assert value == pytest.approx(heat(u0, 0.2, 0.3, 9), rel=1e-13)
    assert_grad_close(gradient, central_diff(heat, (u0, 0.2, 0.3, 9), 0), rtol=RTOL, atol=ATOL)
    rev = nad.reverse(heat, nad.Duplicated, nad.Active, nad.Const, nad.Const, checkpoint=4)
    shadow = np.zeros_like(u0)
    value, d_alpha = rev(u0.copy(), shadow, 0.2, 0.3, 9, 1.0)
    assert value == pytest.approx(heat(u0, 0.2, 0.3, 9), rel=1e-13)
    assert_grad_close(shadow, gradient, rtol=1e-11, atol=1e-14)
    assert_grad_close(d_alpha, central_diff(heat, (u0, 0.2, 0.3, 9), 1), rtol=RTOL, atol=ATOL)
    assert rev.memory.checkpointed == ((line_of(heat, "for t in"), "segments of 4"),)


def test_loop_without_tape_is_left_alone(rng):
    def linear(u0, steps):
        u = u0.copy()
        for t in nad.checkpointed(range(steps)):
            for i in range(u.shape[0]):
                u[i] = 0.5 * u[i] + 1.0
        return u[0] + u[1]

    derived = check(linear, (rng.uniform(size=4), 5), 0, checkpoint=None,
                    expect_checkpointed=False)
    assert "_nad_ckpt" not in derived.source
    assert derived.memory.checkpoint_bytes == 0


def test_marker_runs_as_python_and_under_numba(rng):
    u0 = rng.uniform(-1.0, 1.0, 6)
    expected = heat(u0, 0.2, 0.3, 7)
    assert heat_marked(u0, 0.2, 0.3, 7) == pytest.approx(expected, rel=1e-14)
    assert numba.njit(heat_marked)(u0, 0.2, 0.3, 7) == pytest.approx(expected, rel=1e-12)
    assert numba.njit(heat_every_three)(u0, 0.2, 0.3, 7) == \
        pytest.approx(heat_every_three(u0, 0.2, 0.3, 7), rel=1e-12)


# -- memory ---------------------------------------------------------------------------------------

def test_memory_report_smaller_with_checkpoints(rng):
    u0 = rng.uniform(-1.0, 1.0, 200)
    plain = nad.grad(heat)
    plain(u0, 0.2, 0.3, 400)
    assert plain.memory.checkpoint_bytes == 0 and not plain.memory.checkpointed
    assert plain.tape_bytes >= 400 * 198 * 8                # one value per point and step
    for schedule in (True, "binomial"):
        derived = nad.grad(heat, checkpoint=schedule)
        derived(u0, 0.2, 0.3, 400)
        report = derived.memory
        assert report.checkpoint_bytes > 0 and report.tape_bytes > 0
        assert derived.tape_bytes == report.total_bytes < plain.tape_bytes / 4, report
        assert "checkpoints" in str(report)
        assert f"loop at line {line_of(heat, 'for t in')}" in str(report)


def test_memory_of_callees_is_counted(rng):
    derived = nad.grad(with_helper)
    derived(rng.uniform(size=50), 0.3, 20)
    assert derived.memory.tape_bytes >= 20 * 50 * 8            # snapshots of u for each call


def test_tape_larger_than_the_limit_is_refused_before_allocating(rng, monkeypatch):
    u0 = rng.uniform(-1.0, 1.0, 1000)              # a tape of 1000 x 10,000 values (80 MB)
    monkeypatch.setenv("NBAUTODIFF_MEMORY_LIMIT", "32M")
    with pytest.raises(TapeMemoryError) as caught:
        nad.grad(heat)(u0, 0.2, 0.3, 10_000)
    message = str(caught.value)
    assert "in function 'heat'" in message and "32.0 MiB" in message
    assert "checkpoint=True" in message and "nad.checkpointed" in message
    assert isinstance(caught.value, nad.AutodiffError) and isinstance(caught.value, MemoryError)
    derived = nad.grad(heat, checkpoint=True)     # fits with checkpoints: about 2.5 MB
    gradient = derived(u0, 0.2, 0.3, 10_000)
    assert derived.tape_bytes < 4 << 20
    monkeypatch.setenv("NBAUTODIFF_MEMORY_LIMIT", "2M")
    with pytest.raises(TapeMemoryError, match="checkpoint buffers"):
        nad.grad(heat, checkpoint=1)(u0, 0.2, 0.3, 10_000)   # a slot per step: 160 MB
    monkeypatch.delenv("NBAUTODIFF_MEMORY_LIMIT")
    small = rng.uniform(-1.0, 1.0, 8)
    assert_grad_close(nad.grad(heat, checkpoint=True)(small, 0.2, 0.3, 50),
                      nad.grad(heat)(small, 0.2, 0.3, 50), rtol=1e-11, atol=1e-14)
    assert np.all(np.isfinite(gradient))


# -- refusals -------------------------------------------------------------------------------------

def leaves_early(u0, steps):
    u = u0.copy()
    for t in nad.checkpointed(range(steps)):
        for i in range(u.shape[0]):
            u[i] = math.sin(u[i])
        if u[0] > 10.0:
            break
    return u[0]


def nested_marker(u0, steps):
    u = u0.copy()
    for s in range(2):
        for t in nad.checkpointed(range(steps)):
            u[0] = math.sin(u[0])
    return u[0]


def misplaced_marker(u0, steps):
    r = nad.checkpointed(range(steps))
    return u0[0]


def variable_segment(u0, steps, k):
    u = u0.copy()
    for t in nad.checkpointed(range(steps), every=k):
        u[0] = math.sin(u[0])
    return u[0]


def local_segment(u0, steps):
    SNAPSHOTS = steps // 2                           # a local that hides the global constant
    u = u0.copy()
    for t in nad.checkpointed(range(steps), every=SNAPSHOTS):
        u[0] = math.sin(u[0])
    return u[0]


def both_schedules(u0, steps):
    u = u0.copy()
    for t in nad.checkpointed(range(steps), every=2, snapshots=3):
        u[0] = math.sin(u[0])
    return u[0]


def carried_copy(u0, steps):
    u = u0.copy()
    for t in nad.checkpointed(range(steps)):
        v = u.copy()
        for i in range(u.shape[0]):
            v[i] = math.sin(u[i])
        u = v
    return u[0]


def rebound_after(u0, steps):
    u = u0.copy()
    shift = np.ones(u0.shape[0])
    for t in nad.checkpointed(range(steps)):
        for i in range(u.shape[0]):
            u[i] = math.sin(u[i]) + shift[i]
    if steps > 1:         # (a binding of its own, unconditional: another variable, see bindings.py)
        shift = np.zeros(3)
    return u[0] + shift[0]


def rebound_after_tracked(u0, steps):
    """Like :func:`rebound_after`, but the reverse pass needs ``coef``, so it tracks (and
    restores) its binding: checkpointing applies."""
    u = u0.copy()
    coef = np.ones(u0.shape[0])
    for t in nad.checkpointed(range(steps)):
        for i in range(u.shape[0]):
            u[i] = math.sin(u[i] * coef[i])
    coef = np.zeros(3)
    return u[0] + coef[0]


@pytest.mark.parametrize("fun,text,words", [
    (leaves_early, "nad.checkpointed", "break or return can leave early"),
    (nested_marker, "nad.checkpointed", "nested in another loop"),
    (misplaced_marker, "nad.checkpointed", "outside the header of a for loop"),
    (variable_segment, "nad.checkpointed", "every= must be a positive integer constant"),
    (local_segment, "nad.checkpointed", "every= must be a positive integer constant"),
    (both_schedules, "nad.checkpointed", "exclude each other"),
    (carried_copy, "u = v", "bound to a new array in an iteration of a checkpointed loop"),
])
def test_markers_that_cannot_apply_are_refused_at_their_line(rng, fun, text, words):
    line = line_of(fun, text)
    args = (rng.uniform(size=4), 3) + ((2,) if fun is variable_segment else ())
    with pytest.raises(nad.AutodiffError) as caught:
        nad.grad(fun)(*args)
    assert caught.value.lineno == line, str(caught.value)
    assert words in str(caught.value)
    assert f"line {line}" in str(caught.value)


def test_function_option_refuses_a_loop_that_carries_new_arrays(rng):
    def growing(u0, steps):
        u = u0.copy()
        for t in range(steps):
            u = u.copy()
            u[0] = math.sin(u[0] * u[1])
        return u[0]

    u0 = rng.uniform(size=4)
    assert_grad_close(nad.grad(growing)(u0, 3), central_diff(growing, (u0, 3), 0),
                      rtol=RTOL, atol=ATOL)
    with pytest.raises(nad.AutodiffError, match="'u' is bound to a new array") as caught:
        nad.grad(growing, checkpoint=True)(u0, 3)
    assert caught.value.lineno == line_of(growing, "u = u.copy()")


def test_array_rebound_after_the_loop_is_refused_unless_tracked(rng):
    with pytest.raises(nad.AutodiffError, match="bound to another array after it") as caught:
        nad.grad(rebound_after)(rng.uniform(size=3), 4)
    assert caught.value.lineno == line_of(rebound_after, "nad.checkpointed")
    check(rebound_after_tracked, (rng.uniform(size=5), 4), 0, checkpoint=None)


@pytest.mark.parametrize("option", ["fast", 0, -3, ("binomial", 0), 2.5, "sqrt:4"])
def test_bad_option_values(option):
    with pytest.raises(nad.AutodiffError, match="checkpoint"):
        nad.grad(heat, checkpoint=option)


@pytest.mark.parametrize("option,expected", [
    (True, (runtime.SEGMENTS, 0)), ("sqrt", (runtime.SEGMENTS, 0)), (12, (runtime.SEGMENTS, 12)),
    ("12", (runtime.SEGMENTS, 12)), ("binomial", (runtime.BINOMIAL, 0)),
    ("revolve:5", (runtime.BINOMIAL, 5)), (("binomial", 7), (runtime.BINOMIAL, 7)),
    (None, None), (False, None)])
def test_option_values(option, expected):
    from nbautodiff.frontend.checkpoint_markers import parse_option
    assert parse_option(option) == expected


# -- the schedules on their own -------------------------------------------------------------------

def simulate(trips, kind, parameter):
    """Run a plan on a symbolic state (the iteration it holds); returns (iterations advanced
    without the tape, slots, largest segment taped)."""
    rows, forward, slots = runtime.schedule(trips, kind, parameter)
    state, saved, advanced, reversed_, longest = 0, {}, 0, [], 0
    for k, (action, a, b, slot) in enumerate(rows.tolist()):
        assert 0 <= slot < slots
        if action == runtime.SAVE:
            saved[slot] = state
        elif action == runtime.RESTORE:
            state = saved[slot]
        elif action == runtime.ADVANCE:
            assert k < forward or state == a
            assert state == a, (k, state, a)
            state, advanced = b, advanced + b - a
        else:
            assert k >= forward and state == a, (k, state, a)
            state, longest = b, max(longest, b - a)
            reversed_ += list(range(b - 1, a - 1, -1))
        if k == forward - 1:
            assert state == trips                  # the forward sweep leaves the final state
    assert reversed_ == list(range(trips - 1, -1, -1))
    assert state == trips                          # the primal state is left as it was found
    return advanced, slots, longest


@pytest.mark.parametrize("trips", list(range(0, 30)) + [99, 100, 101, 1000])
def test_schedules_reverse_every_iteration_once_in_order(trips):
    for kind, parameter in [(runtime.SEGMENTS, 0), (runtime.SEGMENTS, 1), (runtime.SEGMENTS, 7),
                            (runtime.BINOMIAL, 0), (runtime.BINOMIAL, 1), (runtime.BINOMIAL, 3),
                            (runtime.BINOMIAL, 40)]:
        simulate(trips, kind, parameter)


def test_schedule_costs():
    advanced, slots, longest = simulate(10_000, runtime.SEGMENTS, 0)
    assert (advanced, slots, longest) == (10_000, 101, 100)     # sqrt(T) slots and tape
    advanced, slots, longest = simulate(10_000, runtime.BINOMIAL, 0)
    assert slots <= 40 and longest == 1 and advanced <= 3 * 10_000
    advanced, _, _ = simulate(10_000, runtime.BINOMIAL, 100)
    assert advanced <= 3 * 10_000                    # C(100 + 3, 3) >= T: three runs at most
    advanced, _, _ = simulate(10_000, runtime.BINOMIAL, 140)
    assert advanced <= 2 * 10_000                    # C(140 + 2, 2) >= T: two runs at most


# -- %%autodiff --checkpoint ------------------------------------------------------------------------

MAGIC_CELL = '''import math
import numpy as np

def relax(u0, steps):
    u = u0.copy()
    for t in range(steps):
        for i in range(u.shape[0]):
            u[i] = u[i] - 0.1 * u[i] ** 3
    return u[0] + u[1]
'''


@pytest.fixture(scope="module")
def ip():
    from IPython.testing.globalipapp import get_ipython
    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbautodiff")
    return shell


def test_magic_checkpoint_option_shows_the_memory(ip, rng):
    ip.user_ns.update(u_example=rng.uniform(-1.0, 1.0, 6))
    result = ip.run_cell_magic("autodiff", "--checkpoint binomial --check (u_example, 12)",
                               MAGIC_CELL)
    derived = result.names["relax_grad"]
    assert derived.checkpoint == (runtime.BINOMIAL, 0)
    # lines of a cell count the %%autodiff line as line 1: the time loop is on line 7
    assert derived.memory.checkpointed == ((7, "binomial, about (6 T)^(1/3) snapshots"),)
    assert "memory of the check: tape" in repr(result) and "loop at line 7" in repr(result)
    assert result.checks["relax_grad"].ok
    u0 = ip.user_ns["u_example"]
    assert_grad_close(derived(u0, 12), central_diff(ip.user_ns["relax"], (u0, 12), 0),
                      rtol=RTOL, atol=ATOL)
    plain = ip.run_cell_magic("autodiff", "--check (u_example, 12)", MAGIC_CELL)
    assert "no loop checkpointed" in repr(plain)


def test_magic_checkpoint_without_value_is_sqrt_and_bad_values_are_usage_errors(ip):
    from IPython.core.error import UsageError
    result = ip.run_cell_magic("autodiff", "--checkpoint", MAGIC_CELL)
    assert result.names["relax_grad"].checkpoint == (runtime.SEGMENTS, 0)
    with pytest.raises(UsageError, match="--checkpoint"):
        ip.run_cell_magic("autodiff", "--checkpoint often", MAGIC_CELL)
