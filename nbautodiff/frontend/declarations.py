"""Custom derivatives: user rules for reverse mode, and functions declared non-differentiable.

``custom_vjp(fun)`` wraps ``fun`` in a :class:`CustomVJP`; ``@wrapped.defvjp`` gives it a rule
with the convention of :mod:`nbautodiff.rules` templates::

    @nad.custom_vjp
    def softplus(x):
        return math.log1p(math.exp(x))

    @softplus.defvjp
    def softplus_vjp(g, z, x):        # g: adjoint of the result, z: the result, then the arguments
        return g / (1.0 + math.exp(-x))   # one adjoint per argument (a tuple for several)

The rule returns one adjoint per argument, in order: a number for a scalar argument, an array
of the argument's shape for an array argument (added into its shadow), ``None`` where there is
none; a single argument's adjoint may be returned bare. Adjoints of arguments that are not
differentiated (ints, constants) are ignored. ``non_differentiable(fun)`` wraps ``fun`` in a
:class:`NonDifferentiable`: calls to it from differentiated code are treated as constants.

How the rest of the pipeline sees them: both wrappers carry the marker attribute
``__nad_derivative__`` (``"custom"`` or ``"nondiff"``, read by :func:`kind_of`) and the original
function as ``.py_func``, like a numba dispatcher, so its source and signature are found as
usual. Normalisation annotates a call to a :class:`CustomVJP` as a ``"user"`` call whose
``TARGET`` (:mod:`nbautodiff.annotations`) is the wrapper (arguments are restored and snapshotted for its reverse call like
any callee's) and a call to a :class:`NonDifferentiable` as ``"nondiff"`` (no derivative flows
through it). Their compiled primals and derivative variants are built by
:mod:`nbautodiff.pipeline.custom_variants`.

Contract on the wrapped function: it must not write into its array arguments (direct stores
are refused); its rule sees the arguments and the result as they were when it was called.
"""
from __future__ import annotations

import functools
import inspect

from nbautodiff.codegen import parameters
from nbautodiff.errors import AutodiffError
from .source import python_function, specializes

MARKER = "__nad_derivative__"


def kind_of(obj) -> str | None:
    """``"custom"`` or ``"nondiff"`` for a wrapper of this module, else None."""
    kind = getattr(type(obj), MARKER, None)
    return kind if isinstance(obj, Wrapper) else None


def program_target(obj):
    """What the program builds artifacts from: a wrapper itself (its derivative is declared), a
    callee whose code depends on its argument types (:func:`nbautodiff.frontend.source.specializes`), otherwise the
    plain Python function behind ``obj``."""
    return obj if kind_of(obj) or specializes(obj) else python_function(obj)


class Wrapper:
    """A callable standing for ``fun``: calling it calls ``fun``."""

    def __init__(self, fun):
        if kind_of(fun):
            raise AutodiffError(f"{fun!r} is already a {type(fun).__name__}; wrap the original "
                                "function instead", function=fun.__name__)
        functools.update_wrapper(self, fun, updated=())
        self.fun = fun
        self.py_func = python_function(fun)
        self._primal = None

    def __call__(self, *args):
        return self.fun(*args)

    def __repr__(self) -> str:
        return f"<nbautodiff {type(self).__name__} of {self.py_func.__qualname__}>"

    @property
    def parameters(self) -> list[str]:
        return parameters(self.py_func)


