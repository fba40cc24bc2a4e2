"""The inner batch layout: the batch loop innermost, over blocks of lanes (structure of arrays).

:func:`lane_function` rewrites a normalised primal (three-address form, see :mod:`nbautodiff.frontend.normalize`)
into one function that evaluates it for every slice of a batch. The batch is cut into blocks of
:data:`BLOCK` slices, the *lanes*; inside a block the function's own statements run once, and
each statement whose value differs between slices (is *varying*) runs in a loop over the lanes:

* **Varying** is the closure of the batched arguments under data and control dependence: a
  variable assigned from a varying value, or anywhere under a branch or loop whose condition or
  bounds are varying, is varying. ``x.shape`` of a batched array is not (every slice has the
  same shape).
* **Uniform** statements (weights, shapes, loop bounds) and loops and branches with uniform
  conditions are kept as they are, once per block; a run of varying statements between them
  becomes one loop over the lanes (a *region*). A loop or branch with a varying condition runs
  whole inside a region, one lane after the other.
* A varying scalar used in more than one region (``h`` accumulated over a uniform loop) lives
  in a lane array of :data:`BLOCK` elements; one defined and used within its region stays a
  scalar. Batched scalar arguments are read at the lane's batch index, batched arrays are
  indexed with the lane's index inserted at their batch axis.

The lane loops are innermost, contiguous and free of calls where the function has none, so LLVM
vectorises them across slices; with ``parallel`` the blocks are spread over cores. Every slice
executes the same floating-point operations in the same order as a call of the compiled primal,
so results are equal to a loop of single calls bit for bit, except where ``vector_math`` replaces
``math``/NumPy functions in lane loops by :mod:`nbautodiff.kernels.vecmath` (which vectorise,
within the accuracy its docstrings state).

What the layout cannot express raises :class:`NotLaneable` naming the construct and its line;
the batching transform then keeps the outer layout (``layout="auto"``) or reports it: results
with arrays, a varying array used across regions, writes to arguments every slice shares.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

from numba import types as nbtypes

from nbautodiff import annotations as anno, naming
from nbautodiff.analysis import typeinfer
from nbautodiff.analysis.activity import view_origin, walk_statements
from nbautodiff.errors import NotLaneable
from . import vector_calls

BLOCK = 512          # slices per block: lane arrays of a few kB stay in the L1 cache
STAGE_LIMIT = 64     # elements of a slice up to which its block is staged lane-major
SHAPE_ATTRIBUTES = ("shape", "ndim", "size")
ALLOCATIONS = ("np.empty", "np.zeros", "np.ones")      # (shape, dtype) constructors
VIEW_CALLS = ("reshape", "transpose", "ravel", "squeeze", "expand_dims", "swapaxes", "moveaxis",
              "diagonal", "broadcast_to", "asarray", "atleast_1d", "atleast_2d", "atleast_3d",
              "real", "imag", "flat", "T")                # NumPy calls that may return a view


@dataclass
class Region:
    """A run of varying statements that becomes one loop over the lanes."""
    statements: list = field(default_factory=list)
    names: set = field(default_factory=set)       # every name its statements mention


def _names(node: ast.AST, ctx=None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and (ctx is None or isinstance(n.ctx, ctx))}


class _ShapeRewriter(ast.NodeTransformer):
    """Rewrites ``x.shape``/``x.ndim``/``x.size`` of a batched ``x`` into its slice's."""

    def __init__(self, lanes: "_Lanes"):
        self.lanes = lanes

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        shape = self.lanes.slice_attribute(node)
        return shape if shape is not None else self.generic_visit(node)


