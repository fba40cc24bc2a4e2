"""Normalisation to three-address form, with every call resolved.

The contract of :func:`normalize`: the result is a :class:`Normalized` function whose body
holds only these statements (every operand an *atom*: a name or a number):

* ``t = atom`` | ``t = a op b`` | ``t = op a`` | ``t = f(atoms)`` | ``t = A[atoms]`` (an index
  element may be a slice ``lo:hi:step`` of atoms; a sub-array is a view of ``A``) |
  ``t = A.shape`` (``size``, ``ndim``) | ``t = A.copy()`` | ``t = <condition>``
* ``t = (atom, atom, ...)``: a tuple display of atoms (a nested display is a temporary of its
  own, so ``t = (a, (b, c))`` becomes ``u = (b, c); t = (a, u)``), and ``x = t[k]`` for an
  element (the ``t = A[atoms]`` form; the types tell a tuple from an array, and the
  differentiating passes require a constant ``k``). Unpacking ``a, b = value`` becomes
  ``u = value; a = u[0]; b = u[1]`` (no temporary when ``value`` is a name); a parallel
  assignment of a display, ``a, b = b, a + b``, assigns its elements through temporaries and
  makes no tuple. ``return y, z`` returns a temporary holding the display.
* ``A[atoms] = atom``
* ``x = t`` annotated ``IN_PLACE`` (the rebinding that ends ``x op= ...``: for an array that
  others see, NumPy updates it in place; :mod:`nbautodiff.analysis.arrayfence` refuses that case in reverse mode,
  forward mode stores into the array)
* ``if c:`` / ``while c:`` on a name ``c`` (a ``while`` recomputes ``c`` at the end of its body)
* ``for i in range(lo, hi, step)`` with atoms that the body never assigns (a loop marked
  ``for i in nad.checkpointed(range(...))`` carries its schedule as annotation ``CHECKPOINT``)
* ``f(atoms)`` (a call for its effect on arrays), ``return atom`` (last statement only),
  ``raise``, ``assert``, ``pass``.

Conditions (tests of ``if``/``while``, comparisons, ``and``/``or``/``not``) are not
differentiable, so they stay whole expressions. Every call is annotated with what it calls
(annotations ``KIND``, one of "rule", "array", "zero", "opaque", "constructor", "user", "copy",
"nondiff", "helper", "list", and ``TARGET``: see :mod:`nbautodiff.annotations`): "array" calls are whole-array primitives (``rules.ARRAY_CALLS``), with
an ``axis`` operand last where one was given. A function with a custom rule
(:class:`nbautodiff.frontend.declarations.CustomVJP`) is a "user" call whose target is the wrapper; a
:class:`nbautodiff.frontend.declarations.NonDifferentiable` one is "nondiff": its result is a constant for the
derivative. A "helper" call is a runtime helper of generated code (``rules.HELPERS``), met
when a derivative is differentiated again; so are the reference stacks of generated code: a
list display ``L = [atoms]`` and the "list" calls ``L.append(atom)``, ``x = L.pop()``.
"""
from __future__ import annotations

import ast
import copy
import math
import numbers
import os
import sys
import sysconfig
import types
from dataclasses import dataclass, field

import numpy as np

from nbautodiff import annotations as anno, naming, rules
from nbautodiff.codegen import parameters
from nbautodiff.errors import UnsupportedConstructError
from . import bindings, checkpoint_markers as checkpoint, declarations as custom, fence, iteration
from .controlflow import structure
from .source import MISSING, FunctionSource, dotted_parts, resolve

ATOMS = (ast.Name, ast.Constant)
LIBRARIES = ("numpy", "scipy", "numba", "llvmlite", "math", "cmath")
LIST_METHODS = ("append", "pop")       # of the reference stacks of generated code


@dataclass(eq=False)
class Normalized:
    """A normalised function and what it refers to outside itself."""

    source: FunctionSource
    tree: ast.FunctionDef
    callees: dict[str, object] = field(default_factory=dict)   # binding -> function or custom wrapper
    globals: dict[str, object] = field(default_factory=dict)               # name -> value read
    augmented: list[tuple[str, ast.AugAssign]] = field(default_factory=list)  # `x op= ...` on names
    libraries: dict[str, object] = field(default_factory=dict)  # binding -> library callable


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _spelled(spelling: str) -> ast.expr:
    return ast.parse(spelling, mode="eval").body


