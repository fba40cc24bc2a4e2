"""Reverse vector mode (Enzyme's batched reverse): one reverse sweep carrying N adjoint lanes.

:func:`vector_sweep` rewrites the reverse sweep ``<variant>__bwd`` that
:mod:`nbautodiff.api.residuals` cuts out of a generated reverse variant into
``<variant>__vec``, which runs that sweep for N seeds at once: the primal work of the sweep
(tape pops, primal values computed again, restores into residual arrays, loop bounds and branch
conditions) runs ONCE, and every statement that carries adjoints runs for each of the N lanes.
It works on the generated code after the pipeline ran, so no other artifact changes.

* **Adjoint-carrying names** (:func:`adjoint_names`) are the shadow and seed parameters, every
  name with the adjoint or shadow prefix of :mod:`nbautodiff.naming`, and, to a fixpoint, every
  name a statement writes from a value that reads one of them (``_nad_g``, ``_nad_acc1``...).
  A scalar among them becomes an array of N lanes, an array gets a leading lane axis (shadows
  and seeds arrive stacked along a first axis, as ``KeptForward.reverse_lanes`` stacks them).
* **Lane statements** are the statements that write an adjoint-carrying name: assignments,
  augmented assignments, stores into elements, and the calls of the runtime helpers that add or
  store into their first argument (``*_into``, ``scatter_add``, ``zero_at``). A run of them
  (in one block, with no primal statement between) becomes one loop over the lanes in which
  every adjoint-carrying name is read or written at the lane (``g`` -> ``g[l]``, ``A[i]`` ->
  ``A[l, i]``). Lanes touch disjoint data, so running the run lane by lane equals running it
  statement by statement. The primal sub-expressions of a run that are evaluated
  unconditionally (``math.cos(t3)``, ``x[i]``, a callee's primal value) are computed once,
  before the loop, into temporaries: each sweep evaluated them once, and so does the vector
  sweep, whatever they do.
* **Adjoint arrays rebound** keep NumPy's meaning: ``A = B`` (an alias) and ``A = B[index]``
  (a view, or a copy for an array index) become ``A = B[:, index]`` for all lanes at once; a
  fresh primal array (``zeros_like``, ``np.zeros``...) is allocated with a lane axis and
  broadcast to the lanes.
* **Everything else runs once**, as in one sweep: statements that read no adjoint, loop
  headers, branches, the tape.

Each lane then computes exactly what its own sweep computes, in the same order, so the results
equal a loop of sweeps (bit for bit where LLVM does not reassociate: without fastmath). Where that cannot be shown from the code, the sweep is not
rewritten and :class:`NotVectorizable` says why (the caller then runs a loop of sweeps): an
adjoint steering control flow, flowing into a primal or residual name or into a call that is
not known to be pure, an adjoint of a type that has no lanes (a tuple, a list), an adjoint
array rebound from anything but the forms above, a return before the end.
"""
from __future__ import annotations

import ast
import copy

from numba import types as nbtypes

from nbautodiff import naming
from nbautodiff.codegen import parameters
from nbautodiff.errors import NotVectorizable

LANE = "_nad_vl"           # the lane of a lane loop
LANES = "_nad_vn"          # the number of lanes, the last parameter of the vector sweep
HOISTED = "_nad_vh"        # a primal value computed once before a lane loop: _nad_vh1, ...

#: runtime helpers that add or store into their first argument and only read the others
INTO_HELPERS = frozenset(
    [f"{naming.TAPE_MODULE}.{f}" for f in ("add_into", "copy_into")]
    + [f"{naming.ARRAY_MODULE}.{f}" for f in ("scatter_add", "zero_at")]
    + [f"{naming.PRODUCT_MODULE}.{f}" for f in ("axpy_into", "ger_into", "gemv_t_into",
                                                 "mm_into", "mm_t_into")])
#: helpers of generated code that return a value and write none of their arguments
PURE_HELPERS = frozenset(
    f"{naming.ARRAY_MODULE}.{f}" for f in (
        "unbroadcast", "expand_axis", "matmul_left", "matmul_right", "solve_matrix_adjoint",
        "prod_adjoint", "extremum_adjoint", "extremum_axis_adjoint", "stored_adjoint",
        "positions", "zeros_like", "det_cofactor"))
