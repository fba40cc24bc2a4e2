"""Loops over arrays lowered to loops over indices, before control flow is structured.

``for v in x`` becomes ``for i in range(len(x)): v = x[i]`` (``i`` a fresh name, so the user's
``v`` is an ordinary variable of the body); ``for i, v in enumerate(x, start)`` binds
``i = k + start``; ``for a, b in zip(x, y)`` runs over ``min(len(x), len(y))`` and binds
``a = x[k]; b = y[k]``, nested to any depth (``enumerate(zip(x, y))``); a tuple target over a
plain sequence unpacks each element (``for a, b in P``: the rows of ``P``). As in Python, each
iterated expression is evaluated once, before the loop: into a fresh name unless it is a name
the loop never rebinds. Every statement made keeps the line of the loop. :mod:`nbautodiff.frontend.fence` has
checked the forms; any other iterable (a tuple, a string) was refused there.
"""
from __future__ import annotations

import ast
import copy

from nbautodiff import naming


def is_range(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.id in ("range", "prange")


def lower(tree: ast.FunctionDef, is_counted) -> ast.FunctionDef:
    """``tree`` (a copy when anything changes) with its loops over sequences lowered;
    ``is_counted(iter)`` says whether a loop header is already a counted loop (``range``,
    ``prange``) to keep."""
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and not is_counted(n.iter)]
    if not loops:
        return tree
    tree = copy.deepcopy(tree)
    _Lowerer(is_counted).visit(tree)
    return ast.fix_missing_locations(tree)


class _Lowerer(ast.NodeTransformer):
    def __init__(self, is_counted):
        self.is_counted = is_counted
        self.count = 0

    def visit_For(self, node: ast.For):
        self.generic_visit(node)
        if self.is_counted(node.iter):
            return node
        self.count += 1
        index = f"{naming.ITEM_INDEX}{self.count}"
        rebound = {n.id for statement in node.body for n in ast.walk(statement)
                   if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        before: list[ast.stmt] = []
        sequences: list[ast.expr] = []

        def sequence(expr: ast.expr) -> ast.expr:
            """The name the loop indexes for iterated expression ``expr``."""
            if isinstance(expr, ast.Name) and expr.id not in rebound:
                name = expr.id
            else:
                name = f"{naming.SEQUENCE}{self.count}_{len(sequences)}"
                before.append(_at(ast.Assign(targets=[_name(name, True)], value=expr), node))
            sequences.append(_name(name))
            return _name(name)

        def element(iterable: ast.expr) -> ast.expr:
            """The value bound to the target for ``iterable`` at index ``index``."""
            if _call_to(iterable, "enumerate"):
                start = iterable.args[1] if len(iterable.args) > 1 else ast.Constant(0)
                position = _name(index) if isinstance(start, ast.Constant) and start.value == 0 \
                    else ast.BinOp(left=_name(index), op=ast.Add(), right=start)
                return ast.Tuple(elts=[position, element(iterable.args[0])], ctx=ast.Load())
            if _call_to(iterable, "zip"):
                return ast.Tuple(elts=[element(a) for a in iterable.args], ctx=ast.Load())
            return ast.Subscript(value=sequence(iterable), slice=_name(index), ctx=ast.Load())

        value = element(node.iter)
        lengths = [ast.Call(func=_name("len"), args=[s], keywords=[]) for s in sequences]
        stop = lengths[0] if len(lengths) == 1 else \
            ast.Call(func=_name("min"), args=lengths, keywords=[])
        binds = [_at(statement, node) for statement in _bind(node.target, value)]
        header = ast.Call(func=_name("range"), args=[stop], keywords=[])
        loop = ast.copy_location(ast.For(target=_at(_name(index, True), node),
                                         iter=_at(header, node), body=binds + node.body,
                                         orelse=[]), node)
        return before + [loop]


def _bind(target: ast.expr, value: ast.expr) -> list[ast.stmt]:
    """Assignments of ``value`` to ``target``, a display matched element by element."""
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
            and len(target.elts) == len(value.elts):
        return [s for t, v in zip(target.elts, value.elts) for s in _bind(t, v)]
    return [ast.Assign(targets=[_store(target)], value=value)]


def _store(target: ast.expr) -> ast.expr:
    target = copy.deepcopy(target)
    for node in ast.walk(target):
        if isinstance(node, (ast.Name, ast.Tuple, ast.List)):
            node.ctx = ast.Store()
    return target


def _call_to(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _at(made: ast.AST, like: ast.AST) -> ast.AST:
    """``made`` (a new statement or expression, with the user's expressions it holds) at the
    line of ``like`` where it has none of its own."""
    for node in ast.walk(made):
        if isinstance(node, (ast.stmt, ast.expr)) and not hasattr(node, "lineno"):
            ast.copy_location(node, like)
    return made
