"""Replays: the normalised primal of a function as plain Python that runs on complex numbers
and reports what it decides on differentiated values.

:func:`replay` turns the normalised primal (:mod:`nbautodiff.frontend.normalize`, with its callees) into Python
source, written and loaded like any generated code (:mod:`nbautodiff.emit`), where

* every primitive is its complex-step extension (:mod:`nbautodiff.checks.complex_math`): called with inputs
  ``x + i h e_k`` the function returns ``f(x) + i h df/dx_k`` (the complex step);
* every decision on a value that depends on the differentiated inputs calls a probe
  (:mod:`nbautodiff.checks.probes`): comparisons, ``abs``/``min``/``max``, rounding, indices made from rounded
  values, ``while`` conditions. Which values depend on the inputs is the activity analysis of
  :mod:`nbautodiff.analysis.activity` (its *varied* values), and, for indices and loop conditions, what those
  values reach through rounding and control flow.

Callees are replayed too (for the activities of their arguments at each call); functions with a
declared derivative (:mod:`nbautodiff.frontend.declarations`) and functions declared non-differentiable are called on the
real parts of their arguments, so the complex step through a declared rule is zero and
:attr:`Replay.declared` names them. Constructs a replay cannot run (generated code, primitives
without a complex extension) raise :class:`NotReplayable`.
"""
from __future__ import annotations

import ast
import threading
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np

from nbautodiff import annotations as anno, cache, emit, memo, naming, rules
from nbautodiff.analysis import activity as analysis, tuples, typeinfer
from nbautodiff.analysis.activity import assigned_names, names_in, own_reads, walk_statements
from nbautodiff.codegen import parameters
from nbautodiff.errors import AutodiffError, NotReplayable
from nbautodiff.frontend import declarations as custom
from nbautodiff.pipeline import passes, program
from . import complex_math, probes

CS = "_nad_cs"          # complex_math as seen by replayed code
PROBE = "_nad_probe"    # probes as seen by replayed code
_KINKS = {"abs_", "fabs", "minimum", "maximum", "max_", "min_"}


@dataclass(eq=False)
class Replay:
    """A replayed function: ``function(*args)`` runs it; ``sites`` are its probes' sites (its
    callees' too); ``declared`` the callees whose derivative is declared, not computed."""

    function: object
    sites: list = field(default_factory=list)
    declared: list = field(default_factory=list)
    source: str = ""


_replays = memo.memo("replays")                 # (primal, argtypes, active) -> Replay
_lock = threading.RLock()


def replay(func, argtypes: tuple, active: tuple) -> Replay:
    """The replay of ``func`` for numba ``argtypes``, ``active[i]`` saying whether argument i
    is differentiated (built once per process and signature)."""
    if custom.kind_of(func):
        raise NotReplayable(f"{func.__name__} has a declared derivative (nbautodiff.frontend.declarations): "
                            "the complex step would check the function, not the declaration")
    prim = program.primal(func)
    key = (prim, tuple(argtypes), tuple(active))
    with _lock:
        if not cache.memoized(_replays, key):
            _replays[key] = _build(prim, tuple(argtypes), tuple(active))
        return _replays[key]


def replay_of_arguments(func, args, argnums) -> Replay:
    """:func:`replay` for the types of the Python values ``args``, differentiating ``argnums``."""
    argtypes = tuple(numba.typeof(a) for a in args)
    return replay(func, argtypes, tuple(k in argnums for k in range(len(args))))


def complex_arguments(args, argnums, component=None, scale: float = 0.0) -> list:
    """``args`` for a replay: float arrays as complex copies, differentiated floats as complex
    numbers; ``component = (k, index)`` gets ``i * scale`` added to its imaginary part."""
    out = []
    for k, a in enumerate(args):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a = a.astype(np.complex128)
        elif k in argnums and not isinstance(a, np.ndarray):
            a = np.complex128(a)
        elif isinstance(a, np.ndarray):
            a = a.copy()
        if component is not None and component[0] == k:
            if isinstance(a, np.ndarray):
                a[component[1]] += 1j * scale
            else:
                a = a + 1j * scale
        out.append(a)
    return out