PURE_MODULES = ("math", "cmath", naming.VECTOR_MATH)
NUMPY_WRITERS = frozenset({"copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis"})
PURE_BUILTINS = frozenset({"abs", "min", "max", "float", "int", "complex", "round", "len",
                           "bool", "pow"})
PURE_METHODS = frozenset({"conjugate", "conj", "copy", "sum", "ravel", "reshape", "transpose",
                          "astype", "item", "dot"})
#: primal calls that make a fresh array (an adjoint array may be rebound to one, per lane)
ALLOCATIONS = frozenset({"np.zeros", "np.zeros_like", "np.empty", "np.empty_like", "np.ones",
                         "np.ones_like", "np.full", "np.full_like",
                         f"{naming.ARRAY_MODULE}.zeros_like"})


def _names(node: ast.AST, ctx=None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and (ctx is None or isinstance(n.ctx, ctx))}


def _base(target: ast.expr) -> str | None:
    """The name a store target writes (``A`` of ``A[i]``), None for other targets."""
    while isinstance(target, ast.Subscript):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _simple_statements(body: list):
    for s in body:
        yield s
        if isinstance(s, (ast.For, ast.While, ast.If)):
            yield from _simple_statements(s.body)
            yield from _simple_statements(s.orelse)


def _written(s: ast.stmt) -> list[str] | None:
    """The names a simple statement writes values into (None: a form with no single target)."""
    if isinstance(s, ast.Assign):
        if len(s.targets) != 1:
            return None
        base = _base(s.targets[0])
        return None if base is None else [base]
    if isinstance(s, ast.AugAssign):
        base = _base(s.target)
        return None if base is None else [base]
    if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) \
            and ast.unparse(s.value.func) in INTO_HELPERS and s.value.args:
        base = _base(s.value.args[0])
        return None if base is None else [base]
    return []


def _value_reads(s: ast.stmt) -> set[str]:
    """Names whose values flow into what ``s`` writes (an augmented target included)."""
    if isinstance(s, ast.AugAssign):
        return _names(s.value) | _names(s.target)
    if isinstance(s, ast.Assign):
        return _names(s.value) | (_names(s.targets[0]) - {_base(s.targets[0])}
                                  if isinstance(s.targets[0], ast.Subscript) else set())
    return _names(s)


def adjoint_names(function: ast.FunctionDef, lane_parameters: set[str]) -> set[str]:
    """The adjoint-carrying names of ``function`` (see the module docstring)."""
    every = _names(function) | set(parameters(function))
    found = set(lane_parameters) | {n for n in every
                                    if n.startswith((naming.ADJOINT, naming.SHADOW))}
    statements = list(_simple_statements(function.body))
    changed = True
    while changed:
        changed = False
        for s in statements:
            if isinstance(s, (ast.For, ast.While, ast.If)):
                continue
            written = _written(s)
            if written and _value_reads(s) & found and not set(written) <= found:
                found |= set(written)
                changed = True
    return found


class _LaneRewriter(ast.NodeTransformer):
    """A lane statement at lane :data:`LANE`: adjoint-carrying names indexed by the lane."""

    def __init__(self, lanes: set[str], arrays: set[str]):
        self.lanes, self.arrays = lanes, arrays

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        if isinstance(node.value, ast.Name) and node.value.id in self.arrays:
            index = self.visit(node.slice)
            elements = index.elts if isinstance(index, ast.Tuple) else [index]
            return ast.Subscript(value=ast.Name(id=node.value.id, ctx=ast.Load()),
                                 slice=ast.Tuple(elts=[_load(LANE)] + elements, ctx=ast.Load()),
                                 ctx=node.ctx)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.lanes:
            return ast.Subscript(value=ast.Name(id=node.id, ctx=ast.Load()), slice=_load(LANE),
                                 ctx=node.ctx)
        return node


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


