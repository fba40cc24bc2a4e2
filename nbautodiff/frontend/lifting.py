"""Lambda lifting: inner functions and named lambdas become callees of their own.

The contract of :func:`lift`: given a function's source, it returns a source for the same
function in which every ``def g(...)`` statement and every ``g = lambda ...: ...`` assignment of
its body is gone. Each one becomes a function of its own (with a :class:`FunctionSource`,
registered so that :func:`~nbautodiff.frontend.source.function_source` finds it), reached through the
returned source's ``closure``: normalisation then resolves a call ``g(a, b)`` like a call to any
user function, and the pipeline builds its own primal and reverse variants. The variables of
the enclosing function that ``g`` reads (directly, or through the inner functions it calls) are
appended to ``g``'s parameters, and every call passes them: ``g(a, b)`` becomes ``g(a, b, c)``.

Python closures read an enclosing variable when the inner function runs (late binding), and
the lifted call passes the value the variable holds at the call: the two agree, also when the
variable is reassigned after the definition or in a loop around it. Arrays are passed by
reference, so writes through an enclosing array reach the caller, as in Python. The inner
functions' nodes keep the user's line numbers; a definition inside an inner function is lifted
in turn when that function is built.

Refused with a located :class:`UnsupportedConstructError`: an inner function used other than by
calling it (returned, stored, passed as an argument), a lambda that is not bound to a name,
``nonlocal`` (assigning a variable of the enclosing function: closure over changing state), an
inner function defined twice or whose name is rebound, decorators, recursion among inner
functions, a call of an inner function written before its definition, and a call from which a
variable the callee reads is hidden by a local of the same name.
"""
from __future__ import annotations

import ast
import copy
import types
from dataclasses import dataclass, field

from nbautodiff.errors import UnsupportedConstructError
from .source import FunctionSource, register

_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


# -- scopes ---------------------------------------------------------------------------------

def own_nodes(scope: ast.AST):
    """The nodes evaluated in ``scope``'s own namespace, in source order; nested scopes are
    yielded but not entered."""
    roots = [scope.body] if isinstance(scope, ast.Lambda) else list(scope.body)
    stack = roots[::-1]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _NESTED_SCOPES):
            stack.extend(list(ast.iter_child_nodes(node))[::-1])


def parameters(scope: ast.FunctionDef | ast.Lambda) -> list[str]:
    args = scope.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names


def bound_names(scope: ast.AST) -> set[str]:
    """Names local to ``scope``: its parameters, what it assigns, what it defines."""
    bound = set(parameters(scope)) if isinstance(scope, _FUNCTION_SCOPES) else set()
    for node in own_nodes(scope):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return bound


