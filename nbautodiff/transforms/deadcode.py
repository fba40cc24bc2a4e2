"""Dead-assignment elimination on generated code.

:func:`remove_dead_assignments` deletes assignments to plain names whose values nothing needs.
A derivative that does not return the primal value (``grad``, ``ret="ActiveOnly"``, callees'
reverse variants) then no longer computes it: in a loop that sums an energy and its adjoints,
the strict-order energy sum disappears, which the compiler cannot do by itself because the
value leaves the function.

The analysis is flow-insensitive and by name, so it is conservative: a name is needed when a
statement that must stay reads it (a store into an array, a call that is not known to be pure,
a ``return``, a test of ``if``/``while``, the bounds of a ``for``), or when an assignment to a
needed name reads it. Only assignments ``name = pure expression`` to names that are not
needed are removed (never ``name op= ...``: on an array it writes in place, into a shadow the
caller may hold); a pure expression reads names, attributes, elements and
calls functions of ``math`` and ``numpy`` (not ``numpy.random``), ``len``/``abs``/``min``/
``max``/``float``/``int``/``round`` and ``.copy()``. Removing one can only drop an exception the
value would have raised (a division by zero, an index error) in code whose value is unused.
"""
from __future__ import annotations

import ast

from nbautodiff.analysis.activity import walk_statements

_PURE_MODULES = frozenset({"math", "np"})
_PURE_BUILTINS = frozenset({"len", "abs", "min", "max", "float", "int", "round", "range"})
_PURE_METHODS = frozenset({"copy"})


def _is_pure_call(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in _PURE_BUILTINS
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id in _PURE_MODULES:
            return True
        return func.attr in _PURE_METHODS and not call.args and not call.keywords
    return False


def is_pure(expression: ast.expr) -> bool:
    return all(_is_pure_call(node) for node in ast.walk(expression) if isinstance(node, ast.Call))


def names_read(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def plain_store(statement: ast.stmt) -> str | None:
    """The name of ``statement`` when it is ``name = <pure expression>`` (a candidate for
    removal), else None."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
            and isinstance(statement.targets[0], ast.Name) and is_pure(statement.value):
        return statement.targets[0].id
    return None


def _own_reads(statement: ast.stmt) -> set[str]:
    """Names ``statement`` reads itself (for compound statements: their header only)."""
    if isinstance(statement, (ast.If, ast.While)):
        return names_read(statement.test)
    if isinstance(statement, ast.For):
        return names_read(statement.iter)
    names = names_read(statement)
    if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        names.add(statement.target.id)
    return names


def needed_names(function: ast.FunctionDef) -> set[str]:
    """Names whose values ``function`` needs (see the module docstring)."""
    reads_of: dict[str, set[str]] = {}
    needed: set[str] = set()
    for statement, _ in walk_statements(function.body):
        target = plain_store(statement)
        if target is None:
            needed |= _own_reads(statement)
        else:
            reads_of.setdefault(target, set()).update(_own_reads(statement))
    pending = list(needed)
    while pending:
        for name in reads_of.pop(pending.pop(), ()):
            if name not in needed:
                needed.add(name)
                pending.append(name)
    return needed


def remove_dead_assignments(function: ast.FunctionDef) -> ast.FunctionDef:
    """``function`` without its assignments to names it does not need (changed in place)."""
    needed = needed_names(function)

    def prune(body: list[ast.stmt]) -> list[ast.stmt]:
        kept = []
        for statement in body:
            target = plain_store(statement)
            if target is not None and target not in needed:
                continue
            for field in ("body", "orelse"):
                inner = getattr(statement, field, None)
                if inner:
                    setattr(statement, field, prune(inner) or [ast.Pass()])
            kept.append(statement)
        return kept

    function.body = prune(function.body) or [ast.Pass()]
    return function