class _Vectorizer:
    """The rewrite of one reverse sweep (see :func:`vector_sweep`)."""

    def __init__(self, function: ast.FunctionDef, lane_parameters: set[str],
                 primal_names: set[str], types: dict):
        self.function = function
        self.lanes = adjoint_names(function, lane_parameters)
        self.types = types
        self.parameters = parameters(function)
        self.hoisted = 0
        self.regions = []
        self.outside = set()                  # lane scalars read outside the lane loops
        self._refuse_writing_calls()
        crossing = sorted(self.lanes & primal_names)
        if crossing:
            raise NotVectorizable(f"an adjoint flows into the primal name {crossing[0]}")
        self.arrays, self.scalars = set(), {}
        for name in sorted(self.lanes):
            self._classify(name)

    def _refuse_writing_calls(self) -> None:
        """Refuse where an adjoint is passed to a call that is neither known pure nor a helper
        writing into its first argument (a callee's reverse variant, say)."""
        for s in _simple_statements(self.function.body):
            if isinstance(s, (ast.For, ast.While, ast.If)):
                continue
            for node in ast.walk(s):
                if not isinstance(node, ast.Call) or not (_names(node) & self.lanes):
                    continue
                func = ast.unparse(node.func)
                if not (_pure_call(node, func) or func in INTO_HELPERS):
                    raise NotVectorizable(f"an adjoint is passed to {func}(), which is not "
                                          "known to write nothing")

    def _classify(self, name: str) -> None:
        typ = self.types.get(name)
        if isinstance(typ, nbtypes.Array) and typ.ndim >= 1:
            self.arrays.add(name)
        elif isinstance(typ, (nbtypes.Number, nbtypes.Boolean)):
            self.scalars[name] = typ
        elif typ is None and name not in self.parameters:
            return                              # named but never bound (a dead adjoint)
        else:
            raise NotVectorizable(f"the adjoint {name} is a {typ}, which has no lanes")

    def rewritten(self, name: str) -> ast.FunctionDef:
        body = self._block(self.function.body, top=True)
        local = self._region_locals()
        rewriter = _LaneRewriter((set(self.scalars) - local) | self.arrays, self.arrays)
        for loop in self.regions:
            loop.body = [rewriter.visit(s) for s in loop.body]
        allocations = [
            ast.parse(f"{n} = np.zeros({LANES}, np.{_dtype(t)})").body[0]
            for n, t in sorted(self.scalars.items()) if n not in local and n not in self.parameters]
        args = copy.deepcopy(self.function.args)
        args.args.append(ast.arg(arg=LANES))
        made = ast.FunctionDef(name=name, args=args, body=allocations + body, decorator_list=[],
                               returns=None, type_params=[])
        return ast.fix_missing_locations(made)

    # -- blocks ---------------------------------------------------------------------------------

    def _block(self, body: list, top: bool = False) -> list:
        out, run = [], []
        for k, s in enumerate(body):
            if isinstance(s, ast.Return):
                if not (top and k == len(body) - 1):
                    raise NotVectorizable("the reverse sweep returns before its end")
                out += self._region(run) + [self._returned(s)]
                run = []
                continue
            kind = self._kind(s)
            if kind == "lane":
                run.append(s)
                continue
            out += self._region(run)
            run = []
            if kind == "whole":
                out += self._whole_lanes(s)
            elif isinstance(s, (ast.For, ast.While, ast.If)):
                out.append(self._compound(s))
            else:
                out.append(s)
        return out + self._region(run)

    def _kind(self, s: ast.stmt) -> str:
        """"lane" (a lane statement), "whole" (an adjoint array rebound, for all lanes at once)
        or "primal"; raises where the statement cannot be shown right."""
        if isinstance(s, ast.If) and _names(s.test) & self.lanes and self._lane_branch(s):
            return "lane"
        if isinstance(s, (ast.For, ast.While, ast.If)):
            header = s.iter if isinstance(s, ast.For) else s.test
            if _names(header) & self.lanes:
                raise NotVectorizable("an adjoint steers control flow")
            if isinstance(s, ast.For) and _names(s.target) & self.lanes:
                raise NotVectorizable("an adjoint is a loop variable")
            return "primal"
        written = _written(s)
        reads = _names(s) & self.lanes
        if written is None:
            if reads:
                raise NotVectorizable(f"an adjoint is written by `{ast.unparse(s)}`")
            return "primal"
        if not set(written) & self.lanes:
            if reads:
                raise NotVectorizable(f"an adjoint flows into `{ast.unparse(s)}`")
            return "primal"
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) \
                and s.targets[0].id in self.arrays:
            return "whole"
        return "lane"

    def _lane_branch(self, s: ast.If) -> bool:
        """Whether branch ``s`` (on an adjoint) only writes adjoints, in simple statements:
        then it runs per lane, inside a lane loop (``if acc != 0.0: d_x[i] += acc``)."""
        for t in s.body + s.orelse:
            if isinstance(t, ast.Pass):
                continue
            if isinstance(t, (ast.For, ast.While, ast.If, ast.Return, ast.Break, ast.Continue)) \
                    or self._kind(t) != "lane":
                return False
        return True

    @staticmethod
    def _check_calls(s: ast.stmt) -> None:
        """Every call left in a lane statement (its primal values hoisted) writes nothing but
        its lane: a pure function, or a helper that writes its first argument."""
        for node in ast.walk(s):
            if isinstance(node, ast.keyword) and node.arg == "out":
                raise NotVectorizable(f"`{ast.unparse(s)}` writes through out=")
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            if func in INTO_HELPERS and isinstance(s, ast.Expr) and node is s.value:
                continue
            if not _pure_call(node, func):
                raise NotVectorizable(f"an adjoint is passed to {func}(), which is not known "
                                      "to write nothing")

    def _compound(self, s: ast.stmt) -> ast.stmt:
        made = copy.copy(s)
        made.body = self._block(s.body) or [ast.Pass()]
        made.orelse = self._block(s.orelse)
        return made

    # -- statements -----------------------------------------------------------------------------

    def _region(self, run: list) -> list:
        """A run of lane statements: their primal values once, then one loop over the lanes."""
        if not run:
            return []
        hoists, body = [], []
        for s in run:
            s = copy.deepcopy(s)
            self._hoist(s, hoists)
            self._check_calls(s)
            body.append(s)
        loop = ast.For(target=ast.Name(id=LANE, ctx=ast.Store()),
                       iter=ast.Call(func=_load("range"), args=[_load(LANES)], keywords=[]),
                       body=body, orelse=[])
        self.regions.append(loop)
        return hoists + [loop]

    def _region_locals(self) -> set[str]:
        """The adjoint scalars that can stay scalars inside each lane loop: written before they
        are read in every region they appear in (so no value crosses from one region to the
        next), neither parameters nor returned nor used outside the regions."""
        outside = _names(ast.Module(body=[s for s in self.function.body
                                          if isinstance(s, ast.Return)], type_ignores=[]))
        candidates = set(self.scalars) - set(self.parameters) - outside - self.outside
        for loop in self.regions:
            seen = set()
            for s in loop.body:
                read = _value_reads(s) if isinstance(s, (ast.Assign, ast.AugAssign)) \
                    else _names(s)
                if isinstance(s, ast.Assign) and not isinstance(s.targets[0], ast.Name):
                    read = read | {_base(s.targets[0])}
                candidates -= read - seen
                seen |= set(_written(s) or ()) if isinstance(s, ast.Assign) \
                    and isinstance(s.targets[0], ast.Name) else set()
        return candidates

    def _hoist(self, s: ast.stmt, hoists: list) -> None:
        """Replace in ``s`` the maximal primal sub-expressions it always evaluates by
        temporaries assigned in ``hoists``."""
        if isinstance(s, ast.If):                # its branches run per lane, as they are
            self._hoist_in(s, "test", None, s.test, hoists)
            return
        for parent, field, index, node in list(_unconditional_children(s)):
            self._hoist_in(parent, field, index, node, hoists)

    def _hoist_in(self, parent, field, index, node, hoists: list) -> None:
        if not isinstance(node, ast.expr) or isinstance(node, (ast.Name, ast.Constant,
                                                                ast.Starred, ast.Slice)):
            if isinstance(node, (ast.Slice, ast.Starred, ast.keyword)):
                for child in _unconditional_children(node):
                    self._hoist_in(*child, hoists)
            return
        if isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
            for child in _unconditional_children(node):
                self._hoist_in(*child, hoists)
            return
        if _names(node) & self.lanes or _is_module_attribute(node) \
                or (isinstance(node, ast.Tuple) and isinstance(parent, ast.Subscript)):
            for child in _unconditional_children(node):
                self._hoist_in(*child, hoists)
            return
        self.hoisted += 1
        temp = f"{HOISTED}{self.hoisted}"
        hoists.append(ast.Assign(targets=[ast.Name(id=temp, ctx=ast.Store())], value=node))
        if index is None:
            setattr(parent, field, _load(temp))
        else:
            getattr(parent, field)[index] = _load(temp)

    def _whole_lanes(self, s: ast.Assign) -> list:
        """An adjoint array rebound: an alias or a view for all lanes, or a fresh array."""
        target, value = s.targets[0].id, s.value
        if isinstance(value, ast.Name) and value.id in self.arrays:
            return [s]
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
                and value.value.id in self.arrays and not (_names(value.slice) & self.lanes):
            index = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
            every = ast.Slice(lower=None, upper=None, step=None)
            view = ast.Subscript(value=_load(value.value.id),
                                 slice=ast.Tuple(elts=[every] + list(index), ctx=ast.Load()),
                                 ctx=ast.Load())
            return [ast.Assign(targets=s.targets, value=view)]
        if isinstance(value, ast.Call) and ast.unparse(value.func) in ALLOCATIONS \
                and not (_names(value) & self.lanes):
            self.hoisted += 1
            temp = f"{HOISTED}{self.hoisted}"
            dtype = _dtype(self.types[target].dtype)
            return ast.parse(f"{temp} = {ast.unparse(value)}\n"
                             f"{target} = np.empty(({LANES},) + {temp}.shape, np.{dtype})\n"
                             f"for {LANE} in range({LANES}):\n"
                             f"    {target}[{LANE}] = {temp}\n").body
        if _fresh(value):
            return self._fresh_lanes(s)
        raise NotVectorizable(f"the adjoint array {target} is rebound by `{ast.unparse(s)}`")

    def _fresh_lanes(self, s: ast.Assign) -> list:
        """``A = E``, E a new array per lane (NumPy arithmetic, a copy): A allocated with a lane
        axis at the first lane (the shape is primal: the same in every lane), each lane's E
        stored into it."""
        s = copy.deepcopy(s)
        hoists = []
        self._hoist(s, hoists)
        self._check_calls(s)
        self.outside |= _names(s) & self.lanes
        target, dtype = s.targets[0].id, _dtype(self.types[s.targets[0].id].dtype)
        self.hoisted += 1
        temp = f"{HOISTED}{self.hoisted}"
        value = _LaneRewriter(set(self.scalars) | self.arrays, self.arrays).visit(s.value)
        loop = ast.parse(f"for {LANE} in range({LANES}):\n"
                         f"    {temp} = VALUE\n"
                         f"    if {LANE} == 0:\n"
                         f"        {target} = np.empty(({LANES},) + {temp}.shape, np.{dtype})\n"
                         f"    {target}[{LANE}] = {temp}\n").body[0]
        loop.body[0].value = value
        return hoists + [loop]

    def _returned(self, s: ast.Return) -> ast.Return:
        if s.value is None:
            return s
        elements = s.value.elts if isinstance(s.value, ast.Tuple) else [s.value]
        for e in elements:
            if _names(e) & self.lanes and not isinstance(e, ast.Name):
                raise NotVectorizable(f"the reverse sweep returns `{ast.unparse(e)}`")
        return s

    def returned_lanes(self) -> list[bool]:
        """Per element of the returned tuple: whether it is one value per lane."""
        last = self.function.body[-1]
        if not isinstance(last, ast.Return) or last.value is None:
            return []
        elements = last.value.elts if isinstance(last.value, ast.Tuple) else [last.value]
        return [isinstance(e, ast.Name) and e.id in self.lanes for e in elements]


