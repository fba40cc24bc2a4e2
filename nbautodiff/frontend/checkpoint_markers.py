"""Checkpoint markers: ``nad.checkpointed(range(T))`` in the source, and the ``checkpoint=`` option.

The user's side of checkpointing (the transform is :mod:`nbautodiff.transforms.reverse.checkpointing`).
``for t in nad.checkpointed(range(T)):`` marks a loop: a call that returns its argument, so the
function still runs as plain Python and under ``numba.njit``. A call rather than a
``# nad: checkpoint`` comment: it is part of the syntax tree (comments are not, and formatters
move them), so normalisation carries it to the loop it marks (annotation ``CHECKPOINT``, through
:func:`without_markers` and :func:`attach_markers`) and errors point at it; it is resolved like
any name (``nad.``, ``from nbautodiff import checkpointed``); and it takes arguments
(``every=``, ``snapshots=``). :func:`parse_option` reads the ``checkpoint=...`` option of
``grad``/``value_and_grad``/``reverse`` into the same :class:`Schedule`.
"""
from __future__ import annotations

import ast
import copy
from typing import NamedTuple

from numba.extending import overload

from nbautodiff import annotations as anno
from nbautodiff.codegen import walk_statements
from nbautodiff.errors import AutodiffError
from nbautodiff.kernels import checkpoint as runtime
from .source import MISSING, FunctionSource, resolve

CONSTRUCT = "checkpointed loop"


def checkpointed(iterable, every=None, snapshots=None):
    """Mark a ``for`` loop for checkpointing in reverse mode: ``for t in checkpointed(range(T))``.

    Returns ``iterable`` unchanged, so the function runs as before (in Python and under
    ``numba.njit``). In a derivative, the loop stores its state every ``every`` iterations
    (default ``ceil(sqrt(T))``) and recomputes the rest; with ``snapshots=S`` it follows the
    binomial (revolve) schedule with S stored states instead. Both must be integer constants.
    """
    return iterable


@overload(checkpointed)
def _checkpointed_in_numba(iterable, every=None, snapshots=None):
    def identity(iterable, every=None, snapshots=None):
        return iterable
    return identity


class Schedule(NamedTuple):
    """A checkpointing schedule: ``kind`` of :mod:`nbautodiff.kernels.checkpoint` and its parameter."""
    kind: int
    parameter: int = 0

    def describe(self) -> str:
        if self.kind == runtime.BINOMIAL:
            return f"binomial, {self.parameter} snapshots" if self.parameter \
                else "binomial, about (6 T)^(1/3) snapshots"
        return f"segments of {self.parameter}" if self.parameter else "segments of sqrt(T)"


SQRT = Schedule(runtime.SEGMENTS)
BINOMIAL = Schedule(runtime.BINOMIAL)
_NAMED = {"sqrt": SQRT, "segments": SQRT, "binomial": BINOMIAL, "revolve": BINOMIAL}


def parse_option(value) -> Schedule | None:
    """The schedule of a ``checkpoint=`` option: None/False (off), True or ``"sqrt"``
    (segments of sqrt(T)), an int K (segments of K iterations), ``"binomial"``/``"revolve"``
    (optionally ``"binomial:S"`` or ``("binomial", S)`` for S snapshots)."""
    if value is None or value is False:
        return None
    if isinstance(value, Schedule):
        return value
    if value is True:
        return SQRT
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise AutodiffError(f"checkpoint={value}: a segment length must be at least 1")
        return Schedule(runtime.SEGMENTS, value)
    if isinstance(value, str):
        name, _, count = value.strip().lower().partition(":")
        if name.isdigit() and not count:
            return parse_option(int(name))
        if name in _NAMED and (not count or (count.isdigit() and name not in ("sqrt", "segments"))):
            return _NAMED[name] if not count else parse_option((name, int(count)))
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("binomial", "revolve") \
            and isinstance(value[1], int) and not isinstance(value[1], bool):
        if value[1] < 1:
            raise AutodiffError(f"checkpoint={value!r}: at least one snapshot is needed")
        return Schedule(runtime.BINOMIAL, value[1])
    raise AutodiffError(f"checkpoint={value!r} is not a checkpointing schedule (use True or "
                        "'sqrt', a segment length K, 'binomial' or ('binomial', S))")


