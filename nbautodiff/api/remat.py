"""``nad.checkpoint(f)`` / ``nad.remat(f)``: JAX's rematerialisation decorator, as a marker.

``checkpoint(f)`` returns a :class:`Checkpointed` wrapper: calling it calls ``f``, and every
transform of the API that keeps a tape (``grad``, ``value_and_grad``, ``vjp``, ``jacrev``,
``reverse``, ``hessian``...) reads the marker and differentiates ``f`` as if given
``checkpoint=True`` (or the schedule given to the decorator): its outermost loops that need a
tape store their state every sqrt(T) iterations and recompute the rest (see
:mod:`nbautodiff.transforms.reverse.checkpointing`). A ``checkpoint=`` option given to the
transform itself wins over the marker's. Forward mode keeps no tape: there the marker changes
nothing.

The marker is read by the API only: a checkpointed function called from another differentiated
function is differentiated as ``f`` itself (mark the loops there with ``nad.checkpointed``).
"""
from __future__ import annotations

import functools

from nbautodiff.frontend import checkpoint_markers


class Checkpointed:
    """``f`` marked for checkpointed derivatives; see the module docstring. ``.schedule`` is the
    :class:`~nbautodiff.frontend.checkpoint_markers.Schedule`, ``.py_func`` the plain function."""

    def __init__(self, fun, schedule=True):
        if isinstance(fun, Checkpointed):
            fun, schedule = fun.fun, schedule if schedule is not True else fun.schedule
        functools.update_wrapper(self, fun, updated=())
        self.fun = fun
        self.schedule = checkpoint_markers.parse_option(schedule)
        py_func = getattr(fun, "py_func", None)
        self.py_func = py_func if py_func is not None else fun

    def __call__(self, *args):
        return self.fun(*args)

    def __repr__(self) -> str:
        return f"<nbautodiff checkpointed {getattr(self.fun, '__qualname__', self.fun)!r}>"


def checkpoint(fun=None, schedule=True):
    """Mark ``fun`` so that its derivatives checkpoint every loop that needs a tape
    (``grad(checkpoint(f))`` is ``grad(f, checkpoint=True)``). ``schedule``: as the
    ``checkpoint=`` option (True or 'sqrt', a segment length K, 'binomial', ('binomial', S)).
    Usable as ``@nad.checkpoint`` or ``@nad.checkpoint(schedule='binomial')``."""
    if fun is None:
        return lambda f: Checkpointed(f, schedule)
    return Checkpointed(fun, schedule)


remat = checkpoint


def resolve(fun, option):
    """``(function, checkpoint option)``: the function inside a :class:`Checkpointed` marker and
    the marker's schedule where ``option`` is None; anything else as it is."""
    if isinstance(fun, Checkpointed):
        return fun.fun, fun.schedule if option is None else option
    return fun, option