def _unconditional_children(node: ast.AST):
    """(parent, field, index or None, child) for the children of ``node`` that are evaluated
    whenever ``node`` is: not the branches of a conditional expression, not the operands of
    ``and``/``or`` after the first, not a call's function, not a comprehension."""
    if isinstance(node, (ast.IfExp, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                         ast.GeneratorExp)):
        if isinstance(node, ast.IfExp):
            yield node, "test", None, node.test
        return
    if isinstance(node, ast.BoolOp):
        yield node, "values", 0, node.values[0]
        return
    for field, value in ast.iter_fields(node):
        if isinstance(node, ast.Call) and field == "func":
            continue
        if isinstance(node, ast.Attribute) and field == "value" and \
                isinstance(value, ast.Name):
            continue
        if isinstance(value, list):
            for k, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield node, field, k, item
        elif isinstance(value, ast.AST):
            yield node, field, None, value


#: NumPy functions that may return a view of (or the same array as) an argument
NUMPY_VIEWS = frozenset({"reshape", "transpose", "ravel", "squeeze", "expand_dims", "swapaxes",
                         "moveaxis", "diagonal", "broadcast_to", "asarray", "asanyarray",
                         "ascontiguousarray", "asfortranarray", "atleast_1d", "atleast_2d",
                         "atleast_3d", "real", "imag", "flip", "fliplr", "flipud", "rot90"})


