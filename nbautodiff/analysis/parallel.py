"""Which loops may run their iterations at once, and how each name is shared between them.

A loop runs its iterations in parallel (numba's ``prange``, a CUDA grid) only if no iteration reads
what another one writes. :func:`analyse` proves that from the loop's source alone, or refuses the
loop through the ``error`` its caller passes (:mod:`nbautodiff.transforms.offloading` raises an
:class:`nbautodiff.errors.OffloadError`), naming the name and the line that break it. A name the
loop body uses is one of:

* **private**: a scalar (or an array allocated in the body) assigned in every iteration before
  each of its reads there;
* a **reduction**: a scalar changed only by ``s += e``, ``s -= e``, ``s *= e``, ``s = s + e`` or
  ``s = max(s, e)`` / ``min``: each iteration computes a partial value and the partials combine;
* a **shared array**, read only; or written at an index one of whose positions is ``c*i + k``
  (``i`` the loop index, ``c`` a nonzero constant, ``k`` loop-invariant) and is the same at every
  access of that array, so that iterations touch disjoint elements; or only accumulated
  (``A[...] += e`` and nothing else) at any index, which needs atomic additions when no such
  position exists;
* **free**: read and never assigned in the body (the loop's inputs).

Indices computed through temporaries (``k = i - 1; A[k]``, the form of normalised and generated
code) are followed. A view of a shared array (``row = A[i]``) is the array at a longer index.
"""
from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable


#: Reduction operators by the augmented assignment that updates them.
_AUGMENTED_REDUCTIONS = {ast.Add: "+", ast.Sub: "+", ast.Mult: "*"}
#: Builtins that neither keep nor write the arrays passed to them.
PURE_BUILTINS = frozenset({"len", "range", "min", "max", "abs", "float", "int", "bool", "round"})


@dataclass(frozen=True)
class Reduction:
    """A scalar combined across iterations by ``operator`` ("+", "*", "max" or "min")."""

    name: str
    operator: str


@dataclass(frozen=True)
class ParallelLoop:
    """The verdict on one loop: how each name of its body is shared (see the module docstring).

    ``free`` are the names read from outside, in order of first use; ``arrays_written`` the shared
    arrays the body writes or accumulates into; ``atomic`` the ``id`` of each augmented assignment
    that must be an atomic addition; ``elementwise_writes`` the arrays only ever written as
    ``A[i]``; ``partitions`` gives, for each written array whose iterations touch disjoint
    elements, the index position and its form ``c*i + k`` (k: a constant and loop-invariant
    terms, by name or source text); ``accumulated`` the written arrays only ever added into; ``row_forms`` maps each
    shared array to the forms ``c*i + k`` of its first index at every access (``c`` may be 0), or
    to None when some access's first index has no such form (so which rows an iteration
    touches is unknown).
    """

    loop: ast.For
    index: str
    private: frozenset
    reductions: tuple
    free: tuple
    arrays_read: frozenset
    arrays_written: frozenset
    atomic: frozenset
    elementwise_writes: frozenset = frozenset()
    partitions: dict = field(default_factory=dict)   # written array -> (position, (c, k0, terms))
    accumulated: frozenset = frozenset()             # written arrays only ever added into
    row_forms: dict = field(default_factory=dict)    # array -> forms of its first index, or None


@dataclass
class _Access:
    node: ast.AST                  # the statement or expression to report
    kind: str                      # "read", "write", "accumulate" or "call" (passed to a callee)
    index: list | None             # positions of the full index into the array; None: unknown
    text: str = ""                 # the access as written


ErrorFactory = Callable[[str, ast.AST], Exception]


def analyse(loop: ast.For, error: ErrorFactory, *, allow_atomics: bool = True,
            call_writes: Callable[[ast.Call, int], bool] | None = None) -> ParallelLoop:
    """Prove the iterations of ``loop`` independent, or raise ``error(message, node)``.

    ``call_writes(call, k)`` says whether the callee of ``call`` may write into its ``k``-th
    argument (default: every callee but :data:`PURE_BUILTINS` may). With ``allow_atomics=False``
    accumulations into overlapping elements are refused instead of made atomic.
    """
    return _Analysis(loop, error, allow_atomics, call_writes or _conservative_call_writes).run()


