"""Structured control flow: ``break``, ``continue`` and early ``return`` become flags.

After :func:`structure`, a function body has no ``break`` or ``continue`` and at most one
``return``, its last statement. Each jump sets a flag; the statements that follow the jump in
its block are guarded by ``if not flag``; a loop that can be left early tests its flags in its
condition (a ``for`` loop that can be left early becomes a ``while`` loop over a counter). Loops
then run whole iterations only, which is what lets the reverse pass replay them backwards.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from nbautodiff import naming


def _name(id_: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store() if store else ast.Load())


def _assign(target: str, value: ast.expr, like: ast.AST) -> ast.Assign:
    return ast.copy_location(ast.Assign(targets=[_name(target, True)], value=value), like)


def _const(value) -> ast.Constant:
    return ast.Constant(value=value)


def _none_of(flags: list[str]) -> ast.expr:
    names = [_name(f) for f in sorted(flags)]
    inner = names[0] if len(names) == 1 else ast.BoolOp(op=ast.Or(), values=names)
    return ast.UnaryOp(op=ast.Not(), operand=inner)


@dataclass
class _Loop:
    number: int
    break_flag: str | None = None
    continue_flag: str | None = None
    flags: set = field(default_factory=set)


class _Structurer:
    def __init__(self, tree: ast.FunctionDef):
        self.loops = 0
        returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
        last = tree.body[-1] if tree.body else None
        self.early_return = bool(returns) and not (len(returns) == 1 and returns[0] is last)

    def block(self, statements: list[ast.stmt], loop: _Loop | None) -> tuple[list[ast.stmt], set]:
        out: list[ast.stmt] = []
        for position, statement in enumerate(statements):
            new, flags = self.statement(statement, loop)
            out.extend(new)
            if flags:
                rest, rest_flags = self.block(statements[position + 1:], loop)
                if rest:
                    guard = ast.If(test=_none_of(flags), body=rest, orelse=[])
                    out.append(ast.copy_location(guard, rest[0]))
                return out, flags | rest_flags
        return out, set()

    def statement(self, node: ast.stmt, loop: _Loop | None) -> tuple[list[ast.stmt], set]:
        if isinstance(node, ast.Return) and self.early_return:
            value = node.value if node.value is not None else _const(None)
            return [_assign(naming.RETURN_VALUE, value, node),
                    _assign(naming.RETURN_FLAG, _const(True), node)], {naming.RETURN_FLAG}
        if isinstance(node, ast.Break):
            loop.break_flag = f"{naming.BREAK_FLAG}{loop.number}"
            return [_assign(loop.break_flag, _const(True), node)], {loop.break_flag}
        if isinstance(node, ast.Continue):
            loop.continue_flag = f"{naming.CONTINUE_FLAG}{loop.number}"
            return [_assign(loop.continue_flag, _const(True), node)], {loop.continue_flag}
        if isinstance(node, ast.If):
            body, body_flags = self.block(node.body, loop)
            orelse, else_flags = self.block(node.orelse, loop)
            new = ast.copy_location(ast.If(test=node.test, body=body or [ast.Pass()], orelse=orelse), node)
            return [new], body_flags | else_flags
        if isinstance(node, (ast.For, ast.While)):
            return self.loop(node)
        return [node], set()

    def loop(self, node: ast.For | ast.While) -> tuple[list[ast.stmt], set]:
        self.loops += 1
        loop = _Loop(self.loops)
        body, flags = self.block(node.body, loop)
        leaves_function = naming.RETURN_FLAG in flags
        prologue: list[ast.stmt] = []
        if loop.continue_flag:
            body.insert(0, _assign(loop.continue_flag, _const(False), node))
        stops = []
        if leaves_function:
            stops.append(naming.RETURN_FLAG)
        if loop.break_flag:
            stops.append(loop.break_flag)
            prologue.append(_assign(loop.break_flag, _const(False), node))
        if isinstance(node, ast.For) and not stops:
            new = ast.For(target=node.target, iter=node.iter, body=body or [ast.Pass()], orelse=[])
            return [ast.copy_location(new, node)], flags & {naming.RETURN_FLAG}
        if isinstance(node, ast.For):
            prologue_for, test, body = self.for_as_while(node, body, loop.number)
            prologue = prologue_for + prologue
        else:
            test = node.test
        if stops:
            test = ast.BoolOp(op=ast.And(), values=[_none_of(stops), test])
        new = ast.copy_location(ast.While(test=test, body=body or [ast.Pass()], orelse=[]), node)
        return prologue + [new], flags & {naming.RETURN_FLAG}

    def for_as_while(self, node: ast.For, body: list[ast.stmt], n: int):
        """``for i in range(a, b, c)`` as a counter loop: (statements before, test, body)."""
        args = list(node.iter.args)
        start, stop, step = ([_const(0)] + args + [_const(1)])[:3] if len(args) == 1 else \
            (args + [_const(1)])[:3]
        k, hi, st = f"{naming.LOOP_INDEX}{n}", f"{naming.LOOP_STOP}{n}", f"{naming.LOOP_STEP}{n}"
        before = [_assign(k, start, node), _assign(hi, stop, node), _assign(st, step, node)]
        up = ast.Compare(left=_name(k), ops=[ast.Lt()], comparators=[_name(hi)])
        down = ast.Compare(left=_name(k), ops=[ast.Gt()], comparators=[_name(hi)])
        if isinstance(step, ast.Constant):
            test = up if step.value > 0 else down
        else:
            positive = ast.Compare(left=_name(st), ops=[ast.Gt()], comparators=[_const(0)])
            test = ast.IfExp(test=positive, body=up, orelse=down)
        advance = [_assign(node.target.id, _name(k), node),
                   _assign(k, ast.BinOp(left=_name(k), op=ast.Add(), right=_name(st)), node)]
        return before, test, advance + body


def structure(tree: ast.FunctionDef) -> ast.FunctionDef:
    """A copy of ``tree`` with structured control flow (see the module docstring)."""
    structurer = _Structurer(tree)
    body, _ = structurer.block(tree.body, None)
    if structurer.early_return:
        body.append(ast.copy_location(ast.Return(value=_name(naming.RETURN_VALUE)), tree.body[-1]))
        body.insert(0, _assign(naming.RETURN_FLAG, _const(False), tree.body[0]))
    new = ast.FunctionDef(name=tree.name, args=tree.args, body=body, decorator_list=[],
                          returns=None, type_comment=None, type_params=[])
    return ast.fix_missing_locations(ast.copy_location(new, tree))
