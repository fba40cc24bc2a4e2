"""The reverse-mode transform: a normalised function to one that returns its adjoints.

:func:`transform` builds ``f__rev_<code>(args and shadows..., seed)``, which runs the forward
sweep (the primal, pushing onto the tape the values the analysis says must be restored) and
then the reverse sweep (adjoint statements in reverse order, loops run backwards, branches
taken as they were), and returns ``(result, adjoints of active scalar arguments...)``; without
``keep_value`` the result is ``None`` and nothing computes it (see :mod:`.deadcode`).

Conventions of the generated code: ``_nad_b_x`` is the adjoint of scalar ``x``,
``_nad_d_A`` the shadow of array ``A``, ``_nad_g`` the adjoint entering the statement being
reversed. Arrays passed to the function that it writes are copied on entry, so a caller's array
keeps the contents its own reverse sweep relies on; with ``writeback`` the final contents are
copied back after the forward sweep, so callers see the primal's effects (Enzyme semantics).
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from . import checkpoint, naming, rules, typeinfer
from .deadcode import remove_dead_assignments
from .analysis import (Analysis, assigned_names, atom_name, names_in, own_read_nodes, own_reads,
                       rule_of, view_origin, walk_statements)
from .loop_order import (accumulation_groups, accumulation_key, accumulator_updates,
                         any_order_loops, fused_loops, iteration_local_scalars,
                         loop_assigned_names, stencil_offsets)


def _parse(source: str) -> list[ast.stmt]:
    return ast.parse(source).body


def _expr(source: str) -> ast.expr:
    return ast.parse(source, mode="eval").body


def _src(node: ast.AST) -> str:
    return ast.unparse(node)


def _index_src(index: ast.expr) -> str:
    """Source of a subscript's index, as written between brackets (slices included)."""
    return ast.unparse(ast.Subscript(value=ast.Name(id="_"), slice=index))[2:-1]


class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, ast.expr]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return copy.deepcopy(self.mapping[node.id]) if node.id in self.mapping else node


def instantiate(template: ast.expr, mapping: dict[str, ast.expr]) -> ast.expr:
    """A rule template with its names replaced by the statement's atoms."""
    return _Substitute(mapping).visit(copy.deepcopy(template))


@dataclass
class CalleeVariant:
    """How to call a callee's reverse variant from generated code."""
    binding: str                       # name bound in the generated module
    shadows: list[bool]                # per argument: followed by a shadow
    adjoint_positions: list[int]       # argument positions whose adjoints are returned


