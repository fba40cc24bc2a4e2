"""Custom derivatives: user rules for reverse mode, and functions declared non-differentiable.

``custom_vjp(fun)`` wraps ``fun`` in a :class:`CustomVJP`; ``@wrapped.defvjp`` gives it a rule
with the convention of :mod:`nbautodiff.rules` templates::

    @nad.custom_vjp
    def softplus(x):
        return math.log1p(math.exp(x))

    @softplus.defvjp
    def softplus_vjp(g, z, x):        # g: adjoint of the result, z: the result, then the arguments
        return g / (1.0 + math.exp(-x))   # one adjoint per argument (a tuple for several)

The rule returns one adjoint per argument, in order: a number for a scalar argument, an array
of the argument's shape for an array argument (added into its shadow), ``None`` where there is
none; a single argument's adjoint may be returned bare. Adjoints of arguments that are not
differentiated (ints, constants) are ignored. ``non_differentiable(fun)`` wraps ``fun`` in a
:class:`NonDifferentiable`: calls to it from differentiated code are treated as constants.

How the rest of the pipeline sees them: both wrappers carry the marker attribute
``__nad_derivative__`` (``"custom"`` or ``"nondiff"``, read by :func:`kind_of`) and the original
function as ``.py_func``, like a numba dispatcher, so its source and signature are found as
usual. Normalisation annotates a call to a :class:`CustomVJP` as a ``"user"`` call whose
``nad_target`` is the wrapper (arguments are restored and snapshotted for its reverse call like
any callee's) and a call to a :class:`NonDifferentiable` as ``"nondiff"`` (no derivative flows
through it). :mod:`nbautodiff.program` asks this module for their primal (the original function
compiled by ``numba.njit``, called by every primal, also from the user's own ``numba.njit``
code) and their reverse variants (generated code that calls the rule, compiled by numba, with the
calling convention of any reverse variant).

Contract on the wrapped function: it must not write into its array arguments (direct stores
are refused); its rule sees the arguments and the result as they were when it was called.
"""
from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
import threading

import numba
from numba import types as nbtypes
from numba.core import errors as numba_errors
from numba.extending import typeof_impl

from . import cache, emit, naming, tuples, typeinfer
from .errors import AutodiffError
from .source import python_function, specializes
from .kernels import tape as tape_module

MARKER = "__nad_derivative__"

_lock = threading.RLock()


def kind_of(obj) -> str | None:
    """``"custom"`` or ``"nondiff"`` for a wrapper of this module, else None."""
    kind = getattr(type(obj), MARKER, None)
    return kind if isinstance(obj, _Wrapper) else None


def program_target(obj):
    """What the program builds artifacts from: a wrapper itself (its derivative is declared), a
    callee whose code depends on its argument types (:func:`.source.specializes`), otherwise the
    plain Python function behind ``obj``."""
    return obj if kind_of(obj) or specializes(obj) else python_function(obj)


class _Wrapper:
    """A callable standing for ``fun``: calling it calls ``fun``."""

    def __init__(self, fun):
        if kind_of(fun):
            raise AutodiffError(f"{fun!r} is already a {type(fun).__name__}; wrap the original "
                                "function instead", function=fun.__name__)
        functools.update_wrapper(self, fun, updated=())
        self.fun = fun
        self.py_func = python_function(fun)
        self._primal = None

    def __call__(self, *args):
        return self.fun(*args)

    def __repr__(self) -> str:
        return f"<nbautodiff {type(self).__name__} of {self.py_func.__qualname__}>"

    @property
    def parameters(self) -> list[str]:
        return list(inspect.signature(self.py_func).parameters)


