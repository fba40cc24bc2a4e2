"""Activity analysis and what the reverse pass needs, on a normalised function.

Given the variable types and which inputs are active, :func:`analyse` decides

* **activity**: a variable is active when it depends on an active input through differentiable
  operations (*varied*) and influences a differentiated output (*useful*); only active
  statements get adjoint code. Arrays are tracked by alias class (``B = A`` makes one class);
* **needed values**: the primal values that adjoint code reads (operands of non-linear rules,
  indices, branch conditions, loop bounds, arguments of callees);
* for each needed value, how the reverse pass gets it back: it is *stable* (assigned once,
  outside loops), *recomputed* at the start of its block's reversal (a cheap, pure statement
  whose operands are themselves available), or *restored* from the tape (pushed before each
  overwrite, popped when that assignment is reversed).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from nbautodiff import annotations as anno, rules
from nbautodiff.codegen import Site, parameters, walk_statements
from . import typeinfer

OUTPUT = "<output>"


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def atom_name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


def index_names(index: ast.expr) -> set[str]:
    return names_in(index)


def array_index_names(index: ast.expr, types: dict) -> list[str]:
    """The integer or boolean arrays in an index (``A[idx]``, ``A[mask]``, ``A[rows, 1:]``):
    such an index selects a copy of the elements (a gather), not a view."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    return [part.id for part in parts
            if isinstance(part, ast.Name) and typeinfer.is_array(types.get(part.id))]


def view_origin(statement: ast.Assign, types: dict) -> str | None:
    """The array that ``statement`` makes another name for, if it does: ``B = A`` (an alias),
    ``B = A[index]`` where ``B`` is an array (a view: a slice, a row; not a gather), or a view
    made by a call that :mod:`nbautodiff.analysis.aliasing` marked (``B = A.T`` where ``A`` is written)."""
    target, value = statement.targets[0], statement.value
    if isinstance(value, ast.Name) and typeinfer.is_array(types.get(value.id)):
        return value.id
    if anno.get(statement, anno.VIEW, None):     # a view made by a call (see .aliasing)
        return value.args[0].id
    if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
            and typeinfer.is_array(types.get(target.id)) \
            and typeinfer.is_array(types.get(value.value.id)) \
            and not array_index_names(value.slice, types):      # not an element of a tuple
        return value.value.id
    return None


def rule_of(value: ast.expr):
    """(derivative rule, operands) of a three-address right-hand side; (None, []) if it has none."""
    if isinstance(value, ast.BinOp):
        return rules.OPERATORS.get(type(value.op)), [value.left, value.right]
    if isinstance(value, ast.UnaryOp):
        return rules.OPERATORS.get(type(value.op)), [value.operand]
    if isinstance(value, ast.Call) and anno.get(value, anno.KIND) in ("rule", "array"):
        return anno.get(value, anno.TARGET), list(value.args)
    return None, []