# -- the marker in the source --------------------------------------------------------------------

def is_marker(fs: FunctionSource, call: ast.AST) -> bool:
    """Whether ``call`` calls :func:`checkpointed` (under any name it is imported as)."""
    return isinstance(call, ast.Call) and resolve(fs, call.func) is checkpointed


def marker_schedule(fs: FunctionSource, call: ast.Call) -> Schedule:
    """The schedule a marker asks for, or a located error when it is malformed."""
    def refuse(message: str):
        return fs.error(f"nad.checkpointed: {message}", call, construct=CONSTRUCT)

    if len(call.args) != 1 or not _is_range(call.args[0]):
        raise refuse("write 'for t in nad.checkpointed(range(...)):' (its one argument is a "
                     "range)")
    options = {}
    for keyword in call.keywords:
        if keyword.arg not in ("every", "snapshots"):
            raise refuse(f"unknown option '{keyword.arg}' (every=K or snapshots=S)")
        value = keyword.value
        if isinstance(value, ast.Name):
            value = MISSING if value.id in _local_names(fs) else resolve(fs, value)
        elif isinstance(value, ast.Constant):
            value = value.value
        if value is MISSING or not isinstance(value, int) or isinstance(value, bool) \
                or value < 1:
            raise refuse(f"{keyword.arg}= must be a positive integer constant, got "
                         f"'{ast.unparse(keyword.value)}'")
        options[keyword.arg] = value
    if len(options) == 2:
        raise refuse("every= (segments) and snapshots= (binomial) exclude each other")
    if "snapshots" in options:
        return Schedule(runtime.BINOMIAL, options["snapshots"])
    return Schedule(runtime.SEGMENTS, options.get("every", 0))


def _local_names(fs: FunctionSource) -> set[str]:
    return set(fs.parameters) | {node.id for node in ast.walk(fs.tree)
                                 if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def _is_range(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.id == "range"


def without_markers(fs: FunctionSource) -> tuple[ast.FunctionDef, dict]:
    """``fs``'s tree with each marked loop iterating over its range, and the marks:
    ``{(line, column) of the loop: Schedule}`` (the tree is a copy when there are marks)."""
    loops = [node for node in ast.walk(fs.tree) if isinstance(node, ast.For)
             and is_marker(fs, node.iter)]
    if not loops:
        return fs.tree, {}
    marks = {(loop.lineno, loop.col_offset): marker_schedule(fs, loop.iter) for loop in loops}
    tree = copy.deepcopy(fs.tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and (node.lineno, node.col_offset) in marks:
            node.iter = node.iter.args[0]
    return tree, marks


def attach_markers(fs: FunctionSource, tree: ast.FunctionDef, marks: dict) -> None:
    """Put each mark on its loop of normalised ``tree`` (annotation ``CHECKPOINT``); refuse the
    marks on loops that cannot be checkpointed."""
    for node, site in walk_statements(tree.body):
        schedule = marks.get((getattr(node, "lineno", None), getattr(node, "col_offset", None)))
        if schedule is None or not isinstance(node, (ast.For, ast.While)):
            continue
        if isinstance(node, ast.While):
            raise fs.error("nad.checkpointed on a loop that break or return can leave early: "
                           "its trip count is not known when it starts (move the exit test "
                           "into the loop body as a flag, or drop the marker)", node,
                           construct=CONSTRUCT)
        if site.loop_depth:
            raise fs.error("nad.checkpointed on a loop nested in another loop: only outermost "
                           "loops can be checkpointed (mark the outer loop)", node,
                           construct=CONSTRUCT)
        anno.set(node, anno.CHECKPOINT, schedule)
