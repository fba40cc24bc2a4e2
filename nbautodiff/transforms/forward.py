"""The forward-mode transform: a normalised function to one that also computes tangents.

:func:`transform` builds ``f__fwd_<code>(args...)`` where each dual argument is followed by its
``width`` tangents (one per direction). The primal statements run in their order, each followed
by the tangent statements of its active result, for every direction; branches and loops are
kept as they are. The function returns ``(result, tangent_1, ..., tangent_width)`` when the
result is dual, else the result alone. Arrays written by the function get their tangents
written in place (the tangent of a dual array argument is an output too, as in Enzyme).

Conventions of the generated code: ``_nad_dot_x`` is the tangent of ``x`` (``_nad_dot<k>_x``
for direction ``k`` when ``width > 1``). The tangent of an array is an array of its shape and a
view of an array has the same view of its tangent as tangent, so writes through views need
nothing special. Which names carry a tangent is the activity of :mod:`nbautodiff.analysis.activity`: varied (depends
on a dual input) and useful (reaches the result or an array the caller sees).
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from nbautodiff import annotations as anno, naming, rules
from nbautodiff.analysis import tuples, typeinfer
from nbautodiff.analysis.activity import Analysis, atom_name, rule_of
from nbautodiff.codegen import expr, index_src, instantiate, parse, src
from nbautodiff.errors import UnsupportedConstructError
from nbautodiff.frontend import declarations as custom


@dataclass
class CalleeForward:
    """How to call a callee's forward variant from generated code."""
    binding: str                 # name bound in the generated module
    duals: list[bool]            # per argument: followed by its tangents
    result_dual: bool            # returns (result, tangents...) rather than the result


