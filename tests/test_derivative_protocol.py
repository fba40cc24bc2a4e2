"""One ``Derivative`` protocol (issue 19, item 2): what every transform returns, composition
through it, and the defects it fixed (each test here failed before: third order and
``hessian(grad(f))`` raised ``AttributeError: ... '_arguments'``, the options of ``grad`` of a
derivative were dropped, ``vjp_fn.source`` was a ``property`` object, argnums errors were two
classes, JAX's ``defvjp(fwd, bwd)`` a bare TypeError). References are closed forms or central
differences (tests/fd.py).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nbautodiff as nad

from fd import assert_grad_close, central_diff


def cubic(a, x):
    return math.sin(a) * a ** 3 + a * np.sum(x * x)


def third_of_cubic(a):
    """d^3/da^3 of sin(a) a^3 (the x term is linear in a)."""
    return (6 * math.sin(a) + 18 * a * math.cos(a) - 9 * a * a * math.sin(a)
            - a ** 3 * math.cos(a))


def coupled(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += math.sin(x[i]) * x[i + 1] ** 2 + x[i] * x[i] * x[i + 1]
    return s


def stepped(u0, k, steps):
    u = u0.copy()
    for t in range(steps):
        old = u.copy()
        for i in range(1, u.shape[0] - 1):
            u[i] = old[i] + k * (old[i - 1] - 2.0 * old[i] + old[i + 1]) * old[i]
    return np.sum(u ** 2)


# ---- third order: forward over forward over reverse --------------------------------------------

def test_grad_of_grad_of_grad_is_the_third_derivative():
    """Failed before: AttributeError: 'GradOfDerivative' object has no attribute '_arguments'."""
    a, x = 0.4, np.array([0.5, -1.0, 2.0])
    g3 = nad.grad(nad.grad(nad.grad(cubic)))
    assert math.isclose(g3(a, x), third_of_cubic(a), rel_tol=1e-10)
    assert isinstance(g3, nad.Derivative) and g3.__name__ == "cubic_grad_grad_grad"
    value, third = nad.value_and_grad(nad.grad(nad.grad(cubic)))(a, x)
    assert math.isclose(value, nad.grad(nad.grad(cubic))(a, x), rel_tol=1e-13)
    assert math.isclose(third, third_of_cubic(a), rel_tol=1e-10)
    # mixed: d/dx of d2/da2 (the a-x term a |x|^2 is linear in a: none)
    np.testing.assert_allclose(nad.grad(nad.grad(nad.grad(cubic, 0), 0), 1)(a, x), 0 * x,
                               atol=1e-12)
    with pytest.raises(nad.AutodiffError, match="needs a scalar output"):
        nad.grad(nad.grad(nad.grad(cubic, 0), 1))(a, x)     # the gradient in x is an array


def test_hessian_of_a_gradient_is_the_third_derivative_tensor(rng):
    """Failed before: AttributeError ... '_arguments'. Each slice T[:, :, j] is compared with
    central differences of the Hessian along e_j."""
    x = rng.uniform(-1, 1, 4)
    tensor = nad.hessian(nad.grad(coupled))(x)
    assert tensor.shape == (4, 4, 4)
    hessian = nad.hessian(coupled)
    h = 1e-5
    for j in range(4):
        step = np.zeros(4)
        step[j] = h
        expected = (hessian(x + step) - hessian(x - step)) / (2 * h)
        np.testing.assert_allclose(tensor[:, :, j], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tensor, np.transpose(tensor, (1, 0, 2)), atol=1e-12)
    np.testing.assert_allclose(tensor, np.transpose(tensor, (0, 2, 1)), atol=1e-12)


def test_hessian_of_a_scalar_gradient():
    a, x = -0.7, np.array([0.3, 0.2])
    assert math.isclose(float(nad.hessian(nad.grad(cubic))(a, x)), third_of_cubic(a),
                        rel_tol=1e-10)


# ---- options of a transform of a derivative ---------------------------------------------------

def test_options_of_grad_of_a_derivative_are_applied_or_refused():
    """Failed before: both options were dropped without a word."""
    a, x = 0.4, np.array([0.5, -1.0, 2.0])
    fast = nad.grad(nad.grad(cubic), fastmath=True)
    assert fast.fastmath and fast.primal.fastmath and fast.options["fastmath"]
    assert math.isclose(fast(a, x), nad.grad(nad.grad(cubic))(a, x), rel_tol=1e-12)
    assert "_fm" in fast.source                  # the forward code over the gradient's, fastmath
    checkpointed = nad.grad(nad.grad(stepped, 1), 1, checkpoint=True)
    assert checkpointed.checkpoint is not None and checkpointed.primal.checkpoint is not None
    with pytest.raises(nad.AutodiffError, match="checkpointed loop"):
        checkpointed(np.linspace(0.1, 0.9, 6), 0.2, 3)      # forward over it: refused, named
    with pytest.raises(nad.AutodiffError, match="conflicts"):
        nad.grad(nad.grad(stepped, 1, checkpoint=2), 1, checkpoint=3)


# ---- what every transform returns ---------------------------------------------------------------

def test_every_transform_returns_a_derivative_with_source_primal_and_options(rng):
    x = rng.uniform(-1, 1, 3)
    made = {
        "grad": nad.grad(coupled), "value_and_grad": nad.value_and_grad(coupled),
        "reverse": nad.reverse(coupled, nad.Duplicated),
        "forward": nad.forward(coupled, nad.Dual), "jacfwd": nad.jacfwd(coupled),
        "jacrev": nad.jacrev(coupled), "hessian": nad.hessian(coupled),
        "batch": nad.batch(coupled), "offload": nad.offload(coupled),
    }
    for kind, derived in made.items():
        assert isinstance(derived, nad.Derivative), kind
        assert derived.__name__ == f"coupled_{kind}" and derived.kind == kind
        assert derived.primal is coupled
        assert set(derived.options) == {"checkpoint", "fastmath"}
    out, vjp_fn = nad.vjp(coupled, x)
    assert isinstance(vjp_fn, nad.Derivative) and vjp_fn.__name__ == "coupled_vjp"
    made["jacrev"](x)
    made["jacfwd"](x)
    for derived in (vjp_fn, made["grad"], made["jacrev"], made["jacfwd"], made["hessian"]):
        assert isinstance(derived.source, str) and "def " in derived.source
    assert nad.offload(nad.grad(coupled)).__name__ == "coupled_grad_offload"
    assert nad.batch(nad.grad(coupled)).__name__ == "coupled_grad_batch"


def test_vjp_fn_source_is_the_generated_code():
    """Failed before: ``vjp_fn.source`` was a ``property`` object."""
    _, vjp_fn = nad.vjp(coupled, np.array([0.1, 0.2, 0.3]))
    assert isinstance(vjp_fn.source, str) and "def coupled__rev" in vjp_fn.source
    assert vjp_fn.primal is coupled


def test_lower_gives_the_compiled_call_and_its_arguments(rng):
    x = rng.uniform(-1, 1, 3)
    low = nad.grad(coupled).lower((x,))
    out = low.dispatcher(*low.arguments)
    assert_grad_close(low.assemble(out, low.arguments), nad.grad(coupled)(x), rtol=0, atol=0)
    assert low.variant.source.startswith("# reverse mode of coupled")


def test_unsupported_compositions_say_why(rng):
    x = rng.uniform(-1, 1, 3)
    _, vjp_fn = nad.vjp(coupled, x)
    for make, pattern in [
        (lambda: nad.grad(nad.jacrev(coupled)), "grad of coupled_jacrev is not supported"),
        (lambda: nad.batch(nad.jacfwd(coupled)), "batch of coupled_jacfwd is not supported"),
        (lambda: nad.offload(vjp_fn), "offload of coupled_vjp is not supported"),
        (lambda: nad.reverse(nad.grad(coupled), nad.Duplicated), "reverse of coupled_grad"),
        (lambda: nad.vjp(nad.grad(coupled), x), "vjp of coupled_grad"),
        (lambda: nad.jacrev(nad.grad(coupled)), "use nad.jacfwd"),
        (lambda: nad.grad(nad.offload(coupled)), "runs on a GPU"),
    ]:
        with pytest.raises(nad.AutodiffError, match=pattern):
            make()


def test_batch_of_a_reverse_derivative_runs_its_lowered_call(rng):
    xs, shadows = rng.uniform(-1, 1, (4, 3)), np.zeros((4, 3))
    batched = nad.batch(nad.reverse(coupled, nad.Duplicated, ret="Active"))
    values = batched(xs, shadows, np.ones(4))
    for x, shadow, value in zip(xs, shadows, values):
        assert math.isclose(value, coupled(x), rel_tol=1e-13)
        assert_grad_close(shadow, central_diff(coupled, (x,)), rtol=1e-6, atol=1e-9)


# ---- argnums, rules, activities -----------------------------------------------------------------

def test_argnums_errors_are_one_autodiff_error():
    """Failed before: a ValueError in check_grad, an AutodiffError in grad."""
    x = np.ones(3)
    for call in (lambda: nad.check_grad(coupled, x, argnums=1),
                 lambda: nad.grad(coupled, argnums=1)(x),
                 lambda: nad.jacrev(coupled, argnums=2)(x),
                 lambda: nad.jacfwd(coupled, argnums=-2)(x)):
        with pytest.raises(nad.AutodiffError, match="argnums") as info:
            call()
        assert isinstance(info.value, ValueError)         # what check_grad raised before
        assert type(info.value).__name__ == "ArgnumsError"


@nad.custom_vjp
def softplus(x):
    return math.log1p(math.exp(x))


def softplus_fwd(x):
    e = math.exp(x)
    return math.log1p(e), (e,)


def softplus_bwd(residuals, g):
    (e,) = residuals
    return (g * e / (1.0 + e),)



@nad.custom_vjp
def product(a, b):
    return a * b


def product_fwd(a, b):
    return a * b, (a, b)


def product_bwd(residuals, g):
    a, b = residuals
    return 2.0 * g * b, g * a               # a deliberately wrong rule for a: it is used



def soft_loss(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += softplus(x[i]) * x[i]
    return s


def test_jax_defvjp_fwd_bwd_form(rng):
    """Failed before: TypeError: defvjp() takes 2 positional arguments but 3 were given."""
    softplus.defvjp(softplus_fwd, softplus_bwd)
    product.defvjp(product_fwd, product_bwd)
    x = rng.uniform(-2, 2, 5)
    assert_grad_close(nad.grad(soft_loss)(x), central_diff(soft_loss, (x,)), rtol=1e-6,
                      atol=1e-9, label="loss through a defvjp(fwd, bwd) rule")
    assert nad.grad(product, (0, 1))(2.0, 3.0) == (6.0, 2.0)
    with pytest.raises(nad.AutodiffError, match="needs 2 positional parameters"):
        nad.custom_vjp(lambda x: x).defvjp(softplus_fwd, lambda g: g)


def test_a_rust_style_return_activity_gets_a_hint():
    with pytest.raises(nad.AutodiffError, match="pass it as ret='Active'"):
        nad.reverse(softplus_fwd, nad.Active, nad.Active)
    with pytest.raises(nad.AutodiffError, match="pass it as ret='Dual'"):
        nad.forward(coupled, nad.Dual, "Dual")
