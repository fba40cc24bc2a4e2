"""The JAX surface (issue 19, item 5): ``has_aux``, ``vmap``, ``checkpoint``/``remat``, the
reusable pullback, reverse vector mode (``width``), ``fastmath``/``checkpoint`` on every
transform, and the cost of ``jacrev`` counted in sweeps. Every derivative is compared with
central differences (tests/fd.py) at random points.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff.api import residuals

from fd import assert_grad_close, central_diff, directional_diff, fd_vjp


def energy(x, a):
    y = x.copy()
    s = 0.0
    for i in range(y.shape[0]):
        y[i] = math.sin(y[i]) * a                 # an array overwritten: restored backwards
        s = s * 0.5 + y[i] * y[i] + a * x[i]      # a scalar overwritten: on the tape
    return s


def energy_and_aux(x, a):
    y = x.copy()
    s = 0.0
    for i in range(y.shape[0]):
        y[i] = math.sin(y[i]) * a
        s = s * 0.5 + y[i] * y[i] + a * x[i]
    return s, (y, x.shape[0])


def recurrent(x, a):
    out = np.empty(x.shape[0])
    h = 0.0
    for i in range(x.shape[0]):
        h = math.tanh(a * h + x[i])
        out[i] = h * h
    return out


def recurrent_and_aux(x, a):
    out = np.empty(x.shape[0])
    h = 0.0
    for i in range(x.shape[0]):
        h = math.tanh(a * h + x[i])
        out[i] = h * h
    return out, h


def scale_in_place(x, c):
    for i in range(x.shape[0]):
        x[i] = x[i] * c + math.sin(x[i])
    return np.sum(x * x)


def heat(u0, k, steps):
    u = u0.copy()
    for t in range(steps):
        old = u.copy()
        for i in range(1, u.shape[0] - 1):
            u[i] = old[i] + k * (old[i - 1] - 2.0 * old[i] + old[i + 1]) * old[i]
    return np.sum(u ** 2)


def heat_profile(u0, k, steps):
    u = u0.copy()
    for t in range(steps):
        old = u.copy()
        for i in range(1, u.shape[0] - 1):
            u[i] = old[i] + k * (old[i - 1] - 2.0 * old[i] + old[i + 1]) * old[i]
    return u * u


def matvec_loss(W, x):
    n, m = W.shape
    z = np.zeros(n)
    for i in range(n):
        for j in range(m):
            z[i] += W[i, j] * x[j]
    s = 0.0
    for i in range(n):
        s += math.tanh(z[i]) ** 2
    return s


def fd_jacobian(fun, args, k):
    """Rows of the Jacobian of array-valued ``fun`` w.r.t. ``args[k]``, by central differences."""
    n = np.size(fun(*[a.copy() if isinstance(a, np.ndarray) else a for a in args]))
    return np.array([central_diff(lambda *a, i=i: fun(*a).reshape(-1)[i], args, k)
                     for i in range(n)])


@pytest.fixture
def x(rng):
    return rng.uniform(-1, 1, 6)


# ---- has_aux ------------------------------------------------------------------------------------

def test_has_aux_on_grad_and_value_and_grad(x):
    a = 0.7
    gradient, (y, n) = nad.grad(energy_and_aux, has_aux=True)(x, a)
    assert_grad_close(gradient, central_diff(energy, (x, a)), rtol=1e-6, atol=1e-9)
    expected_y, expected_n = energy_and_aux(x, a)[1]
    np.testing.assert_array_equal(y, expected_y)
    assert n == expected_n
    (value, (y2, _)), (gx, ga) = nad.value_and_grad(energy_and_aux, (0, 1), has_aux=True)(x, a)
    assert math.isclose(value, energy(x, a), rel_tol=1e-13)
    np.testing.assert_array_equal(y2, expected_y)
    assert_grad_close(gx, central_diff(energy, (x, a), 0), rtol=1e-6, atol=1e-9)
    assert math.isclose(ga, central_diff(energy, (x, a), 1), rel_tol=1e-6)


def test_has_aux_on_vjp_jvp_jacrev_jacfwd(x, rng):
    a = 0.4
    out, vjp_fn, h = nad.vjp(recurrent_and_aux, x, a, has_aux=True)
    np.testing.assert_allclose(out, recurrent(x, a), rtol=1e-14)
    assert math.isclose(h, recurrent_and_aux(x, a)[1], rel_tol=1e-14)
    cotangent = rng.normal(size=x.shape)
    dx, da = vjp_fn(cotangent)
    assert_grad_close(dx, fd_vjp(recurrent, (x, a), cotangent, 0), rtol=1e-6, atol=1e-9)
    assert math.isclose(da, fd_vjp(recurrent, (x, a), cotangent, 1), rel_tol=1e-6)
    expected = fd_jacobian(recurrent, (x, a), 0)
    for jacobian in (nad.jacrev, nad.jacfwd):
        J, h2 = jacobian(recurrent_and_aux, has_aux=True)(x, a)
        np.testing.assert_allclose(J, expected, rtol=1e-6, atol=1e-8)
        assert math.isclose(h2, h, rel_tol=1e-14)
    v = rng.normal(size=x.shape)
    out2, tangent, h3 = nad.jvp(recurrent_and_aux, (x, a), (v, 0.0), has_aux=True)
    np.testing.assert_allclose(tangent, expected @ v, rtol=1e-6, atol=1e-8)
    assert math.isclose(h3, h, rel_tol=1e-14)


def test_has_aux_needs_a_pair(x):
    with pytest.raises(nad.AutodiffError, match="has_aux"):
        nad.grad(energy, has_aux=True)(x, 0.5)
    with pytest.raises(nad.AutodiffError, match="has_aux"):
        nad.jacfwd(recurrent, has_aux=True)(x, 0.5)


# ---- vmap ---------------------------------------------------------------------------------------

def layer(params, x):
    w, b = params
    s = 0.0
    for i in range(x.shape[0]):
        s += math.tanh(w[i] * x[i] + b)
    return s


def test_vmap_is_batch_with_jax_in_axes(rng):
    w, xs, bs = rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=5)
    mapped = nad.vmap(layer, in_axes=(None, 0))          # a tuple argument, passed whole
    assert isinstance(mapped, nad.Derivative) and mapped.__name__ == "layer_batch"
    np.testing.assert_allclose(mapped((w, 0.3), xs), [layer((w, 0.3), x) for x in xs],
                               rtol=1e-14)
    per_element = nad.vmap(layer, in_axes=((None, 0), 0))  # its elements with axes of their own
    np.testing.assert_allclose(per_element((w, bs), xs),
                               [layer((w, b), x) for b, x in zip(bs, xs)], rtol=1e-14)
    columns = nad.vmap(energy, in_axes=(-1, None))        # a negative axis
    np.testing.assert_allclose(columns(np.ascontiguousarray(xs.T), 0.5),
                               [energy(x, 0.5) for x in xs], rtol=1e-14)
    gradients = nad.vmap(nad.grad(energy), in_axes=(0, None))(xs, 0.5)
    for x, g in zip(xs, gradients):
        assert_grad_close(g, central_diff(energy, (x, 0.5)), rtol=1e-6, atol=1e-9)


def test_vmap_errors_name_the_argument(rng):
    w, xs = rng.normal(size=3), rng.normal(size=(5, 3))
    with pytest.raises(nad.AutodiffError, match="tuple of 2"):
        nad.vmap(layer, in_axes=((None, 0, 0), 0))((w, 0.3), xs)
    with pytest.raises(nad.AutodiffError, match="is a tuple but the argument"):
        nad.vmap(energy, in_axes=((0, 0), None))(xs, 0.5)
    with pytest.raises(nad.AutodiffError, match="axis_name"):
        nad.vmap(energy, axis_name="i")
    with pytest.raises(nad.AutodiffError, match="batches no argument"):
        nad.vmap(layer, in_axes=((None, None), None))


# ---- checkpoint / remat as a decorator ----------------------------------------------------------

def test_checkpoint_decorator_is_the_checkpoint_option(rng):
    u0, k, steps = rng.uniform(0.1, 0.9, 8), 0.05, 30
    marked = nad.checkpoint(heat)
    assert nad.remat is nad.checkpoint and marked(u0, k, steps) == heat(u0, k, steps)
    by_marker = nad.grad(marked, (0, 1))
    by_option = nad.grad(heat, (0, 1), checkpoint=True)
    plain = nad.grad(heat, (0, 1))
    got, expected, reference = by_marker(u0, k, steps), by_option(u0, k, steps), \
        plain(u0, k, steps)
    assert by_marker.checkpoint == by_option.checkpoint is not None and plain.checkpoint is None
    for g, e, r, label in zip(got, expected, reference, ("u0", "k")):
        assert_grad_close(g, e, rtol=0, atol=0, label=f"marker vs option, {label}")
        assert_grad_close(g, r, rtol=1e-12, atol=1e-14, label=f"checkpointed vs plain, {label}")
    assert_grad_close(got[0], central_diff(heat, (u0, k, steps)), rtol=1e-6, atol=1e-9)
    assert by_marker.memory.checkpointed and not plain.memory.checkpointed
    unmarked = nad.grad(marked, checkpoint=False)          # the transform's option wins
    unmarked(u0, k, steps)
    assert not unmarked.memory.checkpointed

    @nad.remat(schedule="binomial")
    def heat_binomial(u0, k, steps):
        u = u0.copy()
        for t in range(steps):
            old = u.copy()
            for i in range(1, u.shape[0] - 1):
                u[i] = old[i] + k * (old[i - 1] - 2.0 * old[i] + old[i + 1]) * old[i]
        return np.sum(u ** 2)

    binomial = nad.grad(heat_binomial)
    assert_grad_close(binomial(u0, k, steps), reference[0], rtol=1e-12, atol=1e-14)
    assert "binomial" in str(binomial.memory)


def test_checkpointed_jacobian_and_pullback_match_differences(rng):
    u0, k, steps = rng.uniform(0.1, 0.9, 5), 0.05, 12
    J = nad.jacrev(nad.checkpoint(heat_profile), width=2)(u0, k, steps)
    np.testing.assert_allclose(J, fd_jacobian(heat_profile, (u0, k, steps), 0), rtol=1e-6,
                               atol=1e-9)


# ---- the reusable pullback ----------------------------------------------------------------------

def test_pullback_runs_the_forward_sweep_once(x, rng):
    a = 0.6
    residuals.reset_sweeps()
    out, vjp_fn = nad.vjp(recurrent, x, a)
    assert residuals.SWEEPS["forward"] == 1 and vjp_fn.residuals_kept
    cotangents = [rng.normal(size=x.shape) for _ in range(4)]
    first = None
    for cotangent in cotangents:
        dx, da = vjp_fn(cotangent)
        assert_grad_close(dx, fd_vjp(recurrent, (x, a), cotangent, 0), rtol=1e-6, atol=1e-9)
        assert math.isclose(da, fd_vjp(recurrent, (x, a), cotangent, 1), rel_tol=1e-6,
                            abs_tol=1e-12)
        first = first or (dx, da)
    again = vjp_fn(cotangents[0])
    assert_grad_close(again[0], first[0], rtol=0, atol=0, label="the first cotangent again")
    assert residuals.SWEEPS["forward"] == 1 and residuals.SWEEPS["reverse"] == 5


def test_pullback_of_functions_restoring_arrays_and_writing_arguments(x):
    saved = x.copy()
    out, vjp_fn = nad.vjp(scale_in_place, x, 1.3)
    expected = saved.copy()
    assert math.isclose(out, scale_in_place(expected, 1.3), rel_tol=1e-14)
    np.testing.assert_array_equal(x, expected)            # left as the function leaves it
    reference = central_diff(scale_in_place, (saved, 1.3), (0, 1))
    for seed in (1.0, -2.0, 1.0):
        dx, dc = vjp_fn(seed)
        assert_grad_close(dx, seed * reference[0], rtol=1e-6, atol=1e-9)
        assert math.isclose(dc, seed * reference[1], rel_tol=1e-6)
    _, energy_fn = nad.vjp(energy, saved, 0.8)              # an array restored backwards
    for seed in (1.0, 3.0, 1.0):
        assert_grad_close(energy_fn(seed)[0], seed * central_diff(energy, (saved, 0.8)),
                          rtol=1e-6, atol=1e-9)


def test_checkpointed_pullback_called_again(rng):
    """The reverse sweep of a checkpointed loop writes its tape again; each call starts from the
    residuals as the forward sweep left them."""
    u0, k, steps = rng.uniform(0.1, 0.9, 5), 0.05, 9
    out, vjp_fn = nad.vjp(heat_profile, u0, k, steps, checkpoint=True)
    assert vjp_fn.residuals_kept and vjp_fn.checkpoint is not None
    for _ in range(2):
        for cotangent in (np.ones(5), rng.normal(size=5)):
            du, dk, _ = vjp_fn(cotangent)
            assert_grad_close(du, fd_vjp(heat_profile, (u0, k, steps), cotangent, 0),
                              rtol=1e-6, atol=1e-9)
    assert vjp_fn.memory.checkpointed


# ---- reverse vector mode ------------------------------------------------------------------------

def test_reverse_width_gives_one_adjoint_per_seed(x):
    a, seeds = 0.9, (1.0, -0.5, 2.0)
    residuals.reset_sweeps()
    vector = nad.reverse(energy, nad.Duplicated, nad.Active, width=3)
    shadows = [np.zeros_like(x) for _ in seeds]
    value, adjoints_a = vector(x, *shadows, a, *seeds)
    assert residuals.SWEEPS["forward"] == 1 and residuals.SWEEPS["reverse"] == 1
    assert vector.vector_refused is None                  # one sweep carrying the 3 seeds
    assert math.isclose(value, energy(x, a), rel_tol=1e-14)
    reference = central_diff(energy, (x, a), (0, 1))
    single = nad.reverse(energy, nad.Duplicated, nad.Active)
    for seed, shadow, adjoint in zip(seeds, shadows, adjoints_a):
        assert_grad_close(shadow, seed * reference[0], rtol=1e-6, atol=1e-9)
        assert math.isclose(adjoint, seed * reference[1], rel_tol=1e-6)
        alone = np.zeros_like(x)
        assert single(x, alone, a, seed)[1] == adjoint
        np.testing.assert_array_equal(alone, shadow)
    assert vector.parameters == ["x", "d0_x", "d1_x", "d2_x", "a", "seed0", "seed1", "seed2"]


def test_reverse_width_with_array_seeds(x, rng):
    seeds = [rng.normal(size=x.shape) for _ in range(2)]
    shadows = [np.zeros_like(x) for _ in seeds]
    vector = nad.reverse(recurrent, nad.Duplicated, nad.Const, ret="ActiveOnly", width=2)
    assert vector(x, *shadows, 0.3, *seeds) is None
    for seed, shadow in zip(seeds, shadows):
        assert_grad_close(shadow, fd_vjp(recurrent, (x, 0.3), seed, 0), rtol=1e-6, atol=1e-9)


def fused(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i]) * a * x[i]      # a loop whose reversal runs it again, fused
    return s


def test_reverse_width_where_the_reverse_part_computes_the_value(x):
    vector = nad.reverse(fused, nad.Duplicated, nad.Active, width=2)
    d1, d2 = np.zeros_like(x), np.zeros_like(x)
    value, (a1, a2) = vector(x, d1, d2, 0.3, 1.0, -1.0)
    assert math.isclose(value, fused(x, 0.3), rel_tol=1e-14)
    reference = central_diff(fused, (x, 0.3), (0, 1))
    assert_grad_close(d1, reference[0], rtol=1e-6, atol=1e-9)
    assert_grad_close(d2, -reference[0], rtol=1e-6, atol=1e-9)
    assert math.isclose(a1, reference[1], rel_tol=1e-6) and a2 == -a1
    out, vjp_fn = nad.vjp(fused, x, 0.3)
    assert math.isclose(out, value, rel_tol=1e-14)
    for seed in (2.0, 1.0):
        assert_grad_close(vjp_fn(seed)[0], seed * reference[0], rtol=1e-6, atol=1e-9)


def fused_in_place(x, a):
    s = 0.0
    for i in range(x.shape[0]):
        x[i] = x[i] * a
        s += math.sin(x[i]) * a
    return s


def test_vjp_of_a_fused_loop_writing_its_argument(x):
    saved = x.copy()
    out, vjp_fn = nad.vjp(fused_in_place, x, 0.7)
    expected = saved.copy()
    assert math.isclose(out, fused_in_place(expected, 0.7), rel_tol=1e-14)
    np.testing.assert_array_equal(x, expected)           # written once, not twice
    reference = central_diff(fused_in_place, (saved, 0.7), (0, 1))
    for seed in (1.0, -3.0):
        dx, da = vjp_fn(seed)
        assert_grad_close(dx, seed * reference[0], rtol=1e-6, atol=1e-9)
        assert math.isclose(da, seed * reference[1], rel_tol=1e-6)


def test_jacrev_costs_one_forward_sweep_and_a_reverse_sweep_per_width_outputs(rng):
    """jacrev of n outputs: one forward sweep, then ceil(n / width) reverse sweeps from its
    residuals, each carrying width cotangents (reverse vector mode), one per batch of the
    pullback."""
    x = rng.uniform(-1, 1, 7)
    for width in (1, 3, 8):
        residuals.reset_sweeps()
        J = nad.jacrev(recurrent, width=width)(x, 0.5)
        assert dict(residuals.SWEEPS) == {"forward": 1, "reverse": math.ceil(7 / width),
                                          "batches": math.ceil(7 / width)}
    np.testing.assert_allclose(J, fd_jacobian(recurrent, (x, 0.5), 0), rtol=1e-6, atol=1e-9)


# ---- fastmath and checkpoint on every transform -------------------------------------------------

def test_fastmath_on_every_transform(rng):
    W, x = rng.normal(size=(4, 3)), rng.normal(size=3)
    reference = central_diff(matvec_loss, (W, x), (0, 1))
    v = rng.normal(size=3)
    derived = {
        "grad": nad.grad(matvec_loss, 1, fastmath=True),
        "value_and_grad": nad.value_and_grad(matvec_loss, 1, fastmath=True),
        "jacrev": nad.jacrev(matvec_loss, 1, fastmath=True),
        "jacfwd": nad.jacfwd(matvec_loss, 1, fastmath=True),
        "hessian": nad.hessian(matvec_loss, 1, fastmath=True),
        "reverse": nad.reverse(matvec_loss, nad.Const, nad.Duplicated, fastmath=True),
        "forward": nad.forward(matvec_loss, nad.Const, nad.Dual, fastmath=True),
    }
    for kind, d in derived.items():
        assert d.fastmath, kind
    assert_grad_close(derived["grad"](W, x), reference[1], rtol=1e-6, atol=1e-9)
    assert_grad_close(derived["value_and_grad"](W, x)[1], reference[1], rtol=1e-6, atol=1e-9)
    assert_grad_close(derived["jacrev"](W, x), reference[1], rtol=1e-6, atol=1e-9)
    assert_grad_close(derived["jacfwd"](W, x), reference[1], rtol=1e-6, atol=1e-9)
    shadow = np.zeros(3)
    derived["reverse"](W, x, shadow, 1.0)
    assert_grad_close(shadow, reference[1], rtol=1e-6, atol=1e-9)
    assert math.isclose(derived["forward"](W, x, v)[1], reference[1] @ v, rel_tol=1e-6)
    gradient = nad.grad(matvec_loss, 1)
    fd_hessian = np.array([(gradient(W, x + h) - gradient(W, x - h)) / 2e-5
                           for h in np.eye(3) * 1e-5])
    np.testing.assert_allclose(derived["hessian"](W, x), fd_hessian, rtol=1e-5, atol=1e-8)
    for kind in ("grad", "value_and_grad", "reverse", "forward", "jacfwd", "jacrev"):
        assert "_fm" in derived[kind].source, kind       # the fastmath variant ran
    out, vjp_fn = nad.vjp(matvec_loss, W, x, fastmath=True)
    assert vjp_fn.fastmath
    assert_grad_close(vjp_fn(1.0)[1], reference[1], rtol=1e-6, atol=1e-9)
    out, tangent = nad.jvp(matvec_loss, (W, x), (None, v), fastmath=True)
    assert math.isclose(tangent, directional_diff(matvec_loss, (W, x), (1,), (v,)),
                        rel_tol=1e-6)


def test_checkpoint_on_every_transform(rng):
    u0, k, steps = rng.uniform(0.1, 0.9, 6), 0.05, 16
    reference = central_diff(heat, (u0, k, steps))
    for make in (nad.grad, lambda f, **o: (lambda *a: nad.value_and_grad(f, **o)(*a)[1])):
        assert_grad_close(make(heat, checkpoint=True)(u0, k, steps), reference, rtol=1e-6,
                          atol=1e-9)
    out, vjp_fn = nad.vjp(heat, u0, k, steps, checkpoint=True)
    assert_grad_close(vjp_fn(1.0)[0], reference, rtol=1e-6, atol=1e-9)
    assert vjp_fn.memory.checkpointed
    assert_grad_close(nad.jacrev(heat, checkpoint=True)(u0, k, steps), reference, rtol=1e-6,
                      atol=1e-9)
    shadow = np.zeros_like(u0)
    rev = nad.reverse(heat, nad.Duplicated, nad.Const, nad.Const, checkpoint=True)
    rev(u0, shadow, k, steps, 1.0)
    assert_grad_close(shadow, reference, rtol=1e-6, atol=1e-9)
    assert rev.memory.checkpointed
    # forward mode keeps no tape: the option is accepted, readable, and changes nothing
    for derived in (nad.jacfwd(heat, checkpoint=True),
                    nad.forward(heat, nad.Dual, nad.Const, nad.Const, checkpoint=True)):
        assert derived.checkpoint is not None
    assert_grad_close(nad.jacfwd(heat, checkpoint=True)(u0, k, steps), reference, rtol=1e-6,
                      atol=1e-9)
    v = rng.normal(size=6)
    _, tangent = nad.jvp(heat, (u0, k, steps), (v, None, None), checkpoint=True)
    assert math.isclose(tangent, reference @ v, rel_tol=1e-6)
    # second order over a checkpointed reverse sweep is refused, naming the loop
    with pytest.raises(nad.AutodiffError, match="checkpointed loop"):
        nad.hessian(heat, checkpoint=True)(u0, k, steps)


# ---- the kept residuals over the corpus ---------------------------------------------------------

import corpus  # noqa: E402


@pytest.mark.parametrize("case", corpus.share(corpus.CORPUS, 12), ids=lambda c: c.name)
def test_pullback_called_three_times_equals_the_gradient(case):
    """The reverse sweep run again from the residuals (seeds 1, -2, then 0.5 and -1 in one
    call, then 1 again) gives the gradient, scaled, each time: the arrays it restores, accumulates into or writes its tape into are put
    back between calls. A twelfth of the corpus (``NBAUTODIFF_FULL_CORPUS=1``: all of it)."""
    def fresh(args):
        return [a.copy() if isinstance(a, np.ndarray) else a for a in args]

    args = case.make_args(np.random.default_rng(7))
    gradient = nad.grad(case.fun, case.argnums)(*fresh(args))
    gradient = gradient if isinstance(case.argnums, tuple) else (gradient,)
    out, vjp_fn = nad.vjp(case.fun, *fresh(args))
    tolerance = 1e-4 if case.is_float32(args) else 1e-10
    lanes = vjp_fn.batched([0.5, -1.0])                 # both seeds in one compiled call
    for seed, adjoints in [(1.0, vjp_fn(1.0)), (-2.0, vjp_fn(-2.0)), (0.5, lanes[0]),
                           (-1.0, lanes[1]), (1.0, vjp_fn(1.0))]:
        for k, g in zip(case.wrt(), gradient):
            np.testing.assert_allclose(np.asarray(adjoints[k], dtype=np.float64),
                                       seed * np.asarray(g, dtype=np.float64),
                                       rtol=tolerance, atol=tolerance * 1e-2,
                                       err_msg=f"{case.name}, argument {k}, seed {seed}")