class CustomVJP(_Wrapper):
    """``fun`` with a user reverse rule, set by :meth:`defvjp`; see the module docstring."""

    __nad_derivative__ = "custom"

    def __init__(self, fun, rule=None):
        super().__init__(fun)
        self.rule = None
        self.tangent_rule = None
        self._used: set[str] = set()             # the rules derivatives were built with
        if rule is not None:
            self.defvjp(rule)

    def defvjp(self, rule):
        """Set ``rule(g, z, *args)`` as the reverse rule; returns ``rule`` (usable as a decorator).

        Raises AutodiffError naming the rule when it does not take ``2 + len(args)`` positional
        parameters, or when derivatives were already built with another rule."""
        self._set("rule", rule, 2 + len(self.parameters),
                  "g (the adjoint of the result), z (the result), then the arguments")
        return rule

    def defjvp(self, rule):
        """Set ``rule(z, *args, *tangents)`` as the tangent rule (forward mode): it returns the
        tangent of the result ``z`` from one tangent per argument (0.0, or zeros of the
        argument's shape, for an argument that is not differentiated). Returns ``rule``; the
        same errors as :meth:`defvjp`."""
        self._set("tangent_rule", rule, 1 + 2 * len(self.parameters),
                  "z (the result), the arguments, then one tangent per argument")
        return rule

    def _set(self, which: str, rule, expected: int, parameters: str) -> None:
        func = python_function(rule)
        kinds = [p.kind for p in inspect.signature(func).parameters.values()]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if len(kinds) != expected or any(k not in positional for k in kinds):
            raise _rule_error(func, self, f"takes ({_signature(func)}) but must take {expected} "
                              f"positional parameters: {parameters} of {self.__name__}"
                              f"({', '.join(self.parameters)})", line=func.__code__.co_firstlineno)
        current = getattr(self, which)
        if which in self._used and rule is not current:
            raise _rule_error(func, self, f"cannot replace the rule '{current.__name__}' of "
                              f"{self.__name__}: derivatives were already built with it; define "
                              f"{self.__name__} again to change its rule")
        setattr(self, which, rule)


class NonDifferentiable(_Wrapper):
    """``fun`` whose calls from differentiated code contribute no derivative."""

    __nad_derivative__ = "nondiff"


def custom_vjp(fun, rule=None) -> CustomVJP:
    """Declare the reverse rule of ``fun``: ``custom_vjp(fun, rule)`` or, as a decorator,
    ``@custom_vjp`` then ``@fun.defvjp`` on the rule. See the module docstring."""
    return CustomVJP(fun, rule)


def non_differentiable(fun) -> NonDifferentiable:
    """Declare ``fun`` non-differentiable: differentiated code treats its result as a constant
    (its derivative is zero), while every primal still calls it."""
    return NonDifferentiable(fun)


@typeof_impl.register(_Wrapper)
def _typeof_wrapper(wrapper, context):
    """In numba-compiled code a wrapper is its original function (compiled)."""
    return nbtypes.Dispatcher(primal(wrapper).dispatcher)


# ---- artifacts -------------------------------------------------------------------------------

class WrappedPrimal:
    """The primal of a wrapper, as :mod:`nbautodiff.program` uses callee primals; made for the
    wrapper's rules of the moment (``rules``), so that variants keyed by it follow a new rule."""

    def __init__(self, wrapper: _Wrapper, dispatcher=None):
        fun = wrapper.fun
        if dispatcher is None:                   # the function compiled, or its own dispatcher
            dispatcher = numba.njit(fun) if fun is wrapper.py_func else fun
        self.dispatcher = dispatcher
        self.py_func = wrapper.py_func
        self.writes: set[int] = set()            # refused by _refuse_argument_writes
        self.rules = _rules(wrapper)
        self.key = cache.key("wrapped primal", wrapper)   # its function's and rules' sources


def _rules(wrapper: _Wrapper) -> tuple:
    return getattr(wrapper, "rule", None), getattr(wrapper, "tangent_rule", None)


