"""The offload transform: a function's parallel loops become CUDA kernels, the rest runs on the host.

:func:`split` takes a function's source and the kinds of its arguments and returns an
:class:`OffloadProgram`:

* a **host function** (Python source, run by the interpreter) that is the function with each
  offloaded loop replaced by one launch of its kernel, and array allocations
  (``np.empty``/``zeros``/``ones``/``full`` and their ``_like`` forms) made on the device;
* one **kernel** per offloaded loop: a grid-stride loop over the iterations (each CUDA thread
  takes iterations ``first, first + stride, ...``), with reductions combined per block in shared
  memory into one partial value per block, and accumulations into overlapping elements made
  atomic (:mod:`nbautodiff.analysis.parallel` decides which);
* what each array argument needs: copied to the device, copied back, or neither.

Which loops are offloaded: in user code, every ``prange`` loop (refused with an error naming the
line when its iterations are not independent); in generated code (derivatives), every loop that
:mod:`nbautodiff.analysis.parallel` proves independent, outermost first. Between loops the host may only do scalar
work, allocate arrays, read their shapes, and read or write single elements (each a small
transfer); anything else that touches an array there is refused with the construct and its line.
Aggregates (tuples, namedtuples, dataclasses) of arrays are split into one name per field.
"""
from __future__ import annotations

import ast
import copy
import math
from dataclasses import dataclass, field

import numba
import numpy as np

from nbautodiff import annotations as anno, naming
from nbautodiff.analysis import parallel
from nbautodiff.analysis.parallel import ParallelLoop
from nbautodiff import codegen
from nbautodiff.errors import AutodiffError, OffloadError
from nbautodiff.frontend.source import MISSING, FunctionSource, resolve
from nbautodiff.kernels import arrays as array_kernels


#: Allocation functions made on the device, by the NumPy name.
ALLOCATIONS = ("empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like",
               "full_like")
#: Attributes of an array the host may read.
ARRAY_ATTRIBUTES = frozenset({"shape", "size", "ndim", "dtype"})
#: NumPy scalar functions whose ``math`` counterpart runs in device code.
NUMPY_TO_MATH = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2",
                 "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "absolute": "fabs",
                 "abs": "fabs", "power": "pow"}

RUNTIME = naming.OFFLOAD_RUNTIME
KERNEL = naming.OFFLOAD_KERNEL


@dataclass(frozen=True)
class ArgumentKind:
    """What an argument is, as far as the transform cares: ``"array"`` (with ``ndim``),
    ``"scalar"``, or ``"aggregate"`` with ``fields``: (key, kind) pairs, key an attribute name
    (namedtuple, dataclass) or an int (tuple)."""

    kind: str
    ndim: int = 0
    fields: tuple = ()
    container: object = None


@dataclass
class KernelSpec:
    """One offloaded loop. ``arguments`` are host names passed to the kernel in order (arrays
    and scalars); ``reductions`` the scalars it combines; ``template`` renders its source for a
    block size and the reductions' dtypes."""

    number: int
    lineno: int
    loop: ParallelLoop
    arguments: tuple
    reductions: tuple
    atomics: int
    template: object

    @property
    def name(self) -> str:
        return f"{KERNEL}{self.number}"

    def source(self, block: int, reduction_dtypes: tuple) -> str:
        return self.template(block, reduction_dtypes)


@dataclass
class OffloadProgram:
    """The result of :func:`split`. ``host_source`` defines ``host_name`` taking ``parameters``
    (aggregates flattened to ``leaves``); ``reads``/``writes``: the flattened array parameters
    the program reads or writes anywhere; ``overwritten``: those every element of which a kernel
    writes before anything reads them (allocated on the device, not copied in)."""

    name: str
    host_name: str
    host_source: str
    parameters: tuple
    leaves: dict
    kernels: list
    reads: frozenset
    writes: frozenset
    overwritten: dict = field(default_factory=dict)


def split(fs: FunctionSource, kinds: dict[str, ArgumentKind], generated: bool,
          callee_writes) -> OffloadProgram:
    """Split ``fs`` (its arguments of ``kinds``, by parameter name) into host code and kernels.
    ``callee_writes(function)``: the positions of the array arguments ``function`` may write
    (directly, through aliases and its own callees); raises AutodiffError when it cannot tell."""
    return _Splitter(fs, kinds, generated, callee_writes).run()