class _LaneRewriter(_ShapeRewriter):
    """Rewrites a statement of a region for the lane ``naming.BATCH_LANE``."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        lanes = self.lanes
        if node.id in lanes.lane_arrays:
            return _subscript(naming.lane_array(node.id), _load(naming.BATCH_LANE), node.ctx)
        if node.id in lanes.batched_scalars:
            return _subscript(node.id, _load(naming.BATCH_INDEX), node.ctx)
        if node.id in lanes.batched_arrays or node.id in lanes.extended:
            return lanes.lane_slice(node.id, [])
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        base = node.value
        if isinstance(base, ast.Name) and (base.id in self.lanes.batched_arrays
                                           or base.id in self.lanes.extended):
            index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            sliced = self.lanes.lane_slice(base.id, [self.visit(part) for part in index])
            sliced.ctx = node.ctx
            return ast.copy_location(sliced, node)
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        replacement = (vector_calls.replacement(node, self.lanes.types)
                       if self.lanes.vector_math else None)
        self.generic_visit(node)
        if replacement is not None:
            vector_calls.redirect(node, replacement)
        return node


class _UniformRewriter(_ShapeRewriter):
    """Rewrites a uniform statement: ``x.shape`` of a batched ``x`` and the allocation of an
    array with one slice of values per lane (``np.empty(n)`` -> ``np.empty((n, BLOCK))``)."""

    def visit_Assign(self, node: ast.Assign) -> ast.Assign:
        self.generic_visit(node)
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in self.lanes.extended:
            shape = node.value.args[0]
            dims = list(shape.elts) if isinstance(shape, ast.Tuple) else [shape]
            node.value.args[0] = ast.Tuple(elts=dims + [ast.Constant(value=BLOCK)],
                                           ctx=ast.Load())
        return node


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _subscript(name: str, index: ast.expr, ctx) -> ast.Subscript:
    return ast.Subscript(value=_load(name), slice=index, ctx=ctx)


class _Lanes:
    """The inner layout of one normalised function for one set of batched arguments.

    ``types``: numba types of its variables for the types of one slice; ``batched``: parameter
    name -> batch axis for batched arrays of rank >= 2, or -1 for batched scalars (1-D arrays
    of their values); ``shared_writes``: the parameters it writes that are not batched;
    ``vector_math``: calls that :mod:`nbautodiff.transforms.vector_calls` allows call :mod:`nbautodiff.kernels.vecmath`
    (otherwise libm everywhere)."""

    def __init__(self, tree: ast.FunctionDef, types: dict, batched: dict, ranks: dict,
                 shared_writes: list[str], vector_math: bool, outputs: list[str],
                 staged: frozenset = frozenset()):
        self.tree = tree
        self.outputs = set(outputs)              # the batch's result arrays, one per leaf
        self.types = types
        self.batched_scalars = {p for p, axis in batched.items() if axis < 0}
        self.batched_arrays = {p: axis for p, axis in batched.items() if axis >= 0}
        self.ranks = ranks                       # batched array -> rank of the whole array
        self.vector_math = vector_math
        if shared_writes:
            raise NotLaneable(f"it writes argument '{shared_writes[0]}', which every slice "
                              "shares (the inner layout would reorder those writes)")
        self._refuse_rebound_parameters()
        self._refuse_written_aliases()
        self.varying = self._varying() | self.outputs
        self.extended = self._extended()          # local array -> its rank (lanes added last)
        self.staged = {name for name in staged if self._read_by_element(name)}
        self.lane_arrays: set[str] = set()
        self.regions: list[Region] = []
        self.uniform_count = 0

    # -- analysis -------------------------------------------------------------------------------
    def reads(self, node: ast.AST) -> set[str]:
        """Names whose values ``node`` reads (``x.shape`` of a batched ``x`` reads none)."""
        shapes = {id(sub.value) for sub in ast.walk(node) if self.slice_attribute(sub) is not None}
        return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)
                and isinstance(sub.ctx, ast.Load) and id(sub) not in shapes}

    def _varying(self) -> set[str]:
        varying = set(self.batched_scalars) | set(self.batched_arrays)
        while True:
            before = len(varying)
            self._propagate(self.tree.body, False, varying)
            if len(varying) == before:
                return varying

    def _propagate(self, body: list, control: bool, varying: set) -> None:
        for statement in body:
            if isinstance(statement, ast.Assign):
                target = statement.targets[0]
                vary = control or bool(self.reads(statement.value) & varying)
                if isinstance(target, ast.Name):
                    if vary:
                        varying.add(target.id)
                elif isinstance(target, ast.Subscript):
                    base = target.value.id
                    if vary or self.reads(target.slice) & varying:
                        varying.add(base)
            elif isinstance(statement, ast.For):
                bounds = self.reads(statement.iter)
                vary = control or bool(bounds & varying)
                if vary:
                    varying.add(statement.target.id)
                self._propagate(statement.body, vary, varying)
            elif isinstance(statement, (ast.While, ast.If)):
                vary = control or bool(self.reads(statement.test) & varying)
                self._propagate(statement.body, vary, varying)
                self._propagate(statement.orelse, vary, varying)
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
                if control or self.reads(statement.value) & varying:
                    # a call for its effect on arrays: those it is given now hold varying values
                    varying.update(a.id for a in statement.value.args
                                   if isinstance(a, ast.Name) and self._is_array(a.id))

    def _refuse_rebound_parameters(self) -> None:
        """A batched parameter stands for the caller's slice in every lane (``x`` is
        ``x[..., lane's index, ...]``): a new value bound to its name (``x = x * 1.0``,
        ``x += ...``) would be stored into the caller's array instead."""
        batched = self.batched_scalars | set(self.batched_arrays)
        for statement, _ in walk_statements(self.tree.body):
            stores = {statement.target.id} if isinstance(statement, ast.For) else \
                {t.id for t in getattr(statement, "targets", []) if isinstance(t, ast.Name)}
            for name in sorted(stores & batched):
                raise NotLaneable(f"it binds the batched parameter '{name}' to a new value",
                                  getattr(statement, "lineno", None))

    def _refuse_written_aliases(self) -> None:
        """Names for the same array (``B = A``, a view ``V = A[1:]``) where one of them is
        written (an element store, an in-place operator, a call for its effect): the lane
        loops give each name its own per-lane value, so the write would not reach the others
        (in-place operators are rebindings, ``A = t``, after normalisation)."""
        group: dict[str, str] = {}

        def root(name: str) -> str:
            while group.get(name, name) != name:
                name = group[name]
            return name

        loads: dict[str, int] = {}      # a temporary read once names a fresh array, no alias
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                loads[node.id] = loads.get(node.id, 0) + 1
        written: dict[str, int | None] = {}
        for statement, _ in walk_statements(self.tree.body):
            line = getattr(statement, "lineno", None)
            if isinstance(statement, ast.Assign):
                target = statement.targets[0]
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    written.setdefault(target.value.id, line)
                elif isinstance(target, ast.Name) and anno.get(statement, anno.IN_PLACE, False):
                    if self._is_array(target.id):
                        written.setdefault(target.id, line)
                elif isinstance(target, ast.Name):
                    origin = view_origin(statement, self.types)
                    fresh = origin is not None and origin.startswith(naming.TEMP) \
                        and origin not in group and loads.get(origin, 0) == 1
                    if origin is not None and origin != target.id and not fresh:
                        group[root(target.id)] = root(origin)
                    for other in self._may_return_view_of(statement):
                        if root(other) != root(target.id):
                            group[root(target.id)] = root(other)
                value = statement.value
                if isinstance(value, ast.Call) and anno.get(value, anno.KIND, None) in \
                        ("user", "helper", "nondiff"):
                    for arg in value.args:          # a callee may write what it is given
                        if isinstance(arg, ast.Name) and self._is_array(arg.id):
                            written.setdefault(arg.id, line)
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
                for arg in statement.value.args:
                    if isinstance(arg, ast.Name) and self._is_array(arg.id):
                        written.setdefault(arg.id, line)
        members: dict[str, list] = {}
        for name in set(group) | set(group.values()):
            members.setdefault(root(name), []).append(name)
        for name, line in written.items():
            others = sorted(set(members.get(root(name), [])) - {name})
            if others:
                raise NotLaneable(f"it writes the array '{name}', which '{others[0]}' also "
                                  "names (an alias or a view)", line)

    def _may_return_view_of(self, statement: ast.Assign) -> list[str]:
        """The arrays (and tuples of them) whose memory what ``statement`` binds may share,
        besides :func:`view_origin`'s: those given to a reshaping NumPy call, a callee or a
        helper (a function may return its argument or a view of it), those a tuple display
        holds, the tuple an element is taken from."""
        target, value = statement.targets[0], statement.value
        if isinstance(value, ast.Tuple):            # a tuple holds its arrays: p = (A, s)
            return [e.id for e in value.elts if isinstance(e, ast.Name)
                    and (self._is_array(e.id) or self._is_tuple(e.id))]
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
                and self._is_tuple(value.value.id):  # ... and gives them back: B = p[0]
            return [value.value.id]
        if not (isinstance(value, ast.Call)
                and (self._is_array(target.id) or self._is_tuple(target.id))):
            return []                 # (a callee may return a tuple holding its argument)
        kind = anno.get(value, anno.KIND, None)
        if kind == "array" and ast.unparse(value.func).rsplit(".", 1)[-1] not in VIEW_CALLS:
            return []
        if kind not in ("array", "user", "helper", "nondiff"):
            return []
        return [arg.id for arg in value.args if isinstance(arg, ast.Name)
                and self._is_array(arg.id)]

    def _is_tuple(self, name: str) -> bool:
        return isinstance(self.types.get(name), nbtypes.BaseTuple)

    def _is_array(self, name: str) -> bool:
        return typeinfer.is_array(self.types.get(name))

    def _extended(self) -> dict[str, int]:
        """Varying local arrays made once by a constructor of uniform shape (``np.empty(n)``,
        not under a varying condition, never rebound): allocated once per block with an extra
        last axis of lanes, each lane using its own ``tmp[..., lane]``."""
        made: dict[str, list] = {}
        for statement, _ in walk_statements(self.tree.body):
            stores = _names(statement, ast.Store) if not isinstance(
                statement, (ast.For, ast.While, ast.If)) else \
                ({statement.target.id} if isinstance(statement, ast.For) else set())
            for name in stores:
                made.setdefault(name, []).append(statement)
        extended = {}
        for name, statements in made.items():
            statement = statements[0]
            if len(statements) != 1 or name not in self.varying or not self._is_array(name) \
                    or name in self.batched_arrays or not isinstance(statement, ast.Assign) \
                    or not isinstance(statement.targets[0], ast.Name):
                continue
            call = statement.value
            if isinstance(call, ast.Call) and ast.unparse(call.func) in ALLOCATIONS \
                    and not self.reads(call) & self.varying \
                    and not self._under_varying_control(statement):
                extended[name] = self.types[name].ndim
        return extended

    def _read_by_element(self, name: str) -> bool:
        """Whether batched array ``name`` is only read element by element (``x[i, j]``) or for
        its shape: then a lane-major copy can stand for it (whole-slice operations such as
        ``x @ y`` or ``x.reshape`` want the slice itself)."""
        rank = self.ranks[name] - 1
        allowed = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and node.value.id == name and isinstance(node.ctx, ast.Load):
                index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
                if len(index) == rank and not any(isinstance(i, ast.Slice) for i in index):
                    allowed.add(id(node.value))
            elif self.slice_attribute(node) is not None and node.value.id == name:
                allowed.add(id(node.value))
        return all(id(node) in allowed for node in ast.walk(self.tree)
                   if isinstance(node, ast.Name) and node.id == name)

    def _under_varying_control(self, target: ast.stmt) -> bool:
        return any(self.per_lane(outer) for outer in _enclosing(self.tree.body, target) or ())

    def per_lane(self, statement: ast.stmt) -> bool:
        """Whether ``statement`` runs in a lane loop (it reads or writes a varying value)."""
        if isinstance(statement, ast.For):
            return statement.target.id in self.varying
        if isinstance(statement, (ast.While, ast.If)):
            return bool(self.reads(statement.test) & self.varying)
        if isinstance(statement, ast.Assign):
            target = statement.targets[0]
            if isinstance(target, ast.Name) and target.id in self.extended:
                return False
            written = target.id if isinstance(target, ast.Name) else target.value.id
            return written in self.varying or bool(self.reads(statement) & self.varying)
        return bool(self.reads(statement) & self.varying)

    # -- layout ---------------------------------------------------------------------------------
    def block(self, body: list) -> list:
        """``body`` with its varying runs gathered into :class:`Region` placeholders. A uniform
        statement met inside a run is hoisted before it when the run does not mention what it
        touches; otherwise it ends the run."""
        out: list = []
        region, hoisted = Region(), []

        def close():
            out.extend(hoisted)
            hoisted.clear()
            if region.statements:
                self.regions.append(copy.copy(region))
                out.append(self.regions[-1])
            region.statements, region.names = [], set()

        for statement in self._split_broadcasts(body):
            if self.per_lane(statement):
                region.statements.append(statement)
                region.names |= _names(statement)
                continue
            simple = not isinstance(statement, (ast.For, ast.While, ast.If, ast.Return))
            if simple and region.statements and not (_names(statement) & region.names):
                hoisted.append(statement)
                continue
            close()
            if isinstance(statement, (ast.For, ast.While, ast.If)):
                statement = copy.copy(statement)
                statement.body = self.block(statement.body)
                statement.orelse = self.block(statement.orelse)
            out.append(statement)
        close()
        return out

    def _split_broadcasts(self, body: list) -> list:
        """``v = f(uniform values)`` for a varying ``v`` split into ``u = f(...)``, computed once
        per block, and the per-lane copy ``v = u``."""
        out = []
        for statement in body:
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name) \
                    and statement.targets[0].id in self.varying \
                    and statement.targets[0].id not in self.extended \
                    and not isinstance(statement.value, (ast.Name, ast.Constant)) \
                    and not self.reads(statement.value) & self.varying:
                self.uniform_count += 1
                temporary = f"{naming.LANE_UNIFORM}{self.uniform_count}"
                out.append(ast.copy_location(ast.Assign(
                    targets=[ast.Name(id=temporary, ctx=ast.Store())], value=statement.value),
                    statement))
                value = _load(temporary)
                if self._is_array(statement.targets[0].id):
                    # each slice gets its own array, as each call of the function makes one
                    value = ast.Call(func=ast.Attribute(value=value, attr="copy",
                                                        ctx=ast.Load()), args=[], keywords=[])
                statement = ast.copy_location(ast.Assign(targets=statement.targets,
                                                         value=value), statement)
            out.append(statement)
        return out

    def choose_lane_arrays(self) -> None:
        """Varying names that a region may read before it assigns them (values that cross
        regions, or iterations of a uniform loop around a region) get lane arrays; they must be
        scalars. The others are plain locals of each lane loop."""
        batched = self.batched_scalars | set(self.batched_arrays) | self.outputs | \
            set(self.extended)
        for region in self.regions:
            for name in sorted((region.names & self.varying) - batched - self.lane_arrays):
                if not _read_before_written(region.statements, name)[0]:
                    continue
                typ = nbtypes.unliteral(self.types[name]) if name in self.types else None
                if not isinstance(typ, (nbtypes.Float, nbtypes.Integer, nbtypes.Boolean)):
                    kind = "an array" if typeinfer.is_array(typ) else f"a {typ}"
                    raise NotLaneable(f"'{name}' is {kind} that differs between slices and is "
                                      "used across loops or branches", self._line_of(name))
                self.lane_arrays.add(name)

    def _line_of(self, name: str) -> int | None:
        for statement, _ in walk_statements(self.tree.body):
            if name in _names(statement, ast.Store):
                return getattr(statement, "lineno", None)
        return None

    def lane_loop(self, region: Region) -> ast.For:
        rewriter = _LaneRewriter(self)
        body = [ast.Assign(targets=[ast.Name(id=naming.BATCH_INDEX, ctx=ast.Store())],
                           value=ast.BinOp(left=_load(naming.BATCH_START), op=ast.Add(),
                                           right=_load(naming.BATCH_LANE)))]
        for statement in region.statements:
            new = rewriter.visit(copy.deepcopy(statement))
            body.append(ast.copy_location(new, statement))
        loop = ast.For(target=ast.Name(id=naming.BATCH_LANE, ctx=ast.Store()),
                       iter=ast.Call(func=_load("range"), args=[_load(naming.BATCH_LANES)],
                                     keywords=[]),
                       body=body, orelse=[])
        return ast.copy_location(loop, region.statements[0])

    def emitted(self, body: list) -> list[ast.stmt]:
        """The placeholders of :meth:`block` replaced by lane loops, uniform code rewritten."""
        out = []
        uniform = _UniformRewriter(self)
        for statement in body:
            if isinstance(statement, Region):
                out.append(self.lane_loop(statement))
            elif isinstance(statement, (ast.For, ast.While, ast.If)):
                clone = copy.copy(statement)
                for attr in ("iter", "test"):
                    if hasattr(clone, attr):
                        setattr(clone, attr, uniform.visit(copy.deepcopy(getattr(clone, attr))))
                clone.body = self.emitted(statement.body) or [ast.Pass()]
                clone.orelse = self.emitted(statement.orelse)
                out.append(clone)
            else:
                out.append(ast.copy_location(uniform.visit(copy.deepcopy(statement)), statement))
        return out

    # -- rewriting helpers ----------------------------------------------------------------------
    def lane_slice(self, name: str, index: list[ast.expr]) -> ast.Subscript:
        """``name[index]`` of a slice of batched array ``name``, as an index of the whole array:
        the lane's batch index inserted at the batch axis (``:`` filling the axes before)."""
        array = name
        if name in self.extended:
            axis, lane = self.extended[name], naming.BATCH_LANE
        elif name in self.staged:
            array, axis, lane = naming.staged(name), self.ranks[name] - 1, naming.BATCH_LANE
        else:
            axis, lane = self.batched_arrays[name], naming.BATCH_INDEX
        parts = list(index)
        while len(parts) < axis:
            parts.append(ast.Slice())
        parts.insert(axis, _load(lane))
        return ast.Subscript(value=_load(array), slice=ast.Tuple(elts=parts, ctx=ast.Load()),
                             ctx=ast.Load())

    def slice_attribute(self, node: ast.AST) -> ast.expr | None:
        """``x.shape``/``x.ndim``/``x.size`` of a slice of batched array ``x``, from the whole."""
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in self.batched_arrays and node.attr in SHAPE_ATTRIBUTES):
            return None
        name = node.value.id
        axis, rank = self.batched_arrays[name], self.ranks[name]
        dims = [ast.parse(f"{name}.shape[{d}]", mode="eval").body
                for d in range(rank) if d != axis]
        if node.attr == "ndim":
            return ast.Constant(value=rank - 1)
        if node.attr == "size":
            product = dims[0]
            for dim in dims[1:]:
                product = ast.BinOp(left=product, op=ast.Mult(), right=dim)
            return product
        return ast.Tuple(elts=dims, ctx=ast.Load())


