"""The fence: refuse what the transforms do not support, before anything else looks at it.

:func:`check` walks a function's tree and raises :class:`UnsupportedConstructError` at the
first construct outside the supported subset, naming the construct and its line. What is
supported is listed positively (``_STATEMENTS``, ``_EXPRESSIONS``); everything else is refused,
so a new Python construct is refused until someone teaches the transforms about it.
"""
from __future__ import annotations

import ast

import numba
import numpy as np

from nbautodiff import naming
from nbautodiff.errors import UnsupportedConstructError
from . import checkpoint_markers as checkpoint
from .source import FunctionSource, resolve

_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.If, ast.For, ast.While,
               ast.Break, ast.Continue, ast.Return, ast.Pass, ast.Raise, ast.Assert)
_EXPRESSIONS = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
                ast.Attribute, ast.Subscript, ast.IfExp, ast.Tuple, ast.keyword,
                ast.Slice, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context)

_CONSTRUCT_NAMES = {
    ast.Try: "try/except", ast.With: "with statement", ast.AsyncWith: "async with",
    ast.ClassDef: "class definition", ast.FunctionDef: "inner function definition",
    ast.AsyncFunctionDef: "async function", ast.Lambda: "lambda", ast.Global: "global statement",
    ast.Nonlocal: "nonlocal statement", ast.Yield: "generator (yield)",
    ast.YieldFrom: "generator (yield from)", ast.Await: "await", ast.AsyncFor: "async for",
    ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression",
    ast.Dict: "dict", ast.Set: "set", ast.List: "list", ast.JoinedStr: "f-string",
    ast.Starred: "starred expression", ast.Delete: "del statement",
    ast.NamedExpr: "assignment expression (:=)", ast.Import: "import inside the function",
    ast.ImportFrom: "import inside the function",
}
if hasattr(ast, "Match"):
    _CONSTRUCT_NAMES[ast.Match] = "match statement"
if hasattr(ast, "TryStar"):
    _CONSTRUCT_NAMES[ast.TryStar] = "try/except*"

def construct_name(node: ast.AST) -> str:
    return _CONSTRUCT_NAMES.get(type(node), type(node).__name__)