def leaf_name(parameter: str, key) -> str:
    """Name of the field ``key`` of aggregate ``parameter`` once flattened."""
    return f"{naming.OFFLOAD_FIELD}{parameter}__{key}"


class _Splitter:
    def __init__(self, fs: FunctionSource, kinds: dict, generated: bool, callee_writes):
        self.fs, self.kinds, self.generated = fs, kinds, generated
        self.callee_writes = callee_writes
        self.tree = copy.deepcopy(fs.tree)
        self.kernels: list[KernelSpec] = []

    def error(self, message: str, node: ast.AST | None = None) -> OffloadError:
        return self.fs.error(message, node, kind=OffloadError)

    def run(self) -> OffloadProgram:
        leaves = self._flatten_aggregates()
        parameters = tuple(codegen.parameters(self.tree))
        self.locals = parallel.assigned_names(self.tree.body) | set(parameters)
        self.arrays = self._array_names(parameters, leaves)
        self.tree.body = self._host_block(self.tree.body)
        if not self.kernels:
            what = "no loop that runs in parallel" if self.generated else "no prange loop"
            raise self.error(f"'{self.fs.name}' has {what}: nothing to offload (write the "
                             "parallel work as 'for i in prange(n):')", self.fs.tree)
        host_name = f"{naming.OFFLOAD_HOST}{self.fs.name}"
        self.tree.name = host_name
        self.tree.decorator_list = []
        ast.fix_missing_locations(self.tree)
        reads, writes = self._array_effects(parameters)
        return OffloadProgram(self.fs.name, host_name, ast.unparse(self.tree), parameters, leaves,
                              self.kernels, frozenset(reads), frozenset(writes),
                              self._overwritten(parameters, reads))

    # -- aggregates ------------------------------------------------------------------------------

    def _flatten_aggregates(self) -> dict:
        """Replace ``p.field`` / ``p[k]`` of each aggregate parameter by one name per field;
        returns {parameter: [(key, leaf name), ...]}."""
        leaves, new_args = {}, []
        for argument in self.tree.args.args:
            kind = self.kinds[argument.arg]
            if kind.kind != "aggregate":
                new_args.append(argument)
                continue
            leaves[argument.arg] = [(key, leaf_name(argument.arg, key)) for key, _ in kind.fields]
            new_args += [ast.arg(arg=name) for _, name in leaves[argument.arg]]
            for key, sub in kind.fields:
                self.kinds[leaf_name(argument.arg, key)] = sub
        self.tree.args.args = new_args
        if leaves:
            self.tree = _FieldAccesses(leaves, self).visit(self.tree)
        return leaves

    # -- host code -------------------------------------------------------------------------------

    def _array_names(self, parameters, leaves) -> set[str]:
        """Host names that hold arrays: array parameters, allocations, views and aliases."""
        arrays = {p for p in parameters if self.kinds[p].kind == "array"}
        changed = True
        while changed:
            changed = False
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign):
                    pairs = _assigned_pairs(node)
                    for target, value in pairs:
                        if (isinstance(target, ast.Name) and target.id not in arrays
                                and self._is_array_value(value, arrays)):
                            arrays.add(target.id)
                            changed = True
        return arrays

    def _is_array_value(self, value: ast.expr, arrays: set[str]) -> bool:
        if isinstance(value, ast.Name):
            return value.id in arrays
        if isinstance(value, ast.Call):
            return self._allocation(value) is not None
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
                and value.value.id in arrays:
            positions = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
            ndim = self.kinds.get(value.value.id, ArgumentKind("array", 1)).ndim
            return any(isinstance(p, ast.Slice) for p in positions) or len(positions) < ndim
        return False

    def _allocation(self, call: ast.Call) -> str | None:
        target = resolve(self.fs, call.func)
        if target is array_kernels.zeros_like:          # the shadows of generated code
            return "zeros_like"
        for name in ALLOCATIONS:
            if target is getattr(np, name):
                return name
        return None

    def _host_block(self, block: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for statement in block:
            if isinstance(statement, ast.For):
                verdict = self._parallel_verdict(statement)
                if verdict is not None:
                    out += self._launch(statement, verdict)
                    continue
                statement.body = self._host_block(statement.body)
                self._check_host_expressions(statement.iter)
                out.append(statement)
            elif isinstance(statement, (ast.While, ast.If)):
                self._check_host_expressions(statement.test)
                statement.body = self._host_block(statement.body)
                statement.orelse = self._host_block(statement.orelse)
                out.append(statement)
            else:
                self._check_host_statement(statement)
                out.append(_AllocationsOnDevice(self).visit(statement))
        return out

    def _parallel_verdict(self, loop: ast.For) -> ParallelLoop | None:
        marked = _is_prange(self.fs, loop.iter)
        if not marked and not self.generated:
            return None
        if not (isinstance(loop.target, ast.Name) and isinstance(loop.iter, ast.Call)
                and not loop.iter.keywords and 1 <= len(loop.iter.args) <= 3 and not loop.orelse):
            if marked:
                raise self.error(f"parallel loop '{ast.unparse(loop.iter)}' must be "
                                 "'for i in prange(start, stop, step)' with one index", loop)
            return None
        if not marked and resolve(self.fs, loop.iter.func) is not range:
            return None
        try:
            verdict = parallel.analyse(
                loop, lambda message, node: self.error(message, node),
                call_writes=self._call_writes)
            self._check_device_code(loop)
            live = parallel.live_after(self.tree, loop, set(verdict.private))
            if live:
                name = sorted(live)[0]
                raise self.error(f"'{name}' is assigned in the parallel loop (line {loop.lineno})"
                                 " and read after it, where its value is undefined: make it a "
                                 "reduction (s += ...) or write it to an array", loop)
        except OffloadError:
            if marked:
                raise
            return None
        return verdict

    def _call_writes(self, call: ast.Call, position: int) -> bool:
        """Whether the callee of ``call`` may write its ``position``-th argument: what the
        program knows of the callee's writes (directly, through aliases and its own callees);
        True when the callee has no source to read."""
        target = resolve(self.fs, call.func)
        if target is MISSING or isinstance(target, type) or getattr(target, "__module__", "") in (
                "math", "numpy", "builtins") or target in (len, range, min, max, abs):
            return False
        try:
            return position in self.callee_writes(target)
        except AutodiffError:
            return True

    def _check_device_code(self, loop: ast.For) -> None:
        for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
            if isinstance(node, (ast.Return, ast.Yield, ast.Try, ast.With, ast.Raise,
                                 ast.FunctionDef, ast.Lambda, ast.ListComp, ast.List, ast.Dict)):
                raise self.error(f"{type(node).__name__.lower()} in the body of the parallel "
                                 f"loop (line {loop.lineno}) cannot run on the GPU", node)
            if isinstance(node, ast.Break) and node in loop.body:
                raise self.error("'break' out of a parallel loop (its iterations run at once)",
                                 node)
            if isinstance(node, ast.Call):
                target = resolve(self.fs, node.func)
                if self._allocation(node) is not None:
                    raise self.error(f"array allocation '{ast.unparse(node.func)}' inside the "
                                     f"parallel loop (line {loop.lineno}) cannot run on the GPU: "
                                     "allocate before the loop and index by the loop index",
                                     node)
                if getattr(target, "__module__", None) == "numpy" or isinstance(
                        target, np.ufunc):
                    name = getattr(target, "__name__", "")
                    if not hasattr(math, NUMPY_TO_MATH.get(name, name)):
                        raise self.error(f"NumPy function '{ast.unparse(node.func)}' cannot run "
                                         "in a GPU kernel (use scalar code and the math module)",
                                         node)
                if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                        and node.func.value.id in self.locals:
                    raise self.error(f"method call '{ast.unparse(node.func)}' cannot run in a GPU "
                                     "kernel", node)

    def _launch(self, loop: ast.For, verdict: ParallelLoop) -> list[ast.stmt]:
        number = len(self.kernels)
        reductions = verdict.reductions
        arguments = tuple(name for name in verdict.free if name in self.locals
                          and name not in {r.name for r in reductions})
        spec = KernelSpec(number, loop.lineno, verdict, arguments, reductions,
                          len(verdict.atomic), _KernelTemplate(self, loop, verdict, arguments))
        self.kernels.append(spec)
        bounds = loop.iter.args
        start, stop, step = ((ast.Constant(0), bounds[0], ast.Constant(1)) if len(bounds) == 1 else
                             (bounds[0], bounds[1], ast.Constant(1)) if len(bounds) == 2 else
                             tuple(bounds))
        for bound in (start, stop, step):
            self._check_host_expressions(bound)
        call = ast.Call(
            func=ast.Attribute(value=ast.Name(id=RUNTIME, ctx=ast.Load()), attr="launch",
                               ctx=ast.Load()),
            args=[ast.Constant(number), start, stop, step,
                  ast.Tuple(elts=[ast.Name(id=a, ctx=ast.Load()) for a in arguments],
                            ctx=ast.Load()),
                  ast.Tuple(elts=[ast.Name(id=r.name, ctx=ast.Load()) for r in reductions],
                            ctx=ast.Load())],
            keywords=[])
        if reductions:
            target = ast.Tuple(elts=[ast.Name(id=r.name, ctx=ast.Store()) for r in reductions],
                               ctx=ast.Store())
            statement = ast.Assign(targets=[target], value=call)
        else:
            statement = ast.Expr(value=call)
        return [ast.copy_location(statement, loop)]

    def _check_host_statement(self, statement: ast.stmt) -> None:
        if isinstance(statement, ast.Assign):
            for target, value in _assigned_pairs(statement):
                if isinstance(value, ast.Name) and value.id in self.arrays:
                    continue
                self._check_host_expressions(value)
            for target in statement.targets:
                if isinstance(target, ast.Subscript):
                    self._check_host_expressions(target.slice)
        elif isinstance(statement, ast.Return) and statement.value is not None:
            for value in _tuple_leaves(statement.value):
                if not (isinstance(value, ast.Name) and value.id in self.arrays):
                    self._check_host_expressions(value)
        elif isinstance(statement, ast.AugAssign):
            self._check_host_expressions(statement.value)
            if isinstance(statement.target, ast.Subscript):
                self._check_host_expressions(statement.target.slice)
            elif statement.target.id in self.arrays:
                raise self.error(f"whole-array update of '{statement.target.id}' on the host; "
                                 "write it as a prange loop", statement)
        elif isinstance(statement, ast.Expr):
            self._check_host_expressions(statement.value)
        elif not isinstance(statement, (ast.Pass, ast.Break, ast.Continue, ast.Return)):
            raise self.error(f"{type(statement).__name__.lower()} statement in an offloaded "
                             "function", statement)

    def _check_host_expressions(self, expression: ast.expr) -> None:
        """Arrays in a host expression may only be indexed, measured or passed to an
        allocation; anything else would run NumPy on device memory."""
        allowed = set()
        for node in ast.walk(expression):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                allowed.add(id(node.value))
            elif isinstance(node, ast.Attribute) and node.attr in ARRAY_ATTRIBUTES \
                    and isinstance(node.value, ast.Name):
                allowed.add(id(node.value))
            elif isinstance(node, ast.Call) and (self._allocation(node) is not None or resolve(
                    self.fs, node.func) is len):
                allowed.update(id(a) for a in node.args if isinstance(a, ast.Name))
        for node in ast.walk(expression):
            if isinstance(node, ast.Name) and node.id in self.arrays and id(node) not in allowed:
                raise self.error(
                    f"'{ast.unparse(expression)}' uses array '{node.id}' on the host, between "
                    "parallel loops: there the host may only allocate arrays, read their shape "
                    "and single elements; move the work into a prange loop", expression)

    # -- data movement ---------------------------------------------------------------------------

    def _array_effects(self, parameters) -> tuple[set[str], set[str]]:
        """Array parameters read and written anywhere (host or kernels), through aliases too."""
        classes = _AliasClasses(self.arrays)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for target, value in _assigned_pairs(node):
                    if isinstance(target, ast.Name) and isinstance(value, (ast.Name,
                                                                            ast.Subscript)):
                        base = _base_name(value)
                        if base in self.arrays:
                            classes.join(target.id, base)
        read, written = set(), set()
        for spec in self.kernels:
            read |= {classes.find(a) for a in spec.loop.arrays_read}
            written |= {classes.find(a) for a in spec.loop.arrays_written}
            read |= {classes.find(a) for a in spec.arguments if a in self.arrays
                     and a not in spec.loop.arrays_read | spec.loop.arrays_written}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Subscript) and _base_name(node) in self.arrays:
                (written if isinstance(node.ctx, ast.Store) else read).add(
                    classes.find(_base_name(node)))
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
                read.add(classes.find(_base_name(node.target)))
        arrays = [p for p in parameters if self.kinds[p].kind == "array"]
        return ({p for p in arrays if classes.find(p) in read},
                {p for p in arrays if classes.find(p) in written})

    def _overwritten(self, parameters, reads) -> dict:
        """{array parameter: kernel number} for 1-D parameters that one kernel writes at every
        index ``p[i]`` of a loop ``prange(len(p))`` (or ``p.shape[0]``, ``p.size``) and nothing
        reads: they need no copy to the device."""
        found = {}
        for spec in self.kernels:
            loop = spec.loop
            for name in loop.elementwise_writes:
                if (name in parameters and name not in reads and self.kinds[name].ndim == 1
                        and _covers(self, loop.loop, name)):
                    found[name] = spec.number
        return found