def own_read_nodes(statement: ast.stmt) -> list[str]:
    """Every name a statement reads itself, once per occurrence."""
    if isinstance(statement, (ast.If, ast.While)):
        nodes = [statement.test]
    elif isinstance(statement, ast.For):
        nodes = [statement.iter]
    elif isinstance(statement, ast.Assign):
        nodes = [statement.value] + ([statement.targets[0]]
                                     if isinstance(statement.targets[0], ast.Subscript) else [])
    elif isinstance(statement, (ast.Expr, ast.Return)) and statement.value is not None:
        nodes = [statement.value]
    else:
        nodes = []
    return [n.id for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


def target_names(target: ast.expr) -> list[str]:
    """The names an assignment target binds: ``[x]`` for ``x``, the elements of a (nested)
    tuple target ``(a, (b, c))`` in order (see :mod:`nbautodiff.analysis.tuples`), none for a store ``A[i]``."""
    if isinstance(target, ast.Tuple):
        return [name for element in target.elts for name in target_names(element)]
    return [target.id] if isinstance(target, ast.Name) else []


def assigned_names(statement: ast.stmt) -> list[str]:
    """The variables a statement binds itself (an assignment's names, a loop's variable)."""
    if isinstance(statement, ast.Assign):
        return target_names(statement.targets[0])
    if isinstance(statement, ast.For):
        return [statement.target.id]
    return []


def own_reads(statement: ast.stmt) -> set[str]:
    """Names a statement reads itself (not in the statements nested in it)."""
    if isinstance(statement, (ast.If, ast.While)):
        return names_in(statement.test)
    if isinstance(statement, ast.For):
        return names_in(statement.iter)
    if isinstance(statement, ast.Assign):
        target = statement.targets[0]
        reads = names_in(statement.value)
        if isinstance(target, ast.Subscript):
            reads |= names_in(target)
        return reads
    if isinstance(statement, (ast.Expr, ast.Return)) and statement.value is not None:
        return names_in(statement.value)
    return set()


@dataclass
class Analysis:
    types: dict
    alias: dict = field(default_factory=dict)            # array name -> class representative
    active: set = field(default_factory=set)             # active scalars and array classes
    varied: set = field(default_factory=set)             # depend on active inputs (not all useful)
    needed: set = field(default_factory=set)
    restored: set = field(default_factory=set)
    recompute: dict = field(default_factory=dict)        # id(block) -> [statements]
    recomputed: set = field(default_factory=set)         # ids of recomputed statements
    written: set = field(default_factory=set)            # array classes written anywhere
    sites: dict = field(default_factory=dict)            # id(statement) -> Site
    stores: list = field(default_factory=list)           # (statement, array class) writes
    order: dict = field(default_factory=dict)            # id(statement) -> position
    loop_members: dict = field(default_factory=dict)     # id(loop) -> ids of its statements
    assignments: dict = field(default_factory=dict)      # name -> [statements assigning it]
    touching: dict = field(default_factory=dict)         # id(tree) -> name -> [statements]

    def statements_touching(self, tree: ast.FunctionDef, name: str) -> list[ast.stmt]:
        """The statements of ``tree`` that read ``name`` themselves or bind it, in program
        order (an index of the tree built on first use: the analysed tree does not change)."""
        index = self.touching.get(id(tree))
        if index is None:
            index = self.touching[id(tree)] = {}
            for statement, _ in walk_statements(tree.body):
                for touched in own_reads(statement) | set(assigned_names(statement)):
                    index.setdefault(touched, []).append(statement)
        return index.get(name, [])

    def rep(self, name: str) -> str:
        while name in self.alias and self.alias[name] != name:
            name = self.alias[name]
        return name

    def is_active(self, name: str | None) -> bool:
        return name is not None and self.rep(name) in self.active

    def written_after(self, statement: ast.stmt, name: str) -> bool:
        """Whether array ``name`` may be written once ``statement`` has run (later in program
        order, or anywhere in a loop around it)."""
        cls = self.rep(name)
        here = self.order[id(statement)]
        loops = [members for members in self.loop_members.values() if id(statement) in members]
        for store, stored in self.stores:
            if stored != cls:
                continue
            if self.order[id(store)] > here or any(id(store) in members for members in loops):
                return True
        return False

    def is_array(self, name: str) -> bool:
        return typeinfer.is_array(self.types.get(name))

    def statement_active(self, statement: ast.stmt) -> bool:
        return any(self.is_active(t) for t in self._targets_for_activity(statement))

    def _targets_for_activity(self, statement):
        if isinstance(statement, ast.Assign):
            target = statement.targets[0]
            names = [target.value.id] if isinstance(target, ast.Subscript) else \
                target_names(target)
            call = statement.value
        elif isinstance(statement, ast.Expr):
            names, call = [], statement.value
        else:
            return []
        if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
            names += [atom_name(a) for a in call.args if atom_name(a)]
        return names


def _stack_members(statement: ast.stmt) -> list[tuple[str, str]]:
    """(stack, array name) pairs a reference stack statement of generated code relates:
    ``L = [a]``, ``L.append(a)``, ``a = L.pop()``: every array on a stack is one alias class."""
    value = getattr(statement, "value", None)
    if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
        target = statement.targets[0].id
        if isinstance(value, ast.List):
            return [(target, n) for n in map(atom_name, value.elts) if n]
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND, None) == "list":
            return [(value.func.value.id, target)]
    if isinstance(statement, ast.Expr) and anno.get(value, anno.KIND, None) == "list":
        return [(value.func.value.id, n) for n in map(atom_name, value.args) if n]
    return []


