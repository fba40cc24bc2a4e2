"""How runtime helpers are compiled: once per real argument type, never per constant.

numba compiles a dispatcher once per tuple of argument types. Called from compiled code, a
constant int argument is typed ``Literal[int](value)``, so a plain ``numba.njit`` helper is
compiled again for every distinct constant the caller passes (the tape's growth for top 0 and
for a running top, a product for each constant size...), each a full numba compilation.
:func:`helper` is ``numba.njit`` whose dispatcher types every call from compiled code with
its arguments' real types (:func:`numba.core.types.unliteral`): a helper compiles once per
real signature, and the caller converts its constants. A helper with ``inline="always"`` is
inlined where numba's untyped inliner resolves the call and compiled as a dispatcher where it
does not (the tape's helpers called from forward mode over generated reverse code, in
``nad.hessian``): it is a :class:`HelperDispatcher` too.
"""
from __future__ import annotations

from numba.core import types
from numba.core.registry import CPUDispatcher


class HelperDispatcher(CPUDispatcher):
    """A CPU dispatcher that compiles calls from compiled code for their unliteral types."""

    def get_call_template(self, args, kws):
        """numba's call template for ``args``/``kws`` with every literal type replaced by its
        real type (``Literal[int](0)`` by ``int64``)."""
        return super().get_call_template(tuple(types.unliteral(a) for a in args),
                                         {k: types.unliteral(v) for k, v in kws.items()})


def helper(function=None, *, cache=True, **options):
    """``numba.njit(function, cache=cache, **options)`` as a :class:`HelperDispatcher`; used
    bare (``@helper``) or with options (``@helper(fastmath=True)``)."""
    def wrap(function):
        dispatcher = HelperDispatcher(py_func=function, locals={},
                                      targetoptions=dict(options, nopython=True))
        if cache:
            dispatcher.enable_caching()
        return dispatcher
    return wrap if function is None else wrap(function)
