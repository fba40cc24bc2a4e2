"""Running the body of a cell magic as ordinary code in the user namespace.

The body is registered in ``linecache`` through IPython's compiler, so that ``inspect.getsource``
finds the functions it defines (nbautodiff reads their source) and tracebacks show its lines.
The registered text starts with the magic line as a comment: line numbers, ``co_firstlineno``
and the ``lineno`` of errors then count from the cell's first line, the ``%%magic`` line, the
same numbering as the notebook shows.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class CellRun:
    """What running a cell produced: the name its source is registered under and the names of
    the functions it defines at top level, in order of definition."""

    filename: str
    functions: tuple


def run_cell_body(shell, magic: str, line: str, body: str) -> CellRun:
    """Execute ``body`` (the cell below ``%%magic line``) in ``shell``'s user namespace."""
    text = f"# %%{magic} {line}".rstrip() + "\n" + shell.transform_cell(body)
    filename = shell.compile.cache(text, shell.execution_count, raw_code=text)
    tree = shell.compile.ast_parse(text, filename=filename)
    shell.ex(shell.compile(tree, filename, "exec"))
    return CellRun(filename=filename, functions=top_level_functions(tree))


def top_level_functions(tree: ast.Module) -> tuple:
    """Names bound by ``def`` at the top level of ``tree``, each once, in order."""
    names = [node.name for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return tuple(dict.fromkeys(names))