class _Fence(ast.NodeVisitor):
    def __init__(self, fs: FunctionSource):
        self.fs = fs
        self.in_message = False

    def refuse(self, node: ast.AST, construct: str, detail: str = "") -> None:
        raise self.fs.error(f"{construct} is not supported{detail}", node, construct=construct,
                            kind=UnsupportedConstructError)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.List) and self.fs.generated:
            return super().generic_visit(node)       # reference stacks of generated code
        if isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS):
            self.refuse(node, construct_name(node))
        if isinstance(node, (ast.expr, ast.operator, ast.slice if hasattr(ast, "slice") else ())) \
                and not isinstance(node, _EXPRESSIONS):
            self.refuse(node, construct_name(node))
        super().generic_visit(node)

    def visit_arguments(self, node: ast.arguments) -> None:
        if node.vararg or node.kwarg or node.kwonlyargs or node.posonlyargs:
            self.refuse(node.vararg or node.kwarg or (node.kwonlyargs or node.posonlyargs)[0],
                        "*args, **kwargs, keyword-only or positional-only parameters")
        if node.defaults:
            self.refuse(node.defaults[0], "default argument values")
        for arg in node.args:
            self.check_name(arg.arg, arg)

    def visit_Name(self, node: ast.Name) -> None:
        self.check_name(node.id, node)

    def check_name(self, name: str, node: ast.AST) -> None:
        if naming.is_reserved(name) and not self.fs.generated:
            self.refuse(node, f"the name '{name}'", f" (names starting with "
                        f"'{naming.RESERVED}' are reserved for generated code)")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, (str, bytes)) and not self.in_message:
            self.refuse(node, "string value", " in differentiated code")
        if isinstance(node.value, complex):
            self.refuse(node, "complex number")

    def visit_Raise(self, node: ast.Raise) -> None:
        self.visit_message(node)

    def visit_Assert(self, node: ast.Assert) -> None:
        self.visit(node.test)
        if node.msg is not None:
            self.visit_message(node.msg)

    def visit_message(self, node: ast.AST) -> None:
        self.in_message = True
        try:
            self.generic_visit(node)
        finally:
            self.in_message = False

    def visit_For(self, node: ast.For) -> None:
        if node.orelse:
            self.refuse(node.orelse[0], "else clause on a for loop")
        iterator = node.iter
        if checkpoint.is_marker(self.fs, iterator):
            checkpoint.marker_schedule(self.fs, iterator)
            iterator = iterator.args[0]
        if isinstance(iterator, ast.Call) and is_range(self.fs, iterator.func):
            if not isinstance(node.target, ast.Name):
                self.refuse(node.target, "for loop over a range with a tuple target")
            if iterator.keywords or not 1 <= len(iterator.args) <= 3:
                self.refuse(iterator, f"for loop over '{ast.unparse(iterator)}'")
        elif iterator is node.iter:
            self.check_iterated(node.target, iterator)      # lowered by .iteration
        else:
            self.refuse(iterator, "nad.checkpointed(...) of anything but range(...)")
        for field in (node.target, iterator, *node.body):
            self.visit(field)

    def check_iterated(self, target: ast.expr, iterable: ast.expr) -> None:
        """A loop over sequences (arrays; ``enumerate``, ``zip`` of them) with a name or a
        (nested) tuple of names as target."""
        for node in ast.walk(target):
            if not isinstance(node, (ast.Name, ast.Tuple, ast.expr_context)):
                self.refuse(node, "for loop with this target", " (use names)")
        if isinstance(iterable, (ast.Tuple, ast.List)):
            self.refuse(iterable, "iteration over a tuple", " (index its elements: t[0], t[1]...)")
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) \
                and iterable.func.id in ("enumerate", "zip") \
                and resolve(self.fs, iterable.func) in (enumerate, zip):
            count = (1, 2) if iterable.func.id == "enumerate" else range(1, 64)
            if iterable.keywords or len(iterable.args) not in count:
                self.refuse(iterable, f"'{ast.unparse(iterable)}' in a for loop",
                            " (no keywords; enumerate(x) or enumerate(x, start), zip(x, y, ...))")
            elements = iterable.args[:1] if iterable.func.id == "enumerate" else iterable.args
            parts = len(elements) + (iterable.func.id == "enumerate")
            if isinstance(target, ast.Tuple) and len(target.elts) != parts \
                    and iterable.func.id == "enumerate":
                self.refuse(target, "for loop target of another length than the tuples of "
                            f"'{ast.unparse(iterable)}'")
            inner = target.elts if isinstance(target, ast.Tuple) and len(target.elts) == parts \
                else None
            if iterable.func.id == "enumerate":
                self.check_iterated(inner[1] if inner else ast.Name(id="_", ctx=ast.Store()),
                                    elements[0])
            else:
                for k, element in enumerate(elements):
                    self.check_iterated(inner[k] if inner else ast.Name(id="_", ctx=ast.Store()),
                                        element)

    def visit_Call(self, node: ast.Call) -> None:
        if checkpoint.is_marker(self.fs, node):
            self.refuse(node, "nad.checkpointed(...) outside the header of a for loop",
                        " (write 'for t in nad.checkpointed(range(T)):')")
        if node.args and isinstance(node.args[0], ast.List) and resolve(self.fs, node.func) \
                is np.array:                    # np.array([[a, b], [c, d]]): lists of elements
            self.visit(node.func)
            for part in [*_list_leaves(node.args[0]), *node.args[1:], *node.keywords]:
                self.visit(part)
            return
        self.generic_visit(node)

    def visit_Starred(self, node: ast.Starred) -> None:
        if isinstance(node.ctx, ast.Store):
            self.refuse(node, "starred unpacking", " (unpack every element by name)")
        self.refuse(node, "starred expression")

    def visit_While(self, node: ast.While) -> None:
        if node.orelse:
            self.refuse(node.orelse[0], "else clause on a while loop")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return                                            # a docstring or a bare string
        if type(node.value) in _CONSTRUCT_NAMES:
            self.refuse(node.value, construct_name(node.value))
        if not isinstance(node.value, ast.Call):
            self.refuse(node, "expression statement that is not a call")
        self.generic_visit(node)


def _list_leaves(display: ast.expr) -> list[ast.expr]:
    """The elements of a (nested) list or tuple display."""
    if isinstance(display, (ast.List, ast.Tuple)):
        return [leaf for e in display.elts for leaf in _list_leaves(e)]
    return [display]


def check(fs: FunctionSource) -> None:
    """Raise at the first unsupported construct of ``fs``; return None when all is supported."""
    fence = _Fence(fs)
    fence.visit(fs.tree.args)
    for statement in fs.tree.body:
        fence.visit(statement)


def is_range(fs: FunctionSource, func: ast.expr) -> bool:
    """``range``, or numba's ``prange``: a derivative runs its iterations in order (each a
    parallel loop's iterations being independent, that order is as good as any)."""
    if isinstance(func, ast.Name) and func.id == "range":
        return True
    return resolve(fs, func) is numba.prange