def primal(wrapper: _Wrapper) -> WrappedPrimal:
    """The compiled original function of ``wrapper`` (built once, and again for new rules:
    callers see the change too, see :mod:`.module_state`)."""
    with _lock:
        if wrapper._primal is None:
            _refuse_argument_writes(wrapper)
        previous = wrapper._primal
        if previous is None or previous.rules != _rules(wrapper):
            wrapper._primal = WrappedPrimal(wrapper, previous and previous.dispatcher)
        return wrapper._primal


def reverse_variant(wrapper: _Wrapper, argtypes: tuple, active: list[bool], result_active: bool,
                    keep_value: bool):
    """A reverse variant of ``wrapper`` (a :class:`nbautodiff.program.Variant`) calling its rule.

    Same calling convention as the variants of :func:`nbautodiff.program.reverse_variant`:
    ``(args with a shadow after each active array..., seed if result_active)`` returning
    ``(result or None, adjoints of the active scalar arguments..., (tape bytes, checkpoint
    bytes))``. A
    :class:`NonDifferentiable`, or a call whose result is not seeded, contributes nothing."""
    from .program import Variant
    key = cache.key("custom reverse", wrapper, argtypes, active, result_active, keep_value)
    entry = cache.artifact(key, lambda: _generate_reverse(wrapper, argtypes, active,
                                                          result_active, keep_value))
    data = entry.data
    namespace = {naming.TAPE_MODULE: tape_module,
                 data["primal_binding"]: wrapper}     # numba-callable; forward sees it
    if data["rule_binding"] is not None:
        rule = wrapper.rule
        namespace[data["rule_binding"]] = rule if hasattr(rule, "py_func") else numba.njit(rule)
        wrapper._used.add("rule")
    dispatcher = entry.njit(entry.load(namespace)[data["name"]])
    return Variant(data["name"], entry.text, entry.source_path, dispatcher, data["shadows"],
                   data["adjoint_positions"], data["result_type"])


def _generate_reverse(wrapper: _Wrapper, argtypes: tuple, active: list[bool],
                      result_active: bool, keep_value: bool) -> cache.Built:
    """The source of a reverse variant of ``wrapper``, and what loading it needs."""
    func, params = wrapper.py_func, wrapper.parameters
    result_type = _result_type(wrapper, argtypes)
    seeded = result_active and typeinfer.is_differentiable(result_type)
    rule = _rule_of(wrapper)
    seeds = [naming.SEED] if seeded else []
    if result_active and tuples.is_tuple(result_type) and tuples.has_differentiable(result_type):
        if rule is not None:
            rule_func = python_function(rule)
            definition = _tree(rule_func)
            raise _rule_error(rule_func, wrapper, "cannot be used: the function returns a "
                              "tuple, and declared rules of functions with several outputs are "
                              "not supported", line=definition.lineno if definition else
                              rule_func.__code__.co_firstlineno)
        seeds = [naming.seed(k) for k, flag in enumerate(tuples.seeded_leaves(result_type))
                 if flag]                      # taken, and ignored: no derivative flows
    shadows = [flag and typeinfer.is_array(t) for flag, t in zip(active, argtypes)]
    adjoint_positions = [i for i, (flag, t) in enumerate(zip(active, argtypes))
                         if flag and not typeinfer.is_array(t)]
    code = "".join("a" if flag else "c" for flag in active) + ("_r" if seeded else "") + \
        ("" if keep_value else "_adjonly")
    fname = _identifier(func.__name__, "function")
    name = naming.custom_reverse_name(fname, code)
    taken = set(params) | {"math", "np", naming.TAPE_MODULE}
    primal_binding = naming.unused(fname, taken.__contains__)
    rule_binding = None
    arguments = [item for param, has_shadow in zip(params, shadows)
                 for item in ([param, naming.shadow(param)] if has_shadow else [param])]
    arguments += seeds
    uses_rule = seeded and rule is not None
    computes_result = keep_value or (uses_rule and _reads_result(rule))
    lines = [f"{naming.RESULT} = {primal_binding}({', '.join(params)})"] if computes_result else []
    adjoints = {}
    if uses_rule:
        rule_binding = naming.unused(_identifier(python_function(rule).__name__,
                                                 f"{fname}_rule"),
                                     (taken | {primal_binding}).__contains__)
        seed_type = result_type if typeinfer.is_array(result_type) else nbtypes.float64
        z_type = result_type if computes_result else nbtypes.float64
        rule_lines, adjoints = _rule_call(wrapper, rule_binding, argtypes, active,
                                          (seed_type, z_type), computes_result)
        lines += rule_lines
    returned = [naming.RESULT if keep_value else "None"]
    returned += [adjoints.get(position, "0.0") for position in adjoint_positions]
    returned.append("(0, 0)")                         # tape and checkpoint bytes: none
    lines.append(f"return ({', '.join(returned)},)")
    if isinstance(wrapper, NonDifferentiable):
        how = "no derivative (declared non-differentiable)"
    else:
        how = f"its custom rule {python_function(rule).__name__}" + \
            ("" if seeded else " (result not seeded)")
    text = (f"def {name}({', '.join(arguments)}):\n"
            f"    {repr(f'Reverse mode of {func.__name__} by {how}.')}\n"
            + textwrap.indent("\n".join(lines), "    "))
    rendered = emit.render([ast.parse(text).body[0]],
                           header=f"# reverse mode of {func.__name__} from its declared "
                                  "derivative, generated by nbautodiff\nimport math\n"
                                  "import numpy as np")
    return cache.Built(name, rendered.text, {
        "name": name, "shadows": shadows, "adjoint_positions": adjoint_positions,
        "result_type": result_type, "primal_binding": primal_binding,
        "rule_binding": rule_binding})