def is_user_function(obj) -> bool:
    return isinstance(obj, types.FunctionType) or isinstance(getattr(obj, "py_func", None),
                                                            types.FunctionType)


class _Flattener:
    def __init__(self, fs: FunctionSource, tree: ast.FunctionDef):
        self.fs = fs
        self.result = Normalized(fs, tree)
        self.temps = 0
        self.locals = set(parameters(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.locals.add(node.id)
        self.out: list[ast.stmt] = []
        self.line: ast.AST = tree

    # -- helpers ---------------------------------------------------------------------------
    def refuse(self, node: ast.AST, construct: str, detail: str = "") -> UnsupportedConstructError:
        return self.fs.error(f"{construct} is not supported{detail}", node, construct=construct,
                             kind=UnsupportedConstructError)

    def temp(self) -> str:
        self.temps += 1
        name = f"{naming.TEMP}{self.temps}"
        self.locals.add(name)
        return name

    def emit(self, statement: ast.stmt) -> None:
        self.out.append(ast.copy_location(statement, self.line))

    def to_temp(self, value: ast.expr) -> ast.Name:
        name = self.temp()
        self.emit(ast.Assign(targets=[_name(name, True)], value=value))
        return _name(name)

    def nested(self, statements: list[ast.stmt]) -> list[ast.stmt]:
        saved, self.out = self.out, []
        for s in statements:
            self.statement(s)
        inner, self.out = self.out, saved
        return inner or [ast.copy_location(ast.Pass(), self.line)]

    # -- statements ------------------------------------------------------------------------
    def statement(self, node: ast.stmt) -> None:
        self.line = node
        method = getattr(self, f"stmt_{type(node).__name__}")
        method(node)

    def stmt_Assign(self, node: ast.Assign) -> None:
        if len(node.targets) == 1:
            self.assign(node.targets[0], node.value)
            return
        value = self.atom(node.value)
        for target in node.targets:
            self.assign(target, value)

    def stmt_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return
        self.assign(node.target, node.value)

    def stmt_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name):
            self.result.augmented.append((target.id, node))
            self.assign(target, ast.BinOp(left=_name(target.id), op=node.op, right=node.value))
            anno.set(self.out[-1], anno.IN_PLACE, True)
            anno.set(self.out[-1], anno.AUGMENTED, len(self.result.augmented) - 1)
            return
        if isinstance(target, ast.Subscript):
            array, index = self.subscript_parts(target)
            old = self.to_temp(ast.Subscript(value=array, slice=index, ctx=ast.Load()))
            new = self.to_temp(ast.BinOp(left=old, op=node.op, right=self.atom(node.value)))
            self.emit(ast.Assign(targets=[ast.Subscript(value=array, slice=copy.deepcopy(index),
                                                        ctx=ast.Store())], value=new))
            return
        raise self.refuse(target, "augmented assignment to this target")

    def assign(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            simple = self.simple(value)
            reads = {n.id for n in ast.walk(simple) if isinstance(n, ast.Name)}
            if not isinstance(simple, ATOMS) and target.id in reads:
                simple = self.to_temp(simple)
            self.emit(ast.Assign(targets=[_name(target.id, True)], value=simple))
        elif isinstance(target, ast.Subscript):
            array, index = self.subscript_parts(target)
            atom = self.atom(value)
            self.emit(ast.Assign(targets=[ast.Subscript(value=array, slice=index, ctx=ast.Store())],
                                 value=atom))
        elif isinstance(target, ast.Tuple):
            if isinstance(value, ast.Tuple):
                if len(value.elts) != len(target.elts):
                    raise self.refuse(target, "tuple assignment of different lengths")
                parts = [self.atom(v) for v in value.elts]
                parts = [self.to_temp(p) if isinstance(p, ast.Name) else p for p in parts]
            else:
                whole = self.atom(value)
                parts = [ast.Subscript(value=whole, slice=ast.Constant(i), ctx=ast.Load())
                         for i in range(len(target.elts))]
            for element, part in zip(target.elts, parts):
                self.assign(element, part)
        else:
            raise self.refuse(target, "assignment to this target")

    def stmt_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return
        call = self.simple(node.value)
        if isinstance(call, ast.Call):
            self.emit(ast.Expr(value=call))

    def stmt_If(self, node: ast.If) -> None:
        condition = self.condition(node.test)
        body, orelse = self.nested(node.body), self.nested(node.orelse) if node.orelse else []
        self.line = node
        self.emit(ast.If(test=condition, body=body, orelse=orelse))

    def stmt_While(self, node: ast.While) -> None:
        name = self.temp()
        self.emit(ast.Assign(targets=[_name(name, True)], value=self.resolve_condition(node.test)))
        body = self.nested(node.body)
        body.append(ast.copy_location(ast.Assign(targets=[_name(name, True)],
                                                 value=self.resolve_condition(node.test)), node))
        self.line = node
        self.emit(ast.While(test=_name(name), body=body, orelse=[]))

    def stmt_For(self, node: ast.For) -> None:
        args = node.iter.args
        bounds = [ast.Constant(0), args[0], ast.Constant(1)] if len(args) == 1 else \
            list(args) + [ast.Constant(1)] * (3 - len(args))
        atoms = []
        for bound in bounds:
            atom = self.atom(bound)
            if isinstance(atom, ast.Name) and not atom.id.startswith(naming.TEMP):
                atom = self.to_temp(atom)
            atoms.append(atom)
        body = self.nested(node.body)
        self.line = node
        self.emit(ast.For(target=_name(node.target.id, True),
                          iter=ast.Call(func=_name("range"), args=atoms, keywords=[]),
                          body=body, orelse=[]))

    def stmt_Return(self, node: ast.Return) -> None:
        value = self.atom(node.value) if node.value is not None else None
        self.emit(ast.Return(value=value))

    def stmt_Pass(self, node: ast.Pass) -> None:
        pass

    def stmt_Raise(self, node: ast.Raise) -> None:
        self.emit(node)

    def stmt_Assert(self, node: ast.Assert) -> None:
        self.emit(ast.Assert(test=self.resolve_condition(node.test), msg=node.msg))

    # -- expressions -----------------------------------------------------------------------
    def atom(self, node: ast.expr) -> ast.expr:
        simple = self.simple(node)
        return simple if isinstance(simple, ATOMS) else self.to_temp(simple)

    def condition(self, node: ast.expr) -> ast.Name:
        return self.to_temp(self.resolve_condition(node))

    def simple(self, node: ast.expr) -> ast.expr:
        """``node`` as one three-address right-hand side, emitting what it needs before."""
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, ast.Name):
            return self.name_value(node)
        if isinstance(node, ast.BinOp):
            if isinstance(node.left, ast.Tuple) or isinstance(node.right, ast.Tuple):
                construct = {ast.Add: "tuple concatenation", ast.Mult: "tuple repetition"}.get(
                    type(node.op), "an operator on tuples")
                raise self.refuse(node, construct, " (build the tuple from its elements)")
            return ast.BinOp(left=self.atom(node.left), op=node.op, right=self.atom(node.right))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return self.resolve_condition(node)
            operand = self.atom(node.operand)
            if isinstance(operand, ast.Constant) and isinstance(node.op, ast.USub):
                return ast.Constant(-operand.value)
            return ast.UnaryOp(op=node.op, operand=operand)
        if isinstance(node, ast.BoolOp):
            return self.bool_operation(node)
        if isinstance(node, ast.Compare):
            return self.resolve_condition(node)
        if isinstance(node, ast.IfExp):
            return self.if_expression(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            array, index = self.subscript_parts(node)
            return ast.Subscript(value=array, slice=index, ctx=ast.Load())
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.List) and self.fs.generated:
            return ast.List(elts=[self.atom(e) for e in node.elts], ctx=ast.Load())
        if isinstance(node, ast.Tuple):
            return ast.Tuple(elts=[self.atom(e) for e in node.elts], ctx=ast.Load())
        raise self.refuse(node, type(node).__name__)

    def name_value(self, node: ast.Name) -> ast.expr:
        if node.id in self.locals:
            return _name(node.id)
        value = resolve(self.fs, node)
        if value is MISSING:
            raise self.fs.error(f"name '{node.id}' is not defined", node, construct=node.id)
        return self.global_value(node, node.id, value)

    def global_value(self, node: ast.expr, name: str, value) -> ast.expr:
        if isinstance(value, (bool, np.bool_)):
            return ast.Constant(bool(value))
        if isinstance(value, numbers.Number) and not isinstance(value, complex):
            return ast.Constant(value.item() if isinstance(value, np.generic) else value)
        if isinstance(value, np.ndarray) and name.isidentifier() and "." not in name:
            self.result.globals[name] = value
            return _name(name)
        raise self.refuse(node, f"global value '{name}' of type {type(value).__name__}",
                          " (pass it as an argument)")

    def attribute(self, node: ast.Attribute) -> ast.expr:
        base = node.value
        if isinstance(base, ast.Name) and base.id in self.locals:
            if node.attr == "T":
                return self.array_call(ast.copy_location(ast.Call(func=node, args=[],
                                                                  keywords=[]), node),
                                       np.transpose, [base], [], ".T")
            if node.attr in rules.ARRAY_ATTRIBUTES:
                return ast.Attribute(value=_name(base.id), attr=node.attr, ctx=ast.Load())
            raise self.refuse(node, f"attribute '.{node.attr}'")
        if isinstance(base, ast.Attribute) or isinstance(base, ast.Name):
            value = resolve(self.fs, node)
            if value is not MISSING:
                return self.global_value(node, ast.unparse(node), value)
        if isinstance(base, ast.Subscript) or isinstance(base, ast.Call):
            whole = self.atom(base)
            return self.attribute(ast.copy_location(
                ast.Attribute(value=whole, attr=node.attr, ctx=ast.Load()), node))
        raise self.refuse(node, f"attribute '{ast.unparse(node)}'")

    def subscript_parts(self, node: ast.Subscript) -> tuple[ast.Name, ast.expr]:
        base = node.value
        if isinstance(base, ast.Name):
            array = self.name_value(base)
            if not isinstance(array, ast.Name):
                raise self.refuse(node, f"indexing the constant '{base.id}'")
        else:
            array = self.atom(base)
        index = node.slice
        if isinstance(index, ast.Constant) and index.value is Ellipsis:
            index = ast.Slice(None, None, None)              # x[...] is x[:], the whole array
        if isinstance(index, ast.Tuple):
            index = ast.Tuple(elts=[self.index_part(e) for e in index.elts], ctx=ast.Load())
        else:
            index = self.index_part(index)
        return array, index

    def index_part(self, part: ast.expr) -> ast.expr:
        """An index element as atoms: a slice ``lo:hi:step`` keeps its shape, with atom bounds."""
        if isinstance(part, ast.Slice):
            return ast.Slice(*(None if bound is None else self.atom(bound)
                               for bound in (part.lower, part.upper, part.step)))
        if dotted_parts(part) and not (isinstance(part, ast.Name) and part.id in self.locals) \
                and resolve(self.fs, part) is None:
            return ast.Constant(None)                               # np.newaxis
        return self.atom(part)

    def if_expression(self, node: ast.IfExp) -> ast.Name:
        condition = self.condition(node.test)
        result = self.temp()
        body = self.nested([ast.copy_location(ast.Assign(targets=[_name(result, True)],
                                                         value=node.body), node)])
        orelse = self.nested([ast.copy_location(ast.Assign(targets=[_name(result, True)],
                                                           value=node.orelse), node)])
        self.emit(ast.If(test=condition, body=body, orelse=orelse))
        return _name(result)

    def bool_operation(self, node: ast.BoolOp) -> ast.Name:
        """``a or b`` / ``a and b`` as a value: the operand that decides it, as Python gives it
        (``a if a else b`` / ``b if a else a``, ``b`` evaluated only when Python would), so
        ``x[0] or x[1]`` has the derivative of the operand it returns."""
        first = self.atom(node.values[0])
        rest = node.values[1:]
        other = rest[0] if len(rest) == 1 else \
            ast.copy_location(ast.BoolOp(op=node.op, values=rest), node)
        body, orelse = (first, other) if isinstance(node.op, ast.Or) else (other, first)
        return self.if_expression(ast.copy_location(
            ast.IfExp(test=first, body=body, orelse=copy.deepcopy(orelse)), node))

    def call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if isinstance(func, ast.Attribute) and not dotted_parts(func.value):
            func = ast.copy_location(ast.Attribute(value=self.atom(func.value), attr=func.attr,
                                                   ctx=ast.Load()), func)   # (expr).method()
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in self.locals:
            if func.attr in rules.ARRAY_METHOD_FUNCTIONS:
                function = rules.ARRAY_METHOD_FUNCTIONS[func.attr]
                args = [func.value] + list(node.args)
                if func.attr == "reshape" and len(node.args) > 1:
                    args = [func.value, ast.Tuple(elts=list(node.args), ctx=ast.Load())]
                return self.array_call(node, function, args, node.keywords, f".{func.attr}()")
            if func.attr in LIST_METHODS and self.fs.generated:
                call = ast.Call(func=ast.Attribute(value=_name(func.value.id), attr=func.attr,
                                                   ctx=ast.Load()),
                                args=[self.atom(a) for a in node.args], keywords=[])
                anno.set(call, anno.KIND, "list")
                anno.set(call, anno.TARGET, func.attr)
                return call
            if func.attr in rules.ARRAY_METHODS and not node.args and not node.keywords:
                call = ast.Call(func=ast.Attribute(value=_name(func.value.id), attr=func.attr,
                                                   ctx=ast.Load()), args=[], keywords=[])
                anno.set(call, anno.KIND, "copy")
                anno.set(call, anno.TARGET, None)
                return call
            raise self.refuse(node, f"method call '.{func.attr}()'")
        target = resolve(self.fs, func) if dotted_parts(func) else MISSING
        label = ast.unparse(func)
        if target is MISSING:
            raise self.refuse(node, f"call to '{label}'", " (name not found)")
        key = id(target)
        spelled = self.numpy_spelling(node, target, label)
        if spelled is not None:
            return spelled
        if (key, False) in rules.ARRAY_CALLS or (key, True) in rules.ARRAY_CALLS:
            return self.array_call(node, target, list(node.args), node.keywords, label)
        if node.keywords and key not in rules.ARRAY_CONSTRUCTORS:
            raise self.refuse(node, f"keyword arguments in the call to '{label}'")
        if key in rules.VARIADIC and len(node.args) > 2:
            nested = node.args[0]
            for arg in node.args[1:]:
                nested = ast.copy_location(ast.Call(func=func, args=[nested, arg], keywords=[]), node)
            return self.call(nested)
        if key in rules.CALLS:
            rule = rules.CALLS[key]
            if rule.name == "log" and len(node.args) == 2:
                top = self.atom(ast.Call(func=func, args=[node.args[0]], keywords=[]))
                bottom = self.atom(ast.Call(func=func, args=[node.args[1]], keywords=[]))
                return ast.BinOp(left=top, op=ast.Div(), right=bottom)
            if len(node.args) != len(rule.params):
                raise self.refuse(node, f"call to '{label}' with {len(node.args)} arguments")
            return self.annotated(node, rules.numpy_spelling(target) or rule.spelling, "rule", rule)
        if key in rules.NON_DIFFERENTIABLE:
            return self.annotated(node, rules.NON_DIFFERENTIABLE[key], "zero", None)
        if key in rules.ARRAY_CONSTRUCTORS:
            return self.annotated(node, rules.ARRAY_CONSTRUCTORS[key], "constructor", None)
        refused = rules.NOT_DIFFERENTIATED_AGAIN.get(
            getattr(getattr(target, "py_func", target), "__module__", None))
        if refused:
            raise self.refuse(node, f"differentiating {refused} again",
                              f" (the generated derivative calls '{label}')")
        if key in rules.HELPERS:
            return self.annotated(node, rules.HELPERS[key].spelling, "helper", rules.HELPERS[key])
        if custom.kind_of(target) == "nondiff":
            return self.annotated(node, self.bind_callee(target), "nondiff", target)
        if is_user_function(target) and not is_library(target):
            return self.annotated(node, self.bind_callee(target), "user", target)
        if is_library(target) and callable(target):
            if key in rules.WRITE_ARGUMENTS:
                raise self.refuse(node, f"call to '{label}'", " (it writes into its array "
                                  "argument; write the elements in a loop)")
            return self.annotated(node, self.bind_library(func, target), "opaque", target)
        raise self.refuse(node, f"call to '{label}'",
                          " (only math/NumPy functions, array constructors and "
                          "functions with Python source can be called)")

    def numpy_spelling(self, node: ast.Call, target, label: str) -> ast.expr | None:
        """NumPy calls written another way before they are resolved: the ufunc names of the
        operators (``np.add(x, y)`` is ``x + y``), ``np.full[_like]`` with a ``dtype`` (the fill
        value cast), ``np.array`` of a list display (stored element by element into a new
        array) or of an array (a copy); None for any other call."""
        key = id(target)
        if key in rules.UFUNC_OPERATORS or key == rules.RECIPROCAL:
            if node.keywords:
                raise self.refuse(node, f"keyword arguments in the call to '{label}'")
            op = rules.UFUNC_OPERATORS.get(key)
            unary = op in (ast.USub, ast.UAdd) or key == rules.RECIPROCAL
            if len(node.args) != (1 if unary else 2):
                raise self.refuse(node, f"call to '{label}' with {len(node.args)} arguments")
            if key == rules.RECIPROCAL:
                return ast.BinOp(left=ast.Constant(1.0), op=ast.Div(), right=self.atom(node.args[0]))
            if unary:
                return ast.UnaryOp(op=op(), operand=self.atom(node.args[0]))
            return ast.BinOp(left=self.atom(node.args[0]), op=op(), right=self.atom(node.args[1]))
        if target in (np.full, np.full_like) and node.keywords:
            dtype = [k for k in node.keywords if k.arg == "dtype"]
            if len(node.args) != 2 or len(dtype) != len(node.keywords):
                raise self.refuse(node, f"call to '{label}' with these arguments",
                                  " (give the shape (or array) and the fill value, and only "
                                  "dtype= by keyword)")
            shape = node.args[0] if target is np.full else \
                ast.Attribute(value=self.atom(node.args[0]), attr="shape", ctx=ast.Load())
            cast = ast.copy_location(ast.Call(func=dtype[0].value, args=[node.args[1]],
                                              keywords=[]), node)
            full = ast.copy_location(ast.Call(func=_spelled("np.full"), args=[shape, cast],
                                              keywords=[]), node)
            return self.array_call(full, np.full, [shape, cast], [], label)
        if target is np.array:
            return self.array_display(node, label)
        return None

    def array_display(self, node: ast.Call, label: str) -> ast.expr:
        """``np.array([[a, b], [c, d]])``: a new array (of NumPy's dtype for the elements, or
        ``dtype=``) and one store per element; ``np.array(x)`` of an array: ``x.copy()``."""
        others = [k.arg for k in node.keywords if k.arg != "dtype"]
        if len(node.args) != 1 or others:
            raise self.refuse(node, f"call to '{label}' with these arguments",
                              " (one list of elements, and only dtype= by keyword)")
        display = node.args[0]
        if not isinstance(display, (ast.List, ast.Tuple)):
            if node.keywords:
                raise self.refuse(node, f"'{label}' of an array with dtype=",
                                  " (use x.astype(...) outside differentiated code, or x.copy())")
            base = self.atom(display)
            if not isinstance(base, ast.Name):
                raise self.refuse(node, f"'{label}' of a number", " (write the number itself)")
            call = ast.Call(func=ast.Attribute(value=base, attr="copy", ctx=ast.Load()),
                            args=[], keywords=[])
            anno.set(call, anno.KIND, "copy")
            anno.set(call, anno.TARGET, None)
            return call
        shape, leaves = _display_shape(display)
        if shape is None:
            raise self.refuse(display, f"'{label}' of nested lists of different lengths")
        if not leaves:
            raise self.refuse(display, f"'{label}' of an empty list", " (use np.zeros / np.empty)")
        atoms = [(index, self.atom(leaf)) for index, leaf in leaves]
        extent = ast.Tuple(elts=[ast.Constant(n) for n in shape], ctx=ast.Load())
        if node.keywords:
            dtype = self.keyword_value(node.keywords[0])
            made = ast.Call(func=_spelled("np.empty"), args=[extent],
                            keywords=[ast.keyword(arg="dtype", value=dtype)])
        else:
            made = ast.Call(func=_spelled("_nad_arrays.empty_for"),
                            args=[extent] + [atom for _, atom in atoms], keywords=[])
        anno.set(made, anno.KIND, "constructor")
        anno.set(made, anno.TARGET, None)
        array = self.to_temp(made)
        for index, atom in atoms:
            position = ast.Tuple(elts=[ast.Constant(i) for i in index], ctx=ast.Load()) \
                if len(index) > 1 else ast.Constant(index[0])
            self.emit(ast.Assign(targets=[ast.Subscript(value=_name(array.id), slice=position,
                                                        ctx=ast.Store())], value=atom))
        return array

    def bind_library(self, func: ast.expr, target) -> str:
        """How generated code names library callable ``target`` (``np.x``/``math.x`` as
        written; anything else bound in the module under a name of its own)."""
        parts = dotted_parts(func)
        if parts and parts[0] in ("np", "math") and resolve(self.fs, _name(parts[0])) is \
                {"np": np, "math": math}[parts[0]]:
            return ".".join(parts)
        for binding, known in self.result.libraries.items():
            if known is target:
                return binding
        taken = self.locals | set(self.result.globals) | set(self.result.callees) | \
            set(self.result.libraries) | {"math", "np", self.fs.name}
        binding = naming.unused(f"{naming.LIBRARY}{parts[-1] if parts else 'call'}",
                                taken.__contains__)
        self.result.libraries[binding] = target
        return binding

    def array_call(self, node: ast.Call, function, args: list, keywords: list,
                   label: str) -> ast.Call:
        """A whole-array primitive (``np.sum(x, axis=k)``, ``x.T``...) as an "array" call."""
        axis = [k for k in keywords if k.arg == "axis"]
        others = [k.arg for k in keywords if k.arg != "axis"]
        plain = rules.ARRAY_CALLS.get((id(function), False))      # the rule without an axis
        if others:
            raise self.refuse(node, f"keyword argument '{others[0]}' in the call to '{label}'")
        if axis:
            args = args + [axis[0].value]
        elif len(args) == 2 and (id(function), True) in rules.ARRAY_CALLS and \
                (plain is None or len(plain.params) == 1):
            axis = [args[1]]                     # np.sum(x, 1): the axis given by position
        rule = rules.ARRAY_CALLS.get((id(function), bool(axis)))
        if rule is None or len(args) != len(rule.params):
            raise self.refuse(node, f"call to '{label}' with these arguments")
        call = ast.copy_location(ast.Call(func=_spelled(rule.spelling), args=args, keywords=[]),
                                 node)
        return self.annotated(call, rule.spelling, "array", rule)

    def annotated(self, node: ast.Call, spelling: str, kind: str, target) -> ast.Call:
        args = []
        for arg in node.args:
            is_local = isinstance(arg, ast.Name) and arg.id in self.locals
            dtype = rules.DTYPES.get(id(resolve(self.fs, arg))) if kind == "constructor" \
                and dotted_parts(arg) and not is_local else None
            if dtype is not None:
                args.append(_spelled(dtype))
            elif isinstance(arg, ast.Tuple):
                args.append(ast.Tuple(elts=[self.atom(e) for e in arg.elts], ctx=ast.Load()))
            else:
                args.append(self.atom(arg))
        keywords = [ast.keyword(arg=k.arg, value=self.keyword_value(k)) for k in node.keywords]
        call = ast.Call(func=_spelled(spelling), args=args, keywords=keywords)
        anno.set(call, anno.KIND, kind)
        anno.set(call, anno.TARGET, target)
        return call

    def keyword_value(self, keyword: ast.keyword) -> ast.expr:
        if keyword.arg != "dtype":
            raise self.refuse(keyword.value, f"keyword argument '{keyword.arg}'")
        value = resolve(self.fs, keyword.value)
        spelling = rules.DTYPES.get(id(value))
        if spelling is None:
            raise self.refuse(keyword.value, f"dtype '{ast.unparse(keyword.value)}'")
        return _spelled(spelling)

    def bind_callee(self, target) -> str:
        func = custom.program_target(target)
        for binding, known in self.result.callees.items():
            if known is func:
                return binding
        taken = self.locals | set(self.result.globals) | set(self.result.callees) | \
            {"math", "np", self.fs.name}
        binding = naming.unused(func.__name__, taken.__contains__)
        self.result.callees[binding] = func
        return binding

    def resolve_condition(self, node: ast.expr) -> ast.expr:
        """A copy of a (non-differentiable) condition with its calls and globals resolved."""
        flattener = self

        class Resolver(ast.NodeTransformer):
            def visit_Call(self, call: ast.Call) -> ast.expr:
                saved, flattener.out = flattener.out, []
                simple = flattener.call(call)
                if flattener.out:                          # arguments needed statements: inline
                    flattener.out = saved
                    call.args = [self.visit(a) for a in call.args]
                    resolved = flattener.annotated_inline(call)
                    return resolved
                flattener.out = saved
                return simple

            def visit_Name(self, name: ast.Name) -> ast.expr:
                return flattener.name_value(name)

            def visit_Attribute(self, attr: ast.Attribute) -> ast.expr:
                if isinstance(attr.value, ast.Name) and attr.value.id in flattener.locals:
                    return flattener.attribute(attr)
                value = resolve(flattener.fs, attr)
                if value is MISSING:
                    raise flattener.refuse(attr, f"attribute '{ast.unparse(attr)}'")
                return flattener.global_value(attr, ast.unparse(attr), value)

        return Resolver().visit(copy.deepcopy(node))

    def annotated_inline(self, call: ast.Call) -> ast.Call:
        """Resolve a call inside a condition without splitting its arguments into statements."""
        target = resolve(self.fs, call.func)
        key = id(target)
        spelling = rules.spelling_of(target)
        user = is_user_function(target) and not is_library(target)
        if spelling is None and user:
            spelling = self.bind_callee(target)
        opaque = spelling is None and is_library(target) and callable(target) \
            and key not in rules.WRITE_ARGUMENTS
        if opaque:
            spelling = self.bind_library(call.func, target)
        if spelling is None:
            raise self.refuse(call, f"call to '{ast.unparse(call.func)}'")
        call.func = _spelled(spelling)
        kind = "user" if user else "opaque" if opaque else \
            ("rule" if key in rules.CALLS else "zero")
        anno.set(call, anno.KIND, kind)
        anno.set(call, anno.TARGET, target)
        return call


def _display_shape(display: ast.expr):
    """(shape, [(index, element)]) of a (nested) list display; shape None when ragged."""
    if not isinstance(display, (ast.List, ast.Tuple)):
        return (), [((), display)]
    parts = [_display_shape(e) for e in display.elts]
    shapes = {p[0] for p in parts}
    if None in shapes or len(shapes) > 1:
        return None, []
    inner = shapes.pop() if shapes else ()
    leaves = [((k,) + index, leaf) for k, (_, sub) in enumerate(parts) for index, leaf in sub]
    return (len(display.elts),) + inner, leaves


def is_library(obj) -> bool:
    """Whether ``obj`` belongs to NumPy, SciPy, numba, ``math`` or Python's standard library
    (not a builtin such as ``print``): called as it is (a constant for the derivative), never
    parsed as a user function."""
    python = getattr(obj, "py_func", obj)
    module = getattr(python, "__module__", None)
    if not isinstance(module, str):
        module = type(obj).__module__
    root = (module or "").split(".")[0]
    if root in LIBRARIES:
        return True
    if isinstance(python, types.FunctionType):          # a user's module may be named `code`
        path = os.path.realpath(python.__code__.co_filename)
        return path.startswith(_STDLIB) and "-packages" + os.sep not in path
    return root in sys.stdlib_module_names and root != "builtins"


_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep


def normalize(fs: FunctionSource) -> Normalized:
    """Normalise ``fs`` (already fenced) to three-address form; see the module docstring."""
    unmarked, marks = checkpoint.without_markers(fs)
    unmarked = iteration.lower(unmarked, lambda header: isinstance(header, ast.Call)
                               and fence.is_range(fs, header.func))
    tree = structure(unmarked)
    flattener = _Flattener(fs, tree)
    body = []
    for statement in tree.body:
        flattener.statement(statement)
    body = flattener.out or [ast.Pass()]
    new = ast.FunctionDef(name=fs.name, args=copy.deepcopy(fs.tree.args), body=body,
                          decorator_list=[], returns=None, type_comment=None, type_params=[])
    if not fs.generated:
        fs.display_names = bindings.split(
            new, flattener.result.augmented,
            set(flattener.result.callees) | set(flattener.result.globals))
    flattener.result.tree = ast.fix_missing_locations(ast.copy_location(new, fs.tree))
    checkpoint.attach_markers(fs, flattener.result.tree, marks)
    return flattener.result