def _fresh(value: ast.expr) -> bool:
    """Whether ``value`` always makes a new array (never a view of, or the array of, a name):
    NumPy arithmetic, ``.copy()``, a NumPy function that is not a view, ``unbroadcast`` of a
    new array."""
    if isinstance(value, (ast.BinOp, ast.UnaryOp)):
        return True
    if not isinstance(value, ast.Call):
        return False
    func = ast.unparse(value.func)
    if isinstance(value.func, ast.Attribute) and value.func.attr == "copy" and not value.args:
        return True
    if func == f"{naming.ARRAY_MODULE}.unbroadcast" and value.args:
        return _fresh(value.args[0])            # the contribution itself, or a new sum of it
    module, _, name = func.rpartition(".")
    return module == "np" and name not in NUMPY_VIEWS and name not in NUMPY_WRITERS


def _is_module_attribute(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
        and node.value.id in ("np", "math", "cmath")


def _pure_call(node: ast.Call, func: str) -> bool:
    if func in PURE_HELPERS or func in PURE_BUILTINS:
        return True
    module, _, name = func.rpartition(".")
    if module in PURE_MODULES:
        return True
    if module == "np":
        return name not in NUMPY_WRITERS
    return isinstance(node.func, ast.Attribute) and node.func.attr in PURE_METHODS


def _dtype(typ) -> str:
    name = str(typ)
    return "bool_" if name == "bool" else name


def vector_sweep(function: ast.FunctionDef, name: str, lane_parameters: set[str],
                 primal_names: set[str], types: dict) -> tuple[ast.FunctionDef, list, set]:
    """``function`` (a reverse sweep ``__bwd``) rewritten as ``name``, its sweep for N lanes:
    the parameters in ``lane_parameters`` (shadows, seeds, adjoint residuals) and every
    adjoint-carrying name hold N lanes (scalars: arrays of N; arrays: a leading lane axis), the
    lane count is a last parameter. ``primal_names``: the names an adjoint must not flow into
    (primal parameters and residuals); ``types``: numba's type of each name of ``function``.
    Returns the function, per element of its returned tuple whether it holds lanes, and the
    names that hold lanes. Raises :class:`NotVectorizable` with the reason where it cannot be rewritten."""
    vectorizer = _Vectorizer(function, lane_parameters, primal_names, types)
    made = vectorizer.rewritten(name)
    return made, vectorizer.returned_lanes(), set(vectorizer.scalars) | vectorizer.arrays


def lane_statements(made: ast.FunctionDef) -> int:
    """How many lane loops ``made`` has (for reports and tests)."""
    return sum(1 for n in ast.walk(made) if isinstance(n, ast.For)
               and isinstance(n.target, ast.Name) and n.target.id == LANE)