def forward_variant(wrapper: _Wrapper, argtypes: tuple, duals: list[bool], result_dual: bool,
                    width: int):
    """A forward variant of ``wrapper`` (a :class:`nbautodiff.program.ForwardVariant`) calling
    its tangent rule once per direction, with the calling convention of the variants of
    :func:`nbautodiff.program.forward_variant`. A :class:`NonDifferentiable` has no tangent
    (its result is not dual); a :class:`CustomVJP` without a tangent rule is refused."""
    from .program import ForwardVariant
    func, params = wrapper.py_func, wrapper.parameters
    result_type = _result_type(wrapper, argtypes)
    duals = [flag and typeinfer.is_differentiable(t) for flag, t in zip(duals, argtypes)]
    if isinstance(wrapper, NonDifferentiable):
        duals = [False] * len(params)
    result_dual = result_dual and any(duals) and typeinfer.is_differentiable(result_type)
    fname = _identifier(func.__name__, "function")
    name = naming.custom_forward_name(fname, "".join("d" if d else "c" for d in duals)
                                      + ("_r" if result_dual else "") +
                                      (f"_w{width}" if width > 1 else ""))
    primal_binding = naming.unused(fname, (set(params) | {"math", "np"}).__contains__)
    namespace = {primal_binding: wrapper}            # numba-callable (see _typeof_wrapper)
    arguments = [item for param, dual in zip(params, duals) for item in
                 [param] + ([naming.tangent(param, k, width) for k in range(width)] if dual else [])]
    lines = [f"{naming.RESULT} = {primal_binding}({', '.join(params)})"]
    returned = [naming.RESULT]
    if result_dual:
        rule = _tangent_rule_of(wrapper)
        rule_binding = naming.unused(_identifier(python_function(rule).__name__,
                                                 f"{fname}_tangent_rule"),
                                     (set(params) | {primal_binding}).__contains__)
        namespace[rule_binding] = rule if hasattr(rule, "py_func") else numba.njit(rule)
        _check_tangent_type(wrapper, result_type, argtypes, duals)
        for k in range(width):
            tangents = [naming.tangent(p, k, width) if dual else
                        f"np.zeros({p}.shape)" if typeinfer.is_array(t) else "0.0"
                        for p, dual, t in zip(params, duals, argtypes)]
            tangent = naming.tangent(naming.RESULT, k, width)
            lines.append(f"{tangent} = {rule_binding}({', '.join([naming.RESULT] + params + tangents)})")
            if typeinfer.is_array(result_type):
                lines += [f"if {tangent}.shape != {naming.RESULT}.shape:",
                          f"    raise ValueError('tangent rule {rule_binding}: the tangent does "
                          f"not have the shape of the result of {fname}')"]
            returned.append(tangent)
        wrapper._used.add("tangent_rule")
        how = f"its tangent rule {python_function(rule).__name__}"
    else:
        how = "no tangent (declared non-differentiable)" if isinstance(
            wrapper, NonDifferentiable) else "no tangent (none flows in or out)"
    lines.append(f"return ({', '.join(returned)},)" if result_dual else f"return {naming.RESULT}")
    text, path, dispatcher = _compiled(name, arguments, f"Forward mode of {func.__name__} by "
                                       f"{how}.", lines, "forward", func.__name__, namespace)
    return ForwardVariant(name, text, path, dispatcher, duals, result_dual, result_type, width)


