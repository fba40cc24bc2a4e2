"""The fence's second half, once types are known: array constructs refused with their line.

:mod:`.fence` rejects what is unsupported by syntax alone. Some constructs are only
unsupported for arrays, which takes the variables' types to see: :func:`check` raises
:class:`~nbautodiff.errors.UnsupportedConstructError` for them, naming the line in the user's
source, before any derivative is generated.
"""
from __future__ import annotations

import ast

from . import typeinfer
from .analysis import walk_statements
from .errors import UnsupportedConstructError
from .normalize import Normalized


def _index_count(index: ast.expr) -> int:
    return len(index.elts) if isinstance(index, ast.Tuple) else 1


def check(normalized: Normalized, types: dict) -> None:
    """Refuse, with its line, each array construct the reverse mode does not differentiate."""
    fs = normalized.source

    def refuse(node: ast.AST, construct: str, detail: str) -> None:
        raise fs.error(f"{construct} is not supported{detail}", node, construct=construct,
                       kind=UnsupportedConstructError)

    for name, node in normalized.augmented:
        if typeinfer.is_array(types.get(name)):
            refuse(node, f"in-place operator on the array '{name}'",
                   f" (write {name} = {name} {_operator_symbol(node)} ... or update it element by "
                   "element)")
    for statement, _ in walk_statements(normalized.tree.body):
        if not isinstance(statement, ast.Assign):
            continue
        target, value = statement.targets[0], statement.value
        for subscript in (target, value):
            if not (isinstance(subscript, ast.Subscript) and isinstance(subscript.value, ast.Name)):
                continue
            array_type = types.get(subscript.value.id)
            if typeinfer.is_array(array_type) and _index_count(subscript.slice) < array_type.ndim:
                refuse(statement, "indexing that gives a sub-array (a row or a plane)",
                       f" (index '{subscript.value.id}' with all {array_type.ndim} indices)")


def _operator_symbol(node: ast.AugAssign) -> str:
    symbols = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
               ast.MatMult: "@", ast.Mod: "%", ast.FloorDiv: "//"}
    return symbols.get(type(node.op), "op")