def _covers(splitter: _Splitter, loop: ast.For, name: str) -> bool:
    bounds = loop.iter.args
    if len(bounds) == 3 and not (isinstance(bounds[2], ast.Constant) and bounds[2].value == 1):
        return False
    if len(bounds) >= 2 and not (isinstance(bounds[0], ast.Constant) and bounds[0].value == 0):
        return False
    stop = bounds[-1] if len(bounds) == 1 else bounds[1]
    definitions = {}
    for statement in splitter.tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            definitions.setdefault(statement.targets[0].id, []).append(statement.value)
    if isinstance(stop, ast.Name) and len(definitions.get(stop.id, ())) == 1:
        stop = definitions[stop.id][0]
    text = ast.unparse(stop)
    return text in (f"len({name})", f"{name}.shape[0]", f"{name}.size")


class _KernelTemplate:
    """Renders the CUDA kernel of one parallel loop (see :meth:`__call__`)."""

    def __init__(self, splitter: _Splitter, loop: ast.For, verdict: ParallelLoop, arguments):
        self.fs, self.verdict, self.arguments = splitter.fs, verdict, arguments
        self.number = len(splitter.kernels)
        for node in ast.walk(loop):
            if id(node) in verdict.atomic:
                anno.set(node, anno.ATOMIC, True)
        body = copy.deepcopy(loop.body)
        self.body = [_DeviceRewriter(splitter, verdict).visit(s) for s in body]
        for statement in self.body:
            ast.fix_missing_locations(statement)

    def __call__(self, block: int, reduction_dtypes: tuple) -> str:
        p = naming.OFFLOAD_LOCAL
        reductions = self.verdict.reductions
        parts = [f"{p}part_{r.name}" for r in reductions]
        inits = [f"{p}init_{r.name}" for r in reductions]
        header = ", ".join([f"{p}start", f"{p}step", f"{p}count", *self.arguments, *parts, *inits])
        lines = [f"def {KERNEL}{self.number}({header}):"]
        for r, init in zip(reductions, inits):
            lines.append(f"    {r.name} = {init}")
        index = self.verdict.index
        lines += [f"    for {p}k in range(cuda.grid(1), {p}count, cuda.gridsize(1)):",
                  f"        {index} = {p}start + {p}k * {p}step"]
        for statement in self.body:
            lines += ["        " + line for line in ast.unparse(statement).splitlines()]
        if reductions:
            lines += [f"    {p}t = cuda.threadIdx.x"]
            for r, part, dtype in zip(reductions, parts, reduction_dtypes):
                shared = f"{p}shared_{r.name}"
                combined = _combine(r.operator, f"{shared}[{p}t]", f"{shared}[{p}t + {p}w]")
                lines += [f"    {shared} = cuda.shared.array({block}, numba.{dtype})",
                          f"    {shared}[{p}t] = {r.name}",
                          "    cuda.syncthreads()",
                          f"    {p}w = {block // 2}",
                          f"    while {p}w > 0:",
                          f"        if {p}t < {p}w:",
                          f"            {shared}[{p}t] = {combined}",
                          "        cuda.syncthreads()",
                          f"        {p}w //= 2",
                          f"    if {p}t == 0:",
                          f"        {part}[cuda.blockIdx.x] = {shared}[0]"]
        return "\n".join(lines) + "\n"


