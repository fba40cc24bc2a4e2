"""May-alias and view analysis: which storage each array name may refer to, and which writes
the derivative transforms cannot follow.

Every array name of a normalised function is mapped to the *roots* whose memory it may refer
to (a parameter, a global array, or a name bound to a fresh array: the result of arithmetic,
a constructor, ``copy``), each with *how* it was reached: the view kinds along the way
(``slicing`` for basic indexing ``y[2:5]``/``A[i]``, ``reshape``, ``transpose``,
``ascontiguousarray``, ``atleast_2d``..., ``returned by 'g'`` for the result of a callee that may
return its argument or a view of it, interprocedurally from :func:`returned_params`). Tuples
hold the union of their elements; an element taken out of a tuple may be any of them. Calls
this module does not know are views of all their array arguments, never fresh arrays.

The derivative transforms follow aliases and basic-slicing views (the shadow or tangent of
``w = y[2:5]`` is the same view of ``y``'s). :func:`check` refuses, with the user's line, each
write they would get wrong:

* a write (store ``A[...] = ``, in-place operator, call of a function that writes that
  parameter) through a name that may be a view of another kind;
* a write to an array while a view of it of another kind, made before, is read after;
* (reverse mode) a call that passes arrays that may share memory to a function that writes
  one of them: its derivative assumes distinct arrays;
* a store through a boolean mask of a value that may share memory with the array written,
  or through a slice whose step differs from the step of the slice of that array it stores
  (``y[::2] = y[0:3]``): NumPy does not read that value whole first, and what it stores then
  depends on the order it copies in (:func:`refuse_overlapping_mask_stores`).

Other stores of such a value (``x[1:] = x[:-1]``, ``x[idx] = x[0:4]``) read it whole before
storing, in NumPy and numba; :func:`copy_overlapping_stores` makes the derivatives do so
explicitly (a copy), so that no store's value is a view of the array written.

Where it cannot tell, it refuses; it never guesses.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from numba import types as nbtypes

from nbautodiff import annotations as anno, naming
from nbautodiff.codegen import parameters
from nbautodiff.errors import UnsupportedConstructError
from . import typeinfer
from .activity import assigned_names, own_reads, walk_statements

SLICING = "slicing"
# Kinds of views the derivative transforms give the same view of the shadow / tangent.
SUPPORTED = frozenset({SLICING, "followed"})
# Whole-array primitives (by rule or helper name) whose result may be a view of their first
# argument (NumPy and numba return the argument itself, or a view, at least for some layouts).
VIEW_CALLS = {"transpose", "reshape", "atleast_1d", "atleast_2d", "atleast_3d", "ravel",
              "asarray", "ascontiguousarray", "asfortranarray", "squeeze", "expand_dims",
              "swapaxes", "moveaxis", "diagonal", "broadcast_to", "real", "imag", "view",
              "flat", "newaxis", "T"}
# Kinds of calls whose result is a new array (or not an array).
FRESH_CALLS = {"copy", "constructor", "rule", "zero"}

Ref = tuple  # (root name, frozenset of view kinds on the way)


@dataclass
class Aliasing:
    refs: dict = field(default_factory=dict)        # name -> {(root, kinds)}
    writes: list = field(default_factory=list)      # (statement, name written through, what)
    bindings: dict = field(default_factory=dict)    # name -> [statements binding it]
    reads: dict = field(default_factory=dict)       # name -> [statements reading it]
    order: dict = field(default_factory=dict)       # id(statement) -> position
    loops: list = field(default_factory=list)       # sets of ids of each loop's statements
    calls: list = field(default_factory=list)       # (statement, user call) in program order
    spelled: dict = field(default_factory=dict)     # temporary -> the expression it holds
    sites: dict = field(default_factory=dict)       # id(statement) -> Site

    def refs_of(self, name: str) -> set:
        return self.refs.get(name, {(name, frozenset())})

    def roots(self, name: str) -> set[str]:
        return {root for root, _ in self.refs_of(name)}

    def unsupported(self, name: str, supported=SUPPORTED) -> list[tuple[str, frozenset]]:
        """(root, kinds) of the ways ``name`` may be a view that the transforms do not follow."""
        return sorted(((root, kinds) for root, kinds in self.refs_of(name)
                       if kinds - supported), key=lambda r: (r[0], sorted(r[1])))

    def follows(self, first: ast.stmt, then: ast.stmt) -> bool:
        """Whether ``then`` may run after ``first`` has (later in program order, or both in
        one loop)."""
        if self.order[id(then)] > self.order[id(first)]:
            return True
        return any(id(first) in loop and id(then) in loop for loop in self.loops)

    def between(self, made: ast.stmt, write: ast.stmt, read: ast.stmt) -> bool:
        """Whether ``write`` may run after ``made`` binds a name and before ``read`` reads
        that binding (no other binding of the name in between)."""
        site = self.sites[id(made)]
        read_site = self.sites[id(read)]
        if any(block is site.block for block in read_site.blocks) and \
                self.order[id(made)] < self.order[id(read)]:
            # ``made`` comes first in a block around ``read``: each path to ``read`` passes it
            if self.order[id(write)] <= self.order[id(made)]:
                return False
            if self.order[id(write)] < self.order[id(read)]:
                return True
            return any(id(write) in loop and id(read) in loop and id(made) not in loop
                       for loop in self.loops)
        return self.follows(made, write) and self.follows(write, read)

    def spelling(self, name: str) -> str:
        return self.spelled.get(name, name)


def _is_array(types: dict | None, name: str) -> bool:
    return types is None or typeinfer.is_array(types.get(name))


def _holds_arrays(types: dict | None, name: str) -> bool:
    if types is None:
        return True
    typ = types.get(name)
    return typeinfer.is_array(typ) or isinstance(typ, nbtypes.BaseTuple)


def _fancy(index: ast.expr, types: dict | None) -> bool:
    """Whether an index holds an array (advanced indexing: the result is a copy)."""
    if types is None:
        return False
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    return any(isinstance(p, ast.Name) and typeinfer.is_array(types.get(p.id)) for p in parts)


def _call_name(call: ast.Call) -> str:
    target = anno.get(call, anno.TARGET, None)
    if anno.get(call, anno.KIND, None) == "helper":
        return target.spelling.rsplit(".", 1)[-1]
    name = getattr(target, "name", None) or getattr(target, "__name__", None)
    if name is None:
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else ast.unparse(func)
    return name


# Views made by calls that the transforms follow once marked (annotation ``VIEW``): the
# shadow / tangent is the same call on the operand's ("call"), or the operand's itself, the
# call returning its argument ("alias"); by rule or helper name, given the operand's type.
def followed_view(statement: ast.stmt, types: dict | None) -> str | None:
    """"call" or "alias" for ``B = view_call(x, ...)`` that the transforms can follow (NumPy
    and numba both return a view or ``x`` itself, for ``x``'s type), else None."""
    if types is None or not (isinstance(statement, ast.Assign)
                             and isinstance(statement.targets[0], ast.Name)):
        return None
    call = statement.value
    if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND, None) in ("array", "helper")
            and call.args and isinstance(call.args[0], ast.Name)):
        return None
    typ = types.get(call.args[0].id)
    if not typeinfer.is_array(typ) or not typeinfer.is_array(types.get(statement.targets[0].id)):
        return None
    name = _call_name(call)
    if name == "transpose":
        return "call"
    if name == "reshape" and typ.layout == "C":
        return "call"
    if name == "ascontiguousarray" and (typ.layout == "C" or typ.ndim == 1 and typ.layout == "F"):
        return "alias"
    if name in ("atleast_1d", "atleast_2d", "atleast_3d"):
        return "alias" if typ.ndim >= int(name[-2]) else "call"
    return None


