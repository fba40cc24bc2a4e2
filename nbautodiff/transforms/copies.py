"""Copy propagation and overwritten stores, on generated code.

The reverse transform writes one adjoint statement per primal operation, through a scratch name
and the adjoints of three-address temporaries::

    _nad_g = _nad_b__nad_t43
    _nad_b__nad_t42 = _nad_g
    _nad_g = _nad_b__nad_t42
    _nad_b__nad_t41 = _nad_g * _nad_t42

:func:`propagate_copies` reads the source of each copy where its target is read
(``_nad_b__nad_t41 = _nad_b__nad_t43 * _nad_t42``); :func:`remove_dead_stores` then deletes the
stores no path reads (and branches and loops left empty), and
:func:`~nbautodiff.transforms.deadcode.remove_dead_assignments` what nothing reads at all. The
generated source gets shorter and readable (GMM's gradient 298 -> 197 lines); numba's compile
time barely changes (numba and LLVM remove such copies themselves: benchmarks/RESULTS.md).

The rewrite is local and exact. Within one list of statements, ``a = b`` (two plain names)
makes later reads of ``a`` read ``b`` until either name is bound again; a compound statement
(a loop, a branch) ends every such copy, and the statements inside it start with none (a loop
body runs again after its own assignments). Under numba's SSA form a read of ``a`` right after
``a = b`` has ``b``'s type, so the rewrite changes no type. Statements with
a scope of their own inside (a lambda, a comprehension, a nested function) are left as they
are and end every copy.
"""
from __future__ import annotations

import ast
import copy

from nbautodiff.transforms.deadcode import is_pure, names_read, plain_store

_SCOPES = (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ListComp,
           ast.SetComp, ast.DictComp, ast.GeneratorExp)
_COMPOUND = (ast.For, ast.While, ast.If, ast.With, ast.Try)


def propagate_copies(function: ast.FunctionDef) -> ast.FunctionDef:
    """``function`` with its copies read through (changed in place; see the module docstring).
    Generated code may share expression nodes between statements (a test of the forward sweep
    and of the reverse sweep): a statement or expression that changes is a copy."""
    scoped = any(isinstance(node, _SCOPES) for node in ast.walk(function) if node is not function)
    function.body = _block(_unshared(function).body, scoped)
    return function


def _block(body: list[ast.stmt], scoped: bool) -> list[ast.stmt]:
    """``scoped``: the function has statements with a scope of their own inside."""
    copies: dict[str, str] = {}
    out = []
    for statement in body:
        if scoped and any(isinstance(node, _SCOPES) for node in ast.walk(statement)):
            copies.clear()
            out.append(statement)
            continue
        if isinstance(statement, _COMPOUND):
            if isinstance(statement, ast.If):
                statement.test = _read_through(statement.test, copies)
            elif isinstance(statement, ast.For):
                statement.iter = _read_through(statement.iter, copies)
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(statement, field, None)
                if inner:
                    setattr(statement, field, _block(inner, scoped))
            for handler in getattr(statement, "handlers", ()):
                handler.body = _block(handler.body, scoped)
            copies.clear()
            out.append(statement)
            continue
        statement = _read_through(statement, copies)
        bound = _bound_names(statement)
        for name in [n for n, source in copies.items() if n in bound or source in bound]:
            del copies[name]
        pair = _copy(statement)
        if pair is not None:
            copies[pair[0]] = pair[1]
        out.append(statement)
    return out


def _read_through(node: ast.AST, copies: dict[str, str]) -> ast.AST:
    """``node`` with every read of a copy's target replaced by its source: a new node when
    one is read, ``node`` itself otherwise."""
    if not copies or not any(isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                             and n.id in copies for n in ast.walk(node)):
        return node
    node = copy.deepcopy(node)
    for name in ast.walk(node):
        if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Load) and name.id in copies:
            name.id = copies[name.id]
    return node