def _compiled(name: str, arguments: list, doc: str, lines: list, mode: str, fname: str,
              namespace: dict) -> tuple:
    """(source, file, numba dispatcher) of the generated function ``name``."""
    text = (f"def {name}({', '.join(arguments)}):\n    {doc!r}\n"
            + textwrap.indent("\n".join(lines), "    "))
    rendered = emit.render([ast.parse(text).body[0]],
                           header=f"# {mode} mode of {fname} from its declared derivative, "
                                  "generated by nbautodiff\nimport math\nimport numpy as np")
    path, namespace = emit.load(rendered, name, {**namespace, naming.TAPE_MODULE: tape_module})
    return rendered.text, path, numba.njit(namespace[name])


def _tangent_rule_of(wrapper: CustomVJP):
    """The tangent rule of ``wrapper``, refused (naming the function) when it has none or
    when the function returns a tuple."""
    func = wrapper.py_func
    if wrapper.tangent_rule is None:
        raise AutodiffError(f"forward mode of '{wrapper.__name__}' needs a tangent rule: it has "
                            f"a custom reverse rule (custom_vjp), so its code is not "
                            f"differentiated; declare one with @{wrapper.__name__}.defjvp",
                            construct="custom_vjp without a tangent rule",
                            function=wrapper.__name__, filename=func.__code__.co_filename,
                            lineno=func.__code__.co_firstlineno)
    return wrapper.tangent_rule


def _check_tangent_type(wrapper: CustomVJP, result_type, argtypes: tuple, duals: list) -> None:
    """A tangent rule returning a number for a scalar result, an array of its rank for an array
    result (a tuple result is refused)."""
    func = python_function(wrapper.tangent_rule)
    if tuples.is_tuple(result_type):
        raise _rule_error(func, wrapper, "cannot be used: the function returns a tuple, and "
                          "declared rules of functions with several outputs are not supported",
                          line=func.__code__.co_firstlineno)
    tangent_types = [t if dual else nbtypes.Array(nbtypes.float64, t.ndim, "C")
                     if typeinfer.is_array(t) else nbtypes.float64
                     for t, dual in zip(argtypes, duals)]
    try:
        _, returned = typeinfer.infer(func, (result_type, *argtypes, *tangent_types))
    except numba_errors.NumbaError as exc:
        raise _numba_error(func, exc, f"tangent rule '{func.__name__}'") from None
    if typeinfer.is_array(result_type):
        fits = typeinfer.is_array(returned) and returned.ndim == result_type.ndim
    else:
        fits = isinstance(returned, (nbtypes.Float, nbtypes.Integer))
    if not fits:
        raise _rule_error(func, wrapper, f"returns {returned} as the tangent of a result of type "
                          f"{result_type}: return {'an array of its shape' if typeinfer.is_array(result_type) else 'a number'}",
                          line=_return_line(func))