FOLLOWED = "followed"       # the kind of a view annotated ``VIEW`` (see _mark_followed_views)


def _value_refs(value: ast.expr, refs_of, types, callee_returns, target: str | None,
                statement: ast.stmt | None = None) -> set:
    """The (root, kinds) the value of a normalised right-hand side may refer to."""
    def through(name: str, kind: str | None) -> set:
        return {(root, kinds | {kind} if kind else kinds) for root, kinds in refs_of(name)}

    if isinstance(value, ast.Name):
        return through(value.id, None) if _holds_arrays(types, value.id) else set()
    if isinstance(value, ast.Tuple):
        return set().union(*(_value_refs(e, refs_of, types, callee_returns, None)
                             for e in value.elts)) if value.elts else set()
    if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
        base = value.value.id
        if types is not None and isinstance(types.get(base), nbtypes.BaseTuple):
            return through(base, None)                  # an element of a tuple
        if not _holds_arrays(types, base) or _fancy(value.slice, types):
            return set()
        return through(base, SLICING)
    if isinstance(value, ast.Call):
        kind = anno.get(value, anno.KIND, None)
        args = [a.id for a in value.args if isinstance(a, ast.Name) and _holds_arrays(types, a.id)]
        name = _call_name(value)
        if kind in FRESH_CALLS:
            return set()
        if kind in ("array", "helper") and name in VIEW_CALLS and value.args \
                and isinstance(value.args[0], ast.Name):
            if statement is not None and anno.get(statement, anno.VIEW, None):
                return {(root, kinds | {FOLLOWED}) for root, kinds in refs_of(value.args[0].id)}
            return through(value.args[0].id, name)
        if kind == "array":
            return set()
        if kind == "user" and callee_returns is not None:
            returned = callee_returns(value)
            if returned is not None:
                out = set()
                for position, kinds in returned.items():
                    arg = value.args[position] if position < len(value.args) else None
                    if isinstance(arg, ast.Name) and _holds_arrays(types, arg.id):
                        out |= {(root, k | kinds | {f"returned by '{name}'"})
                                for root, k in refs_of(arg.id)}
                return out
        # anything else (an unknown call): a view of each of its array arguments
        return set().union(*(through(a, f"returned by '{name}'") for a in args)) if args else set()
    return set()


