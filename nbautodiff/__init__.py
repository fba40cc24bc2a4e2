"""nbautodiff: compiled automatic differentiation of loop-style numeric Python.

The public API (a contract: README.md, sections "From Python" and "In a notebook")::

    import nbautodiff as nad
    nad.grad(fun, argnums=0)            nad.value_and_grad(fun, argnums=0)
    nad.vjp(fun, *primals)              nad.reverse(fun, *activities, ret="Active")
    nad.jacrev(fun, argnums=0)           nad.jacfwd(fun, argnums=0)
    nad.jvp(fun, primals, tangents)     nad.forward(fun, *activities, ret="Dual", width=1)
    nad.hessian(fun, argnums=0)         (forward over reverse; also jvp(grad(f)), grad(grad(f)))
    nad.check_grad(fun, *args, argnums=0)
    nad.batch(fun, in_axes=0, out_axes=0, parallel=False)   (vmap semantics; batch(grad(f)))
    nad.vmap(fun, in_axes=0, out_axes=0)                     (JAX's name for batch)
    nad.offload(fun, devices=None)      (prange loops as CUDA kernels; offload(grad(f)))
    nad.grad(fun, checkpoint=True); for t in nad.checkpointed(range(T)): ...   (checkpointing)
    nad.checkpoint(fun), nad.remat(fun)  (the same, as JAX's decorator)
    nad.custom_vjp(fun), fun.defvjp(rule) or fun.defvjp(fwd, bwd)   nad.non_differentiable(fun)
    nad.Const, nad.Active, nad.Duplicated, nad.DuplicatedOnly, nad.AutodiffError
    nad.Derivative                       (what every transform returns; see nbautodiff.api.derivative)
    nad.cache.info(), nad.cache.clear(), nad.cache.forced()   (the artifact cache, on disk)

Every transform takes ``fastmath=`` and ``checkpoint=``; ``grad``, ``value_and_grad``, ``vjp``,
``jvp``, ``jacfwd`` and ``jacrev`` take ``has_aux=`` (JAX). See the JAX table in README.md.

In IPython: ``%load_ext nbautodiff`` registers ``%%autodiff``, ``%%batch`` and ``%%offload``.
"""
from nbautodiff import allocator
allocator.settle()
from nbautodiff.api.activities import (Active, Const, Dual, DualOnly, Dualv, Duplicated,
                                       DuplicatedOnly)
from nbautodiff.errors import AutodiffError
from nbautodiff.api.derivative import Derivative
from nbautodiff.api.reverse import grad, hessian, reverse, value_and_grad
from nbautodiff.api.pullback import jacrev, vjp
from nbautodiff.frontend.checkpoint_markers import checkpointed
from nbautodiff.api.forward import forward, jacfwd, jvp
from nbautodiff.api.batch import batch, vmap
from nbautodiff.api.remat import checkpoint, remat
from nbautodiff.frontend.declarations import custom_vjp, non_differentiable
from nbautodiff import cache

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "vjp", "jacrev", "reverse", "forward", "jvp", "jacfwd", "hessian",
    "batch", "vmap", "offload", "check_grad", "checkpointed", "checkpoint", "remat",
    "custom_vjp", "non_differentiable", "Derivative",
    "Const", "Active", "Duplicated", "DuplicatedOnly", "Dual", "DualOnly", "Dualv",
    "AutodiffError", "cache", "__version__",
]


def check_grad(fun, *args, argnums=0, **options):
    """Compare ``grad(fun)`` with central differences at ``args``; see :mod:`nbautodiff.checks.check`."""
    from nbautodiff.checks.check import check_grad as _check_grad
    return _check_grad(fun, *args, argnums=argnums, **options)


def load_ipython_extension(ipython):
    """``%load_ext nbautodiff``: register the cell magics, and start the background warm-up
    (:mod:`nbautodiff.warmup`: numba's initialisation and the runtime helpers, so that the
    first derivative does not wait for them; ``NBAUTODIFF_WARMUP=0`` turns it off)."""
    from nbautodiff import warmup
    from nbautodiff.magics import load_ipython_extension as _load
    warmup.start()
    _load(ipython)


def offload(fun, devices=None):
    """``fun`` with its ``prange`` loops run on CUDA GPU(s); see :mod:`nbautodiff.api.offload`
    (imported on first use: it imports ``numba.cuda``)."""
    from nbautodiff.api.offload import offload as _offload
    return _offload(fun, devices)