class ReverseTransform:
    def __init__(self, tree: ast.FunctionDef, analysis: Analysis, fs, *, active_params: set,
                 result_active: bool, writeback: bool, keep_value: bool, name: str,
                 callee_variant, callee_writes, checkpoint=None):
        self.tree = tree
        self.a = analysis
        self.fs = fs
        self.active_params = active_params
        self.result_active = result_active
        self.writeback = writeback
        self.keep_value = keep_value
        self.name = name
        self.callee_variant = callee_variant      # (call, types) -> CalleeVariant
        self.callee_writes = callee_writes        # call -> positions written
        self.params = [arg.arg for arg in tree.args.args]
        self.counter = 0
        self.tapes_used: set[str] = set()
        self.result_node: ast.expr | None = None
        self.pushed_counters: set[str] = set()
        self.checkpoint = checkpoint              # function-level schedule, or None
        self.callee_bytes_used = False

    # -- helpers ---------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def type_of(self, name: str):
        return self.a.types.get(name)

    def active_scalar(self, node: ast.expr | None) -> str | None:
        name = atom_name(node) if node is not None else None
        if name and self.a.is_active(name) and not self.a.is_array(name):
            return name
        return None

    def tape(self, typ) -> tuple[str, str]:
        kind = typeinfer.element_kind(typ)
        self.tapes_used.add(kind)
        return (naming.FLOAT_TAPE, naming.FLOAT_TOP) if kind == "float" else \
            (naming.INT_TAPE, naming.INT_TOP)

    def push(self, name: str, checked: bool) -> list[ast.stmt]:
        tape, top = self.tape(self.type_of(name))
        value = typeinfer.to_tape_source(name, self.type_of(name))
        if checked:
            code = f"{tape} = {naming.TAPE_MODULE}.push({tape}, {top}, {value})\n{top} += 1"
        else:
            code = f"{tape}[{top}] = {value}\n{top} += 1"
        return _parse(code)

    def pop(self, name: str) -> list[ast.stmt]:
        typ = self.type_of(name)
        tape, top = self.tape(typ)
        return _parse(f"{top} -= 1\n{name} = {typeinfer.from_tape_source(f'{tape}[{top}]', typ)}")

    def snapshot_arrays(self, call: ast.Call) -> list[str]:
        """Arrays passed to an active callee whose contents may change once it has run."""
        names = []
        changed_by_call = self.callee_writes(call)
        for position, arg in enumerate(call.args):
            name = atom_name(arg)
            if name and self.a.is_array(name) and name not in names and (
                    position in changed_by_call or self.a.written_after(call.nad_statement, name)):
                names.append(name)
        return names

    # -- the function ----------------------------------------------------------------------
    def build(self) -> ast.FunctionDef:
        a = self.a
        written_params = [p for p in self.params if a.is_array(p) and a.rep(p) in a.written]
        args = []
        for p in self.params:
            args.append(naming.WORK_COPY + p if p in written_params else p)
            if a.is_array(p) and p in self.active_params:
                args.append(naming.shadow(p))
        if self.result_active:
            args.append(naming.SEED)
        self.rebound = self.rebound_arrays()
        self.single_use = self.single_use_temporaries()
        self.unallocated = self.shadows_made_by_first_contribution()
        self.updates = accumulator_updates(self.tree, a)
        self.any_order = any_order_loops(self.tree, a, self.updates)
        self.fused = fused_loops(self.tree, a, self.any_order, self.updates)
        self.checkpointed = checkpoint.checkpointed_loops(self, self.checkpoint)
        forward = self.forward(self.tree.body, depth=0, reserved=False)
        adjoints = sorted({n for n in a.types if not a.is_array(n) and a.is_active(n)})
        self.zero = set(adjoints)
        backward = self.backward(self.tree.body)
        prologue = [f"{p} = {naming.WORK_COPY}{p}.copy()" for p in written_params]
        prologue += [f"{naming.adjoint(n)} = 0.0" for n in adjoints]
        prologue += [f"{naming.shadow(p)} = np.zeros_like({p})" for p in self.params
                     if a.is_array(p) and a.is_active(p) and p not in self.active_params
                     and p not in self.rebound]
        prologue += self.reference_prologue()
        for name in sorted(a.restored - set(self.params)):
            prologue.append(f"{name} = {typeinfer.zero_literal(self.type_of(name))}")
        prologue.append(f"{naming.RESULT} = 0.0")
        prologue += checkpoint.prologue(self)
        if "float" in self.tapes_used:
            prologue.append(f"{naming.FLOAT_TAPE} = {naming.TAPE_MODULE}.new_float(64)")
            prologue.append(f"{naming.FLOAT_TOP} = 0")
        if "int" in self.tapes_used:
            prologue.append(f"{naming.INT_TAPE} = {naming.TAPE_MODULE}.new_int(64)")
            prologue.append(f"{naming.INT_TOP} = 0")
        middle = []
        if self.writeback:
            middle = [f"{naming.TAPE_MODULE}.copy_into({naming.WORK_COPY}{p}, {p})"
                      for p in written_params]
        returned = [naming.RESULT if self.keep_value else "None"]
        returned += [naming.adjoint(p) if self.active_scalar(ast.Name(id=p)) else "0.0"
                     for p in self.params if p in self.active_params and not a.is_array(p)]
        returned.append(checkpoint.memory_source(self))
        epilogue = [f"return ({', '.join(returned)},)"]
        body = (_parse("\n".join(prologue)) + forward + _parse("\n".join(middle) or "pass")
                + backward + _parse("\n".join(epilogue)))
        for statement in body:
            ast.copy_location(statement, self.tree)
        function = ast.FunctionDef(
            name=self.name, args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=x) for x in args],
                                               kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body, decorator_list=[], returns=None, type_params=[])
        ast.copy_location(function, self.tree)
        return ast.fix_missing_locations(remove_dead_assignments(function))

    # -- forward sweep ---------------------------------------------------------------------
    def reserves_at_entry(self, loop: ast.For) -> bool:
        """Whether the pushes of ``loop`` can be reserved once, at its entry, and made unchecked.

        Only if every push an iteration makes is one that ``pushes_per_iteration`` counts: the
        loops nested in it push nothing (no restored value or loop variable, no ``while``
        counter) and nothing in it saves an array (a call's snapshots, an array operation's
        operands), since such a push would take room reserved for the counted ones."""
        for inner, site in walk_statements(loop.body):
            if isinstance(inner, ast.While):
                return False
            if isinstance(getattr(inner, "value", None), ast.Call) and inner.value.nad_kind == "user":
                return False
            if isinstance(inner, ast.Assign) and any(self.array_rule_snapshots(inner)):
                return False
            if site.loop_depth > 0 and self.pushes_in_own_iteration(inner):
                return False
        return True

    def pushes_in_own_iteration(self, s: ast.stmt) -> bool:
        """Whether ``s`` itself pushes on the tape (a restored target or loop variable)."""
        if isinstance(s, ast.For):
            return s.target.id in self.a.restored
        return isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) \
            and s.targets[0].id in self.a.restored

    def pushes_per_iteration(self, body: list) -> dict[str, int]:
        """Unchecked pushes one iteration of ``body`` makes outside its nested loops (max over branches)."""
        counts = {"float": 0, "int": 0}
        for statement in body:
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name) \
                    and statement.targets[0].id in self.a.restored:
                counts[typeinfer.element_kind(self.type_of(statement.targets[0].id))] += 1
            elif isinstance(statement, ast.If):
                left = self.pushes_per_iteration(statement.body)
                right = self.pushes_per_iteration(statement.orelse)
                for kind in counts:
                    counts[kind] += max(left[kind], right[kind])
            elif isinstance(statement, ast.For) and statement.target.id in self.a.restored:
                counts[typeinfer.element_kind(self.type_of(statement.target.id))] += 1
        return counts

    def reservations(self, loop: ast.For, trips: str) -> list[ast.stmt]:
        """Room on the tapes for the unchecked pushes of ``trips`` iterations of leaf ``loop``."""
        out = []
        for kind, count in self.pushes_per_iteration(loop.body).items():
            if count:
                tape, top = (naming.FLOAT_TAPE, naming.FLOAT_TOP) if kind == "float" \
                    else (naming.INT_TAPE, naming.INT_TOP)
                self.tapes_used.add(kind)
                out += _parse(f"{tape} = {naming.TAPE_MODULE}.reserve({tape}, {top}, "
                              f"{trips} * {count})")
        return out

    def forward(self, body: list, depth: int, reserved: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for statement in body:
            out.extend(self.forward_statement(statement, depth, reserved))
        return out or [ast.Pass()]

    def forward_statement(self, s: ast.stmt, depth: int, reserved: bool) -> list[ast.stmt]:
        a = self.a
        checked = not reserved
        if isinstance(s, ast.Assign):
            out = []
            target = s.targets[0]
            if isinstance(target, ast.Name) and target.id in a.restored:
                out += self.push(target.id, checked)
            out += self.snapshots(s.value)
            if isinstance(target, ast.Name) and target.id in self.rebound:
                out += self.save_references(target.id)
            operands, result = self.array_rule_snapshots(s)
            out += self.push_arrays(operands)
            out.append(s)
            out += self.push_arrays(result)
            if isinstance(target, ast.Name) and a.is_array(target.id) and a.is_active(target.id) \
                    and target.id not in self.unallocated:
                out += self.new_shadow(s)
            return out
        if isinstance(s, ast.Expr):
            return self.snapshots(s.value) + [s]
        if isinstance(s, ast.If):
            return [ast.copy_location(ast.If(test=s.test, body=self.forward(s.body, depth, reserved),
                                             orelse=self.forward(s.orelse, depth, reserved)
                                             if s.orelse else []), s)]
        if isinstance(s, ast.For):
            if id(s) in self.fused and self.has_reverse_work(s):
                return []                              # runs inside its reversal
            out = self.push(s.target.id, True) if s.target.id in a.restored else []
            if id(s) in self.checkpointed:
                return out + self.checkpointed[id(s)].forward()
            leaf = self.reserves_at_entry(s)
            if leaf:
                lo, hi, step = (_src(x) for x in s.iter.args)
                out += self.reservations(s, f"{naming.TAPE_MODULE}.trip_count({lo}, {hi}, {step})")
            loop = ast.For(target=s.target, iter=s.iter,
                           body=self.forward(s.body, depth + 1, leaf), orelse=[])
            return out + [ast.copy_location(loop, s)]
        if isinstance(s, ast.While):
            if not self.has_reverse_work(s):
                return [s]
            counter = self.counter_name(s)
            body = _parse(f"{counter} += 1") + self.forward(s.body, depth + 1, False)
            out = _parse(f"{counter} = 0") + [ast.copy_location(
                ast.While(test=s.test, body=body, orelse=[]), s)]
            if depth > 0:
                self.pushed_counters.add(counter)
                self.a.types.setdefault(counter, typeinfer.nbtypes.int64)
                out += self.push(counter, True)
            return out
        if isinstance(s, ast.Return):
            if s.value is not None:
                self.result_node = s.value
                return _parse(f"{naming.RESULT} = {_src(s.value)}")
            return []
        return [s]

    def counter_name(self, s: ast.While) -> str:
        if not hasattr(s, "nad_counter"):
            s.nad_counter = self.fresh(naming.COUNTER)
        return s.nad_counter

    def snapshots(self, value: ast.expr) -> list[ast.stmt]:
        if not (isinstance(value, ast.Call) and value.nad_kind == "user"):
            return []
        if not self.call_needs_reverse(value):
            return []
        return self.push_arrays(self.snapshot_arrays(value))

    def push_arrays(self, names: list[str]) -> list[ast.stmt]:
        out = []
        for name in names:
            tape, top = self.tape(self.type_of(name))
            out += _parse(f"{tape} = {naming.TAPE_MODULE}.push_array({tape}, {top}, {name})\n"
                          f"{top} += {name}.size")
        return out

    def pop_arrays(self, names: list[str]) -> list[ast.stmt]:
        out = []
        for name in reversed(names):
            tape, top = self.tape(self.type_of(name))
            out += _parse(f"{top} -= {name}.size\n"
                          f"{naming.TAPE_MODULE}.pop_array({tape}, {top}, {name})")
        return out

    def array_rule_snapshots(self, s: ast.Assign) -> tuple[list[str], list[str]]:
        """(operand arrays, the result array) that the adjoint of array statement ``s`` reads
        and that are written in place after ``s``: saved around ``s``, restored before its
        adjoint runs."""
        target = s.targets[0]
        if not (isinstance(target, ast.Name) and self.a.statement_active(s)):
            return [], []
        rule, operands = rule_of(s.value)
        if rule is None or not any(self.a.is_array(n) for n in
                                   [target.id] + [atom_name(o) for o in operands] if n):
            return [], []
        used = set()
        for position, operand in enumerate(operands):
            if self.a.is_active(atom_name(operand)):
                used |= rule.names_used(position)
        by_param = dict(zip(rule.params, operands))
        names = []
        for param in sorted(used - {"g", "z"}):
            name = atom_name(by_param[param])
            if name and self.a.is_array(name) and name not in names \
                    and self.a.written_after(s, name):
                names.append(name)
        result = [target.id] if "z" in used and self.a.is_array(target.id) \
            and self.a.written_after(s, target.id) else []
        return names, result

    def call_needs_reverse(self, call: ast.Call) -> bool:
        names = [atom_name(x) for x in call.args]
        target = getattr(call, "nad_assigned_to", None)
        return any(self.a.is_active(n) for n in names if n) or self.a.is_active(target)

    def rebound_arrays(self) -> set[str]:
        """Array variables bound to several arrays in turn whose identity the reverse pass needs."""
        a = self.a
        rebound = set()
        for name, assigned in a.assignments.items():
            if not a.is_array(name) or not (a.is_active(name) or name in a.needed):
                continue
            count = len(assigned) + (name in self.params)
            if count > 1 or any(a.sites[id(s)].loop_depth for s in assigned):
                rebound.add(name)
        return rebound

    def references(self, name: str) -> list[tuple[str, str]]:
        """(variable, stack) pairs holding the successive arrays bound to ``name`` and its shadow."""
        pairs = [(name, f"{naming.REFERENCES}{name}")]
        if self.a.is_active(name):
            pairs.append((naming.shadow(name), f"{naming.REFERENCES}{naming.shadow(name)}"))
        return pairs

    def save_references(self, name: str) -> list[ast.stmt]:
        return _parse("\n".join(f"{stack}.append({var})" for var, stack in self.references(name)))

    def load_references(self, name: str) -> list[ast.stmt]:
        return _parse("\n".join(f"{var} = {stack}.pop()" for var, stack in self.references(name)))

    def reference_prologue(self) -> list[str]:
        lines = []
        for name in sorted(self.rebound):
            typ = self.type_of(name)
            empty = f"np.empty({(0,) * typ.ndim}, np.{typ.dtype})"
            if name not in self.params:
                lines.append(f"{name} = {empty}")
            if self.a.is_active(name) and not (name in self.params and name in self.active_params):
                lines.append(f"{naming.shadow(name)} = "
                             f"{'np.zeros_like(' + name + ')' if name in self.params else empty}")
            for var, stack in self.references(name):
                lines += [f"{stack} = [{var}]", f"{stack}.pop()"]
        return lines

    def new_shadow(self, s: ast.Assign) -> list[ast.stmt]:
        name = s.targets[0].id
        value = s.value
        if isinstance(value, ast.Name):
            return _parse(f"{naming.shadow(name)} = {naming.shadow(value.id)}")
        if isinstance(value, ast.Subscript):              # a view: the same view of the shadow
            return _parse(f"{naming.shadow(name)} = {naming.shadow(value.value.id)}"
                          f"[{_index_src(value.slice)}]")
        return _parse(f"{naming.shadow(name)} = np.zeros_like({name})")

    def has_reverse_work(self, s: ast.stmt) -> bool:
        for inner, _ in walk_statements(s.body + getattr(s, "orelse", [])):
            if self.a.statement_active(inner):
                return True
            if isinstance(inner, ast.Assign) and isinstance(inner.targets[0], ast.Name) \
                    and (inner.targets[0].id in self.a.restored
                         or inner.targets[0].id in self.rebound):
                return True
            if isinstance(inner, ast.For) and inner.target.id in self.a.restored:
                return True
        return False

    # -- adjoint variables -----------------------------------------------------------------
    def single_use_temporaries(self) -> set[str]:
        """Scalars assigned once and read once, in the same block: their adjoint has one
        contribution, made just before it is consumed, so it is assigned rather than summed and
        never carried from one iteration to the next."""
        a = self.a
        reads: dict[str, list] = {}
        for statement, site in walk_statements(self.tree.body):
            for node in own_read_nodes(statement):
                reads.setdefault(node, []).append(site.block)
        single = set()
        for name, assigned in a.assignments.items():
            if len(assigned) != 1 or name in self.params or a.is_array(name):
                continue
            blocks = reads.get(name, [])
            if len(blocks) == 1 and blocks[0] is a.sites[id(assigned[0])].block:
                single.add(name)
        return single

    def accumulate(self, name: str, contribution: str) -> list[ast.stmt]:
        """Add ``contribution`` to the adjoint of ``name`` (assign it where that adjoint is
        known to be zero)."""
        operator = "=" if name in self.single_use or name in self.zero else "+="
        self.zero.discard(name)
        return _parse(f"{naming.adjoint(name)} {operator} {contribution}")

    def take_adjoint(self, name: str) -> list[ast.stmt]:
        """``_nad_g`` = the adjoint of ``name``, which its (re)definition then resets."""
        if name in self.single_use:
            return _parse(f"{naming.GRAD_TMP} = {naming.adjoint(name)}")
        self.zero.add(name)
        return _parse(f"{naming.GRAD_TMP} = {naming.adjoint(name)}\n{naming.adjoint(name)} = 0.0")

    def loop_body_backward(self, loop: ast.stmt, statements: list | None = None,
                           after: ast.stmt | None = None) -> list[ast.stmt]:
        """The reversed body of ``loop`` (or of its ``statements``, reversed ``after`` the
        nested loop ``after``), tracking which adjoints are known to be zero: at the start of
        each reversed iteration, those untouched by the loop and those local to one iteration;
        after the loop, those zero both before it and after an iteration."""
        before = set(self.zero)
        self.zero = (before - _touched(loop)) | iteration_local_scalars(self.tree, self.a, loop,
                                                                        self.updates)
        if after is not None:
            self.zero -= _touched(after)
        body = self.backward(loop.body if statements is None else statements) or [ast.Pass()]
        self.zero &= before
        return body

    # -- reverse sweep ---------------------------------------------------------------------
    def backward(self, body: list) -> list[ast.stmt]:
        out = [copy.deepcopy(s) for s in self.a.recompute.get(id(body), [])]
        for statement in reversed(body):
            out.extend(self.backward_statement(statement))
        return out

    def backward_statement(self, s: ast.stmt) -> list[ast.stmt]:
        a = self.a
        if isinstance(s, ast.Assign):
            target = s.targets[0]
            operands, result = self.array_rule_snapshots(s)
            out = self.pop_arrays(operands + result)
            out += self.adjoint_of_assign(s) if a.statement_active(s) else []
            out = self.reverse_call_snapshots(s.value) + out if out else \
                self.reverse_call_snapshots(s.value)
            if isinstance(target, ast.Name) and target.id in a.restored:
                out += self.pop(target.id)
            if isinstance(target, ast.Name) and target.id in self.rebound:
                out += self.load_references(target.id)
            return out
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Call) and s.value.nad_kind == "user" \
                    and self.call_needs_reverse(s.value):
                return self.reverse_call_snapshots(s.value) + self.reverse_call(s.value, None)
            return []
        if isinstance(s, ast.If):
            if not self.has_reverse_work(s):
                return []
            before = set(self.zero)
            body = self.backward(s.body) or [ast.Pass()]
            after_body, self.zero = self.zero, before
            orelse = self.backward(s.orelse) if s.orelse else []
            self.zero &= after_body
            return [ast.copy_location(ast.If(test=s.test, body=body or [ast.Pass()],
                                             orelse=orelse), s)]
        if isinstance(s, ast.For):
            out = []
            if not self.has_reverse_work(s):
                pass
            elif id(s) in self.fused:
                out += self.reverse_in_order(s, fused=True)
                if self.result_node is not None and atom_name(self.result_node) \
                        in loop_assigned_names(s):
                    out += _parse(f"{naming.RESULT} = {_src(self.result_node)}")
            elif id(s) in self.any_order:
                out += self.reverse_in_order(s)
            elif id(s) in self.checkpointed:
                out += self.checkpointed[id(s)].backward()
            else:
                lo, hi, step = (_src(x) for x in s.iter.args)
                trips, r = self.fresh("_nad_trips"), self.fresh(naming.REVERSE_INDEX)
                out += _parse(f"{trips} = {naming.TAPE_MODULE}.trip_count({lo}, {hi}, {step})")
                body = _parse(f"{s.target.id} = {lo} + {r} * {step}") + self.loop_body_backward(s)
                loop = ast.For(target=ast.Name(id=r, ctx=ast.Store()),
                               iter=_expr(f"range({trips} - 1, -1, -1)"), body=body, orelse=[])
                out.append(ast.copy_location(loop, s))
            if s.target.id in a.restored:
                out += self.pop(s.target.id)
            return out
        if isinstance(s, ast.While):
            if not self.has_reverse_work(s):
                return []
            counter = self.counter_name(s)
            out = self.pop(counter) if counter in self.pushed_counters else []
            r = self.fresh(naming.REVERSE_INDEX)
            loop = ast.For(target=ast.Name(id=r, ctx=ast.Store()), iter=_expr(f"range({counter})"),
                           body=self.loop_body_backward(s), orelse=[])
            return out + [ast.copy_location(loop, s)]
        if isinstance(s, ast.Return):
            return self.seed_result(s)
        return []

    def reverse_in_order(self, s: ast.For, fused: bool = False) -> list[ast.stmt]:
        """The reversal of a loop of ``any_order_loops``, iterations in their original order,
        with accumulations into the same shadow element summed in locals first. ``fused``
        (a loop of ``fused_loops``): each iteration runs its primal statements first, the
        nested loop fused in turn."""
        if fused:
            nested = s.body[-1] if isinstance(s.body[-1], ast.For) else None
            straight = s.body[:-1] if nested else s.body
            body = self.forward(straight, depth=1, reserved=True) if straight else []
            if nested is not None:
                body += self.reverse_in_order(nested, fused=True)
            body += self.loop_body_backward(s, straight, after=nested)
        else:
            body = self.loop_body_backward(s)
        invariant, repeated = accumulation_groups(body, loop_assigned_names(s))
        local = {key: self.fresh(naming.ACCUMULATOR) for key in sorted(invariant | repeated)}
        new_body, started = [], set()
        for statement in body:
            key = accumulation_key(statement)
            if key not in local:
                new_body.append(statement)
                continue
            operator = "+=" if key in invariant or key in started else "="
            started.add(key)
            new_body += _parse(f"{local[key]} {operator} {_src(statement.value)}")
        new_body += _parse("\n".join(f"{array}[{index}] += {local[(array, index)]}"
                                      for array, index in sorted(repeated)) or "pass")
        before = _parse("\n".join(f"{local[key]} = 0.0" for key in sorted(invariant)) or "pass")
        after = _parse("\n".join(f"if {local[(array, index)]} != 0.0:\n"
                                  f"    {array}[{index}] += {local[(array, index)]}"
                                  for array, index in sorted(invariant)) or "pass")
        if not fused and not invariant and self.a.sites[id(s)].loop_depth > 0:
            transposed = self.transposed_stencil(s, new_body)
            if transposed:
                return before + transposed + after
        loop = ast.copy_location(ast.For(target=s.target, iter=s.iter, body=new_body,
                                         orelse=[]), s)
        return before + [loop] + after

    def transposed_stencil(self, s: ast.For, body: list[ast.stmt]) -> list[ast.stmt]:
        """The reversal of a stencil loop as gathers, or [] if ``body`` is not one.

        A stencil's adjoint adds into a shadow at several offsets of the loop variable
        (``d_u[i - 1]``, ``d_u[i]``, ``d_u[i + 1]``): each iteration depends on the stores of the
        one before, so the loop stays scalar. Here each shadow element instead gathers what the
        iterations ``i = j - c`` would add to it (the body is evaluated again at each offset),
        then one more loop clears the shadows the body takes its adjoints from. Every loop
        vectorises like the primal's, and there are two stores per element instead of several.

        Applies to loops nested in another loop (a stencil inside time steps, where this
        matters) whose reversed body is straight code that only takes adjoints indexed by the
        loop variable, updates locals of the iteration and adds into stencils.
        """
        stencils = stencil_offsets(s, body, self.a)
        plan = _stencil_plan(s, body, stencils)
        if plan is None:
            return []
        dropped, zeroing = plan
        lo, hi, _ = (_src(x) for x in s.iter.args)
        i, j, total = s.target.id, self.fresh("_nad_j"), self.fresh("_nad_sum")
        summed = sorted({x.target.id for x in body if isinstance(x, ast.AugAssign)
                         and isinstance(x.target, ast.Name)})
        reset = _parse("\n".join(f"{name} = 0.0" for name in summed) or "pass")
        out = []
        for (array, elements, position), accumulations in stencils.items():
            offsets = [offset for _, offset in accumulations]
            low, high = min(offsets), max(offsets)
            index = list(elements)
            index[position] = j
            ranges = [(_plus(lo, low), _plus(lo, high), True),
                      (_plus(lo, high), _plus(hi, low), False),
                      (f"max({_plus(lo, high)}, {_plus(hi, low)})", _plus(hi, high), True)]
            for start, stop, guarded in ranges:
                gather = _parse(f"{total} = 0.0")
                for statement, offset in accumulations:
                    part = copy.deepcopy(reset) + [copy.deepcopy(x) for k, x
                                                   in enumerate(body[:statement])
                                                   if k not in dropped]
                    part += _parse(f"{total} += {_src(body[statement].value)}")
                    if guarded:
                        part = [ast.If(test=_expr(f"{lo} <= {i} < {hi}"), body=part, orelse=[])]
                    gather += _parse(f"{i} = {_plus(j, -offset)}") + part
                gather += _parse(f"{array}[{', '.join(index)}] += {total}")
                out.append(ast.For(target=ast.Name(id=j, ctx=ast.Store()),
                                   iter=_expr(f"range({start}, {stop})"), body=gather, orelse=[]))
        out.append(ast.For(target=ast.Name(id=i, ctx=ast.Store()), iter=_expr(f"range({lo}, {hi})"),
                           body=[copy.deepcopy(x) for x in zeroing] or [ast.Pass()], orelse=[]))
        return [ast.copy_location(ast.If(test=_expr(f"{hi} > {lo}"), body=out, orelse=[]), s)]

    def seed_result(self, s: ast.Return) -> list[ast.stmt]:
        if not self.result_active or s.value is None:
            return []
        name = atom_name(s.value)
        if name is None or not self.a.is_active(name):
            return []
        if self.a.is_array(name):
            return _parse(f"{naming.TAPE_MODULE}.add_into({naming.shadow(name)}, {naming.SEED})")
        return self.accumulate(name, naming.SEED)

    def reverse_call_snapshots(self, value: ast.expr) -> list[ast.stmt]:
        if not (isinstance(value, ast.Call) and value.nad_kind == "user"
                and self.call_needs_reverse(value)):
            return []
        return self.pop_arrays(self.snapshot_arrays(value))

    def adjoint_of_assign(self, s: ast.Assign) -> list[ast.stmt]:
        target, value = s.targets[0], s.value
        g = naming.GRAD_TMP
        if isinstance(target, ast.Subscript) and self.stores_sub_array(target):
            array, index = target.value.id, _index_src(target.slice)
            region = f"{naming.shadow(array)}[{index}]"
            name = atom_name(value)
            out = []
            if name and self.a.is_active(name) and self.a.is_array(name):
                out += _parse(f"{naming.shadow(name)} += "
                              f"{naming.ARRAY_MODULE}.unbroadcast({region}, {name})")
            elif self.active_scalar(value):
                out += self.accumulate(name, f"np.sum({region})")
            return out + _parse(f"{region} = 0.0")
        if isinstance(target, ast.Subscript):
            array, index = target.value.id, _index_src(target.slice)
            out = _parse(f"{g} = {naming.shadow(array)}[{index}]\n"
                         f"{naming.shadow(array)}[{index}] = 0.0")
            source = self.active_scalar(value)
            if source:
                out += self.accumulate(source, g)
            return out
        t = target.id
        if isinstance(value, ast.Call) and value.nad_kind == "user" and not self.a.is_array(t):
            if not self.a.is_active(t):
                return self.reverse_call(value, None)
            return self.take_adjoint(t) + \
                self.reverse_call(value, g)
        if self.a.is_array(t):
            if isinstance(value, ast.Call) and value.nad_kind == "copy":
                origin = value.func.value.id
                if not self.a.is_active(origin):       # a constant copied into active state
                    return []
                return _parse(f"{naming.TAPE_MODULE}.add_into({naming.shadow(origin)}, "
                              f"{naming.shadow(t)})")
            if isinstance(value, ast.Call) and value.nad_kind == "user":
                return self.reverse_call(value, naming.shadow(t) if self.a.is_active(t) else None)
            if rule_of(value)[0] is not None:
                return self.rule_adjoints(value, t, naming.shadow(t), None)
            return []                                  # alias or constructor: nothing flows
        role = self.updates.get(id(s))
        if role and role[0] == "store":                     # v = w after w = v ± t
            return self.accumulate(value.id, naming.adjoint(t))
        out = self.take_adjoint(t)
        if isinstance(value, ast.Name):
            if self.active_scalar(value):
                out += self.accumulate(value.id, g)
            return out
        if isinstance(value, ast.Subscript):
            base = value.value.id
            if self.a.is_array(base) and self.a.is_active(base):
                out += _parse(f"{naming.shadow(base)}[{_index_src(value.slice)}] += {g}")
            return out
        return out + self.rule_adjoints(value, t, g, role)

    def shadows_made_by_first_contribution(self) -> set[str]:
        """Active arrays whose shadow is not allocated as zeros in the forward sweep but made by
        the first contribution to it in the reverse sweep (no zero fill, no read-add-write):
        arrays made once, by an operation at the top of the function body, that nothing aliases,
        views, writes, passes to a callee or returns, and that only elementwise operations read,
        all at the top of the body too (so the reversal order of the contributions is fixed)."""
        a, top = self.a, self.tree.body
        elementwise_readers: dict[str, int] = {}
        excluded: set[str] = set(self.params) | set(self.rebound)
        for statement, site in walk_statements(top):
            reads = own_reads(statement)
            elementwise = site.block is top and isinstance(statement, ast.Assign) \
                and isinstance(statement.targets[0], ast.Name) \
                and self.is_elementwise(statement.value, statement.targets[0].id)
            for name in reads:
                if elementwise:
                    elementwise_readers[name] = elementwise_readers.get(name, 0) + 1
                else:
                    excluded.add(name)
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                origin = view_origin(statement, a.types)
                if origin:
                    excluded |= {origin, statement.targets[0].id}
        made = set()
        for name, assigned in a.assignments.items():
            if name in excluded or not elementwise_readers.get(name) or len(assigned) != 1 \
                    or not a.is_array(name) or not a.is_active(name) or a.rep(name) in a.written:
                continue
            definition = assigned[0]
            if a.sites[id(definition)].block is top and rule_of(definition.value)[0] is not None:
                made.add(name)
        return made

    def is_elementwise(self, value: ast.expr, target: str) -> bool:
        """Whether ``target = value`` is an elementwise operation on arrays."""
        rule = rule_of(value)[0]
        if rule is None or not self.a.is_array(target):
            return False
        if isinstance(value, ast.BinOp):
            return not isinstance(value.op, ast.MatMult)
        return not isinstance(value, ast.Call) or value.nad_kind == "rule" \
            or rule.name in rules.ELEMENTWISE_ARRAY_CALLS

    def stores_sub_array(self, target: ast.Subscript) -> bool:
        """Whether a store writes several elements (through a slice or a partial index)."""
        parts = target.slice.elts if isinstance(target.slice, ast.Tuple) else [target.slice]
        return any(isinstance(p, ast.Slice) for p in parts) or \
            len(parts) < self.type_of(target.value.id).ndim

    def rule_adjoints(self, value: ast.expr, t: str, g: str, role) -> list[ast.stmt]:
        """Contributions of ``t = value`` (a rule's operator or call) to its active operands'
        adjoints, given ``g``, the adjoint of ``t`` (a scalar or, for an array ``t``, its
        shadow). Array operands receive theirs in their shadows; the contributions of an
        elementwise operation on arrays are summed down to each operand's shape."""
        rule, operands = rule_of(value)
        if rule is None or t in self.unallocated:            # no contribution ever reached t
            return []
        elementwise = self.is_elementwise(value, t)
        mapping = {"g": ast.Name(id=g, ctx=ast.Load()), "z": ast.Name(id=t, ctx=ast.Load())}
        mapping.update(zip(rule.params, operands))
        out = []
        for position, operand in enumerate(operands):
            name = atom_name(operand)
            template = rule.adjoints[position]
            if name is None or template is None or not self.a.is_active(name) \
                    or not typeinfer.is_differentiable(self.type_of(name)):
                continue
            if role and name == role[1]:
                continue                                    # the accumulator's adjoint stays
            if elementwise:
                template = rules.array_template(template)
            instance = instantiate(template, mapping)
            contribution = _src(instance)
            if elementwise:
                contribution = f"{naming.ARRAY_MODULE}.unbroadcast({contribution}, {name})"
            if name in self.unallocated:
                self.unallocated.discard(name)
                copy_ = ".copy()" if isinstance(instance, ast.Name) else ""   # never an alias
                out += _parse(f"{naming.shadow(name)} = {contribution}{copy_}")
            elif self.a.is_array(name):
                out += _parse(f"{naming.shadow(name)} += {contribution}")
            else:
                out += self.accumulate(name, contribution)
        return out

    def reverse_call(self, call: ast.Call, seed: str | None) -> list[ast.stmt]:
        variant = self.callee_variant(call, seed is not None)
        args = []
        for arg, has_shadow in zip(call.args, variant.shadows):
            args.append(_src(arg))
            if has_shadow:
                args.append(naming.shadow(arg.id))
        if seed is not None:
            args.append(seed)
        result = self.fresh(naming.CALL_RESULT)
        memory = f"{result}[{len(variant.adjoint_positions) + 1}]"
        out = _parse(f"{result} = {variant.binding}({', '.join(args)})\n{naming.CALLEE_BYTES} = "
                     f"max({naming.CALLEE_BYTES}, {memory}[0] + {memory}[1])")
        self.callee_bytes_used = True
        for k, position in enumerate(variant.adjoint_positions):
            name = atom_name(call.args[position])
            out += self.accumulate(name, f"{result}[{k + 1}]")
        return out


