"""Small helpers the transforms use to write generated code: statements and expressions parsed
from source text, source text of nodes and subscript indices, and rule templates instantiated
with a statement's names."""
from __future__ import annotations

import ast
import copy


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