def loop_index(loop: ast.For) -> str:
    if not isinstance(loop.target, ast.Name):
        raise TypeError("parallel loops have a single index")
    return loop.target.id


def assigned_names(statements: list[ast.stmt]) -> set[str]:
    """Every name the statements bind (assignment targets, loop indices), nested ones too."""
    names = set()
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def read_names(node: ast.AST) -> list[str]:
    """Names ``node`` reads, in order, with repeats."""
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


def live_after(function: ast.FunctionDef, loop: ast.stmt, names: set[str]) -> set[str]:
    """Those of ``names`` that code after ``loop`` (or before it, round an enclosing loop) may
    read before assigning them: conservative, a read inside any compound statement counts."""
    path = _path_to(function.body, loop)
    if path is None:
        raise ValueError("loop not in function")
    live = set()
    for name in names:
        for block, position, owner in reversed(path):
            touch = _first_touch(block[position + 1:], name)
            if touch is None and isinstance(owner, (ast.For, ast.While)):
                touch = _first_touch(block[:position + 1], name)
            if touch == "read":
                live.add(name)
            if touch is not None:
                break
    return live


def _path_to(block: list[ast.stmt], target: ast.stmt, owner=None):
    for position, statement in enumerate(block):
        if statement is target:
            return [(block, position, owner)]
        for field_name in ("body", "orelse"):
            inner = getattr(statement, field_name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                found = _path_to(inner, target, statement)
                if found is not None:
                    return [(block, position, owner)] + found
    return None


def _first_touch(block: list[ast.stmt], name: str) -> str | None:
    """"read" when ``block`` may read ``name`` before assigning it, "write" when it surely
    assigns it first, None when it may do neither."""
    for statement in block:
        touch = _statement_touch(statement, name)
        if touch is not None:
            return touch
    return None


def _statement_touch(statement: ast.stmt, name: str) -> str | None:
    if isinstance(statement, ast.If):
        if name in read_names(statement.test):
            return "read"
        touches = {_first_touch(statement.body, name), _first_touch(statement.orelse, name)}
        return "read" if "read" in touches else "write" if touches == {"write"} else None
    if isinstance(statement, (ast.For, ast.While)):
        head = statement.iter if isinstance(statement, ast.For) else statement.test
        if name in read_names(head):
            return "read"
        if isinstance(statement, ast.For) and name in assigned_names(
                [ast.Assign(targets=[statement.target], value=ast.Constant(0))]):
            return None
        return "read" if _first_touch(statement.body, name) == "read" else None
    if isinstance(statement, ast.Assign):
        if name in read_names(statement.value) or any(
                name in read_names(t) for t in statement.targets):
            return "read"
        return "write" if name in assigned_names([statement]) else None
    if name in read_names(statement) or (isinstance(statement, ast.AugAssign) and isinstance(
            statement.target, ast.Name) and statement.target.id == name):
        return "read"
    return None


def _conservative_call_writes(call: ast.Call, position: int) -> bool:
    return not (isinstance(call.func, ast.Name) and call.func.id in PURE_BUILTINS)


class _Analysis:
    def __init__(self, loop: ast.For, error: ErrorFactory, allow_atomics: bool, call_writes):
        self.loop, self.error = loop, error
        self.allow_atomics, self.call_writes = allow_atomics, call_writes
        self.index = loop_index(loop)
        self.assigned = assigned_names(loop.body)
        self.temporaries = self._temporaries()
        self.views: dict[str, tuple[str, list | None]] = {}

    def run(self) -> ParallelLoop:
        if self.index in self.assigned:
            raise self.error(f"the parallel loop assigns its own index '{self.index}'", self.loop)
        reductions = self._reductions()
        reduced = {r.name for r in reductions}
        private = self._check_private(reduced)
        accesses = self._array_accesses(private)
        read, written, atomic = self._check_arrays(accesses)
        row_forms = {base: self._row_forms(found) for base, found in accesses.items()}
        elementwise = {base for base, found in accesses.items() if all(
            a.kind == "write" and a.index is not None and len(a.index) == 1
            and isinstance(a.index[0], ast.Name) and a.index[0].id == self.index for a in found)}
        free, seen = [], set()
        for name in read_names(ast.Module(body=self.loop.body, type_ignores=[])):
            if name not in self.assigned and name != self.index and name not in seen:
                seen.add(name)
                free.append(name)
        free.extend(r.name for r in reductions if r.name not in seen)
        return ParallelLoop(self.loop, self.index, frozenset(private), tuple(reductions),
                            tuple(free), frozenset(read), frozenset(written), frozenset(atomic),
                            frozenset(elementwise), dict(self.partitions),
                            frozenset(self.accumulated), row_forms)

    # -- scalars --------------------------------------------------------------------------------

    def _reductions(self) -> list[Reduction]:
        module = ast.Module(body=self.loop.body, type_ignores=[])
        occurrences = Counter(n.id for n in ast.walk(module) if isinstance(n, ast.Name))
        updates: dict[str, list[tuple[str, int]]] = {}
        for node in ast.walk(module):
            found = _reduction_update(node)
            if found is None:
                found = self._reduction_through_temporary(node, occurrences)
            if found is not None:
                updates.setdefault(found[0], []).append(found[1:])
        reductions = []
        for name, found in updates.items():
            operators = {operator for operator, _ in found}
            if len(operators) == 1 and occurrences[name] == sum(count for _, count in found):
                reductions.append(Reduction(name, operators.pop()))
        return reductions

    def _reduction_through_temporary(self, node: ast.AST, occurrences: Counter):
        """``t = s + e; s = t`` (normalised code's ``s += e``), ``t`` used nowhere else."""
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Name)
                and node.value.id in self.temporaries and occurrences[node.value.id] == 2):
            return None
        name = node.targets[0].id
        definition = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                value=self.temporaries[node.value.id])
        found = _reduction_update(definition)
        return found

    def _check_private(self, reduced: set[str]) -> set[str]:
        """Every name assigned in the body (but reductions) must be assigned before it is read in
        the same iteration."""
        candidates = self.assigned - reduced
        self._definitely_assigned(self.loop.body, {self.index}, candidates)
        return candidates

    def _definitely_assigned(self, block: list[ast.stmt], assigned: set[str],
                             candidates: set[str]) -> set[str]:
        assigned = set(assigned)
        for statement in block:
            for expression in _evaluated_first(statement):
                for node in ast.walk(expression):
                    if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                            and node.id in candidates and node.id not in assigned):
                        raise self.error(
                            f"'{node.id}' carries a value from one iteration of the parallel loop "
                            f"(line {self.loop.lineno}) to the next: assign it before reading it in "
                            "the loop body, or make it a reduction (s += ...)", node)
            if isinstance(statement, ast.If):
                body = self._definitely_assigned(statement.body, assigned, candidates)
                orelse = self._definitely_assigned(statement.orelse, assigned, candidates)
                assigned |= body & orelse
            elif isinstance(statement, (ast.For, ast.While)):
                inner = set(assigned)
                if isinstance(statement, ast.For):
                    inner |= {n.id for n in ast.walk(statement.target) if isinstance(n, ast.Name)}
                self._definitely_assigned(statement.body, inner, candidates)
            else:
                assigned |= assigned_names([statement])
        return assigned

    # -- arrays ---------------------------------------------------------------------------------

    def _array_accesses(self, private: set[str]) -> dict[str, list[_Access]]:
        for statement in self.loop.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)):
                view = statement.targets[0].id
                located = self._locate(statement.value)
                if located is not None and _is_subscripted(self.loop.body, view):
                    self.views[view] = located
        accesses: dict[str, list[_Access]] = {}
        module = ast.Module(body=self.loop.body, type_ignores=[])
        parents = {child: node for node in ast.walk(module) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(module):
            parent = parents.get(node)
            if isinstance(node, ast.Subscript) and not (isinstance(parent, ast.Subscript)
                                                        and parent.value is node):
                located = self._locate(node)
                if located is None:
                    continue
                base, index = located
                if isinstance(node.ctx, ast.Store):
                    if isinstance(parent, ast.AugAssign):
                        kind = "accumulate" if type(parent.op) in (ast.Add, ast.Sub) else "write"
                        report_at = parent
                    else:
                        kind, report_at = "write", node
                else:
                    if isinstance(parent, ast.Assign) and parent.value is node and any(
                            isinstance(t, ast.Name) and t.id in self.views for t in parent.targets):
                        continue
                    kind, report_at = "read", node
                accesses.setdefault(base, []).append(
                    _Access(report_at, kind, index, ast.unparse(node)))
            elif isinstance(node, ast.Call):
                for position, argument in enumerate(node.args):
                    located = self._locate(argument) if isinstance(argument, ast.Name) else None
                    if located is not None and self.call_writes(node, position):
                        accesses.setdefault(located[0], []).append(
                            _Access(node, "call", None, ast.unparse(node)))
        return {base: found for base, found in accesses.items() if base not in private
                or base in self.views}

    def _locate(self, node: ast.expr):
        """(shared array, index positions or None) that ``node`` reads or writes, or None when
        ``node`` is not an element or view of a shared array."""
        positions: list = []
        while isinstance(node, ast.Subscript):
            inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            positions = list(inner) + positions
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        if node.id in self.views:
            base, prefix = self.views[node.id]
            return base, (None if prefix is None else prefix + positions)
        if node.id in self.assigned:
            return None
        if any(isinstance(p, ast.Slice) for p in positions):
            return node.id, None
        return node.id, positions

    def _check_arrays(self, accesses: dict[str, list[_Access]]):
        read, written, atomic = set(), set(), set()
        self.partitions, self.accumulated = {}, set()
        for base, found in accesses.items():
            kinds = {a.kind for a in found}
            if kinds == {"read"}:
                read.add(base)
                continue
            written.add(base)
            if kinds == {"accumulate"}:
                self.accumulated.add(base)
            if kinds & {"read", "call", "accumulate"}:
                read.add(base)
            partition = self._partition(found)
            if partition is not None:
                self.partitions[base] = partition
                continue
            if kinds == {"accumulate"}:
                if self.allow_atomics:
                    atomic.update(id(a.node) for a in found)
                    continue
                raise self.error(
                    f"iterations of the parallel loop (line {self.loop.lineno}) add into the "
                    f"same elements of '{base}': a race", found[0].node)
            first_write = next(a for a in found if a.kind != "read")
            other = next((a for a in found if a.text != first_write.text),
                         next((a for a in found if a is not first_write), first_write))
            raise self.error(
                f"iterations of the parallel loop (line {self.loop.lineno}) are not independent: "
                f"{first_write.text} (line {first_write.node.lineno}) may write what another "
                f"iteration accesses as {other.text} (line {other.node.lineno}); index every "
                f"access of '{base}' by the loop index at the same position", first_write.node)
        return read, written, atomic

    def _row_forms(self, accesses: list[_Access]):
        forms = set()
        for access in accesses:
            if not access.index:
                return None
            form = self._affine(access.index[0], depth=0)
            if form is None:
                return None
            forms.add(form)
        return tuple(sorted(forms))

    def _partition(self, accesses: list[_Access]):
        """(position, (c, constant, invariant terms)) of an index position that is the same
        ``c*i + k`` (c != 0) at every access, the first such position; None if there is none."""
        common = None
        for access in accesses:
            if access.index is None:
                return None
            keys = set()
            for position, expression in enumerate(access.index):
                form = self._affine(expression, depth=0)
                if form is not None and form[0] != 0:
                    keys.add((position, form))
            common = keys if common is None else common & keys
            if not common:
                return None
        return min(common, key=lambda key: key[0]) if common else None

    def _temporaries(self) -> dict[str, ast.expr]:
        counts = Counter(n.id for n in ast.walk(ast.Module(body=self.loop.body, type_ignores=[]))
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
        temporaries = {}
        for statement in self.loop.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                    and counts[statement.targets[0].id] == 1):
                temporaries[statement.targets[0].id] = statement.value
        return temporaries

    def _affine(self, node: ast.expr, depth: int):
        """``node`` as (coefficient of the index, constant, invariant terms) or None."""
        if depth > 32:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return (0, node.value, ())
        if isinstance(node, ast.Name):
            if node.id == self.index:
                return (1, 0, ())
            if node.id in self.temporaries:
                return self._affine(self.temporaries[node.id], depth + 1)
            if node.id in self.assigned:
                return None
            return (0, 0, ((node.id, 1),))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._affine(node.operand, depth + 1)
            return None if inner is None else _scaled(inner, -1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            left = self._affine(node.left, depth + 1)
            right = self._affine(node.right, depth + 1)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Mult):
                for factor, other in ((left, right), (right, left)):
                    if factor[0] == 0 and not factor[2]:
                        return _scaled(other, factor[1])
                if left[0] == 0 and right[0] == 0:
                    return (0, 0, ((ast.unparse(node), 1),))
                return None
            return _added(left, right if isinstance(node.op, ast.Add) else _scaled(right, -1))
        if not (set(read_names(node)) & (self.assigned | {self.index})):
            return (0, 0, ((ast.unparse(node), 1),))
        return None


def _scaled(form, factor: int):
    coefficient, constant, terms = form
    return (coefficient * factor, constant * factor,
            tuple((term, count * factor) for term, count in terms if count * factor))


def _added(left, right):
    terms = Counter(dict(left[2]))
    terms.update(dict(right[2]))
    return (left[0] + right[0], left[1] + right[1],
            tuple(sorted((t, c) for t, c in terms.items() if c)))


def _reduction_update(node: ast.AST):
    """(name, operator, occurrences of the name in ``node``) when ``node`` is a reduction update
    of a scalar name, else None."""
    if (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
            and type(node.op) in _AUGMENTED_REDUCTIONS
            and node.target.id not in read_names(node.value)):
        return node.target.id, _AUGMENTED_REDUCTIONS[type(node.op)], 1
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)):
        return None
    name, value = node.targets[0].id, node.value
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mult)):
        for this, other in ((value.left, value.right), (value.right, value.left)):
            if isinstance(this, ast.Name) and this.id == name and name not in read_names(other):
                return name, "+" if isinstance(value.op, ast.Add) else "*", 2
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in ("max", "min") and len(value.args) == 2 and not value.keywords):
        for this, other in ((value.args[0], value.args[1]), (value.args[1], value.args[0])):
            if isinstance(this, ast.Name) and this.id == name and name not in read_names(other):
                return name, value.func.id, 2
    return None


def _evaluated_first(statement: ast.stmt) -> list[ast.expr]:
    """The expressions a statement evaluates before it binds anything."""
    if isinstance(statement, ast.Assign):
        return [statement.value] + [t for t in statement.targets if not isinstance(t, ast.Name)]
    if isinstance(statement, ast.AugAssign):
        return [statement.value, statement.target if not isinstance(statement.target, ast.Name)
                else ast.Name(id=statement.target.id, ctx=ast.Load(), lineno=statement.lineno)]
    if isinstance(statement, ast.If):
        return [statement.test]
    if isinstance(statement, ast.For):
        return [statement.iter]
    if isinstance(statement, ast.While):
        return [statement.test]
    return [statement]


def _is_subscripted(block: list[ast.stmt], name: str) -> bool:
    return any(isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == name
               for n in ast.walk(ast.Module(body=block, type_ignores=[])))
