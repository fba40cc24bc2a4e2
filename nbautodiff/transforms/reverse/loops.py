"""Loop reversals other than running the iterations backwards (a part of
:class:`ReverseTransform`): loops whose reversal runs in original order (with local sums and,
for fused loops, the primal work inside), and stencil adjoints evaluated as gathers. Which loops
qualify is decided in :mod:`nbautodiff.transforms.reverse.loop_order`.
"""
from __future__ import annotations

import ast
import copy

from nbautodiff import naming
from nbautodiff.analysis.activity import assigned_names, names_in, own_read_nodes, walk_statements
from nbautodiff.codegen import expr, parse, src
from .loop_order import (accumulation_groups, accumulation_key, iteration_local_scalars,
                         loop_assigned_names, stencil_offsets)


class LoopReversal:
    """Methods of :class:`~nbautodiff.transforms.reverse.transform.ReverseTransform` for reversed
    loops; what they read and update is the transform's
    :class:`~nbautodiff.transforms.reverse.state.ReverseState` (``self.state``)."""

    def loop_body_backward(self, loop: ast.stmt, statements: list | None = None,
                           after: ast.stmt | None = None) -> list[ast.stmt]:
        """The reversed body of ``loop`` (or of its ``statements``, reversed ``after`` the
        nested loop ``after``), tracking which adjoints are known to be zero: at the start of
        each reversed iteration, those untouched by the loop and those local to one iteration;
        after the loop, those zero both before it and after an iteration."""
        before = set(self.state.zero)
        self.state.zero = (before - _touched(loop)) | iteration_local_scalars(
            self.state.tree, self.state.a, loop, self.state.updates)
        if after is not None:
            self.state.zero -= _touched(after)
        body = self.backward(loop.body if statements is None else statements) or [ast.Pass()]
        self.state.zero &= before
        return body

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
        local = {key: self.state.fresh(naming.ACCUMULATOR) for key in sorted(invariant | repeated)}
        new_body, started = [], set()
        for statement in body:
            key = accumulation_key(statement)
            if key not in local:
                new_body.append(statement)
                continue
            operator = "+=" if key in invariant or key in started else "="
            started.add(key)
            new_body += parse(f"{local[key]} {operator} {src(statement.value)}")
        new_body += parse("\n".join(f"{array}[{index}] += {local[(array, index)]}"
                                     for array, index in sorted(repeated)) or "pass")
        before = parse("\n".join(f"{local[key]} = 0.0" for key in sorted(invariant)) or "pass")
        after = parse("\n".join(f"if {local[(array, index)]} != 0.0:\n"
                                f"    {array}[{index}] += {local[(array, index)]}"
                                for array, index in sorted(invariant)) or "pass")
        if not fused and not invariant and self.state.a.sites[id(s)].loop_depth > 0:
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
        stencils = stencil_offsets(s, body, self.state.a)
        plan = _stencil_plan(s, body, stencils)
        if plan is None:
            return []
        dropped, zeroing = plan
        lo, hi, _ = (src(x) for x in s.iter.args)
        i, j, total = s.target.id, self.state.fresh("_nad_j"), self.state.fresh("_nad_sum")
        summed = sorted({x.target.id for x in body if isinstance(x, ast.AugAssign)
                         and isinstance(x.target, ast.Name)})
        reset = parse("\n".join(f"{name} = 0.0" for name in summed) or "pass")
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
                gather = parse(f"{total} = 0.0")
                for statement, offset in accumulations:
                    part = copy.deepcopy(reset) + [copy.deepcopy(x) for k, x
                                                   in enumerate(body[:statement])
                                                   if k not in dropped]
                    part += parse(f"{total} += {src(body[statement].value)}")
                    if guarded:
                        part = [ast.If(test=expr(f"{lo} <= {i} < {hi}"), body=part, orelse=[])]
                    gather += parse(f"{i} = {_plus(j, -offset)}") + part
                gather += parse(f"{array}[{', '.join(index)}] += {total}")
                out.append(ast.For(target=ast.Name(id=j, ctx=ast.Store()),
                                   iter=expr(f"range({start}, {stop})"), body=gather, orelse=[]))
        out.append(ast.For(target=ast.Name(id=i, ctx=ast.Store()), iter=expr(f"range({lo}, {hi})"),
                           body=[copy.deepcopy(x) for x in zeroing] or [ast.Pass()], orelse=[]))
        return [ast.copy_location(ast.If(test=expr(f"{hi} > {lo}"), body=out, orelse=[]), s)]


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