def free_names(scope: ast.AST) -> set[str]:
    """Names ``scope`` (or a scope nested in it) reads without binding them."""
    bound = bound_names(scope)
    free = set()
    for node in own_nodes(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            free.add(node.id)
        elif isinstance(node, _FUNCTION_SCOPES) and node is not scope:
            free |= free_names(node)
    return free - bound


# -- the inner functions of one scope -------------------------------------------------------

@dataclass(eq=False)
class _Inner:
    name: str
    node: ast.FunctionDef | ast.Lambda
    statement: ast.stmt                      # the def, or the assignment of the lambda
    free: set[str] = field(default_factory=set)
    captured: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "lambda" if isinstance(self.node, ast.Lambda) else "inner function"

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"


class _Lifter:
    def __init__(self, fs: FunctionSource):
        self.fs = fs
        self.tree = copy.deepcopy(fs.tree)
        self.inner: dict[str, _Inner] = {}

    def refuse(self, node: ast.AST, construct: str, message: str) -> UnsupportedConstructError:
        return self.fs.error(message, node, construct=construct, kind=UnsupportedConstructError)

    def lift(self) -> FunctionSource:
        self.collect()
        if not self.inner:
            return self.fs
        self.refuse_nonlocal()
        self.check_rebinding()
        locals_ = bound_names(self.tree) - set(self.inner)
        for inner in self.inner.values():
            inner.free = free_names(inner.node)
        self.refuse_recursion()
        for inner in self.ordered_by_calls():
            captured = inner.free & locals_
            for callee in inner.free & set(self.inner):
                captured |= set(self.inner[callee].captured)
            inner.captured = sorted(captured)
        self.rewrite_calls(self.tree, hidden=set())
        return self.build()

    def collect(self) -> None:
        defining = set()
        for node in own_nodes(self.tree):
            if isinstance(node, ast.FunctionDef):
                self.add(_Inner(node.name, node, node))
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                target = node.targets[0]
                if len(node.targets) != 1 or not isinstance(target, ast.Name):
                    raise self.refuse(node, "lambda", "lambda assigned to anything but one name "
                                      "is not supported (write 'name = lambda ...')")
                defining.add(id(node.value))
                self.add(_Inner(target.id, node.value, node))
            elif isinstance(node, ast.Lambda) and id(node) not in defining:
                raise self.refuse(node, "lambda", "lambda that is not bound to a name is not "
                                  "supported (write 'name = lambda ...' and call name(...))")

    def add(self, inner: _Inner) -> None:
        known = self.inner.get(inner.name)
        if known is not None:
            raise self.refuse(inner.statement, "inner function redefinition",
                              f"{inner.label} is defined more than once (also line "
                              f"{known.statement.lineno}); give each inner function its own name")
        if isinstance(inner.node, ast.FunctionDef) and inner.node.decorator_list:
            raise self.refuse(inner.node.decorator_list[0], "decorator",
                              f"decorator on {inner.label} is not supported")
        self.inner[inner.name] = inner

    def refuse_nonlocal(self) -> None:
        for inner in self.inner.values():
            for node in ast.walk(inner.node):
                if isinstance(node, ast.Nonlocal):
                    raise self.refuse(node, "nonlocal statement", "closure over changing state "
                                      f"is not supported: 'nonlocal {', '.join(node.names)}' "
                                      "assigns a variable of the enclosing function (return the "
                                      "new value instead)")

    def check_rebinding(self) -> None:
        lambdas = {id(inner.statement.targets[0]) for inner in self.inner.values()
                   if isinstance(inner.node, ast.Lambda)}
        for param in self.tree.args.args:
            if param.arg in self.inner:
                raise self.refuse(self.inner[param.arg].statement, "inner function redefinition",
                                  f"{self.inner[param.arg].label} has the name of a parameter; "
                                  "rename it")
        for node in own_nodes(self.tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) \
                    and node.id in self.inner and id(node) not in lambdas:
                raise self.refuse(node, "inner function redefinition",
                                  f"{self.inner[node.id].label} is assigned another value here; "
                                  "give each inner function its own name")

    def refuse_recursion(self) -> None:
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            state[name] = "visiting"
            path = path + [name]
            for callee in sorted(self.inner[name].free & set(self.inner)):
                if state.get(callee) == "visiting":
                    cycle = path[path.index(callee):] + [callee]
                    site = next(n for n in ast.walk(self.inner[name].node)
                                if isinstance(n, ast.Name) and n.id == callee)
                    raise self.refuse(site, "recursion", f"recursion of {self.inner[callee].label}"
                                      f" is not supported ({' -> '.join(cycle)})")
                if callee not in state:
                    visit(callee, path)
            state[name] = "done"

        for name in self.inner:
            if name not in state:
                visit(name, [])

    def ordered_by_calls(self) -> list[_Inner]:
        """Inner functions, every one after those it calls (the call graph is acyclic here)."""
        ordered: list[_Inner] = []

        def place(inner: _Inner) -> None:
            if inner in ordered:
                return
            for callee in sorted(inner.free & set(self.inner)):
                place(self.inner[callee])
            ordered.append(inner)

        for inner in self.inner.values():
            place(inner)
        return ordered

    def rewrite_calls(self, scope: ast.AST, hidden: set[str]) -> None:
        """Append the captured variables to every call of an inner function in ``scope``;
        refuse any other use of an inner function. ``hidden``: names that nested scopes between
        the lifted function and ``scope`` bind (there, they are not the lifted function's)."""
        callees = set()
        for node in own_nodes(scope):
            if node is not scope and isinstance(node, _FUNCTION_SCOPES):
                self.rewrite_calls(node, hidden | bound_names(node))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in self.inner and node.func.id not in hidden:
                callees.add(id(node.func))
                inner = self.inner[node.func.id]
                if scope is self.tree and _position(node) < _end(inner.statement):
                    raise self.refuse(node, f"call to {inner.kind}", f"{inner.label} is called "
                                      f"before its definition (line {inner.statement.lineno})")
                self.pass_captured(node, inner, hidden)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                    and node.id in self.inner and node.id not in hidden \
                    and id(node) not in callees:
                inner = self.inner[node.id]
                raise self.refuse(node, f"{inner.kind} as a value",
                                  f"{inner.label} used as a value (returned, stored or passed "
                                  "on) is not supported; inner functions can only be called")

    def pass_captured(self, call: ast.Call, inner: _Inner, hidden: set[str]) -> None:
        if call.keywords:
            raise self.refuse(call, "keyword arguments",
                              f"keyword arguments in the call to {inner.label} are not supported")
        args = inner.node.args
        plain = not (args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs
                     or args.defaults)
        given = len(call.args)
        if plain and not any(isinstance(a, ast.Starred) for a in call.args) \
                and given != len(args.args):
            raise self.refuse(call, f"call to {inner.kind}",
                              f"{inner.label} takes {len(args.args)} argument"
                              f"{'' if len(args.args) == 1 else 's'}, {given} given")
        shadowed = sorted(set(inner.captured) & hidden)
        if shadowed:
            raise self.refuse(call, f"call to {inner.kind}",
                              f"{inner.label} reads '{shadowed[0]}' of '{self.fs.name}', but "
                              f"here '{shadowed[0]}' is a variable of an inner function: rename "
                              "one of them")
        call.args = call.args + [ast.copy_location(ast.Name(id=name, ctx=ast.Load()), call)
                                 for name in inner.captured]

    # -- the lifted functions --------------------------------------------------------------
    def build(self) -> FunctionSource:
        functions = {name: self.function(inner) for name, inner in self.inner.items()}
        closure = {**self.fs.closure, **functions}
        for name, inner in self.inner.items():
            register(FunctionSource(func=functions[name], tree=self.lifted_def(inner),
                                    filename=self.fs.filename, closure=closure))
        removed = {id(inner.statement) for inner in self.inner.values()}
        self.tree.body = _without(self.tree.body, removed, self.tree)
        return FunctionSource(func=self.fs.func, tree=self.tree, filename=self.fs.filename,
                              closure=closure)

    def lifted_def(self, inner: _Inner) -> ast.FunctionDef:
        node = copy.deepcopy(inner.node)
        args = node.args
        args.args = list(args.args) + [ast.arg(arg=name) for name in inner.captured]
        if isinstance(node, ast.Lambda):
            body = [ast.copy_location(ast.Return(value=node.body), node.body)]
        else:
            body = node.body
        tree = ast.FunctionDef(name=inner.name, args=args, body=body, decorator_list=[],
                               returns=None, type_comment=None, type_params=[])
        return ast.fix_missing_locations(ast.copy_location(tree, inner.statement))

    def function(self, inner: _Inner) -> types.FunctionType:
        """A real function object for the lifted definition (compiled, never run by the
        pipeline): it identifies the callee in the caches and carries name and globals."""
        module = ast.fix_missing_locations(ast.Module(body=[self.lifted_def(inner)],
                                                      type_ignores=[]))
        code = compile(module, self.fs.filename, "exec")
        body_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
        func = types.FunctionType(body_code, self.fs.globals, inner.name)
        func.__qualname__ = f"{self.fs.func.__qualname__}.<locals>.{inner.name}"
        func.__module__ = self.fs.func.__module__
        return func


def _position(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset


def _end(node: ast.AST) -> tuple[int, int]:
    return node.end_lineno, node.end_col_offset


def _without(statements: list[ast.stmt], removed: set[int], like: ast.AST) -> list[ast.stmt]:
    """``statements`` with the statements whose ids are in ``removed`` left out, at any depth of
    the blocks of this scope (never an empty block)."""
    kept = []
    for statement in statements:
        if id(statement) in removed:
            continue
        if not isinstance(statement, _NESTED_SCOPES):
            for field_name in ("body", "orelse", "finalbody"):
                block = getattr(statement, field_name, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    setattr(statement, field_name, _without(block, removed, statement))
        kept.append(statement)
    return kept or [ast.copy_location(ast.Pass(), like)]


def lift(fs: FunctionSource) -> FunctionSource:
    """``fs`` with its inner functions and named lambdas lifted out (see the module docstring);
    ``fs`` itself when it has none."""
    return _Lifter(fs).lift()