def _enclosing(body: list, target: ast.stmt) -> list:
    """The compound statements of ``body`` around ``target``, outermost first."""
    for statement in body:
        if statement is target:
            return []
        if isinstance(statement, (ast.For, ast.While, ast.If)):
            for inner in (statement.body, statement.orelse):
                found = _enclosing(inner, target)
                if found is not None:
                    return [statement] + found
    return None


def _read_before_written(statements: list, name: str, written: bool = False) -> tuple[bool, bool]:
    """(whether ``statements`` may read ``name`` before assigning it, whether ``name`` is
    assigned on every path through them), ``written``: assigned on entry."""
    for statement in statements:
        if isinstance(statement, ast.Assign):
            target = statement.targets[0]
            if not written and name in _names(statement.value) | _names(target, ast.Load):
                return True, written
            written = written or (isinstance(target, ast.Name) and target.id == name)
        elif isinstance(statement, ast.If):
            if not written and name in _names(statement.test):
                return True, written
            read_body, in_body = _read_before_written(statement.body, name, written)
            read_else, in_else = _read_before_written(statement.orelse, name, written)
            if read_body or read_else:
                return True, written
            written = in_body and in_else
        elif isinstance(statement, (ast.For, ast.While)):
            head = statement.iter if isinstance(statement, ast.For) else statement.test
            if not written and name in _names(head):
                return True, written
            index = isinstance(statement, ast.For) and statement.target.id == name
            if _read_before_written(statement.body, name, written or index)[0]:
                return True, written          # (a loop may run no iteration: nothing assigned)
        elif not written and name in _names(statement):
            return True, written
    return False, written