def _combine(operator: str, left: str, right: str) -> str:
    return (f"{left} + {right}" if operator == "+" else f"{left} * {right}" if operator == "*"
            else f"{operator}({left}, {right})")


class _DeviceRewriter(ast.NodeTransformer):
    """Device form of a loop body: atomic accumulations, ``prange`` -> ``range``, NumPy scalar
    functions -> ``math``."""

    def __init__(self, splitter: _Splitter, verdict: ParallelLoop):
        self.splitter, self.verdict = splitter, verdict

    def visit_AugAssign(self, node: ast.AugAssign):
        if not anno.get(node, anno.ATOMIC, False):
            return self.generic_visit(node)
        target = node.target
        positions = target.slice.elts if isinstance(target.slice, ast.Tuple) else [target.slice]
        value = self.visit(node.value)
        if isinstance(node.op, ast.Sub):
            value = ast.UnaryOp(op=ast.USub(), operand=value)
        index = positions[0] if len(positions) == 1 else ast.Tuple(elts=positions, ctx=ast.Load())
        call = ast.Call(func=ast.Attribute(value=ast.Attribute(
            value=ast.Name(id="cuda", ctx=ast.Load()), attr="atomic", ctx=ast.Load()),
            attr="add", ctx=ast.Load()), args=[target.value, index, value], keywords=[])
        return ast.copy_location(ast.Expr(value=call), node)

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        target = resolve(self.splitter.fs, node.func)
        if _is_prange(self.splitter.fs, node):
            node.func = ast.Name(id="range", ctx=ast.Load())
        elif isinstance(target, np.ufunc) or getattr(target, "__module__", None) == "numpy":
            name = getattr(target, "__name__", "")
            node.func = ast.Attribute(value=ast.Name(id="math", ctx=ast.Load()),
                                      attr=NUMPY_TO_MATH.get(name, name), ctx=ast.Load())
        return node


