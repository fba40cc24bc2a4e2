"""Tuples for the differentiating transforms: tuple variables split into their elements.

Normalisation keeps tuples as values (``t = (a, b)``, ``x = t[k]``, ``return t``; see
:mod:`nbautodiff.frontend.normalize`) and numba types them. The transforms do not differentiate tuple values
themselves: :func:`split`, run on a copy of the normalised tree once the types are known,
replaces each tuple variable by one variable per element (``t`` by ``_nad_e0_t`` and
``_nad_e1_t``; nested tuples to any depth, ``_nad_e1_0_t``), so that activity, the tape and the
adjoints see only scalars and arrays. What remains of tuples afterwards:

* ``(e0, (e1, e2)) = value``: a tuple that arrives whole (a call's result, an array's shape)
  unpacked into the elements of the target: the only assignment with a tuple target;
* ``return (e0, (e1, e2))``: a tuple result, returned as a display of its elements; each
  differentiable one takes a seed of its own (:func:`seeded_leaves`);
* a display of the elements where a tuple is used whole without a derivative: an index
  ``A[t]``, an argument of an array constructor, of ``reshape`` or of a function without a
  derivative, a condition.

A tuple variable is split when it holds a float or a float array, or when a call or a display
makes it; tuples of array shapes (``s = A.shape; n = s[0]``) stay as they are.

Refused with their line (:class:`UnsupportedConstructError`): indexing a split tuple with a
non-constant index or a slice, operators on tuples (concatenation, repetition), and passing a
tuple holding floats or arrays to a function that has a derivative (pass its elements).
"""
from __future__ import annotations

import ast

from numba import types as nbtypes

from nbautodiff import annotations as anno, naming
from nbautodiff.codegen import parameters
from nbautodiff.errors import UnsupportedConstructError
from . import typeinfer
from .activity import walk_statements

_DIFFERENTIATED_CALLS = ("user", "rule", "array", "copy")   # kinds whose arguments get adjoints


def is_tuple(typ) -> bool:
    return isinstance(typ, nbtypes.BaseTuple)


def leaves(typ, path: tuple = ()) -> list[tuple[tuple, object]]:
    """(path, type) of each element of ``typ`` that is not a tuple, in order, nested tuples
    flattened (``[((), typ)]`` for a type that is not a tuple)."""
    if is_tuple(typ):
        return [leaf for k, element in enumerate(typ.types) for leaf in leaves(element, path + (k,))]
    return [(path, nbtypes.unliteral(typ))]


def has_differentiable(typ) -> bool:
    """Whether ``typ`` is a float, a float array, or a tuple holding one."""
    return any(typeinfer.is_differentiable(t) for _, t in leaves(typ))


def seeded_leaves(typ) -> list[bool]:
    """Per element of a result of type ``typ`` (see :func:`leaves`): whether it takes a seed."""
    return [typeinfer.is_differentiable(t) for _, t in leaves(typ)]


def element_type(typ, path: tuple):
    for k in path:
        typ = typ.types[k]
    return typ


def flat_names(node: ast.expr) -> list[str]:
    """The names of a (nested) display of names, in order; ``[x]`` for a name ``x``."""
    if isinstance(node, ast.Tuple):
        return [name for element in node.elts for name in flat_names(element)]
    return [node.id] if isinstance(node, ast.Name) else []


def split(tree: ast.FunctionDef, types: dict, fs) -> None:
    """Split the tuple variables of normalised ``tree`` (changed in place) into their elements,
    adding the elements' types to ``types``; see the module docstring."""
    _Splitter(tree, types, fs).run()