def analyse(tree: ast.FunctionDef, types: dict | None, callee_returns=None,
            callee_writes=None) -> Aliasing:
    """The aliasing of normalised ``tree``; ``types`` None: every name may be an array.
    ``callee_returns(call)``: {position: kinds} of the arguments the callee's result may refer
    to (None: unknown, then any); ``callee_writes(call)``: positions of those it writes."""
    al = Aliasing()
    params = parameters(tree)
    statements = list(walk_statements(tree.body))
    for position, (statement, site) in enumerate(statements):
        al.order[id(statement)] = position
        al.sites[id(statement)] = site
        if isinstance(statement, (ast.For, ast.While)):
            al.loops.append({id(s) for s, _ in walk_statements(statement.body)})
        for name in [] if anno.get(statement, anno.IN_PLACE, False) else \
                assigned_names(statement):           # `x op= ...` keeps x bound to its array
            al.bindings.setdefault(name, []).append(statement)
        for name in own_reads(statement):
            al.reads.setdefault(name, []).append(statement)
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name) \
                and statement.targets[0].id.startswith(naming.TEMP):
            al.spelled.setdefault(statement.targets[0].id, ast.unparse(statement.value))
    refs: dict[str, set] = {p: {(p, frozenset())} for p in params}

    def refs_of(name: str) -> set:
        return refs.get(name, {(name, frozenset())})

    changed = True
    while changed:
        changed = False
        for statement, _ in statements:
            if not isinstance(statement, ast.Assign) or anno.get(statement, anno.IN_PLACE, False):
                continue                      # `x op= ...` keeps x's array (a write, below)
            target, value = statement.targets[0], statement.value
            names = [target.id] if isinstance(target, ast.Name) else \
                [n for n in assigned_names(statement)]
            for name in names:
                if not _holds_arrays(types, name):
                    continue
                new = _value_refs(value, refs_of, types, callee_returns, name, statement)
                if not new:
                    new = {(name, frozenset())}          # a fresh array
                old = refs.get(name, set())
                if not new <= old:
                    refs[name] = old | new
                    changed = True
    al.refs = refs
    for statement, _ in statements:
        if isinstance(statement, ast.Assign):
            target = statement.targets[0]
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                al.writes.append((statement, target.value.id, "store"))
            elif anno.get(statement, anno.IN_PLACE, False) and isinstance(target, ast.Name) \
                    and _is_array(types, target.id):
                al.writes.append((statement, target.id, "in-place operator"))
        call = getattr(statement, "value", None)
        if isinstance(call, ast.Call) and anno.get(call, anno.KIND, None) == "user":
            al.calls.append((statement, call))
            for position in sorted(callee_writes(call) if callee_writes else ()):
                arg = call.args[position] if position < len(call.args) else None
                if isinstance(arg, ast.Name):
                    al.writes.append((statement, arg.id, f"call to '{_call_name(call)}'"))
    return al