class CustomVJP(Wrapper):
    """``fun`` with a user reverse rule, set by :meth:`defvjp`; see the module docstring."""

    __nad_derivative__ = "custom"

    def __init__(self, fun, rule=None):
        super().__init__(fun)
        self.rule = None
        self.tangent_rule = None
        self._used: set[str] = set()             # the rules derivatives were built with
        if rule is not None:
            self.defvjp(rule)

    def defvjp(self, rule, bwd=None):
        """Set ``rule(g, z, *args)`` as the reverse rule; returns ``rule`` (usable as a decorator).

        JAX's form ``defvjp(fwd, bwd)`` is accepted too: ``fwd(*args)`` returns ``(result,
        residuals)`` and ``bwd(residuals, g)`` one adjoint per argument; the rule made of them
        runs ``fwd`` again in the reverse sweep for its residuals (:func:`fwd_bwd_rule`).

        Raises AutodiffError naming the rule when it does not take ``2 + len(args)`` positional
        parameters, or when derivatives were already built with another rule."""
        if bwd is not None:
            rule = fwd_bwd_rule(self, rule, bwd)
        self._set("rule", rule, 2 + len(self.parameters),
                  "g (the adjoint of the result), z (the result), then the arguments")
        return rule

    def defjvp(self, rule):
        """Set ``rule(z, *args, *tangents)`` as the tangent rule (forward mode): it returns the
        tangent of the result ``z`` from one tangent per argument (0.0, or zeros of the
        argument's shape, for an argument that is not differentiated). Returns ``rule``; the
        same errors as :meth:`defvjp`."""
        self._set("tangent_rule", rule, 1 + 2 * len(self.parameters),
                  "z (the result), the arguments, then one tangent per argument")
        return rule

    def _set(self, which: str, rule, expected: int, parameters: str) -> None:
        func = python_function(rule)
        kinds = [p.kind for p in inspect.signature(func).parameters.values()]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if len(kinds) != expected or any(k not in positional for k in kinds):
            raise rule_error(func, self, f"takes ({signature_text(func)}) but must take {expected} "
                              f"positional parameters: {parameters} of {self.__name__}"
                              f"({', '.join(self.parameters)})", line=func.__code__.co_firstlineno)
        current = getattr(self, which)
        if which in self._used and rule is not current:
            raise rule_error(func, self, f"cannot replace the rule '{current.__name__}' of "
                              f"{self.__name__}: derivatives were already built with it; define "
                              f"{self.__name__} again to change its rule")
        setattr(self, which, rule)


class NonDifferentiable(Wrapper):
    """``fun`` whose calls from differentiated code contribute no derivative."""

    __nad_derivative__ = "nondiff"


def fwd_bwd_rule(wrapper: CustomVJP, fwd, bwd):
    """The rule ``rule(g, z, *args) = bwd(fwd(*args)[1], g)`` of JAX's ``defvjp(fwd, bwd)``
    (``bwd`` returns a tuple of one adjoint per argument, which rules may return), with
    ``fwd`` and ``bwd`` compiled by numba; an AutodiffError naming them when they do not take
    ``len(args)`` and 2 positional parameters."""
    import linecache
    import numba

    count = len(wrapper.parameters)
    for func, expected, what in ((fwd, count, f"the {count} arguments of {wrapper.__name__}"),
                                 (bwd, 2, "the residuals fwd returned, then g")):
        plain = python_function(func)
        kinds = [p.kind for p in inspect.signature(plain).parameters.values()]
        if len(kinds) != expected or any(k not in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                         for k in kinds):
            raise rule_error(plain, wrapper, f"takes ({signature_text(plain)}) but defvjp(fwd, "
                             f"bwd) needs {expected} positional parameters: {what}",
                             line=plain.__code__.co_firstlineno)
    names = ", ".join(f"_nad_a{k}" for k in range(count))
    fwd_name, bwd_name = python_function(fwd).__name__, python_function(bwd).__name__
    fname = "".join(c if c.isalnum() else "_" for c in f"{fwd_name}_{bwd_name}").lstrip("_")
    fname = fname if fname and not fname[0].isdigit() else f"rule_{fname}"
    text = (f"def {fname}(_nad_g, _nad_z, {names}):\n"
            f"    return _nad_bwd(_nad_fwd({names})[1], _nad_g)\n")
    filename = f"<nbautodiff defvjp({fwd_name}, {bwd_name}) of {wrapper.__name__}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace = {"_nad_fwd": fwd if hasattr(fwd, "py_func") else numba.njit(fwd),
                 "_nad_bwd": bwd if hasattr(bwd, "py_func") else numba.njit(bwd)}
    exec(compile(text, filename, "exec"), namespace)
    return namespace[fname]


def custom_vjp(fun, rule=None) -> CustomVJP:
    """Declare the reverse rule of ``fun``: ``custom_vjp(fun, rule)`` or, as a decorator,
    ``@custom_vjp`` then ``@fun.defvjp`` on the rule. See the module docstring."""
    return CustomVJP(fun, rule)


def non_differentiable(fun) -> NonDifferentiable:
    """Declare ``fun`` non-differentiable: differentiated code treats its result as a constant
    (its derivative is zero), while every primal still calls it."""
    return NonDifferentiable(fun)


def signature_text(func) -> str:
    """The parameter list of ``func`` as written (``g, z, *rest``), for messages."""
    return ", ".join(str(p) for p in inspect.signature(func).parameters.values())


def rule_error(func, wrapper: Wrapper, problem: str, line: int | None = None) -> AutodiffError:
    return AutodiffError(f"custom rule '{func.__name__}' of {wrapper.__name__} {problem}",
                         construct=f"custom rule '{func.__name__}'", lineno=line,
                         filename=func.__code__.co_filename, function=func.__name__)