def staging(name: str, axis: int, rank: int, dtype: str) -> tuple[str, list[str]]:
    """(allocation, per-block copy) of the lane-major copy of batched array ``name`` (batch
    axis ``axis`` of ``rank``): ``copy[j, k, lane] = name[..., lane's index, ...]``, so that the
    lane loops read it contiguously (structure of arrays) instead of with the stride of a
    slice."""
    dims = [d for d in range(rank) if d != axis]
    shape = ", ".join(f"{name}.shape[{d}]" for d in dims)
    allocation = f"{naming.staged(name)} = np.empty(({shape}, {BLOCK}), {dtype})"
    lines = [f"for {naming.BATCH_LANE} in range({naming.BATCH_LANES}):",
             f"    {naming.BATCH_INDEX} = {naming.BATCH_START} + {naming.BATCH_LANE}"]
    counters = [f"{naming.STAGE_INDEX}{k}" for k in range(len(dims))]
    for depth, (counter, d) in enumerate(zip(counters, dims)):
        lines.append("    " * (depth + 1) + f"for {counter} in range({name}.shape[{d}]):")
    source = counters[:axis] + [naming.BATCH_INDEX] + counters[axis:]
    lines.append("    " * (len(dims) + 1) + f"{naming.staged(name)}[{', '.join(counters)}, "
                 f"{naming.BATCH_LANE}] = {name}[{', '.join(source)}]")
    return allocation, lines