def _rule_of(wrapper: _Wrapper):
    """The rule of a :class:`CustomVJP` (refused when it has none); None for the others."""
    if not isinstance(wrapper, CustomVJP):
        return None
    if wrapper.rule is None:
        func = wrapper.py_func
        raise AutodiffError(f"custom_vjp function '{wrapper.__name__}' has no rule: give it one "
                            f"with @{wrapper.__name__}.defvjp", construct="custom_vjp",
                            function=wrapper.__name__, filename=func.__code__.co_filename,
                            lineno=func.__code__.co_firstlineno)
    return wrapper.rule


def _rule_call(wrapper: CustomVJP, binding: str, argtypes: tuple, active: list[bool],
               seed_and_z_types: tuple, passes_z: bool) -> tuple[list[str], dict]:
    """(lines calling the rule bound to ``binding`` and adding array adjoints into shadows,
    source of the adjoint of each active scalar argument by position)."""
    params = wrapper.parameters
    returned, per_argument = _rule_adjoint_types(wrapper, seed_and_z_types + tuple(argtypes))
    rule_result = naming.CALL_RESULT
    rule_args = [naming.SEED, naming.RESULT if passes_z else "0.0"] + params
    lines = [f"{rule_result} = {binding}({', '.join(rule_args)})"]
    bare = not isinstance(returned, nbtypes.BaseTuple)
    adjoints = {}
    for position, (param, typ) in enumerate(zip(params, per_argument)):
        if not active[position] or typ == nbtypes.none:
            continue
        _check_adjoint_type(wrapper, param, argtypes[position], typ)
        value = rule_result if bare else f"{rule_result}[{position}]"
        if typeinfer.is_array(argtypes[position]):
            if not bare:                 # a name: conditions read attributes of names only
                lines.append(f"{naming.CALL_RESULT}{position} = {value}")
                value = f"{naming.CALL_RESULT}{position}"
            lines.append(f"if {value}.shape != {param}.shape:\n"
                         f"    raise ValueError('custom rule {binding}: the adjoint of "
                         f"{param} does not have the shape of {param}')")
            lines.append(f"{naming.TAPE_MODULE}.add_into({naming.shadow(param)}, {value})")
        else:
            adjoints[position] = value
    return lines, adjoints


def _rule_adjoint_types(wrapper: CustomVJP, types: tuple) -> tuple:
    """(return type of the rule for argument ``types`` (g, z, args...), type of each adjoint)."""
    func = python_function(wrapper.rule)
    try:
        _, returned = typeinfer.infer(func, types)
    except numba_errors.NumbaError as exc:
        raise _numba_error(func, exc, f"custom rule '{func.__name__}'") from None
    count = len(wrapper.parameters)
    per_argument = list(returned.types) if isinstance(returned, nbtypes.BaseTuple) else [returned]
    if len(per_argument) != count:
        got = f"a tuple of {len(per_argument)}" if isinstance(returned, nbtypes.BaseTuple) \
            else "one value"
        raise _rule_error(func, wrapper, f"returns {got} but {wrapper.__name__}() takes {count} "
                          f"argument{'s' if count != 1 else ''} ({', '.join(wrapper.parameters)}): "
                          "return one adjoint per argument, in order (None where there is none)",
                          line=_return_line(func))
    return returned, per_argument


def _check_adjoint_type(wrapper: CustomVJP, param: str, argtype, adjoint) -> None:
    func = python_function(wrapper.rule)
    if typeinfer.is_array(argtype):
        if not (typeinfer.is_array(adjoint) and adjoint.ndim == argtype.ndim
                and isinstance(adjoint.dtype, (nbtypes.Float, nbtypes.Integer))):
            raise _rule_error(func, wrapper, f"returns {adjoint} as the adjoint of the array "
                              f"argument '{param}' ({argtype}): return an array of its shape",
                              line=_return_line(func))
    elif not isinstance(adjoint, (nbtypes.Float, nbtypes.Integer)):
        raise _rule_error(func, wrapper, f"returns {adjoint} as the adjoint of the scalar "
                          f"argument '{param}': return a number", line=_return_line(func))