def _describe(kinds: frozenset) -> str:
    kinds = sorted(kinds - {SLICING}) + ([SLICING] if SLICING in kinds else [])
    return " and ".join(kinds)


def _view_of(root: str, kinds: frozenset) -> str:
    """'a view of 'x' made by reshape', or for a callee's result 'the array of 'y' (or a view
    of it) returned by 'g''."""
    returned = sorted(k for k in kinds if k.startswith("returned by"))
    if returned:
        return f"which may be '{root}' or a view of it ({', '.join(returned)})"
    return f"a view of '{root}' made by {_describe(kinds)}"


def check(normalized, types: dict, callee_returns, callee_writes, reverse: bool,
          tree: ast.FunctionDef | None = None) -> Aliasing:
    """Refuse, with the user's line, each write the transforms would get wrong (see the module
    docstring); ``reverse``: reverse mode (also refuses calls passing overlapping arrays to a
    function that writes one of them). Generated code (a derivative differentiated again) is
    not checked: its views are the transforms' own."""
    fs = normalized.source
    tree = tree or normalized.tree
    al = analyse(tree, types, callee_returns, callee_writes)
    if _mark_followed_views(tree, types, al):
        al = analyse(tree, types, callee_returns, callee_writes)     # those views followed
    if fs.generated:
        return al
    refuse_overlapping_mask_stores(normalized, types, callee_returns, tree)

    def refuse(node, construct: str, message: str):
        raise fs.error(message, node, construct=construct, kind=UnsupportedConstructError)

    for statement, name, what in al.writes:
        if not _is_array(types, name):
            continue
        shown = al.spelling(name)
        for root, kinds in al.unsupported(name):
            how = _view_of(al.spelling(root), kinds)
            refuse(statement, "write through a view",
                   f"write ({what}) through '{shown}', {how}, is not supported (copy it "
                   f"first: {shown} = {shown}.copy(), or index '{al.spelling(root)}' itself)")
        roots = al.roots(name)
        for other, bound in al.bindings.items():
            if other == name or not _is_array(types, other):
                continue
            views = [(root, kinds) for root, kinds in al.unsupported(other) if root in roots]
            if not views:
                continue
            reads = al.reads.get(other, [])
            if reverse:
                # the reverse sweep may read the view's values after the write, whenever the
                # primal read them: any read counts
                seen = [s for s in bound if reads and al.follows(s, statement)]
            else:
                seen = [s for s in bound for r in reads if al.between(s, statement, r)]
            if seen:
                root, kinds = views[0]
                refuse(statement, "write to an array seen through a view",
                       f"write ({what}) to '{shown}' changes '{al.spelling(other)}', "
                       f"{_view_of(al.spelling(root), kinds)} (line "
                       f"{getattr(seen[0], 'lineno', '?')}), which "
                       f"{'the derivative reads' if reverse else 'is read later'}; this is not "
                       f"supported (take a copy for the view: .copy())")
    if reverse:
        for statement, call in al.calls:
            written = sorted(callee_writes(call)) if callee_writes else []
            arrays = [(k, a.id) for k, a in enumerate(call.args)
                      if isinstance(a, ast.Name) and _is_array(types, a.id)]
            for position in written:
                if position >= len(call.args) or not isinstance(call.args[position], ast.Name):
                    continue
                name = call.args[position].id
                for k, other in arrays:
                    if k == position or not (al.roots(name) & al.roots(other)):
                        continue
                    if _disjoint(al, name, other):
                        continue
                    refuse(statement, "overlapping arguments",
                           f"call to '{_call_name(call)}' passes '{al.spelling(name)}' and "
                           f"'{al.spelling(other)}', which may share memory, and "
                           f"'{_call_name(call)}' writes argument {position + 1}: reverse mode "
                           "does not support this (pass a copy: .copy())")
    return al


