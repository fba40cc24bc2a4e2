"""What a build read from module state, and whether it still holds at the next call.

A primal (:func:`nbautodiff.pipeline.program.primal`) bakes what its function reads from outside its arguments into
generated code: callees are bound to their compiled primals, global numbers become constants,
global arrays (up to 1 MB) are frozen into numba's code. :func:`reads` turns the lookups noted
while the primal was built (:func:`nbautodiff.frontend.source.recording`) into a :class:`Reads`, and the program
calls :meth:`Reads.hold` before it reuses the primal (on every call of a derivative): when
something changed, the primal, and every variant made from it, is built again.

What is checked, for every name the function (or an inner function of it) resolved, looked up
again where it was found (closure cell, module globals, builtins shadowed or not), following its
dotted attributes (``helpers.f``, ``config.alpha``):

* a name whose head is a library module (``np``, ``math``, see :data:`nbautodiff.cache.LIBRARIES`): only
  that the name is still bound to the module (library attributes are taken as fixed);
* a function (also a numba dispatcher, a :mod:`nbautodiff.frontend.declarations` wrapper): the same object with the same
  ``__code__`` (redefined, or edited in place by a reloader); a wrapper also with the same rule
  and tangent rule;
* a number or bool: an equal value of the same type;
* a NumPy array: the same object, dtype, shape and strides; for an array numba freezes into the
  compiled code (contiguous, up to 1 MB) also the same bytes (compared with a copy taken when it
  was built, so an in-place change compiles the code again: pass arrays that change often as
  arguments); a larger or non-contiguous one is read at its address by the compiled code on
  every call, so its data address is checked instead of its contents;
* anything else: the same object.

Every closure variable of the function is checked the same way, whether resolved or not (inner
functions read them through the lifted copies). A primal's checks include its callees' (copied
from their primals), so one flat list is run per request. Generated code (a derivative
differentiated again) has no reads of its own: everything it binds is determined by the
artifact it comes from.
"""
from __future__ import annotations

import builtins
import numbers
import types
from typing import Callable

import numpy as np

from nbautodiff import cache
from nbautodiff.errors import AutodiffError
from nbautodiff.frontend.source import MISSING, python_function

_BUILTINS = vars(builtins)


class Reads:
    """The checks of one build: callables that are True while a read still gives what it gave,
    the build's own and its callees' (copied from theirs: a callee rebuilt for a change fails
    them too, so its callers are rebuilt as well)."""

    __slots__ = ("checks",)

    def __init__(self, checks: tuple[Callable[[], bool], ...]):
        self.checks = checks

    def hold(self) -> bool:
        """Whether every read gives what it gave at the build, in callees too."""
        for check in self.checks:
            if not check():
                return False
        return True


def reads(func, noted: list, callees: list) -> Reads:
    """The :class:`Reads` of a build of ``func``: the lookups ``noted`` by
    :func:`nbautodiff.frontend.source.recording` (``(fs, parts)`` pairs), every closure variable of ``func``, and
    the reads of ``callees`` (their primals; those without ``reads`` have none)."""
    checks, seen = [], set()

    def add(where, make):
        if where not in seen:
            seen.add(where)
            checks.append(make())

    for cell in func.__closure__ or ():                # read by inner functions too
        add(id(cell), lambda cell=cell: _check(lambda: _contents(cell)))
    for fs, parts in noted:
        if fs.generated or parts[0] in fs.closure:     # a closure variable (checked above when
            continue                                   # fs is func's) or a lifted function
        scope = fs.globals
        head = scope.get(parts[0], MISSING)
        parts = parts[:1] if _is_library(head) else parts
        add((id(scope), parts), lambda: _global_check(scope, parts))
    for callee in callees:
        for check in getattr(getattr(callee, "reads", None), "checks", ()):
            add(id(check), lambda check=check: check)
    return Reads(tuple(checks))


def _contents(cell) -> object:
    try:
        return cell.cell_contents
    except ValueError:                                 # an empty cell
        return MISSING


def _global_check(scope: dict, parts: tuple) -> Callable[[], bool]:
    """The check of the dotted name ``parts`` looked up in module globals ``scope``, then in
    builtins (where a later global of that name shadows it)."""
    head, attrs = parts[0], parts[1:]
    value = scope.get(head, MISSING)
    if value is MISSING:                               # a builtin, unless shadowed later
        builtin = _BUILTINS.get(head, MISSING)
        return lambda: scope.get(head, MISSING) is MISSING and _BUILTINS.get(head) is builtin

    def current():
        found = scope.get(head, MISSING)
        for attr in attrs:
            found = getattr(found, attr, MISSING)
        return found

    return _check(current)


def _is_library(value) -> bool:
    return isinstance(value, types.ModuleType) and \
        value.__name__.split(".")[0] in cache.LIBRARIES


def _check(current: Callable[[], object]) -> Callable[[], bool]:
    """A check that ``current()`` still gives what it gives now (see the module docstring),
    specialised to the kind of value: it runs on every call of a derivative."""
    value = current()
    if isinstance(value, (numbers.Number, np.generic)):
        kind = type(value)
        return lambda: _same_number(current(), kind, value)
    if isinstance(value, np.ndarray):
        return _array_check(current, value)
    if isinstance(value, types.FunctionType):
        code = value.__code__
        return lambda: current() is value and value.__code__ is code
    code = _code_of(value)
    if code is None:                                   # a class, a ufunc, a builtin: identity
        return lambda: current() is value
    rules = _rules_of(value)
    return lambda: current() is value and _code_of(value) is code and _rules_of(value) == rules


def _same_number(found, kind: type, value) -> bool:
    return found is value or (type(found) is kind and found == value)


def _array_check(current: Callable[[], object], value: np.ndarray) -> Callable[[], bool]:
    dtype, shape, strides = value.dtype, value.shape, value.strides

    def same_layout() -> bool:
        return current() is value and value.dtype is dtype and value.shape == shape \
            and value.strides == strides

    if cache.frozen_by_numba(value):                   # its bytes are constants of the code
        contents = value.tobytes()
        return lambda: same_layout() and value.tobytes() == contents
    address = value.__array_interface__["data"][0]     # read there on every call
    return lambda: same_layout() and value.__array_interface__["data"][0] == address


def _code_of(value):
    """The code object of the Python function behind ``value`` (a function, a numba dispatcher,
    a :mod:`nbautodiff.frontend.declarations` wrapper), or None."""
    try:
        return python_function(value).__code__
    except AutodiffError:
        return None


def _rules_of(value) -> tuple:
    """The rules of a :mod:`nbautodiff.frontend.declarations` wrapper, () for anything else."""
    if getattr(type(value), "__nad_derivative__", None):
        return getattr(value, "rule", None), getattr(value, "tangent_rule", None)
    return ()
