"""Small helpers the transforms use to read and write code: statements and expressions parsed
from source text, source text of nodes and subscript indices, rule templates instantiated with a
statement's names, the statements of a body in program order with where each one sits, and the
parameter names of a function (:func:`parameters`, the one way nbautodiff reads them)."""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass


def parameters(function) -> list[str]:
    """The names of the positional parameters of ``function``, in order: a function definition
    (its syntax tree) or a Python function (also behind a numba dispatcher or a declared
    wrapper, through ``py_func``). Every module reads parameter names through this."""
    if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return [a.arg for a in function.args.posonlyargs + function.args.args]
    code = getattr(getattr(function, "py_func", function), "__code__", None)
    if code is None:
        raise TypeError(f"{function!r} is not a Python function")
    return list(code.co_varnames[:code.co_argcount])


def parse(source: str) -> list[ast.stmt]:
    """The statements of ``source``."""
    return ast.parse(source).body


def expr(source: str) -> ast.expr:
    """The expression ``source``."""
    return ast.parse(source, mode="eval").body


def src(node: ast.AST) -> str:
    """Python source of ``node``."""
    return ast.unparse(node)


def index_src(index: ast.expr) -> str:
    """Source of a subscript's index, as written between brackets (slices included)."""
    return ast.unparse(ast.Subscript(value=ast.Name(id="_"), slice=index))[2:-1]


class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, ast.expr]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return copy.deepcopy(self.mapping[node.id]) if node.id in self.mapping else node


def instantiate(template: ast.expr, mapping: dict[str, ast.expr]) -> ast.expr:
    """A rule template with its names replaced by the statement's atoms."""
    return _Substitute(mapping).visit(copy.deepcopy(template))


@dataclass
class Site:
    """Where a statement sits: its block, the enclosing blocks and how deep in loops."""
    block: list
    blocks: tuple          # enclosing blocks, outermost first (the statement's own block last)
    loop_depth: int


def walk_statements(body: list, blocks=(), depth: int = 0):
    """Yield (statement, Site) for every statement, in program order."""
    blocks = blocks + (body,)
    for statement in body:
        yield statement, Site(body, blocks, depth)
        if isinstance(statement, ast.If):
            yield from walk_statements(statement.body, blocks, depth)
            yield from walk_statements(statement.orelse, blocks, depth)
        elif isinstance(statement, (ast.For, ast.While)):
            yield from walk_statements(statement.body, blocks, depth + 1)