class ForwardTransform:
    def __init__(self, tree: ast.FunctionDef, analysis: Analysis, fs, *, dual_params: set,
                 result_dual: bool, width: int, name: str, callee_variant):
        self.tree = tree
        self.a = analysis
        self.fs = fs
        self.dual_params = dual_params
        self.result_dual = result_dual
        self.width = width
        self.name = name
        self.callee_variant = callee_variant     # (call, duals, result_dual) -> CalleeForward
        self.counter = 0

    # -- names -----------------------------------------------------------------------------
    def tangent_name(self, name: str, k: int) -> str:
        return naming.tangent(name, k, self.width)

    def active(self, node: ast.expr | None) -> str | None:
        """The name ``node`` if it carries a tangent."""
        name = atom_name(node) if node is not None else None
        typ = self.a.types.get(name)
        if name and self.a.is_active(name) and (typeinfer.is_differentiable(typ) or
                                                typeinfer.is_differentiable_list(typ)):
            return name
        return None

    def tangent(self, node: ast.expr | None, k: int) -> ast.Name | None:
        name = self.active(node)
        return ast.Name(id=self.tangent_name(name, k), ctx=ast.Load()) if name else None

    def zero(self, name: str) -> str:
        """Source of a zero tangent for variable ``name``."""
        typ = self.a.types.get(name)
        if typeinfer.is_array(typ):
            return f"{naming.ARRAY_MODULE}.zeros_like({name})"
        return typeinfer.zero_literal(typ)

    def refuse(self, node: ast.AST, construct: str, detail: str) -> UnsupportedConstructError:
        return self.fs.error(f"{construct} is not supported in forward mode{detail}", node,
                             construct=construct, kind=UnsupportedConstructError)

    # -- function --------------------------------------------------------------------------
    def function(self) -> ast.FunctionDef:
        args = []
        prologue = []
        for arg in self.tree.args.args:
            args.append(ast.arg(arg=arg.arg))
            if arg.arg in self.dual_params:
                args += [ast.arg(arg=self.tangent_name(arg.arg, k)) for k in range(self.width)]
            elif self.active(ast.Name(id=arg.arg)):
                prologue += self.assign_tangents(arg.arg, lambda k: self.zero(arg.arg))
        body = prologue + self.block(self.tree.body)
        new = ast.FunctionDef(name=self.name, args=ast.arguments(
            posonlyargs=[], args=args, vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
            defaults=[]), body=body, decorator_list=[], returns=None, type_comment=None,
            type_params=[])
        return ast.fix_missing_locations(ast.copy_location(new, self.tree))

    def block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for statement in body:
            generated = self.statement(statement)
            for node in generated:
                ast.copy_location(node, statement)
            out += generated
        return out or [ast.Pass()]

    def statement(self, s: ast.stmt) -> list[ast.stmt]:
        if isinstance(s, ast.If):
            return [ast.If(test=s.test, body=self.block(s.body), orelse=self.block(s.orelse)
                           if s.orelse else [])]
        if isinstance(s, ast.For):
            return [ast.For(target=s.target, iter=s.iter, body=self.block(s.body), orelse=[])]
        if isinstance(s, ast.While):
            return [ast.While(test=s.test, body=self.block(s.body), orelse=[])]
        if isinstance(s, ast.Assign):
            if isinstance(s.targets[0], ast.Subscript):
                return self.store(s)
            if isinstance(s.targets[0], ast.Tuple):
                return self.unpack(s)
            return self.assign(s)
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
            if anno.get(s.value, anno.KIND) == "helper":
                return self.helper_call(s.value, None, s)
            if anno.get(s.value, anno.KIND) == "list":
                return self.stack_call(s.value, None, s)
            return self.user_call(s.value, None, s)
        if isinstance(s, ast.Return):
            return self.return_(s)
        return [s]

    # -- statements ------------------------------------------------------------------------
    def assign_tangents(self, name: str, value_of_direction) -> list[ast.stmt]:
        return [stmt for k in range(self.width)
                for stmt in parse(f"{self.tangent_name(name, k)} = {value_of_direction(k)}")]

    def store(self, s: ast.Assign) -> list[ast.stmt]:
        """``A[index] = v``: the same store into the tangent of ``A``."""
        target = s.targets[0]
        array = target.value.id
        if not self.active(target.value):
            return [s]
        out = [s]
        for k in range(self.width):
            tangent = self.tangent(s.value, k)
            value = src(tangent) if tangent is not None else "0.0"
            out += parse(f"{self.tangent_name(array, k)}[{index_src(target.slice)}] = {value}")
        return out

    def assign(self, s: ast.Assign) -> list[ast.stmt]:
        t, value = s.targets[0].id, s.value
        if anno.get(s, anno.IN_PLACE, False) and self.a.is_array(t):
            return self.in_place(s)
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user":
            return self.user_call(value, t, s)
        if not self.active(s.targets[0]):
            return [s]
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "helper":
            return self.helper_call(value, t, s)
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "list":
            return self.stack_call(value, t, s)
        if isinstance(value, ast.List):
            return [s] + self.assign_tangents(t, lambda k: "[" + ", ".join(
                self.tangent_or_zero(e, k) for e in value.elts) + "]")
        if isinstance(value, (ast.Name, ast.Constant)):
            return [s] + self.assign_tangents(
                t, lambda k: src(self.tangent(value, k)) if self.active(value) else self.zero(t))
        if isinstance(value, ast.Subscript):
            base = value.value
            if not self.active(base):
                return [s] + self.assign_tangents(t, lambda k: self.zero(t))
            index = index_src(value.slice)
            return [s] + self.assign_tangents(t, lambda k: f"{self.tangent_name(base.id, k)}[{index}]")
        view = anno.get(s, anno.VIEW, None)      # a view made by a call (see .aliasing)
        if view:
            base = value.args[0]
            if not self.active(base):
                return [s] + self.assign_tangents(t, lambda k: self.zero(t))
            if view == "alias":
                return [s] + self.assign_tangents(t, lambda k: self.tangent_name(base.id, k))
            def same_view(k):
                call = copy.deepcopy(value)
                call.args[0] = ast.Name(id=self.tangent_name(base.id, k), ctx=ast.Load())
                return src(call)
            return [s] + self.assign_tangents(t, same_view)
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "copy":
            base = value.func.value
            return [s] + self.assign_tangents(
                t, lambda k: f"{self.tangent_name(base.id, k)}.copy()" if self.active(base)
                else self.zero(t))
        if rule_of(value)[0] is not None:
            return [s] + self.rule_tangents(value, t, s)
        return [s] + self.assign_tangents(t, lambda k: self.zero(t))   # constants, zero-derivative

    def in_place(self, s: ast.Assign) -> list[ast.stmt]:
        """``A op= B``, normalised to ``t = A op B; A = t``: stored into ``A`` (and its tangent),
        which callers and aliases see, as NumPy does."""
        t, value = s.targets[0].id, s.value
        out = parse(f"{t}[...] = {src(value)}")
        if self.active(s.targets[0]):
            out += parse("\n".join(
                f"{self.tangent_name(t, k)}[...] = "
                f"{src(self.tangent(value, k)) if self.active(value) else '0.0'}"
                for k in range(self.width)))
        return out

    def rule_tangents(self, value: ast.expr, t: str, s: ast.stmt) -> list[ast.stmt]:
        """``t = value`` (an operator or a primitive call): the sum of its operands'
        contributions to the tangent of ``t``."""
        rule, operands = rule_of(value)
        on_arrays = self.elementwise_on_arrays(value, t)
        templates = rules.tangent_templates(rule, on_arrays)
        if templates is None:
            raise self.refuse(s, f"'{rule.spelling or rule.name}'", " (no tangent rule yet)")
        mapping = {"z": ast.Name(id=t, ctx=ast.Load())}
        mapping.update(zip(rule.params, operands))
        out = []
        for k in range(self.width):
            terms, of_arrays = [], []
            for operand, template in zip(operands, templates):
                tangent = self.tangent(operand, k)
                if template is None or tangent is None:
                    continue
                terms.append(instantiate(template, {**mapping, "d": tangent}))
                of_arrays.append(self.a.is_array(atom_name(operand)))
            total = " + ".join(f"({src(term)})" for term in terms) if terms else self.zero(t)
            if len(terms) == 1 and isinstance(terms[0], ast.Name) and self.a.is_array(t) \
                    and of_arrays[0]:
                # ``y + 1.0`` is a new array: so is its tangent (that of a scalar operand,
                # ``x + s`` with ``x`` inactive, is broadcast to a new array below)
                total = f"{total}.copy()"
            if terms and on_arrays and self.misses_a_shape(terms, operands, t):
                total = f"{total} + {naming.ARRAY_MODULE}.zeros_like({t})"
            out += parse(f"{self.tangent_name(t, k)} = {total}")
        return out

    def elementwise_on_arrays(self, value: ast.expr, t: str) -> bool:
        """Whether ``t = value`` applies a scalar rule elementwise to arrays."""
        if not self.a.is_array(t):
            return False
        if isinstance(value, ast.BinOp):
            return not isinstance(value.op, ast.MatMult)
        return not isinstance(value, ast.Call) or anno.get(value, anno.KIND) == "rule" \
            or rule_of(value)[0].name in rules.ELEMENTWISE_ARRAY_CALLS

    def misses_a_shape(self, terms: list[ast.expr], operands: list[ast.expr], t: str) -> bool:
        """Whether the summed contributions of an elementwise operation may have a smaller
        shape than its result: no term reads the result itself or every array operand (by its
        value or its tangent), so broadcasting against an inactive operand would be lost."""
        read = {n.id for term in terms for n in ast.walk(term) if isinstance(n, ast.Name)}
        if t in read:
            return False
        for operand in operands:
            name = atom_name(operand)
            if name and self.a.is_array(name) and name not in read and \
                    not any(self.tangent_name(name, k) in read for k in range(self.width)):
                return True
        return False

    def unpack(self, s: ast.Assign) -> list[ast.stmt]:
        """``(a, (b, c)) = value``: a tuple that arrives whole (see :mod:`nbautodiff.analysis.tuples`)."""
        value = s.value
        if isinstance(value, ast.Call) and anno.get(value, anno.KIND) == "user":
            return self.user_call(value, s.targets[0], s)
        if any(self.active(ast.Name(id=n)) for n in tuples.flat_names(s.targets[0])):
            raise self.refuse(s, "unpacking this tuple", "")
        return [s]

    def tangent_target(self, target: ast.expr, k: int) -> ast.expr:
        """The tangents of a (nested) tuple target; a fresh unused name where there is none."""
        if isinstance(target, ast.Tuple):
            return ast.Tuple(elts=[self.tangent_target(e, k) for e in target.elts],
                             ctx=ast.Store())
        if self.active(target):
            return ast.Name(id=self.tangent_name(target.id, k), ctx=ast.Store())
        return ast.Name(id=self.fresh(naming.UNUSED), ctx=ast.Store())

    def tangent_display(self, node: ast.expr, k: int) -> str:
        """Source of the tangent of a (nested) display of atoms: zeros for constant floats
        and inactive floats, None for what is not differentiable."""
        if isinstance(node, ast.Tuple):
            inner = ", ".join(self.tangent_display(e, k) for e in node.elts)
            return f"({inner}{',' if len(node.elts) == 1 else ''})"
        if self.active(node):
            return self.tangent_name(node.id, k)
        if isinstance(node, ast.Name) and typeinfer.is_differentiable(self.a.types.get(node.id)):
            return self.zero(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            return "0.0"
        return "None"

    def tangent_or_zero(self, node: ast.expr, k: int) -> str:
        tangent = self.tangent(node, k)
        if tangent is not None:
            return tangent.id
        return self.zero(node.id) if isinstance(node, ast.Name) else "0.0"

    def stack_call(self, call: ast.Call, t: str | None, s: ast.stmt) -> list[ast.stmt]:
        """``L.append(x)`` / ``x = L.pop()`` on a reference stack of generated code: the same
        on the stack of tangents."""
        stack = call.func.value
        if not self.active(stack):
            return [s]
        out = [s]
        for k in range(self.width):
            tangents = f"{self.tangent_name(stack.id, k)}"
            if call.func.attr == "append":
                out += parse(f"{tangents}.append({self.tangent_or_zero(call.args[0], k)})")
            elif t is None:
                out += parse(f"{tangents}.pop()")
            else:
                out += parse(f"{self.tangent_name(t, k)} = {tangents}.pop()")
        return out

    def helper_call(self, call: ast.Call, t: str | None, s: ast.stmt) -> list[ast.stmt]:
        """A runtime helper of generated code (``rules.HELPERS``): its tangent template, terms
        whose tangents are all zero dropped, other zero tangents spelled out."""
        rule = anno.get(call, anno.TARGET)
        if rule.tangent is None:
            raise self.refuse(s, f"'{rule.spelling}'", " (no tangent rule yet: the derivative "
                              "of this function cannot be differentiated again)")
        if t is None and not self.active(call.args[rule.writes]):
            return [s]
        operands = dict(zip(rule.params, call.args))
        terms = _terms(rule.tangent)
        out = [s]
        for k in range(self.width):
            mapping = dict(operands)
            live = set()
            for param in rule.differentiable:
                tangent = self.tangent(operands[param], k)
                if tangent is not None:
                    live.add(f"d_{param}")
                    mapping[f"d_{param}"] = tangent
                else:
                    mapping[f"d_{param}"] = expr(self.zero(operands[param].id)
                                                 if isinstance(operands[param], ast.Name)
                                                 else "0.0")
            if rule.accumulates:                 # adding a zero contribution: nothing to do
                live.discard(f"d_{rule.params[rule.writes]}")
            kept = [instantiate(term, mapping) for term in terms
                    if {n.id for n in ast.walk(term) if isinstance(n, ast.Name)} & live]
            if t is None:
                out += [ast.Expr(value=term) for term in kept]
            else:
                total = " + ".join(f"({src(term)})" for term in kept) if kept else self.zero(t)
                out += parse(f"{self.tangent_name(t, k)} = {total}")
        return out

    def user_call(self, call: ast.Call, t: str | None, s: ast.stmt) -> list[ast.stmt]:
        """A call of a user function: its forward variant when a tangent flows in or out."""
        if anno.get(call, anno.KIND) != "user":
            return [s]
        duals = [self.active(arg) is not None for arg in call.args]
        result_dual = t is not None and any(self.active(ast.Name(id=n))
                                            for n in tuples.flat_names(_target_node(t)))
        declared = custom.kind_of(anno.get(call, anno.TARGET)) == "custom"
        if (not any(duals) or declared) and not result_dual:
            return [s]                   # (a declared function writes no argument)
        if declared and anno.get(call, anno.TARGET).tangent_rule is None:
            raise self.refuse(call, f"calling '{src(call.func)}', which has a custom reverse "
                              "rule (custom_vjp) but no tangent rule",
                              f" (declare one with @{src(call.func)}.defjvp)")
        callee = self.callee_variant(call, duals, result_dual)
        arguments = []
        for arg, dual in zip(call.args, callee.duals):
            arguments.append(src(arg))
            if dual:
                arguments += [src(self.tangent(arg, k)) if self.active(arg) else
                              self.zero(arg.id) for k in range(self.width)]
        invocation = f"{callee.binding}({', '.join(arguments)})"
        if t is None:
            return parse(invocation)
        target = _target_node(t)
        if not callee.result_dual:
            if result_dual:
                raise self.refuse(call, f"the result of '{src(call.func)}'", " (no tangent)")
            return parse(f"{src(target)} = {invocation}")
        result = self.fresh(naming.CALL_RESULT)
        out = parse(f"{result} = {invocation}\n{src(target)} = {result}[0]")
        for k in range(self.width):
            out += parse(f"{src(self.tangent_target(target, k))} = {result}[{k + 1}]")
        return out

    def return_(self, s: ast.Return) -> list[ast.stmt]:
        if not self.result_dual:
            return [s]
        value = s.value
        if value is None:
            raise self.refuse(s, "a function without a result", "")
        tangents = [self.tangent_display(value, k) for k in range(self.width)]
        return parse(f"return ({src(value)}, {', '.join(tangents)})")

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def _target_node(target) -> ast.expr:
    """An assignment target given as a name or as a (tuple) node."""
    return ast.Name(id=target, ctx=ast.Store()) if isinstance(target, str) else target


def _terms(template: ast.expr) -> list[ast.expr]:
    """The terms of a sum ``a + b + ...`` (the template itself when it is not a sum)."""
    if isinstance(template, ast.BinOp) and isinstance(template.op, ast.Add):
        return _terms(template.left) + _terms(template.right)
    return [template]


def transform(tree: ast.FunctionDef, analysis: Analysis, fs, *, dual_params: set,
              result_dual: bool, width: int, name: str, callee_variant) -> ast.FunctionDef:
    """The forward-mode function of normalised ``tree``; see the module docstring."""
    return ForwardTransform(tree, analysis, fs, dual_params=dual_params, result_dual=result_dual,
                            width=width, name=name, callee_variant=callee_variant).function()