def _unshared(function: ast.FunctionDef) -> ast.FunctionDef:
    """``function``, with every compound statement that occurs in it more than once replaced
    by a copy at each further occurrence (both passes give each occurrence a body of its own)."""
    seen: set[int] = set()

    def visit(body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for statement in body:
            if isinstance(statement, _COMPOUND):
                if id(statement) in seen:
                    statement = copy.deepcopy(statement)
                seen.add(id(statement))
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(statement, field, None)
                    if inner:
                        setattr(statement, field, visit(inner))
                for handler in getattr(statement, "handlers", ()):
                    handler.body = visit(handler.body)
            out.append(statement)
        return out

    function.body = visit(function.body)
    return function


def _copy(statement: ast.stmt) -> tuple[str, str] | None:
    """(target, source) when ``statement`` is ``target = source`` of two different names."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
            and isinstance(statement.targets[0], ast.Name) \
            and isinstance(statement.value, ast.Name) \
            and statement.targets[0].id != statement.value.id:
        return statement.targets[0].id, statement.value.id
    return None


def _bound_names(statement: ast.stmt) -> set[str]:
    """Names ``statement`` binds (assigns, augments or deletes)."""
    return {node.id for node in ast.walk(statement)
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del))}


def _reads(node: ast.AST) -> set[str]:
    names = names_read(node)
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        names.add(node.target.id)
    return names


def remove_dead_stores(function: ast.FunctionDef) -> ast.FunctionDef:
    """``function`` without the plain stores ``name = <pure expression>`` whose value no path
    reads before ``name`` is bound again, without self-copies, and without the branches and
    ``for`` loops left with nothing to do (changed in place).

    A backward liveness analysis over the structured code: a loop's header is live with what
    its exit and, to a fixed point, its body need; ``break``, ``continue`` and a ``try`` make
    every name of the function live there (they are left to numba's own analysis); a name a
    nested function reads is live everywhere."""
    function = _unshared(function)
    everything = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    captured = {n.id for scope in ast.walk(function) if scope is not function
                and isinstance(scope, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(scope) if isinstance(n, ast.Name)}
    function.body, _ = _Liveness(everything, captured).block(function.body, set(), apply=True)
    function.body = function.body or [ast.Pass()]
    return function


class _Liveness:
    def __init__(self, everything: set[str], captured: set[str]):
        self.everything = everything
        self.captured = captured            # read by a nested function: live everywhere
        self.facts = {}                     # id(statement) -> (statement, plain store, reads)
        self.analysed = {}                  # (id(body), live after) -> (body, live before)

    def block(self, body, live, apply):
        """(``body`` with dead stores dropped if ``apply``, names live before it)."""
        key = (id(body), frozenset(live))
        if not apply and key in self.analysed:
            return body, self.analysed[key][1]
        kept, after = [], live
        for statement in reversed(body):
            keep, live = self.statement(statement, live, apply)
            if keep:
                kept.append(statement)
        kept.reverse()
        if not apply:                       # the body is kept alive with its key's id
            self.analysed[(id(body), frozenset(after))] = (body, live)
        return (kept or [ast.Pass()]) if apply else body, live

    def fact(self, statement):
        """(plain store target or None, names read) of ``statement``, computed once."""
        known = self.facts.get(id(statement))
        if known is None:
            target = plain_store(statement)
            reads = _reads(statement.value if target is not None else statement)
            known = self.facts[id(statement)] = (statement, target, reads)
        return known[1], known[2]

    def statement(self, statement, live, apply):
        """(whether to keep ``statement``, names live before it), given those live after."""
        target, reads = self.fact(statement)
        if target is not None and target not in self.captured:
            if target not in live or _is_self_copy(statement):
                return False, live
            return True, (live - {target}) | reads
        if isinstance(statement, (ast.Break, ast.Continue, ast.Try, ast.With)):
            return True, set(self.everything)
        if isinstance(statement, ast.If):
            body, body_live = self.block(statement.body, live, apply)
            orelse, else_live = self.block(statement.orelse, live, apply) if statement.orelse \
                else (statement.orelse, live)
            if apply:
                statement.body, statement.orelse = body, orelse
                if _empty(body) and _empty(orelse) and is_pure(statement.test):
                    return False, live
            return True, body_live | else_live | _reads(statement.test)
        if isinstance(statement, (ast.For, ast.While)):
            before = self.loop(statement, live, apply)
            if apply and isinstance(statement, ast.For) and _empty(statement.body) \
                    and not statement.orelse and is_pure(statement.iter) \
                    and not _bound_names(statement.target) & live:
                return False, live
            return True, before
        if isinstance(statement, ast.Return):
            return True, reads
        return True, (live - _plain_bound(statement)) | reads

    def loop(self, loop, live, apply):
        """Names live before ``loop``: its header's, to a fixed point over the back edge."""
        exit_live = self.block(loop.orelse, live, False)[1] if loop.orelse else live
        bound = _bound_names(loop.target) if isinstance(loop, ast.For) else set()
        test = _reads(loop.test) if isinstance(loop, ast.While) else set()
        header = exit_live | test
        while True:
            body_live = self.block(loop.body, header, False)[1]
            widened = exit_live | test | (body_live - bound)
            if widened == header:
                break
            header = widened
        if apply:
            loop.body = self.block(loop.body, header, True)[0]
            if loop.orelse:
                loop.orelse = self.block(loop.orelse, live, True)[0]
        return header | (_reads(loop.iter) if isinstance(loop, ast.For) else set())


def _plain_bound(statement: ast.stmt) -> set[str]:
    """Names a simple statement binds outright (``a = ...``, ``a, b = ...``), not ``a += ...``."""
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {n.id for t in targets for n in ast.walk(t)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                and (t is n or isinstance(t, (ast.Tuple, ast.List)))}
    return set()


def _empty(body: list[ast.stmt]) -> bool:
    return all(isinstance(statement, ast.Pass) for statement in body)


def _is_self_copy(statement: ast.Assign) -> bool:
    return isinstance(statement.value, ast.Name) and statement.value.id == statement.targets[0].id
