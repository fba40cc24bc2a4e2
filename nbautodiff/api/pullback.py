"""The pullback and the Jacobian by reverse mode: ``vjp`` and ``jacrev``.

``vjp(fun, *primals)`` runs the forward sweep once (a :class:`~.reverse.Session`) and returns
the pullback (:class:`Pullback`), which runs the reverse sweep alone from the residuals kept
(:mod:`.residuals`), as many times as asked; ``jacrev`` is one ``vjp`` and ``width``
cotangents per reverse sweep of its pullback (reverse vector mode).
"""
from __future__ import annotations

import numpy as np

from nbautodiff.frontend import declarations
from nbautodiff.frontend.source import function_source
from . import remat, residuals
from .activities import Active, Const, Duplicated
from .derivative import Derivative, is_float_array, refuse_derivative, resolved_argnums
from .forward import JacobianFunction
from .reverse import (ReverseFunction, Session, checked_width, differentiable_output,
                      zero_cotangent)


class Pullback(Derivative):
    """``vjp_fn`` of ``out, vjp_fn = vjp(fun, *primals)``: ``vjp_fn(cotangent)`` returns one
    adjoint per primal. The forward sweep ran once, in :func:`vjp`; each call runs the reverse
    sweep alone from its residuals (``.residuals_kept``; where the generated code cannot be
    split, each call runs the whole derivative from copies of the arguments). ``.source`` is
    the code each call runs, ``.memory`` the tape of the last call."""

    kind = "vjp"

    def __init__(self, fun, session: Session):
        derived = session.derived
        self._session = session
        self._derived = derived
        super().__init__(fun, checkpoint=derived.checkpoint, fastmath=derived.fastmath,
                         name_of=derived.function_name)

    @property
    def function_name(self) -> str:
        return self._derived.function_name

    @property
    def parameters(self) -> list[str]:
        return ["cotangent"]

    @property
    def residuals_kept(self) -> bool:
        return self._session.residuals_kept

    @property
    def source(self) -> str:
        return self._session.source

    @property
    def vector_refused(self) -> str | None:
        """Why :meth:`batched` ran one reverse sweep per cotangent rather than one sweep
        carrying them all (reverse vector mode); None where it did not."""
        return self._session.vector_refused

    def __call__(self, cotangent):
        adjoints = self._session.pullback(cotangent)
        self.memory = self._session.memory
        return adjoints

    def batched(self, cotangents) -> list:
        """``[self(c) for c in cotangents]`` in one compiled call from the residuals kept (the
        forward sweep is not run again): one reverse sweep carrying the N cotangents as adjoint
        lanes, or where :attr:`vector_refused` says it cannot, N reverse sweeps in a loop;
        counted in ``residuals.SWEEPS["batches"]``."""
        residuals.SWEEPS["batches"] += 1
        adjoints = self._session.pullbacks(list(cotangents))
        self.memory = self._session.memory
        return adjoints

    def lower_refusal(self) -> str:
        return ("a pullback runs the reverse sweep alone, from residuals; forward mode over it "
                "is not supported (differentiate grad(f) or the function instead)")


def vjp(fun, *primals, has_aux=False, checkpoint=None, fastmath=False):
    """``(fun(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` returns one adjoint per primal.

    The forward sweep runs once, here: ``vjp_fn`` keeps its residuals and runs the reverse sweep
    alone on each call (:class:`Pullback`). The adjoint of an argument that cannot be
    differentiated (an int, an int array) is None. The output may be a scalar or an array
    (then the cotangent is an array of its shape), or a tuple of those, nested to any depth:
    then the cotangent is a tuple with one entry per output, nested the same way, where outputs
    that cannot be differentiated (ints) take None (or 0). ``has_aux``: ``fun`` returns
    ``(out, aux)``; the result is ``(out, vjp_fn, aux)`` (JAX). ``checkpoint``, ``fastmath``:
    as for :func:`grad`.
    """
    refuse_derivative(fun, "vjp", "reverse mode over a derivative is not supported; use "
                      "forward mode over it (nad.jvp, nad.jacfwd, nad.hessian)")
    inner, checkpoint = remat.resolve(fun, checkpoint)
    probe = ReverseFunction(inner, [Const] * _parameter_count(inner))
    checked = probe.checked_arguments(primals)
    activities = [Duplicated if is_float_array(v) else
                  Active if isinstance(v, (float, np.floating)) else Const for v in checked]
    derived = ReverseFunction(inner, activities, "Active", checkpoint, fastmath)
    session = Session(derived, checked, activities, has_aux="vjp" if has_aux else None)
    pullback = Pullback(fun, session)
    if has_aux:
        return session.value[0], pullback, session.value[1]
    return session.value, pullback