class _Splitter:
    def __init__(self, tree: ast.FunctionDef, types: dict, fs):
        self.tree, self.types, self.fs = tree, types, fs
        self.split = self.split_names()

    def refuse(self, node: ast.AST, construct: str, detail: str = ""):
        return self.fs.error(f"{construct} is not supported{detail}", node, construct=construct,
                             kind=UnsupportedConstructError)

    def split_names(self) -> set[str]:
        """Tuple variables that hold a differentiable value or that a call or display makes,
        and those bound to them or to their elements."""
        values: dict[str, list] = {}
        for s, _ in walk_statements(self.tree.body):
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
                values.setdefault(s.targets[0].id, []).append(s.value)
        params = set(parameters(self.tree))
        candidates = {n for n in values if is_tuple(self.types.get(n))} - params
        chosen = {n for n in candidates if has_differentiable(self.types[n])
                  or any(isinstance(v, (ast.Call, ast.Tuple)) for v in values[n])}
        changed = True
        while changed:
            changed = False
            for name in candidates - chosen:
                if any(_base_name(v) in chosen for v in values[name]):
                    chosen.add(name)
                    changed = True
        return chosen

    # -- statements ------------------------------------------------------------------------
    def run(self) -> None:
        self.tree.body = self.block(self.tree.body)
        for name in self.split:
            for path, typ in leaves(self.types[name]):
                self.types[naming.tuple_element(name, path)] = typ

    def block(self, body: list) -> list:
        out = [new for s in body for new in self.statement(s)]
        return out or [ast.copy_location(ast.Pass(), body[0])]

    def statement(self, s: ast.stmt) -> list[ast.stmt]:
        if isinstance(s, (ast.If, ast.While, ast.For)):
            if isinstance(s, ast.For):
                s.iter = self.uses(s.iter, s)
            else:
                s.test = self.uses(s.test, s)
            s.body = self.block(s.body)
            s.orelse = self.block(s.orelse) if s.orelse else []
            return [s]
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) \
                and s.targets[0].id in self.split:
            made = self.assign(s.targets[0].id, (), self.source(s.value, s), s)
            return [ast.copy_location(new, s) for new in made]
        if isinstance(s, ast.Return) and isinstance(s.value, ast.Name) and s.value.id in self.split:
            return [ast.copy_location(ast.Return(value=self.display(s.value.id, ())), s)]
        if isinstance(s, ast.Assign):
            s.value = self.uses(s.value, s)
            if isinstance(s.targets[0], ast.Subscript):
                s.targets[0].slice = self.uses(s.targets[0].slice, s)
        elif isinstance(s, (ast.Expr, ast.Return)) and s.value is not None:
            s.value = self.uses(s.value, s)
        elif isinstance(s, ast.Assert):
            s.test = self.uses(s.test, s)
        return [s]

    def source(self, value: ast.expr, s: ast.stmt) -> tuple:
        """What a split variable is assigned: ("split", name, path) an element of a split tuple,
        ("display", [sources]) a display, ("whole", expression) anything else."""
        base = _base_name(value)
        if base in self.split:
            path = () if isinstance(value, ast.Name) else (self.constant_index(value, s),)
            return ("split", base, path)
        if isinstance(value, ast.Tuple):
            return ("display", [self.source(element, s) for element in value.elts])
        self.check_operator(value, s)
        return ("whole", self.uses(value, s))

    def assign(self, target: str, path: tuple, source: tuple, s: ast.stmt) -> list[ast.stmt]:
        """Statements giving the elements of ``target`` under ``path`` their values."""
        typ = element_type(self.types[target], path)
        kind = source[0]
        if kind == "whole":
            store = self.display(target, path, ast.Store()) if is_tuple(typ) else \
                ast.Name(id=naming.tuple_element(target, path), ctx=ast.Store())
            return [ast.Assign(targets=[store], value=source[1])]
        if not is_tuple(typ):
            if kind == "split" and not is_tuple(element_type(self.types[source[1]], source[2])):
                return self.assign(target, path, ("whole", self.element(*source[1:])), s)
            raise self.refuse(s, f"assigning a tuple to an element of '{target}' that is not one")
        parts = source[1] if kind == "display" else \
            [("split", source[1], source[2] + (k,)) for k in range(len(typ.types))]
        if len(parts) != len(typ.types):
            raise self.refuse(s, f"assigning tuples of different lengths to '{target}'")
        return [new for k, part in enumerate(parts) for new in self.assign(target, path + (k,), part, s)]

    # -- expressions -----------------------------------------------------------------------
    def display(self, name: str, path: tuple, ctx=None) -> ast.expr:
        """The elements of split ``name`` under ``path`` as a (nested) display."""
        typ = element_type(self.types[name], path)
        if not is_tuple(typ):
            return ast.Name(id=naming.tuple_element(name, path), ctx=ctx or ast.Load())
        return ast.Tuple(elts=[self.display(name, path + (k,), ctx) for k in range(len(typ.types))],
                         ctx=ctx or ast.Load())

    def element(self, name: str, path: tuple) -> ast.expr:
        return self.display(name, path)

    def constant_index(self, subscript: ast.Subscript, s: ast.stmt) -> int:
        name = subscript.value.id
        shown = "a tuple" if naming.is_reserved(name) else f"the tuple '{name}'"
        index = subscript.slice
        if isinstance(index, (ast.Slice, ast.Tuple)):
            raise self.refuse(s, f"slicing {shown}", " (index its elements one by one)")
        if isinstance(index, ast.Name) and index.id.startswith(naming.ITEM_INDEX):
            shown = "a tuple" if naming.is_reserved(name) else f"'{name}', a tuple,"
            raise self.refuse(s, f"for loop over {shown}",      # lowered by .iteration
                              " (index its elements: t[0], t[1]...)")
        if not (isinstance(index, ast.Constant) and type(index.value) is int):
            raise self.refuse(s, f"indexing {shown} with a non-constant index",
                              " (use a constant, such as t[0])")
        count = len(self.types[name].types)
        if not -count <= index.value < count:
            raise self.refuse(s, f"index {index.value} of {shown} of {count} elements")
        return index.value % count

    def holds_tuple(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Tuple) or (isinstance(node, ast.Name)
                                              and is_tuple(self.types.get(node.id)))

    def holds_differentiable(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Tuple):
            return any(self.holds_differentiable(e) for e in node.elts)
        if isinstance(node, ast.Constant):
            return isinstance(node.value, float)
        return isinstance(node, ast.Name) and node.id in self.types \
            and has_differentiable(self.types[node.id])

    def check_operator(self, node: ast.expr, s: ast.stmt) -> None:
        if isinstance(node, ast.BinOp) and (self.holds_tuple(node.left)
                                            or self.holds_tuple(node.right)):
            construct = {ast.Add: "tuple concatenation", ast.Mult: "tuple repetition"}.get(
                type(node.op), "an operator on tuples")
            raise self.refuse(s, construct, " (build the tuple from its elements)")
        if isinstance(node, ast.UnaryOp) and self.holds_tuple(node.operand):
            raise self.refuse(s, "an operator on tuples")

    def check_call(self, call: ast.Call, s: ast.stmt) -> None:
        if anno.get(call, anno.KIND, None) not in _DIFFERENTIATED_CALLS:
            return
        for arg in call.args:
            if self.holds_tuple(arg) and self.holds_differentiable(arg):
                raise self.refuse(s, f"passing a tuple of floats or arrays to "
                                     f"'{ast.unparse(call.func)}'",
                                  " (pass its elements as separate arguments)")

    def uses(self, node: ast.expr, s: ast.stmt) -> ast.expr:
        """``node`` with its uses of split tuples rewritten to their elements."""
        splitter = self

        class Rewrite(ast.NodeTransformer):
            def visit_Call(self, call: ast.Call) -> ast.expr:
                splitter.check_call(call, s)
                self.generic_visit(call)
                return call

            def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
                splitter.check_operator(node, s)
                self.generic_visit(node)
                return node

            visit_UnaryOp = visit_BinOp

            def visit_Subscript(self, subscript: ast.Subscript) -> ast.expr:
                base = subscript.value
                if isinstance(base, ast.Name) and base.id in splitter.split:
                    return splitter.element(base.id, (splitter.constant_index(subscript, s),))
                self.generic_visit(subscript)
                return subscript

            def visit_Name(self, name: ast.Name) -> ast.expr:
                if name.id in splitter.split:
                    return splitter.display(name.id, ())
                return name

        return Rewrite().visit(node)


def _base_name(value: ast.expr) -> str | None:
    """``t`` for a value ``t`` or ``t[k]``."""
    if isinstance(value, ast.Subscript):
        value = value.value
    return value.id if isinstance(value, ast.Name) else None