class _Analyser:
    def __init__(self, tree: ast.FunctionDef, types: dict, active_inputs: set, result_active: bool,
                 callee_writes, in_place_stores: bool = False):
        self.tree = tree
        self.a = Analysis(types=types)
        self.active_inputs = active_inputs
        self.result_active = result_active
        self.callee_writes = callee_writes          # call node -> set of written arg positions
        self.params = parameters(tree)
        self.in_place_stores = in_place_stores

    def differentiable(self, name: str) -> bool:
        typ = self.a.types.get(name)
        return name == OUTPUT or typeinfer.is_differentiable(typ) or \
            typeinfer.is_differentiable_list(typ)

    def merge(self, first: str, second: str) -> None:
        """One alias class for ``first`` and ``second`` (a reference stack and its arrays)."""
        a = self.a
        one, other = a.rep(first), a.rep(second)
        if one != other:
            a.alias[other] = one

    # -- flows -----------------------------------------------------------------------------
    def flows(self, statement: ast.stmt) -> list[tuple[str, list[str]]]:
        a = self.a
        if isinstance(statement, ast.Return):
            returned = names_in(statement.value) if statement.value is not None else set()
            return [(OUTPUT, sorted({a.rep(name) for name in returned}))]
        if isinstance(statement, ast.Expr):
            return self.call_flows(statement.value, [])
        if not isinstance(statement, ast.Assign):
            return []
        target, value = statement.targets[0], statement.value
        if isinstance(target, ast.Subscript):
            return [(a.rep(target.value.id), [a.rep(n) for n in [atom_name(value)] if n])]
        if isinstance(target, ast.Tuple):            # a tuple unpacked whole (see .tuples)
            names = target_names(target)
            if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user":
                return self.call_flows(value, names)
            return [(name, []) for name in names]
        t = target.id
        if isinstance(value, ast.Name):
            return [(a.rep(t), [a.rep(value.id)])]
        if isinstance(value, ast.List):
            return [(a.rep(t), [a.rep(n) for n in map(atom_name, value.elts) if n])]
        if isinstance(value, (ast.BinOp, ast.UnaryOp)):
            return [(a.rep(t), self.rule_sources(*rule_of(value)))]
        if isinstance(value, ast.Call):
            return self.call_flows(value, [t])
        if isinstance(value, ast.Subscript):
            base = value.value.id
            return [(t, [a.rep(base)] if a.is_array(base) else [])]
        return [(t, [])]

    def rule_sources(self, rule, operands) -> list[str]:
        if rule is None:
            return []
        return [self.a.rep(atom_name(o)) for o, adj in zip(operands, rule.adjoints)
                if adj is not None and atom_name(o)]

    def call_flows(self, call: ast.Call, targets: list[str]):
        a = self.a
        kind = anno.get(call, anno.KIND)
        if kind in ("rule", "array"):
            rule = anno.get(call, anno.TARGET)
            return [(a.rep(t), self.rule_sources(rule, call.args)) for t in targets]
        if kind == "copy":
            return [(a.rep(t), [a.rep(call.func.value.id)]) for t in targets]
        if kind == "list":                           # L.append(x), x = L.pop()
            stack = a.rep(call.func.value.id)
            if anno.get(call, anno.TARGET) == "append":
                return [(stack, [a.rep(n) for n in map(atom_name, call.args) if n])]
            return [(a.rep(t), [stack]) for t in targets]
        if kind == "helper":
            rule = anno.get(call, anno.TARGET)
            sources = [a.rep(n) for n in (atom_name(call.args[rule.params.index(p)])
                                          for p in rule.differentiable) if n]
            written = [atom_name(call.args[rule.writes])] if rule.writes is not None else []
            return [(a.rep(name), sources) for name in targets + written if name]
        if kind != "user":
            return [(t, []) for t in targets]
        sources = [a.rep(n) for n in (atom_name(x) for x in call.args) if n]
        flows = [(a.rep(t), sources) for t in targets]
        for position in self.callee_writes(call):
            name = atom_name(call.args[position])
            if name:
                flows.append((a.rep(name), sources))
        return flows

    # -- passes ----------------------------------------------------------------------------
    def run(self) -> Analysis:
        a = self.a
        body = self.tree.body
        for statement, site in walk_statements(body):
            a.sites[id(statement)] = site
            for name in assigned_names(statement):
                a.assignments.setdefault(name, []).append(statement)
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                origin = view_origin(statement, a.types)
                stores = self.in_place_stores and anno.get(statement, anno.IN_PLACE, False)
                if origin and self.in_place_stores and not stores:
                    self.merge(origin, statement.targets[0].id)   # views of several arrays
                elif origin and not stores:
                    # a name bound to several arrays in turn (``x = x + v`` in a loop, after
                    # ``x = t``) is one class with all of them: a write through it may write
                    # any (merging, not overwriting, the class it had)
                    self.merge(origin, statement.targets[0].id)
            for stack, member in _stack_members(statement):
                self.merge(stack, member)
        for position, (statement, _) in enumerate(walk_statements(body)):
            a.order[id(statement)] = position
            if isinstance(statement, (ast.For, ast.While)):
                a.loop_members[id(statement)] = {id(s) for s, _ in walk_statements(statement.body)}
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Subscript):
                a.stores.append((statement, a.rep(statement.targets[0].value.id)))
            call = getattr(statement, "value", None)
            if isinstance(call, ast.Call) and anno.get(call, anno.KIND) == "user":
                for index in self.callee_writes(call):
                    name = atom_name(call.args[index])
                    if name:
                        a.stores.append((statement, a.rep(name)))
        a.written = {cls for _, cls in a.stores}
        edges = [flow for statement, _ in walk_statements(body) for flow in self.flows(statement)]
        edges = [(t, [s for s in sources if self.differentiable(s)]) for t, sources in edges
                 if self.differentiable(t)]
        varied = {a.rep(p) for p in self.active_inputs}
        useful = {OUTPUT} if self.result_active else set()
        useful |= {a.rep(p) for p in self.active_inputs if a.is_array(p)}
        changed = True
        while changed:
            changed = False
            for target, sources in edges:
                if target not in varied and any(s in varied for s in sources):
                    varied.add(target)
                    changed = True
                if target in useful:
                    for s in sources:
                        if s not in useful:
                            useful.add(s)
                            changed = True
        a.active = (varied & useful) - {OUTPUT}
        a.varied = varied - {OUTPUT}
        self.needed_values()
        return a

    # -- needed values, recomputation and restoration --------------------------------------
    def needed_values(self) -> None:
        a = self.a
        needed: set[str] = set()
        readers: dict[str, list] = {}                # name -> statements whose reversal reads it
        for statement, _ in walk_statements(self.tree.body):
            for name in self.reads_in_reverse(statement):
                needed.add(name)
                readers.setdefault(name, []).append(statement)
        recomputable = self.recomputable_statements()
        work = list(needed)
        recomputed: set[int] = set()
        while work:
            name = work.pop()
            assigned = a.assignments.get(name, [])
            if len(assigned) != 1 or id(assigned[0]) not in recomputable:
                continue
            if id(assigned[0]) not in recomputed:
                recomputed.add(id(assigned[0]))
                for operand in self.operand_names(assigned[0]):
                    readers.setdefault(operand, []).append(assigned[0])
                    if operand not in needed:
                        needed.add(operand)
                        work.append(operand)
        a.recomputed = recomputed
        for statement, site in walk_statements(self.tree.body):
            if id(statement) in recomputed:
                a.recompute.setdefault(id(site.block), []).append(statement)
        a.needed = needed
        for name in needed:
            assigned = a.assignments.get(name, [])
            if a.is_array(name) or any(id(s) in recomputed for s in assigned):
                continue
            if all(isinstance(s, ast.For) for s in assigned) and name not in self.params \
                    and all(self.inside_any(reader, assigned) for reader in readers[name]):
                continue                   # the reversed loops set it; nothing else reads it
            in_loop = any(a.sites[id(s)].loop_depth > 0 for s in assigned)
            count = len(assigned) + (1 if name in self.params else 0)
            if assigned and (in_loop or count > 1):
                a.restored.add(name)

    def inside_any(self, statement: ast.stmt, loops: list) -> bool:
        return any(id(statement) in self.a.loop_members[id(loop)] for loop in loops)

    def recomputable_statements(self) -> set[int]:
        """Statements the reverse pass may re-execute at the start of their block's reversal.

        A candidate is a cheap pure assignment inside a loop, the only assignment of its target,
        whose target is read only after it in its own block (so within one iteration). The
        largest set whose members read only values that stay put during the block (assigned
        outside it, or by an earlier member of the same block) is kept.
        """
        a = self.a
        readers: dict[str, set[int]] = {}
        for statement, _ in walk_statements(self.tree.body):
            for name in own_reads(statement):
                readers.setdefault(name, set()).add(id(statement))
        candidates = {}
        for statement, site in walk_statements(self.tree.body):
            if not (site.loop_depth and self.pure_and_cheap(statement)):
                continue
            target = statement.targets[0].id
            if target in self.params or len(a.assignments.get(target, [])) != 1:
                continue
            after = site.block[site.block.index(statement) + 1:]
            later = {id(inner) for inner, _ in walk_statements(after)}
            if readers.get(target, set()) <= later:
                candidates[id(statement)] = (statement, site)
        changed = True
        while changed:
            changed = False
            for key, (statement, site) in list(candidates.items()):
                if not self.operands_stay(statement, site, candidates):
                    del candidates[key]
                    changed = True
        return set(candidates)

    def operands_stay(self, statement, site: Site, candidates) -> bool:
        assigned_in_block = {name for inner, _ in walk_statements(site.block)
                             for name in assigned_names(inner)}
        # An array operand is read again at the start of the block's reversal, so it must
        # name the same array then as when the statement ran: rebound later in the block
        # (``v = x[0]; ...; x = x + v``), it names another. (Writes into it are the business
        # of ``pure_and_cheap``.)
        position = site.block.index(statement)
        rebound_after = {name for inner, _ in walk_statements(site.block[position:])
                         for name in assigned_names(inner)}
        earlier = set()
        for inner in site.block:
            if inner is statement:
                break
            if id(inner) in candidates:
                earlier.add(inner.targets[0].id)
        for operand in self.operand_names(statement):
            if self.a.is_array(operand):
                if operand in rebound_after:
                    return False
                continue
            if operand in earlier:
                continue
            if operand in assigned_in_block:
                return False
        return True

    def pure_and_cheap(self, statement: ast.stmt) -> bool:
        if not (isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)):
            return False
        if typeinfer.is_array(self.a.types.get(statement.targets[0].id)):
            return False
        for node in ast.walk(statement.value):
            if isinstance(node, ast.Call) \
                    and anno.get(node, anno.KIND, None) not in ("rule", "zero"):
                return False
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and self.a.is_array(node.value.id) \
                    and self.a.written_after(statement, node.value.id):
                return False
        return True

    def reads_in_reverse(self, statement: ast.stmt) -> set[str]:
        a = self.a
        reads: set[str] = set()
        if isinstance(statement, (ast.If, ast.While)):
            if self.has_active(statement):
                reads |= names_in(statement.test) if isinstance(statement, ast.If) else set()
            return reads
        if isinstance(statement, ast.For):
            if self.has_active(statement):
                reads |= names_in(statement.iter) - {"range"}
            return reads
        if not a.statement_active(statement):
            return reads
        if isinstance(statement, ast.Expr):
            return {n for n in (atom_name(x) for x in statement.value.args) if n}
        if not isinstance(statement, ast.Assign):
            return reads
        target, value = statement.targets[0], statement.value
        if isinstance(target, ast.Subscript):
            return index_names(target.slice)
        if isinstance(value, ast.Subscript):
            return index_names(value.slice) if a.is_array(value.value.id) else set()
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user":
            reads = {n for n in (atom_name(x) for x in value.args) if n}
            if isinstance(target, ast.Tuple):          # zero seeds of inactive array elements
                reads |= {n for n in target_names(target) if a.is_array(n)}
            return reads
        rule, operands = rule_of(value)
        if rule is None:
            return reads
        for position, operand in enumerate(operands):
            if not a.is_active(atom_name(operand)):
                continue
            used = rule.names_used(position)
            if "z" in used:
                reads.add(target.id)
            for param, other in zip(rule.params, operands):
                if param in used and atom_name(other):
                    reads.add(other.id)
        return reads

    def has_active(self, statement: ast.stmt) -> bool:
        """Whether the reverse pass may replay ``statement``'s control flow: it holds active
        code, or assignments that the tape may have to undo (decided later, so any counts)."""
        for inner, _ in walk_statements(statement.body + getattr(statement, "orelse", [])):
            if self.a.statement_active(inner) or isinstance(inner, (ast.Return, ast.For)):
                return True
            if isinstance(inner, ast.Assign) and target_names(inner.targets[0]):
                return True
        return False

    @staticmethod
    def operand_names(statement: ast.Assign) -> set[str]:
        value = statement.value
        names = names_in(value)
        if isinstance(value, ast.Call):
            names -= names_in(value.func)
        return names



