"""Artifacts of custom derivatives: the compiled primal of a wrapper and its derivative variants.

The wrappers are declared in :mod:`nbautodiff.frontend.declarations` (``custom_vjp``,
``non_differentiable``). :mod:`nbautodiff.pipeline.program` asks this module for their primal
(the original function compiled by ``numba.njit``, called by every primal, also from the user's
own ``numba.njit`` code, through the ``typeof`` registered here) and their reverse and forward
variants (generated code that calls the rule, compiled by numba, with the calling convention of
any reverse or forward variant).

Contract on the wrapped function: it must not write into its array arguments (direct stores
are refused); its rule sees the arguments and the result as they were when it was called.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import threading

import numba
from numba import types as nbtypes
from numba.core import errors as numba_errors
from numba.extending import typeof_impl

from nbautodiff import cache, emit, naming
from nbautodiff.analysis import tuples, typeinfer
from nbautodiff.codegen import parameters
from nbautodiff.errors import AutodiffError, numba_locations, numba_reason
from nbautodiff.frontend.source import python_function
from nbautodiff.kernels import tape as tape_module

from nbautodiff.frontend.declarations import CustomVJP, NonDifferentiable, Wrapper, rule_error
from .artifacts import ForwardVariant, Variant

_lock = threading.RLock()


@typeof_impl.register(Wrapper)
def _typeof_wrapper(wrapper, context):
    """In numba-compiled code a wrapper is its original function (compiled)."""
    return nbtypes.Dispatcher(primal(wrapper).dispatcher)


# ---- artifacts -------------------------------------------------------------------------------

class WrappedPrimal:
    """The primal of a wrapper, as :mod:`nbautodiff.pipeline.program` uses callee primals; made for the
    wrapper's rules of the moment (``rules``), so that variants keyed by it follow a new rule."""

    def __init__(self, wrapper: Wrapper, dispatcher=None):
        fun = wrapper.fun
        if dispatcher is None:                   # the function compiled, or its own dispatcher
            dispatcher = numba.njit(fun) if fun is wrapper.py_func else fun
        self.dispatcher = dispatcher
        self.py_func = wrapper.py_func
        self.writes: set[int] = set()            # refused by _refuse_argument_writes
        self.rules = _rules(wrapper)
        self.key = cache.key("wrapped primal", wrapper)   # its function's and rules' sources


def _rules(wrapper: Wrapper) -> tuple:
    return getattr(wrapper, "rule", None), getattr(wrapper, "tangent_rule", None)


def primal(wrapper: Wrapper) -> WrappedPrimal:
    """The compiled original function of ``wrapper`` (built once, and again for new rules:
    callers see the change too, see :mod:`nbautodiff.pipeline.module_state`)."""
    with _lock:
        if wrapper._primal is None:
            _refuse_argument_writes(wrapper)
        previous = wrapper._primal
        if previous is None or previous.rules != _rules(wrapper):
            wrapper._primal = WrappedPrimal(wrapper, previous and previous.dispatcher)
        return wrapper._primal


def reverse_variant(wrapper: Wrapper, argtypes: tuple, active: list[bool], result_active: bool,
                    keep_value: bool):
    """A reverse variant of ``wrapper`` (a :class:`nbautodiff.pipeline.program.Variant`) calling its rule.

    Same calling convention as the variants of :func:`nbautodiff.pipeline.program.reverse_variant`:
    ``(args with a shadow after each active array..., seed if result_active)`` returning
    ``(result or None, adjoints of the active scalar arguments..., (tape bytes, checkpoint
    bytes))``. A
    :class:`NonDifferentiable`, or a call whose result is not seeded, contributes nothing."""
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


def _generate_reverse(wrapper: Wrapper, argtypes: tuple, active: list[bool],
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
            raise rule_error(rule_func, wrapper, "cannot be used: the function returns a "
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


def forward_variant(wrapper: Wrapper, argtypes: tuple, duals: list[bool], result_dual: bool,
                    width: int):
    """A forward variant of ``wrapper`` (a :class:`nbautodiff.pipeline.program.ForwardVariant`) calling
    its tangent rule once per direction, with the calling convention of the variants of
    :func:`nbautodiff.pipeline.program.forward_variant`. A :class:`NonDifferentiable` has no tangent
    (its result is not dual); a :class:`CustomVJP` without a tangent rule is refused."""
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
        raise rule_error(func, wrapper, "cannot be used: the function returns a tuple, and "
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
        raise rule_error(func, wrapper, f"returns {returned} as the tangent of a result of type "
                          f"{result_type}: return {'an array of its shape' if typeinfer.is_array(result_type) else 'a number'}",
                          line=_return_line(func))


def _rule_of(wrapper: Wrapper):
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
        raise rule_error(func, wrapper, f"returns {got} but {wrapper.__name__}() takes {count} "
                          f"argument{'s' if count != 1 else ''} ({', '.join(wrapper.parameters)}): "
                          "return one adjoint per argument, in order (None where there is none)",
                          line=_return_line(func))
    return returned, per_argument


def _check_adjoint_type(wrapper: CustomVJP, param: str, argtype, adjoint) -> None:
    func = python_function(wrapper.rule)
    if typeinfer.is_array(argtype):
        if not (typeinfer.is_array(adjoint) and adjoint.ndim == argtype.ndim
                and isinstance(adjoint.dtype, (nbtypes.Float, nbtypes.Integer))):
            raise rule_error(func, wrapper, f"returns {adjoint} as the adjoint of the array "
                              f"argument '{param}' ({argtype}): return an array of its shape",
                              line=_return_line(func))
    elif not isinstance(adjoint, (nbtypes.Float, nbtypes.Integer)):
        raise rule_error(func, wrapper, f"returns {adjoint} as the adjoint of the scalar "
                          f"argument '{param}': return a number", line=_return_line(func))


def _result_type(wrapper: Wrapper, argtypes: tuple):
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
    z = parameters(tree)[1]
    return any(isinstance(n, ast.Name) and n.id == z for n in ast.walk(tree))


def _refuse_argument_writes(wrapper: Wrapper) -> None:
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


def _numba_error(func, exc: Exception, what: str) -> AutodiffError:
    """``exc`` (numba failing on ``func``) as an AutodiffError at the line of ``func`` it names."""
    filename = func.__code__.co_filename
    loc = getattr(exc, "loc", None)
    line = getattr(loc, "line", None) if str(getattr(loc, "filename", "")) == filename else None
    if line is None:
        line = next((n for path, n in numba_locations(exc)
                     if path.endswith(filename.rsplit("/", 1)[-1])), None)
    return AutodiffError(f"numba cannot compile the {what}: {numba_reason(exc)}",
                         construct="numba typing",
                         lineno=line if line is not None else func.__code__.co_firstlineno,
                         filename=filename, function=func.__name__)


def _identifier(name: str, fallback: str) -> str:
    """``name`` if generated code can use it (not ``<lambda>``), else ``fallback``."""
    return name if name.isidentifier() else fallback