def overlapping_stores(tree: ast.FunctionDef, types: dict, callee_returns=None) -> list:
    """(statement, site) of each store ``T[...] = R`` whose right-hand side ``R`` is an array
    that may share memory with ``T`` (``x[1:] = x[:-1]``, ``B = x; B[idx] = B[0:4]``)."""
    al = analyse(tree, types, callee_returns)
    found = []
    for statement, site in walk_statements(tree.body):
        if not (isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Subscript)
                and isinstance(statement.targets[0].value, ast.Name)
                and isinstance(statement.value, ast.Name)
                and typeinfer.is_array(types.get(statement.value.id))):
            continue
        if al.roots(statement.value.id) & al.roots(statement.targets[0].value.id):
            found.append((statement, site))
    return found


def _masked(index: ast.expr, types: dict) -> str | None:
    """The boolean mask array in ``index``, if there is one."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for part in parts:
        typ = types.get(part.id) if isinstance(part, ast.Name) else None
        if typeinfer.is_array(typ) and isinstance(typ.dtype, nbtypes.Boolean):
            return part.id
    return None


def refuse_overlapping_mask_stores(normalized, types: dict, callee_returns=None,
                                   tree: ast.FunctionDef | None = None) -> None:
    """Refuse, with the user's line, a store whose right-hand side may share memory with the
    array written where NumPy does not read that right-hand side whole before storing (its
    result depends on how it buffers the copy), so neither a compiled primal nor a derivative
    can follow it: a store through a boolean mask (``x[m] = x[0:3]``), and a store through a
    1-D slice whose step differs in size from that of the slice it stores (``y[::2] = y[0:3]``:
    NumPy copies element by element, reading values it has already overwritten). Other stores read
    it whole first (see :func:`copy_overlapping_stores`). Generated code is not checked."""
    fs = normalized.source
    if fs.generated:
        return
    tree = tree or normalized.tree
    bindings = _single_bindings(tree)
    for statement, _ in overlapping_stores(tree, types, callee_returns):
        target = statement.targets[0]
        array = target.value.id
        mask = _masked(target.slice, types)
        if mask is not None:
            raise fs.error(f"store into '{array}' through the boolean mask '{mask}' of a value "
                           f"that may share memory with '{array}' is not supported (NumPy's "
                           f"result depends on how it buffers the copy): store a copy, "
                           f"{array}[{mask}] = (...).copy()", statement,
                           construct="masked store of an overlapping value",
                           kind=UnsupportedConstructError)
        stored, steps = _slice_step(target.slice), None
        bound = bindings.get(statement.value.id)
        if isinstance(bound, ast.Subscript):
            steps = (stored, _slice_step(bound.slice))
        elif isinstance(bound, ast.Name):
            steps = (stored, 1)
        if steps is not None and steps[0] is not False and steps[1] is not False \
                and (None in steps or abs(steps[0]) != abs(steps[1])):
            raise fs.error(f"store into '{array}' through a slice of step {_step_text(steps[0])} "
                           f"of a slice of step {_step_text(steps[1])} that may share memory "
                           f"with '{array}' is not supported (NumPy copies element by element "
                           f"and may read values it has already overwritten): store a copy, "
                           f"{array}[{ast.unparse(target.slice)}] = (...).copy()", statement,
                           construct="strided store of an overlapping value",
                           kind=UnsupportedConstructError)


def _single_bindings(tree: ast.FunctionDef) -> dict:
    """name -> the value it is bound to, for names bound once (by a plain assignment)."""
    counts: dict = {}
    values: dict = {}
    for statement, _ in walk_statements(tree.body):
        for node in ast.walk(statement) if not isinstance(statement, ast.Assign) else [statement]:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                counts[node.id] = counts.get(node.id, 0) + 1
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            counts[name] = counts.get(name, 0) + 1
            values[name] = statement.value
    return {name: value for name, value in values.items() if counts.get(name) == 1}


def _slice_step(index: ast.expr):
    """The step of a 1-D slice index (1 where omitted), None where it is not a constant
    (unknown), False where the index is not a 1-D slice."""
    if not isinstance(index, ast.Slice):
        return False
    if index.step is None:
        return 1
    step = index.step
    if isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub) \
            and isinstance(step.operand, ast.Constant):
        return -step.operand.value
    return step.value if isinstance(step, ast.Constant) else None


def _step_text(step) -> str:
    return "unknown" if step is None else str(step)


def copy_overlapping_stores(tree: ast.FunctionDef, types: dict, callee_returns=None) -> int:
    """Make each store ``T[...] = R`` whose right-hand side may share memory with ``T`` store a
    fresh copy of ``R`` (``t = R.copy(); T[...] = t``, ``t``'s type added to ``types``), as
    NumPy and numba read such a right-hand side whole before storing. The derivative transforms
    then never see a store whose value is a view of the array written (the adjoint of that
    view would be the shadow being zeroed). Returns the number of copies made."""
    found = overlapping_stores(tree, types, callee_returns)
    if not found:
        return 0
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        set(parameters(tree))
    number = 0
    for statement, site in found:
        value = statement.value.id
        name = naming.unused(f"{naming.TEMP}c{number}", taken.__contains__)
        number += 1
        taken.add(name)
        call = ast.Call(func=ast.Attribute(value=ast.Name(id=value, ctx=ast.Load()), attr="copy",
                                           ctx=ast.Load()), args=[], keywords=[])
        anno.set(call, anno.KIND, "copy")
        anno.set(call, anno.TARGET, None)
        copied = ast.copy_location(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                              value=call), statement)
        ast.fix_missing_locations(copied)
        site.block.insert(site.block.index(statement), copied)
        statement.value = ast.copy_location(ast.Name(id=name, ctx=ast.Load()), statement.value)
        typ = types[value]
        types[name] = nbtypes.Array(typ.dtype, typ.ndim, "C")
    return number


def _mark_followed_views(tree: ast.FunctionDef, types: dict, al: Aliasing) -> int:
    """Annotate ``VIEW`` ("call" or "alias", see :func:`followed_view`) on each view
    made by a call whose array is written somewhere (else a view and a copy do the same and the
    call keeps its own derivative rule), where the view's name is bound once, outside loops."""
    written, marked = set(), 0
    for _, name, _ in al.writes:
        if _is_array(types, name):
            written |= al.roots(name)
    for statement, site in walk_statements(tree.body):
        how = followed_view(statement, types)
        if not how or not al.roots(statement.targets[0].id) & written:
            continue
        if site.loop_depth or len(al.bindings.get(statement.targets[0].id, [])) != 1:
            continue           # a name rebound to views in turn: not followed, so refused
        anno.set(statement, anno.VIEW, how)
        marked += 1
    return marked


def _disjoint(al: Aliasing, first: str, second: str) -> bool:
    """Whether two names are provably different elements ``A[j]``, ``A[k]`` (constants j != k)
    of one array, each bound once."""
    picks = []
    for name in (first, second):
        bound = al.bindings.get(name, [])
        if len(bound) != 1 or not isinstance(bound[0], ast.Assign):
            return False
        value = bound[0].value
        if not (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)
                and isinstance(value.slice, ast.Constant) and isinstance(value.slice.value, int)):
            return False
        picks.append((value.value.id, value.slice.value))
    return picks[0][0] == picks[1][0] and picks[0][1] != picks[1][1] and \
        picks[0][1] >= 0 and picks[1][1] >= 0


