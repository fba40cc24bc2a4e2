"""Syntax trees to Python source in real files, and from there to live functions.

Generated code is written to a file (so ``inspect``, tracebacks and numba's on-disk cache work),
an entry of :mod:`.cache`, and executed in a module of its own. :func:`render` keeps, for every
generated line, the line of the user's source it came from, so errors in generated code point at
the user's line.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

from . import annotations as anno

INDENT = "    "


@dataclass
class Rendered:
    text: str
    user_lines: list[int | None] = field(default_factory=list)   # generated line -> user line

    def user_line(self, generated_line: int) -> int | None:
        if 1 <= generated_line <= len(self.user_lines):
            return self.user_lines[generated_line - 1]
        return None


def render(functions: list[ast.FunctionDef], header: str = "", user_text=None) -> Rendered:
    """Source of ``functions``; one statement per line, with the user's line of each.

    ``pass`` appears only where a block would be empty. With ``user_text`` (user line number ->
    the text of that line, or None), each run of statements generated from one line of the
    user's code starts with a comment quoting it (``# 12: q += prec[c, j] * diff``)."""
    lines: list[str] = []
    origin: list[int | None] = []
    for line in header.splitlines():
        lines.append(line)
        origin.append(None)
    marked = [None]                     # the user's line the last comment quoted

    def mark(line: int | None, pad: str) -> None:
        text = user_text(line) if user_text is not None and line is not None else None
        if text and line != marked[0]:
            lines.append(f"{pad}# {line}: {text.strip()}")
            origin.append(line)
            marked[0] = line

    def block(statements: list[ast.stmt], depth: int) -> None:
        kept = [s for s in statements if not isinstance(s, ast.Pass)] or statements[:1]
        for statement in kept:
            line = getattr(statement, "lineno", None)
            pad = INDENT * depth
            if not isinstance(statement, ast.Pass):
                mark(line, pad)
            if isinstance(statement, (ast.If, ast.For, ast.While)):
                head = ast.unparse(_header_only(statement)).splitlines()[0]
                lines.append(pad + head)
                origin.append(line)
                block(statement.body, depth + 1)
                if statement.orelse and not all(isinstance(s, ast.Pass) for s in statement.orelse):
                    lines.append(pad + "else:")
                    origin.append(line)
                    block(statement.orelse, depth + 1)
            else:
                for text in ast.unparse(statement).splitlines():
                    lines.append(pad + text)
                    origin.append(line)

    for function in functions:
        lines.append("")
        origin.append(None)
        signature = ast.unparse(_header_only(function)).splitlines()[0]
        lines.append(signature)
        origin.append(getattr(function, "lineno", None))
        if ast.get_docstring(function) is None and anno.get(function, anno.DOC, None):
            lines.append(INDENT + repr(anno.get(function, anno.DOC)))
            origin.append(None)
        block(function.body, 1)
    return Rendered("\n".join(lines) + "\n", origin)


def _header_only(node):
    clone = copy.copy(node)
    clone.body = [ast.Pass()]
    if hasattr(clone, "orelse"):
        clone.orelse = []
    return clone


def load(rendered: Rendered, stem: str, namespace: dict, key=None) -> tuple[str, dict]:
    """Write ``rendered`` to a real file and execute it in a module holding ``namespace``;
    returns (the file, the module's namespace). With a :class:`.cache.Key` the file is the
    artifact of that key in the cache (read from it when there); without, a file of this
    process. Builders that want the transform skipped too use :func:`.cache.artifact`."""
    from . import cache
    entry = cache.artifact(key or cache.private_key(stem), lambda: cache.Built(stem, rendered.text))
    return entry.source_path, entry.load(namespace)


def annotations(tree: ast.AST) -> str:
    """What the transforms read from ``tree`` beyond its rendered text: every annotation
    (:mod:`.annotations`: call kinds, in-place rebindings, checkpoint marks...) with its node
    and line. A cache key of a normalised function hashes this next to its text."""
    notes = []
    for node in ast.walk(tree):
        marks = anno.items(node)
        if marks:
            notes.append(f"{type(node).__name__}@{getattr(node, 'lineno', None)}:" + ",".join(
                f"{name}={_annotation(value)}" for name, value in marks))
    return "\n".join(notes)


def _annotation(value) -> str:
    if value is None or isinstance(value, (bool, int, float, str, tuple)):
        return repr(value)
    return getattr(value, "__qualname__", None) or type(value).__qualname__