def _result_type(wrapper: _Wrapper, argtypes: tuple):
    try:
        return typeinfer.infer(wrapper.py_func, argtypes)[1]
    except numba_errors.NumbaError as exc:
        raise _numba_error(wrapper.py_func, exc, f"function '{wrapper.__name__}'") from None


def _reads_result(rule) -> bool:
    """Whether the rule reads its second parameter ``z`` (True when its source is unknown)."""
    func = python_function(rule)
    tree = _tree(func)
    if tree is None:
        return True
    z = [a.arg for a in tree.args.args][1]
    return any(isinstance(n, ast.Name) and n.id == z for n in ast.walk(tree))


def _refuse_argument_writes(wrapper: _Wrapper) -> None:
    """Refuse a wrapped function that stores into its parameters (or names bound to them)."""
    func = wrapper.py_func
    tree = _tree(func)
    if tree is None:
        return
    bound = set(wrapper.parameters)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) \
                and node.value.id in bound:
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AugAssign) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
                    and target.value.id in bound:
                kind = "custom_vjp" if isinstance(wrapper, CustomVJP) else "non_differentiable"
                raise AutodiffError(
                    f"a {kind} function must not write into its array arguments, but "
                    f"'{ast.unparse(target)}' does: work on a copy", construct=f"{kind} function "
                    "writing its argument", lineno=node.lineno, filename=func.__code__.co_filename,
                    function=func.__name__)


def _tree(func) -> ast.FunctionDef | None:
    """The ``def`` of ``func`` numbered as in its file, or None without source."""
    try:
        lines, first = inspect.getsourcelines(func)
    except (OSError, TypeError):
        return None
    try:
        module = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:
        return None
    tree = module.body[0] if module.body else None
    if not isinstance(tree, ast.FunctionDef):
        return None
    ast.increment_lineno(tree, first - 1)
    return tree


def _return_line(func) -> int:
    tree = _tree(func)
    returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)] if tree else []
    return returns[-1].lineno if returns else func.__code__.co_firstlineno


def _signature(func) -> str:
    return ", ".join(inspect.signature(func).parameters)


def _rule_error(func, wrapper: _Wrapper, problem: str, line: int | None = None) -> AutodiffError:
    return AutodiffError(f"custom rule '{func.__name__}' of {wrapper.__name__} {problem}",
                         construct=f"custom rule '{func.__name__}'", lineno=line,
                         filename=func.__code__.co_filename, function=func.__name__)


def _numba_error(func, exc: Exception, what: str) -> AutodiffError:
    """``exc`` (numba failing on ``func``) as an AutodiffError at the line of ``func`` it names."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    filename = func.__code__.co_filename
    loc = getattr(exc, "loc", None)
    line = getattr(loc, "line", None) if str(getattr(loc, "filename", "")) == filename else None
    for match in re.finditer(r'File "([^"]+)", line (\d+)', text):
        if line is None and match.group(1).endswith(filename.rsplit("/", 1)[-1]):
            line = int(match.group(2))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if reason.startswith("No implementation") and len(lines) > 1 and lines[1].startswith(">>>"):
        reason += " " + lines[1][3:].strip()
    return AutodiffError(f"numba cannot compile the {what}: {reason}", construct="numba typing",
                         lineno=line if line is not None else func.__code__.co_firstlineno,
                         filename=filename, function=func.__name__)


def _identifier(name: str, fallback: str) -> str:
    """``name`` if generated code can use it (not ``<lambda>``), else ``fallback``."""
    return name if name.isidentifier() else fallback