def opaque_call_refusal(tree: ast.FunctionDef, a: Analysis) -> tuple[ast.stmt, str] | None:
    """(statement, reason) for the first call to a library function without a derivative rule
    (annotated ``KIND`` "opaque", a constant for the derivative) that is not constant: an argument
    depends on the differentiated inputs and the result is a float (array); its result is an
    array that may be a view of an array argument, and one of them is written; or it is called
    for its effect on an array argument. None when every such call is a constant."""
    for statement, _ in walk_statements(tree.body):
        call = getattr(statement, "value", None)
        if not (isinstance(call, ast.Call) and anno.get(call, anno.KIND, None) == "opaque"):
            continue
        args = [n for n in map(atom_name, call.args) if n]
        arrays = [n for n in args if a.is_array(n)]
        if isinstance(statement, ast.Expr):
            if arrays:
                return statement, (f"call to '{ast.unparse(call.func)}' for its effect on the "
                                   f"array '{arrays[0]}' (no derivative rule; it may write it)")
            continue
        if not isinstance(statement, ast.Assign):
            continue
        targets = target_names(statement.targets[0])
        varied = [n for n in args if a.rep(n) in a.varied]
        if varied and any(_has_float(a.types.get(t)) for t in targets):
            on = "an argument" if varied[0].startswith("_nad") else f"'{varied[0]}'"
            return statement, (f"call to '{ast.unparse(call.func)}' on {on}, which "
                               "depends on the differentiated inputs: it has no derivative rule "
                               "(declare one with nad.custom_vjp, or mark a function of yours "
                               "that calls it nad.non_differentiable)")
        if arrays and any(a.is_array(t) for t in targets) and \
                any(a.rep(n) in a.written for n in arrays + targets):
            return statement, (f"call to '{ast.unparse(call.func)}' whose array result may be a "
                               f"view of '{arrays[0]}', when one of them is written afterwards "
                               "(copy the result with .copy())")
    return None


def _has_float(typ) -> bool:
    if typeinfer.is_differentiable(typ):
        return True
    return any(_has_float(t) for t in getattr(typ, "types", ()) or ())


def analyse(tree: ast.FunctionDef, types: dict, active_inputs: set, result_active: bool,
            callee_writes, in_place_stores: bool = False) -> Analysis:
    """Activity and reverse-pass needs of ``tree``; see the module docstring.
    ``in_place_stores`` (forward mode): the rebinding that ends ``A op= ...`` (marked
    ``IN_PLACE``) is a store into ``A``'s array, not a new name for the result's array, and
    a name bound to views of several arrays joins their alias classes into one."""
    return _Analyser(tree, types, active_inputs, result_active, callee_writes,
                     in_place_stores).run()