def _stencil_plan(loop: ast.For, body: list[ast.stmt], stencils: dict):
    """(positions of ``body`` to leave out when re-evaluating it at an offset, the statements
    clearing the taken adjoints) when ``body`` qualifies for :meth:`transposed_stencil`, else
    None. It qualifies when its statements are only: assignments to names the loop assigns
    (primal values and their adjoints, which are local to an iteration in a loop of
    ``any_order_loops``) or to ``_nad_g``/locals of the transform; adjoint takes ``d_X[idx] =
    0.0`` whose index holds the loop variable and names the loop does not assign; and the
    stencils' accumulations."""
    if not stencils:
        return None
    assigned = loop_assigned_names(loop)
    local = {naming.adjoint(name) for name in assigned} | assigned
    in_stencil = {position for accumulations in stencils.values() for position, _ in accumulations}
    dropped, zeroing = set(in_stencil), []
    for position, s in enumerate(body):
        if position in in_stencil or isinstance(s, ast.Pass):
            continue
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
            name = s.targets[0].id
            if name in local or name == naming.GRAD_TMP or name.startswith(naming.ACCUMULATOR):
                continue
            return None
        if isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name) \
                and s.target.id.startswith(naming.ACCUMULATOR):
            continue
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Subscript) \
                and isinstance(s.value, ast.Constant) and s.value.value == 0.0 \
                and not (names_in(s.targets[0].slice) & assigned - {loop.target.id}):
            dropped.add(position)
            zeroing.append(s)
            continue
        return None
    return dropped, zeroing


def _plus(expression: str, constant: int) -> str:
    """Source of ``expression + constant``, written the way a person would."""
    if constant == 0:
        return expression
    return f"{expression} {'-' if constant < 0 else '+'} {abs(constant)}"


def _touched(loop: ast.stmt) -> set[str]:
    """Names read or assigned anywhere in ``loop``'s body."""
    return {name for inner, _ in walk_statements(loop.body)
            for name in own_read_nodes(inner) + assigned_names(inner)}


def transform(tree: ast.FunctionDef, analysis: Analysis, fs, **options) -> ast.FunctionDef:
    """The reverse-mode function of normalised ``tree``; see the module docstring."""
    for statement, _ in walk_statements(tree.body):
        call = getattr(statement, "value", None)
        if isinstance(call, ast.Call):
            call.nad_statement = statement
        if isinstance(statement, ast.Assign) and isinstance(call, ast.Call) \
                and isinstance(statement.targets[0], ast.Name):
            call.nad_assigned_to = statement.targets[0].id
    transform = ReverseTransform(tree, analysis, fs, **options)
    built = transform.build()
    built.nad_checkpointed = checkpoint.describe(transform.checkpointed)
    return built