def run(rep: Replay, args: list):
    """Call the replay; numerical warnings silenced, a complex value stored into a float array
    (which would drop the complex step) an error."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        return rep.function(*args)


# ---- building -------------------------------------------------------------------------------

def _build(prim, argtypes: tuple, active: tuple) -> Replay:
    fs = prim.fs
    if fs.generated:
        raise NotReplayable(f"{fs.name} is generated code")
    try:
        types, _ = passes.types_of(prim, argtypes)
    except (AutodiffError, TypeError) as error:
        raise NotReplayable(str(error)) from None
    params = parameters(prim.normalized.tree)
    types.update(zip(params, argtypes))
    varied, active_names = _activity(prim, types, {p for p, flag in zip(params, active) if flag})
    tree = passes.copy_tree(prim.normalized.tree)
    namespace = dict(prim.namespace)
    namespace.update({CS: complex_math, PROBE: probes})
    result = Replay(None)
    _Transformer(prim, types, varied, active_names, namespace, result).transform(tree)
    rendered = emit.render([tree], header=f"# complex-step replay of {fs.name}, generated by "
                                          "nbautodiff\nimport math\nimport numpy as np")
    artifact = cache.key("replay", prim.key, argtypes, active, rendered.text)
    _, namespace = emit.load(rendered, f"{fs.name}_replay", namespace, artifact)
    result.function = namespace[fs.name]
    result.source = rendered.text
    return result


def _activity(prim, types: dict, active_params: set) -> tuple[set, set]:
    """(varied, active) names: the analysis' values that depend on the differentiated inputs
    through differentiable code, and those of them that also reach the result (a tuple
    variable counts when one of its elements does)."""
    split = passes.copy_tree(prim.normalized.tree)
    split_types = dict(types)
    tuples.split(split, split_types, prim.fs)
    an = analysis.analyse(split, split_types, active_params, True, program.callee_writes)
    names = {n.id for n in ast.walk(split) if isinstance(n, ast.Name)} | set(active_params)

    def of(classes: set) -> set:
        found = {name for name in names if an.rep(name) in classes}
        for name in list(types):
            if tuples.is_tuple(types[name]) and any(
                    an.rep(element) in classes for element in names
                    if element.endswith("_" + name) and element.startswith(naming.TUPLE_ELEMENT)):
                found.add(name)
        return found

    return of(an.varied), of(an.active)


def _reached(body: list, seeds: set, control: bool) -> set:
    """Names whose values ``seeds`` reach through assignments (and, with ``control``, through
    the conditions of ``if``/``while``/``for`` around an assignment)."""
    reached = set(seeds)
    changed = True

    def visit(statements, guarded):
        nonlocal changed
        for statement in statements:
            dependent = guarded or bool(own_reads(statement) & reached)
            targets = assigned_names(statement)
            target = getattr(statement, "targets", [None])[0]
            if isinstance(statement, ast.Assign) and isinstance(target, ast.Subscript):
                targets = [target.value.id]
            if dependent and not set(targets) <= reached:
                reached.update(targets)
                changed = True
            if isinstance(statement, (ast.If, ast.While, ast.For)):
                inner = guarded or (control and dependent)
                visit(statement.body, inner)
                visit(getattr(statement, "orelse", []), inner)

    while changed:
        changed = False
        visit(body, False)
    return reached


class _Transformer(ast.NodeTransformer):
    """Rewrites one normalised function into its replay (see the module docstring)."""

    def __init__(self, prim, types: dict, varied: set, active: set, namespace: dict,
                 result: Replay):
        self.prim, self.fs, self.types = prim, prim.fs, types
        self.varied, self.active = varied, active
        self.namespace, self.result = namespace, result
        self.statement = None
        self.rounded = set()
        self.reaching = set()

    # -- whole function ---------------------------------------------------------------------
    def transform(self, tree: ast.FunctionDef) -> None:
        self.rounded = _reached(tree.body, self._rounded_names(tree), control=False)
        self.reaching = _reached(tree.body, self.varied, control=True)
        tree.body = self.block(tree.body)
        ast.fix_missing_locations(tree)

    def _rounded_names(self, tree) -> set:
        """Results of rounding functions applied to varied values."""
        found = set()
        for statement, _ in walk_statements(tree.body):
            value = getattr(statement, "value", None)
            if isinstance(statement, ast.Assign) and isinstance(value, ast.Call) \
                    and anno.get(value, anno.KIND) == "zero" \
                    and ast.unparse(value.func) in probes.ROUNDING \
                    and self.is_varied(value.args[:1]):
                found.update(assigned_names(statement))
        return found

    def block(self, statements: list) -> list:
        out = []
        for statement in statements:
            out.extend(self.statement_(statement))
        return out

    def statement_(self, statement: ast.stmt) -> list:
        self.statement = statement
        before = []
        if isinstance(statement, ast.While):
            test = statement.test.id
            statement.body = self.block(statement.body)
            self.statement = statement
            if test in self.reaching:
                site = self.site("loop", "while")
                before.append(self.expression_statement(f"{PROBE}.enter({site})"))
                statement.test = self.parse(f"{PROBE}.iterate({site}, {test})")
            return before + [statement]
        if isinstance(statement, ast.If):
            statement.test = self.visit(statement.test)
            statement.body = self.block(statement.body)
            statement.orelse = self.block(statement.orelse)
            return [statement]
        if isinstance(statement, ast.For):
            statement.iter = self.visit(statement.iter)
            statement.body = self.block(statement.body)
            return [statement]
        if isinstance(statement, ast.Assign):
            for node in [statement.value, statement.targets[0]]:
                if isinstance(node, ast.Subscript) and self.is_lookup(node):
                    site = self.site("lookup", ast.unparse(node.value))
                    before.append(self.expression_statement(f"{PROBE}.lookup({site})"))
        return before + [self.visit(statement)]

    # -- expressions ------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        operands = [node.left] + node.comparators
        varied = [self.is_varied(pair) for pair in zip(operands, operands[1:])]
        self.generic_visit(node)
        operands = [node.left] + node.comparators
        pairs = []
        for op, left, right, probed in zip(node.ops, operands, operands[1:], varied):
            kind = type(op).__name__
            if kind not in probes._OPERATORS:          # is, in: not on numbers
                raise NotReplayable(f"'{ast.unparse(node)}' at line {self.line}")
            if probed:
                site = self.site("branch", probes.symbol(kind))
                pairs.append(self.call(f"{PROBE}.compare", [self.name(site), ast.Constant(kind),
                                                             left, right]))
            else:
                pairs.append(ast.Compare(left=self.real(left), ops=[op],
                                         comparators=[self.real(right)]))
        return pairs[0] if len(pairs) == 1 else ast.BoolOp(op=ast.And(), values=pairs)

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        special = {ast.Pow: "power", ast.Mod: "mod", ast.FloorDiv: "floordiv"}.get(type(node.op))
        if special:
            return self.call(f"{CS}.{special}", [node.left, node.right])
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        first_varied, varied = self.is_varied(node.args[:1]), self.is_varied(node.args[:2])
        self.generic_visit(node)
        kind = anno.get(node, anno.KIND, None)
        if kind in ("rule", "array"):
            return self.primitive(node, varied)
        if kind == "opaque":
            return self.call(f"{CS}.real_call", [node.func, *node.args])
        if kind == "zero":
            spelling = ast.unparse(node.func)
            if spelling in probes.ROUNDING and first_varied:
                site = self.site("rounding", spelling)
                return self.call(f"{PROBE}.rounding", [self.name(site), node.func,
                                                       ast.Constant(probes.ROUNDING[spelling]),
                                                       *node.args])
            return self.call(f"{CS}.real_call", [node.func, *node.args])
        if kind == "constructor":
            return ast.Call(func=self.parse(f"{CS}.constructed"), args=[node.func, *node.args],
                            keywords=node.keywords)
        if kind in ("user", "nondiff"):
            return self.callee(node, kind)
        if kind == "copy" or (kind is None and ast.unparse(node.func) == "range"):
            return node
        raise NotReplayable(f"'{ast.unparse(node)}' at line {self.line} (generated code)")

    def primitive(self, node: ast.Call, varied: bool) -> ast.expr:
        target = anno.get(node, anno.TARGET)    # a rule; the callable itself inside a condition
        rule = target.name if isinstance(target, rules.ReverseRule) else \
            getattr(rules.CALLS.get(id(target)), "name", None)
        if rule not in complex_math.BY_RULE:
            raise NotReplayable(f"{ast.unparse(node.func)} at line {self.line} has no "
                                "complex-step extension")
        if rule in _KINKS and varied and self.result_is_active(node):
            site = self.site("kink", _kink_name(ast.unparse(node.func), rule))
            return self.call(f"{PROBE}.kink", [self.name(site), ast.Constant(rule), *node.args])
        binding = self.bind(f"_nad_c_{rule}", complex_math.BY_RULE[rule])
        return self.call(binding, node.args)

    def callee(self, node: ast.Call, kind: str) -> ast.expr:
        target = anno.get(node, anno.TARGET)
        if kind == "nondiff" or custom.kind_of(target):
            if custom.kind_of(target) == "custom":
                self.result.declared.append(target.__name__)
            return self.call(f"{CS}.real_call", [node.func, *node.args])
        if not all(isinstance(arg, (ast.Name, ast.Constant, ast.Tuple)) for arg in node.args):
            # a call inside a condition, on expressions: only its real value decides
            return self.call(f"{CS}.real_call", [node.func, *node.args])
        argtypes = tuple(passes.atom_type(arg, self.types) for arg in node.args)
        flags = tuple(isinstance(arg, ast.Name) and arg.id in self.varied
                      and typeinfer.is_differentiable(t) for arg, t in zip(node.args, argtypes))
        inner = replay(target, argtypes, flags)
        for site in inner.sites:
            if site not in self.result.sites:
                self.result.sites.append(site)
        self.result.declared += [d for d in inner.declared if d not in self.result.declared]
        binding = self.bind(f"_nad_replay_{ast.unparse(node.func)}", inner.function)
        return self.call(binding, node.args)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def line(self) -> int:
        return getattr(self.statement, "lineno", None)

    def is_varied(self, nodes) -> bool:
        """Whether the value of one of ``nodes`` depends on the differentiated inputs through
        differentiable code (not through an index, a length, a rounding)."""
        return any(self.depends(node) for node in nodes)

    def depends(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.varied
        if isinstance(node, ast.Subscript):
            return self.depends(node.value)
        if isinstance(node, ast.Attribute):
            return False                                   # .shape, .size, .ndim
        if isinstance(node, ast.Call):
            if anno.get(node, anno.KIND, None) not in ("rule", "array", "user", "copy"):
                return False
            return any(self.depends(arg) for arg in node.args)
        return any(self.depends(child) for child in ast.iter_child_nodes(node)
                   if isinstance(child, ast.expr))

    def result_is_active(self, call: ast.Call) -> bool:
        """Whether ``call`` is the value of an assignment to a name that reaches the result
        differentiably (a kink in a stopping test does not shape the derivative)."""
        statement = self.statement
        return isinstance(statement, ast.Assign) and statement.value is call \
            and any(name in self.active for name in assigned_names(statement))

    def is_lookup(self, node: ast.Subscript) -> bool:
        return isinstance(node.value, ast.Name) and bool(names_in(node.slice) & self.rounded)

    def site(self, kind: str, what: str) -> str:
        site = probes.Site(kind, what, self.fs.name, self.fs.filename, self.line)
        self.result.sites.append(site)
        return self.bind(f"_nad_site{len(self.result.sites)}", site)

    def bind(self, stem: str, value) -> str:
        name = stem
        k = 1
        while name in self.namespace and self.namespace[name] is not value:
            k += 1
            name = f"{stem}_{k}"
        self.namespace[name] = value
        return name

    def real(self, node: ast.expr) -> ast.expr:
        return node if isinstance(node, ast.Constant) else self.call(f"{CS}.re", [node])

    def call(self, function: str, args: list) -> ast.Call:
        return ast.Call(func=self.parse(function), args=list(args), keywords=[])

    @staticmethod
    def name(identifier: str) -> ast.Name:
        return ast.Name(id=identifier, ctx=ast.Load())

    @staticmethod
    def parse(text: str) -> ast.expr:
        return ast.parse(text, mode="eval").body

    def expression_statement(self, text: str) -> ast.stmt:
        return ast.copy_location(ast.Expr(value=self.parse(text)), self.statement)


def _kink_name(spelling: str, rule: str) -> str:
    if rule == "max_":
        return "np.max"
    if rule == "min_":
        return "np.min"
    return spelling
