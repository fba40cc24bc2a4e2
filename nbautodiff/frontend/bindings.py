"""One name per binding: a user's name reused for unrelated values is split into one per use.

Python lets a name hold a float, then an array (``y = x[0] * 2.0; y = x * y``), or an array,
then its sum (``x = np.sum(x); x = x * x``); numba types each binding on its own, but the
transforms see one type per name. :func:`split` renames, on the normalised tree, every *web* of
a user variable but one: a web is a set of its assignments tied together by the reads they
reach (a read reached by several assignments, as after a branch or around a loop, ties them);
different webs never meet at a read, so each can have a name of its own (``y``, ``y_2``...),
which is what static single assignment does with its versions, without joins. The web holding a
parameter keeps its name; otherwise the first in program order does. An in-place operator
(``x += ...``, which NumPy applies to ``x``'s array) stays in the web of the ``x`` it updates.

A loop variable assigned in its own loop body after that (``for i in range(n): i = i + 1``, the
new ``i`` read after the loop) gets a fresh loop variable whose value the body's first
statement assigns to ``i``: ``for i_2 in range(n): i = i_2; ...``, an ordinary variable then.
Renamed names show as the user's in error messages (:attr:`FunctionSource.display_names`).
"""
from __future__ import annotations

import ast

from nbautodiff import annotations as anno, naming
from nbautodiff.codegen import parameters


class _Webs:
    def __init__(self, tree: ast.FunctionDef):
        self.parent: dict = {}
        self.name_of: dict = {}                      # def key -> variable name
        self.first: dict = {}                        # def key -> position in program order
        self.uses: dict = {}                         # id(Name load node) -> (node, set of defs)
        self.def_nodes: dict = {}                    # def key -> the Name (or For) node
        self.tree = tree

    # -- union-find ------------------------------------------------------------------------
    def find(self, key):
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, keys) -> None:
        keys = list(keys)
        for other in keys[1:]:
            one, two = self.find(keys[0]), self.find(other)
            if one != two:
                if self.first[two] < self.first[one]:
                    one, two = two, one
                self.parent[two] = one

    def define(self, key, name: str, node) -> None:
        if key not in self.parent:
            self.parent[key] = key
            self.name_of[key] = name
            self.first[key] = len(self.first)
            self.def_nodes[key] = node

    # -- reaching definitions --------------------------------------------------------------
    def read(self, node: ast.AST | None, state: dict) -> None:
        if node is None:
            return
        for name in ast.walk(node):
            if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Load) \
                    and name.id in state and state[name.id]:
                entry = self.uses.setdefault(id(name), (name, set()))
                entry[1].update(state[name.id])
                self.union(state[name.id])

    def block(self, statements: list, state: dict) -> dict:
        for statement in statements:
            state = self.statement(statement, state)
        return state

    def statement(self, statement: ast.stmt, state: dict) -> dict:
        if isinstance(statement, ast.Assign):
            self.read(statement.value, state)
            state = dict(state)
            for target in statement.targets:
                if isinstance(target, ast.Subscript):
                    self.read(target, state)
                    continue
                for node in ast.walk(target):
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                        key = ("def", id(node))
                        self.define(key, node.id, node)
                        if anno.get(statement, anno.IN_PLACE, False) and state.get(node.id):
                            self.union([key, *state[node.id]])
                        state[node.id] = frozenset([key])
            return state
        if isinstance(statement, ast.If):
            self.read(statement.test, state)
            return _merge(self.block(statement.body, dict(state)),
                          self.block(statement.orelse, dict(state)))
        if isinstance(statement, (ast.For, ast.While)):
            if isinstance(statement, ast.For):
                self.read(statement.iter, state)
                key = ("def", id(statement.target))
                self.define(key, statement.target.id, statement.target)
            head = dict(state)
            while True:
                inside = dict(head)
                if isinstance(statement, ast.For):
                    inside[statement.target.id] = frozenset([key])
                else:
                    self.read(statement.test, head)
                end = self.block(statement.body, inside)
                new_head = _merge(state, end)
                if new_head == head:
                    return head
                head = new_head
        for child in ast.iter_child_nodes(statement):     # Expr, Return, Assert, Raise...
            if isinstance(child, ast.expr):
                self.read(child, state)
        return state


def _merge(one: dict, two: dict) -> dict:
    merged = dict(one)
    for name, keys in two.items():
        merged[name] = merged.get(name, frozenset()) | keys
    return merged


def split(tree: ast.FunctionDef, augmented: list | None = None,
          taken: set | None = None) -> dict[str, str]:
    """Rename, in place, every web of a user variable of normalised ``tree`` but one, and give
    each loop whose body assigns its variable a fresh one (see the module docstring).
    ``augmented``: the ``(name, node)`` pairs of in-place operators, whose statements carry
    the annotation ``AUGMENTED`` (their position there); their names follow the renaming. Returns
    {new name: user's name}."""
    webs = _Webs(tree)
    state = {}
    for arg in tree.args.args:
        key = ("param", arg.arg)
        webs.define(key, arg.arg, arg)
        state[arg.arg] = frozenset([key])
    webs.block(tree.body, state)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        set(parameters(tree)) | {tree.name, "np", "math"} | set(taken or ())
    display: dict[str, str] = {}

    def fresh(name: str) -> str:
        new = naming.unused(name, used.__contains__)
        used.add(new)
        display[new] = name
        return new

    groups: dict[str, dict] = {}                  # name -> root -> def keys
    for key, name in webs.name_of.items():
        if naming.is_reserved(name):
            continue
        groups.setdefault(name, {}).setdefault(webs.find(key), []).append(key)
    new_name: dict = {}                           # root -> name
    for name, roots in groups.items():
        if len(roots) < 2:
            continue
        keeper = next((root for root, keys in roots.items()
                       if any(k[0] == "param" for k in keys)), None)
        if keeper is None:
            keeper = min(roots, key=lambda root: webs.first[root])
        for root in sorted(roots, key=lambda root: webs.first[root]):
            if root != keeper:
                new_name[root] = fresh(name)
    if new_name:
        for key, node in webs.def_nodes.items():
            root = webs.find(key)
            if root in new_name and isinstance(node, ast.Name):
                node.id = new_name[root]
        for node, keys in webs.uses.values():
            root = webs.find(next(iter(keys)))
            if root in new_name:
                node.id = new_name[root]
    _fresh_loop_variables(tree.body, fresh)
    if augmented:
        for statement in ast.walk(tree):
            position = anno.get(statement, anno.AUGMENTED, None)
            if position is not None:
                augmented[position] = (statement.targets[0].id, augmented[position][1])
    return display


def _fresh_loop_variables(body: list, fresh) -> None:
    for statement in body:
        for inner in (getattr(statement, "body", []), getattr(statement, "orelse", [])):
            if isinstance(inner, list):
                _fresh_loop_variables(inner, fresh)
        if not isinstance(statement, ast.For):
            continue
        variable = statement.target.id
        assigned = any(isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
                       and node.id == variable
                       for inner in statement.body for node in ast.walk(inner))
        if not assigned:
            continue
        loop_variable = fresh(variable)
        statement.target = ast.copy_location(ast.Name(id=loop_variable, ctx=ast.Store()),
                                             statement.target)
        copy = ast.Assign(targets=[ast.Name(id=variable, ctx=ast.Store())],
                          value=ast.Name(id=loop_variable, ctx=ast.Load()))
        statement.body.insert(0, ast.copy_location(copy, statement))
