"""The fence's second half, once types are known: array constructs refused with their line.

:mod:`nbautodiff.frontend.fence` rejects what is unsupported by syntax alone. Some constructs are only
unsupported for arrays, which takes the variables' types to see: :func:`check` raises
:class:`~nbautodiff.errors.UnsupportedConstructError` for them, naming the line in the user's
source, before any derivative is generated.
"""
from __future__ import annotations

import ast

from numba import types as nbtypes

from nbautodiff import naming
from nbautodiff.errors import UnsupportedConstructError
from nbautodiff.frontend.normalize import Normalized
from . import aliasing, typeinfer
from .activity import array_index_names, view_origin, walk_statements


def check(normalized: Normalized, types: dict, in_place_shared: bool = False,
          callee_returns=None, callee_writes=None, tree=None) -> None:
    """Refuse, with its line, each array construct the reverse mode does not differentiate
    (``in_place_shared``: forward mode, which updates shared arrays in place and gives a view
    the same view of the tangent, allows in-place operators and names rebound to views), and
    the writes through views and aliases that :mod:`nbautodiff.analysis.aliasing` finds the transforms cannot
    follow (``callee_returns``/``callee_writes``: what each callee returns and writes); the views
    made by calls that they follow are marked on ``tree``, the copy of the normalised function
    that is transformed (see :func:`nbautodiff.analysis.aliasing.followed_view`)."""
    fs = normalized.source

    def refuse(node: ast.AST, construct: str, detail: str) -> None:
        raise fs.error(f"{construct} is not supported{detail}", node, construct=construct,
                       kind=UnsupportedConstructError)

    tree = tree or normalized.tree
    # first: the views made by calls that the transforms follow are marked on ``tree``, and
    # they are views for the checks below too
    aliasing.check(normalized, types, callee_returns, callee_writes, reverse=not in_place_shared,
                   tree=tree)
    shared = _shared_arrays(normalized, types, tree)
    for name, node in [] if in_place_shared else normalized.augmented:
        if typeinfer.is_array(types.get(name)) and name in shared:
            refuse(node, f"in-place operator on the array '{name}', which another name or the "
                   "caller also sees",
                   f" (write {name} = {name} {_operator_symbol(node)} ... or update it element by "
                   "element)")
    for statement, _ in walk_statements(tree.body):
        _check_array_indices(statement, types, refuse)
    origins: dict[str, set] = {}
    views: dict[str, ast.stmt] = {}
    for statement, _ in walk_statements(tree.body):
        if not (isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)):
            continue
        name = statement.targets[0].id
        if not typeinfer.is_array(types.get(name)):
            continue
        origins.setdefault(name, set()).add(view_origin(statement, types) or name)
        if isinstance(statement.value, ast.Subscript):
            views.setdefault(name, statement)
    for name, statement in [] if in_place_shared else views.items():
        if len(origins[name]) > 1:
            refuse(statement, f"binding '{name}' to views of different arrays",
                   " (use a new name for each)")


def _check_array_indices(statement: ast.stmt, types: dict, refuse) -> None:
    """Integer-array and boolean-mask indexing in the form numba compiles: one index array,
    one-dimensional (``x[idx]``, ``x[x > 0]`` on a vector, ``A[rows]``, ``A[:, cols]``)."""
    if not isinstance(statement, ast.Assign):
        return
    for node in (statement.targets[0], statement.value):
        if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and typeinfer.is_array(types.get(node.value.id))):
            continue
        arrays = array_index_names(node.slice, types)
        array = node.value.id
        if len(arrays) > 1:
            refuse(statement, f"indexing '{array}' with several index arrays",
                   " (numba supports one integer or boolean index array; index in two steps)")
        for name in arrays:
            if types[name].ndim != 1:
                what = "boolean mask" if isinstance(types[name].dtype, nbtypes.Boolean) \
                    else "integer index array"
                refuse(statement, f"indexing '{array}' with a {types[name].ndim}-dimensional {what}",
                       f" (numba supports one-dimensional ones: index {array}.reshape(-1) with "
                       "a flattened one)")


def _shared_arrays(normalized: Normalized, types: dict, tree) -> set[str]:
    """Array names whose array some other name (or the caller, for a parameter) also refers to.

    Normalisation turns ``x op= y`` into ``t = x op y; x = t``; that rebinding equals NumPy's
    in-place update only when nothing else sees ``x``'s array. Aliases of the normaliser's own
    temporaries (fresh arrays) do not count."""
    shared = set(normalized.source.parameters)
    for statement, _ in walk_statements(tree.body):
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            origin = view_origin(statement, types)
            if origin and not origin.startswith(naming.TEMP):
                shared |= {origin, statement.targets[0].id}
            value = statement.value
            if isinstance(value, ast.Tuple):          # an array held by a tuple, and taken out
                shared |= {e.id for e in value.elts if isinstance(e, ast.Name)}
            elif isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
                    and isinstance(types.get(value.value.id), nbtypes.BaseTuple):
                shared.add(statement.targets[0].id)
    return shared


def _operator_symbol(node: ast.AugAssign) -> str:
    symbols = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
               ast.MatMult: "@", ast.Mod: "%", ast.FloorDiv: "//"}
    return symbols.get(type(node.op), "op")
