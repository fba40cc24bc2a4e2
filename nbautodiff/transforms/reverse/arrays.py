"""Whole-array statements in the reverse-mode transform (a part of :class:`ReverseTransform`).

The adjoints of array operations (contributions summed down to each operand's shape where the
operation broadcasts), the arrays an adjoint reads that must be saved on the tape because they
are written later, stores into slices and rows, and the shadows made by their first
contribution instead of being zero-filled.
"""
from __future__ import annotations

import ast

from nbautodiff import annotations as anno, naming, rules
from nbautodiff.analysis import typeinfer
from nbautodiff.analysis.activity import (atom_name, own_reads, rule_of, view_origin,
                                          walk_statements)
from nbautodiff.codegen import instantiate, parse, src


class ArrayAdjoints:
    """Methods of :class:`~nbautodiff.transforms.reverse.transform.ReverseTransform` for array
    statements; what they read and update is the transform's
    :class:`~nbautodiff.transforms.reverse.state.ReverseState` (``self.state``)."""

    def push_arrays(self, names: list[str]) -> list[ast.stmt]:
        out = []
        for name in names:
            tape, top = self.tape(self.state.type_of(name))
            out += parse(f"{tape} = {naming.TAPE_MODULE}.push_array({tape}, {top}, {name})\n"
                         f"{top} += {name}.size")
        return out

    def pop_arrays(self, names: list[str]) -> list[ast.stmt]:
        out = []
        for name in reversed(names):
            tape, top = self.tape(self.state.type_of(name))
            out += parse(f"{top} -= {name}.size\n"
                         f"{naming.TAPE_MODULE}.pop_array({tape}, {top}, {name})")
        return out

    def array_rule_snapshots(self, s: ast.Assign) -> tuple[list[str], list[str]]:
        """(operand arrays, the result array) that the adjoint of array statement ``s`` reads
        and that are written in place after ``s``: saved around ``s``, restored before its
        adjoint runs."""
        target = s.targets[0]
        if not (isinstance(target, ast.Name) and self.state.a.statement_active(s)) \
                or anno.get(s, anno.VIEW, None):
            return [], []
        rule, operands = rule_of(s.value)
        if rule is None or not any(self.state.a.is_array(n) for n in
                                   [target.id] + [atom_name(o) for o in operands] if n):
            return [], []
        used = set()
        for position, operand in enumerate(operands):
            if self.state.a.is_active(atom_name(operand)):
                used |= rule.names_used(position)
        by_param = dict(zip(rule.params, operands))
        names = []
        for param in sorted(used - {"g", "z"}):
            name = atom_name(by_param[param])
            if name and self.state.a.is_array(name) and name not in names \
                    and self.state.a.written_after(s, name):
                names.append(name)
        result = [target.id] if "z" in used and self.state.a.is_array(target.id) \
            and self.state.a.written_after(s, target.id) else []
        return names, result

    def shadows_made_by_first_contribution(self) -> set[str]:
        """Active arrays whose shadow is not allocated as zeros in the forward sweep but made by
        the first contribution to it in the reverse sweep (no zero fill, no read-add-write):
        arrays made once, by an operation at the top of the function body, that nothing aliases,
        views, writes, passes to a callee or returns, and that only elementwise operations read,
        all at the top of the body too (so the reversal order of the contributions is fixed)."""
        a, top = self.state.a, self.state.tree.body
        read_elementwise: set[str] = set()
        excluded: set[str] = set(self.state.params) | set(self.state.rebound)
        for statement, site in walk_statements(top):
            elementwise = site.block is top and isinstance(statement, ast.Assign) \
                and isinstance(statement.targets[0], ast.Name) \
                and self.is_elementwise(statement.value, statement.targets[0].id)
            (read_elementwise if elementwise else excluded).update(own_reads(statement))
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
                origin = view_origin(statement, a.types)
                if origin:
                    excluded |= {origin, statement.targets[0].id}
        made = set()
        for name, assigned in a.assignments.items():
            if name in excluded or name not in read_elementwise or len(assigned) != 1 \
                    or not a.is_array(name) or not a.is_active(name) or a.rep(name) in a.written:
                continue
            definition = assigned[0]
            if a.sites[id(definition)].block is top and rule_of(definition.value)[0] is not None:
                made.add(name)
        return made

    def is_elementwise(self, value: ast.expr, target: str) -> bool:
        """Whether ``target = value`` is an elementwise operation on arrays."""
        rule = rule_of(value)[0]
        if rule is None or not self.state.a.is_array(target):
            return False
        if isinstance(value, ast.BinOp):
            return not isinstance(value.op, ast.MatMult)
        return not isinstance(value, ast.Call) or anno.get(value, anno.KIND) == "rule" \
            or rule.name in rules.ELEMENTWISE_ARRAY_CALLS

    def stores_sub_array(self, target: ast.Subscript) -> bool:
        """Whether a store writes several elements (through a slice or a partial index)."""
        parts = target.slice.elts if isinstance(target.slice, ast.Tuple) else [target.slice]
        return any(isinstance(p, ast.Slice) for p in parts) or \
            len(parts) < self.state.type_of(target.value.id).ndim

    def rule_adjoints(self, value: ast.expr, t: str, g: str, role) -> list[ast.stmt]:
        """Contributions of ``t = value`` (a rule's operator or call) to its active operands'
        adjoints, given ``g``, the adjoint of ``t`` (a scalar or, for an array ``t``, its
        shadow). Array operands receive theirs in their shadows; the contributions of an
        elementwise operation on arrays are summed down to each operand's shape."""
        rule, operands = rule_of(value)
        if rule is None or t in self.state.unallocated:            # no contribution ever reached t
            return []
        elementwise = self.is_elementwise(value, t)
        mapping = {"g": ast.Name(id=g, ctx=ast.Load()), "z": ast.Name(id=t, ctx=ast.Load())}
        mapping.update(zip(rule.params, operands))
        out = []
        for position, operand in enumerate(operands):
            name = atom_name(operand)
            template = rule.adjoints[position]
            if name is None or template is None or not self.state.a.is_active(name) \
                    or not typeinfer.is_differentiable(self.state.type_of(name)):
                continue
            if role and name == role[1]:
                continue                                    # the accumulator's adjoint stays
            if rules.INTO in {n.id for n in ast.walk(template) if isinstance(n, ast.Name)}:
                if name in self.state.unallocated:        # accumulated in place: needs zeros
                    self.state.unallocated.discard(name)
                    out += parse(f"{naming.shadow(name)} = {naming.ARRAY_MODULE}.zeros_like({name})")
                into = {rules.INTO: ast.Name(id=naming.shadow(name), ctx=ast.Load())}
                out.append(ast.Expr(value=instantiate(template, {**mapping, **into})))
                continue
            if elementwise:
                template = rules.array_template(template)
            instance = instantiate(template, mapping)
            contribution = src(instance)
            if elementwise:
                contribution = f"{naming.ARRAY_MODULE}.unbroadcast({contribution}, {name})"
            if name in self.state.unallocated:
                self.state.unallocated.discard(name)
                copy_ = ".copy()" if isinstance(instance, ast.Name) else ""   # never an alias
                out += parse(f"{naming.shadow(name)} = {contribution}{copy_}")
            elif self.state.a.is_array(name):
                out += parse(f"{naming.shadow(name)} += {contribution}")
            else:
                out += self.accumulate(name, contribution)
        return out