def returned_params(normalized, callee_returns) -> dict[int, frozenset]:
    """{position: view kinds} of the parameters whose arrays the result of ``normalized`` (or
    an element of it, for a tuple) may be, or be a view of; types unknown, so conservatively
    any name may be an array."""
    tree = normalized.tree
    params = parameters(tree)
    al = analyse(tree, None, callee_returns)
    out: dict[int, frozenset] = {}
    for statement, _ in walk_statements(tree.body):
        if isinstance(statement, ast.Return) and statement.value is not None:
            for root, kinds in _value_refs(statement.value, al.refs_of, None, callee_returns,
                                           None):
                if root in params:
                    position = params.index(root)
                    out[position] = out.get(position, frozenset()) | kinds
    return out


def written_params(normalized, callee_writes, callee_returns=None) -> set[int]:
    """Positions of parameters whose arrays the function writes: directly, via aliases or
    callees, and by in-place operators (``A += ...``: forward mode stores into the array, reverse
    mode refuses them on arrays the caller sees, generated code uses them on its buffers). In
    user code an in-place operator counts on a name bound to the array or to a slice of it.
    ``callee_writes(binding)``: the positions the user function bound as ``binding`` writes;
    ``callee_returns``: as for :func:`analyse`."""
    generated = normalized.source.generated
    tree = normalized.tree
    params = parameters(tree)
    origin = {p: {p} for p in params}              # name -> parameters whose arrays it may hold
    bound = {p: {p} for p in params}               # ... that it is bound to, or to a slice of
    written = set()
    for statement, _ in walk_statements(tree.body):
        if isinstance(statement, ast.Assign):
            target, value = statement.targets[0], statement.value
            if anno.get(statement, anno.IN_PLACE, False):   # `A += ...` on an argument's array
                written |= (origin if generated else bound).get(target.id, set())
            sources = set().union(*(origin.get(name, set()) for name in _held_names(value)))
            if isinstance(target, ast.Name) and sources:
                origin[target.id] = origin.get(target.id, set()) | sources
                bound[target.id] = bound.get(target.id, set()) | _bound_to(value, bound)
            elif isinstance(target, ast.Subscript) and target.value.id in origin:
                written |= origin[target.value.id]
        call = getattr(statement, "value", None)
        positions = []
        if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
            positions = callee_writes(ast.unparse(call.func))
        elif isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "helper" \
                and anno.get(call, anno.TARGET).writes is not None:
            positions = [anno.get(call, anno.TARGET).writes]   # e.g. copy_into, the writeback
        for position in positions:
            arg = call.args[position]
            if isinstance(arg, ast.Name) and arg.id in origin:
                written |= origin[arg.id]
    # a store (or a callee's write) through a view made by a call, ``V = A.reshape(9);
    # V[0] = ...``: the analysis follows views of every kind
    views = analyse(tree, None, callee_returns, lambda call: callee_writes(ast.unparse(call.func)))
    for _, name, what in views.writes:
        if what != "in-place operator":
            written |= views.roots(name) & set(params)
    return {params.index(p) for p in written}


def _bound_to(value: ast.expr, bound: dict) -> set:
    """The parameters whose arrays ``value`` is, or is a slice of (``x[1:]``); in user code an
    element ``x[i]`` may be a number, whose ``s += ...`` writes no array."""
    if isinstance(value, ast.Subscript):
        index = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
        if not any(isinstance(part, ast.Slice) for part in index):
            return set()
        value = value.value
    return bound.get(value.id, set()) if isinstance(value, ast.Name) else set()


def _held_names(value: ast.expr) -> list[str]:
    """Names whose arrays the value of ``value`` may be or hold: a name, the elements of a
    tuple display, the array (a view of it) or tuple that a subscript reads."""
    if isinstance(value, ast.Subscript):
        value = value.value
    nodes = value.elts if isinstance(value, ast.Tuple) else [value]
    return [node.id for node in nodes if isinstance(node, ast.Name)]