class _AllocationsOnDevice(ast.NodeTransformer):
    """``np.zeros(...)`` and friends in host code -> the runtime's device allocation."""

    def __init__(self, splitter: _Splitter):
        self.splitter = splitter

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        name = self.splitter._allocation(node)
        if name is None:
            return node
        node.func = ast.Attribute(value=ast.Name(id=RUNTIME, ctx=ast.Load()), attr=name,
                                  ctx=ast.Load())
        return node


class _FieldAccesses(ast.NodeTransformer):
    """``p.field`` and ``p[k]`` of an aggregate parameter -> the field's own name."""

    def __init__(self, leaves: dict, splitter: _Splitter):
        self.names = {p: dict(fields) for p, fields in leaves.items()}
        self.splitter = splitter

    def visit_Attribute(self, node: ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id in self.names:
            fields = self.names[node.value.id]
            if node.attr not in fields:
                raise self.splitter.error(f"'{node.value.id}' has no field '{node.attr}'", node)
            return ast.copy_location(ast.Name(id=fields[node.attr], ctx=node.ctx), node)
        return self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript):
        if isinstance(node.value, ast.Name) and node.value.id in self.names:
            fields = self.names[node.value.id]
            key = node.slice.value if isinstance(node.slice, ast.Constant) else None
            if key not in fields:
                raise self.splitter.error(f"'{ast.unparse(node)}': index aggregate "
                                          f"'{node.value.id}' by a constant", node)
            return ast.copy_location(ast.Name(id=fields[key], ctx=node.ctx), node)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name):
        if node.id in self.names:
            raise self.splitter.error(
                f"aggregate '{node.id}' is used whole; offload moves aggregates field by field: "
                f"use its fields ({node.id}.field or {node.id}[k])", node)
        return node


class _AliasClasses:
    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, name):
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            name = self.parent[name]
        return name

    def join(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _assigned_pairs(node: ast.Assign) -> list[tuple[ast.expr, ast.expr]]:
    """(target, value) pairs of an assignment, tuple assignments element by element."""
    pairs = []
    for target in node.targets:
        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                and len(target.elts) == len(node.value.elts):
            pairs += list(zip(target.elts, node.value.elts))
        else:
            pairs.append((target, node.value))
    return pairs


def _tuple_leaves(node: ast.expr) -> list[ast.expr]:
    """The elements of a (nested) tuple display, or the expression itself."""
    if isinstance(node, ast.Tuple):
        return [leaf for element in node.elts for leaf in _tuple_leaves(element)]
    return [node]


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_prange(fs: FunctionSource, call: ast.expr) -> bool:
    if not isinstance(call, ast.Call):
        return False
    return resolve(fs, call.func) is numba.prange