def lane_body(tree: ast.FunctionDef, types: dict, batched: dict, ranks: dict,
              shared_writes: list[str], vector_math: bool, result_paths: list[str],
              outputs: list[str], staged: frozenset = frozenset()
              ) -> tuple[list[ast.stmt], dict, set]:
    """The statements of one block (the function's body for lanes ``_nad_start`` to
    ``_nad_start + _nad_lanes``), storing the result's leaves (``result_paths``: source suffixes
    such as ``[0]`` into the returned value) into the arrays ``outputs`` at each lane's batch
    index; the lane arrays it uses (name -> numba type); and those of the batched arrays in
    ``staged`` that it reads from their lane-major copies (see :func:`staging`: the ones read
    element by element). Raises :class:`NotLaneable`."""
    lanes = _Lanes(tree, types, batched, ranks, shared_writes, vector_math, outputs, staged)
    body = list(tree.body)
    returned = None
    if body and isinstance(body[-1], ast.Return):
        returned = body.pop().value
    for statement, _ in walk_statements(body):
        if isinstance(statement, ast.Return):
            raise NotLaneable("a return before the end of the function", statement.lineno)
    if returned is not None and not isinstance(returned, (ast.Name, ast.Constant)):
        raise NotLaneable("a return of an expression that is not a name")
    stores = []
    for out, path in zip(outputs, result_paths):
        value = ast.parse(f"({ast.unparse(returned)}){path}", mode="eval").body
        stores.append(ast.Assign(targets=[ast.Subscript(value=_load(out),
                                                        slice=_load(naming.BATCH_INDEX),
                                                        ctx=ast.Store())], value=value,
                                 lineno=getattr(tree.body[-1], "lineno", tree.lineno)))
    for store in stores:
        ast.fix_missing_locations(store)
    laid_out = lanes.block(body + stores)
    lanes.choose_lane_arrays()
    return lanes.emitted(laid_out), {name: nbtypes.unliteral(types[name])
                                     for name in sorted(lanes.lane_arrays)}, lanes.staged