def _parameter_count(fun) -> int:
    return len(function_source(declarations.program_target(fun)).parameters)


def jacrev(fun, argnums=0, has_aux=False, width=8, checkpoint=None,
           fastmath=False) -> JacobianFunction:
    """The Jacobian of ``fun`` by reverse mode: ``jacrev(fun, argnums)(*args)``.

    One forward sweep (:func:`vjp`), then from the residuals it kept ceil(n / ``width``)
    reverse sweeps for an output of n elements, each carrying ``width`` cotangents
    (:meth:`Pullback.batched`, reverse vector mode; where the sweep cannot carry lanes,
    ``.latest.vector_refused`` says why and each call runs ``width`` sweeps). For an output of shape ``S`` and an argument of shape ``A``
    (``()`` for a float) the Jacobian has shape ``S + A``; a tuple ``argnums`` gives a tuple of
    Jacobians. A function returning a tuple (nested to any depth) gives a tuple of Jacobians,
    one per output, nested the same way (as in JAX), each of them a tuple for a tuple
    ``argnums``; an output that cannot be differentiated (an int) has None. Arguments that are
    not differentiated may be anything ``fun`` accepts; differentiated ones must be floats or
    float arrays. ``has_aux``: ``fun`` returns ``(out, aux)``; the result is
    ``(jacobian, aux)``. ``checkpoint``, ``fastmath``: as for :func:`grad`.
    """
    refuse_derivative(fun, "jacrev", "reverse mode over a derivative is not supported; use "
                      "nad.jacfwd (forward over reverse: nad.hessian(f) is jacfwd(grad(f)))")
    width = checked_width(width)
    inner, checkpoint = remat.resolve(fun, checkpoint)

    def jacobian(owner, *args):
        wrt = resolved_argnums(argnums, len(args), f"{len(args)} arguments")
        for k in wrt:
            value = args[k]
            if not (is_float_array(value) or isinstance(value, (float, np.floating))):
                raise TypeError(f"jacrev cannot differentiate with respect to argument {k} of "
                                f"type {type(value).__name__}: pass a float or a float array")
        found = vjp(inner, *args, has_aux=has_aux, checkpoint=checkpoint, fastmath=fastmath)
        out, pullback = found[0], found[1]
        owner.latest = pullback

        def of_output(value, path):
            if isinstance(value, tuple):
                return tuple(of_output(v, path + (k,)) for k, v in enumerate(value))
            if not differentiable_output(value):          # an int output: no Jacobian
                return None
            blocks = _jacobian_blocks(np.shape(value), lambda basis: _placed(out, path, basis),
                                      pullback, args, wrt, width)
            return tuple(blocks) if isinstance(argnums, (tuple, list)) else blocks[0]

        result = of_output(out, ())
        return (result, found[2]) if has_aux else result

    return JacobianFunction(fun, "jacrev", jacobian, checkpoint=checkpoint, fastmath=fastmath)


def _jacobian_blocks(shape: tuple, cotangent_with, pullback, args, wrt,
                     width: int) -> list[np.ndarray]:
    """The Jacobians of one output of ``shape`` w.r.t. ``args[k]`` for k in ``wrt``: one
    cotangent per element of the output, ``cotangent_with(basis vector)``, ``width`` per call
    of the pullback."""
    blocks = [np.empty(shape + np.shape(args[k])) for k in wrt]
    count = int(np.prod(shape))
    for start in range(0, count, width):
        indices = [np.unravel_index(flat, shape) for flat in range(start, min(start + width,
                                                                               count))]
        cotangents = []
        for index in indices:
            basis = np.zeros(shape)
            basis[index] = 1.0
            cotangents.append(cotangent_with(basis if shape else 1.0))
        for index, adjoints in zip(indices, pullback.batched(cotangents)):
            for block, k in zip(blocks, wrt):
                block[index] = adjoints[k]
    return blocks


def _placed(out, path: tuple, value):
    """A cotangent for output ``out`` that is ``value`` at ``path`` and zero elsewhere."""
    if not path:
        return value
    return tuple(_placed(o, path[1:], value) if k == path[0] else zero_cotangent(o)
                 for k, o in enumerate(out))
