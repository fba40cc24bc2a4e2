"""The ``%%autodiff`` cell magic: run a cell, then push derivatives of its functions.

Naming rule: the derivative of ``f`` is named ``{name}_{kind}`` with ``name`` the function's
name and ``kind`` ``grad`` (``nbautodiff.grad``, the default) or ``rev`` (``nbautodiff.reverse``,
when ``--activities`` are given): ``f_grad``, ``f_rev``; with ``--mode forward``, ``fwd``
(``nbautodiff.forward``: the ``--wrt`` arguments Dual, the others Const, or the
``--activities`` given): ``f_fwd``. ``--name`` replaces the template.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbautodiff import progress
from nbautodiff.api import forward as forward_api, reverse as api
from nbautodiff.api.activities import (REVERSE_ARGUMENT, REVERSE_RETURN, Active, Const, Dual,
                                       DualOnly, as_activity)
from nbautodiff.checks.check import check_grad, gradient_of_reverse
from nbautodiff.errors import AutodiffError, SourceNotFoundError, UnsupportedConstructError
from nbautodiff.frontend import checkpoint_markers as checkpoint, declarations as custom
from .cell import (DEFAULT_TEMPLATE, cell_objects, derived_name, example_arguments, forced_if,
                   parameters, parse_options, run_cell_body, short_errors, split, user_function)
from .output import AutodiffResult, Derived
from .progress_bar import display_for



@magics_class
class AutodiffMagics(Magics):
    """``%%autodiff``, registered by ``%load_ext nbautodiff``."""

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help and do nothing else")
    @argument("-f", "--func", nargs="+", metavar="NAME",
              help="functions to differentiate (names, space or comma separated; default: "
                   "every function the cell defines at top level)")
    @argument("-w", "--wrt", nargs="+", metavar="ARG",
              help="arguments to differentiate, by name (default: the first argument)")
    @argument("-m", "--mode", choices=("reverse", "forward"), default="reverse",
              help="AD mode: reverse (the default: {name}_grad = nbautodiff.grad, or "
                   "{name}_rev = nbautodiff.reverse with --activities) or forward "
                   "({name}_fwd = nbautodiff.forward, the --wrt arguments Dual and the others "
                   "Const, or the --activities given: Const, Dual, DualOnly, Dualv)")
    @argument("-a", "--activities", nargs="+", metavar="ACTIVITY",
              help="Rust-style activity of each argument, in order, among Const, Active, "
                   "Duplicated, DuplicatedOnly: derives {name}_rev = nbautodiff.reverse(f, ...) "
                   "instead of {name}_grad")
    @argument("-r", "--ret", default=None, metavar="ACTIVITY",
              help="activity of the return value with --activities: in reverse mode Active "
                   "(default), Const or DuplicatedOnly; in forward mode Dual (default), "
                   "DualOnly or Const")
    @argument("-n", "--name", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
              help="name of each derivative, a str.format template with {name} (the "
                   "function's name) and {kind} (grad, rev or fwd); default: {name}_{kind}")
    @argument("-s", "--show", action="store_true",
              help="display the generated derivative source")
    @argument("-c", "--check", nargs="+", metavar="EXPR",
              help="example arguments, a Python expression evaluated in the user namespace "
                   "(a tuple, or one value for a single argument): display a gradient check "
                   "against central differences, as a table and a plot")
    @argument("--checkpoint", nargs="?", const="sqrt", default=None, metavar="SCHEDULE",
              help="checkpoint the outermost loops that need a tape (memory O(N sqrt(T)) for T "
                   "steps of an N-element state instead of O(N T)): sqrt (the default), a "
                   "segment length K, binomial or binomial:S (S snapshots); the tape and "
                   "checkpoint sizes of the --check call are shown")
    @argument("--custom", nargs="+", metavar="F=RULE",
              help="declare RULE the reverse rule of function F (nbautodiff.custom_vjp), used "
                   "wherever differentiated code calls F: RULE(g, z, *args) receives the adjoint "
                   "g of F's result, the result z and F's arguments, and returns one adjoint per "
                   "argument (a tuple for several, None for none). F is replaced in the "
                   "namespace by the declared function; RULE itself is not derived")
    @argument("--nondiff", nargs="+", metavar="F",
              help="declare function F non-differentiable (nbautodiff.non_differentiable): "
                   "calls to it from differentiated code contribute no derivative, its result "
                   "is a constant. F is replaced in the namespace and is not derived itself")
    @argument("--force", action="store_true",
              help="derive and compile again, bypassing the artifact cache (nbautodiff.cache): "
                   "what this cell builds replaces the cached entries")
    @no_var_expand
    @line_cell_magic
    def autodiff(self, line, cell=None):
        """Run the cell, then derive its functions and push the derivatives into the namespace.

        The derivative of function f is named f_grad (nbautodiff.grad(f, argnums) for the
        arguments given by --wrt, the first by default) or, with --activities, f_rev
        (nbautodiff.reverse(f, *activities, ret=--ret)); with --mode forward, f_fwd
        (nbautodiff.forward(f, ...), the --wrt arguments Dual). Errors name the line of the cell,
        counting the %%autodiff line as line 1. As a line magic, %autodiff derives functions
        defined earlier, named with --func. --custom f=f_vjp and --nondiff g declare
        derivatives (nbautodiff.custom_vjp, nbautodiff.non_differentiable) before deriving.

        Example::

            %%autodiff --wrt p --check (p0, t, y) --show
            def loss(p, t, y):
                ...
        """
        args = parse_options(self.autodiff, line)
        if args.help:
            from IPython.display import Pretty
            return Pretty(self.autodiff.parser.format_help())
        options = _Options.parse(args, line_magic=cell is None)
        run = run_cell_body(self.shell, "autodiff", line, cell) if cell is not None else None
        not_derived = self._declare(args)
        cell_functions = [f for f in run.functions if f not in not_derived] if run else ()
        targets = self._targets(options, cell_functions)
        example = self._example(args.check) if args.check is not None else None

        cell_filename = run.filename if run is not None else None
        result = AutodiffResult()
        steps = len(targets) * (2 if example is not None else 1)
        with forced_if(options.force, cell_objects(self.shell, run, targets.values())), \
                progress.task(
                f"%%autodiff {', '.join(targets)}", steps, display_for(self.shell)) as task:
            for dname, fun in targets.items():
                with short_errors(self.shell, dname, cell_filename, fun):
                    task.step(f"deriving {dname}")
                    derived, summary, gradient, argnums = _derive(fun, options)
                    self.shell.user_ns[dname] = derived
                    check = None
                    if example is not None:
                        if gradient is None:
                            raise UsageError(
                                "--check needs a scalar result and an argument that is "
                                + ("Dual, DualOnly or Dualv, and --ret Dual or DualOnly"
                                   if options.mode == "forward" else "Active or Duplicated"))
                        task.step(f"compiling and checking {dname}")
                        check = check_grad(fun, *example, argnums=argnums, gradient=gradient)
                    source = _source(derived)
                result.derived.append(Derived(dname, derived, summary, check, args.show, source,
                                              getattr(derived, "memory", None)))
        return result

    def _targets(self, options, cell_functions) -> dict:
        """Derived name -> function to derive, for the functions chosen or defined in the cell."""
        names = options.functions or list(cell_functions)
        if not names:
            raise UsageError("the cell defines no function at top level; "
                             "define one or choose one with --func")
        if options.activities is not None and len(names) > 1:
            raise UsageError(f"--activities describe one function's arguments but {len(names)} "
                             f"are selected ({', '.join(names)}); choose one with --func")
        kind = "fwd" if options.mode == "forward" else \
            "grad" if options.activities is None else "rev"
        targets = {derived_name(options.template, fname, kind, len(names)): self._function(fname)
                   for fname in names}
        if len(targets) < len(names):
            raise UsageError(f"--name {options.template!r} gives several functions the same name")
        return targets

    def _example(self, words) -> tuple:
        return example_arguments(self.shell, words, "--check")

    def _function(self, name: str, option: str = "--func"):
        return user_function(self.shell, name, option)

    def _declare(self, args) -> set:
        """Apply ``--custom`` and ``--nondiff``: replace each function named in the namespace by
        its declared wrapper (made from the original function, so running a cell again
        declares afresh). Returns the names not to derive by default: rules, and functions
        declared non-differentiable."""
        not_derived = set()
        for item in split(args.custom):
            fname, equals, rname = item.partition("=")
            if not (equals and fname.isidentifier() and rname.isidentifier()):
                raise UsageError(f"--custom {item}: expected F=RULE, the names of a function "
                                 "and of its rule")
            fun, rule = self._function(fname, "--custom"), self._function(rname, "--custom")
            try:
                self.shell.user_ns[fname] = custom.custom_vjp(_undeclared(fun), rule)
            except AutodiffError as error:
                raise UsageError(f"--custom {item}: {error}") from None
            not_derived.add(rname)
        for fname in split(args.nondiff):
            fun = self._function(fname, "--nondiff")
            try:
                self.shell.user_ns[fname] = custom.non_differentiable(_undeclared(fun))
            except AutodiffError as error:
                raise UsageError(f"--nondiff {fname}: {error}") from None
            not_derived.add(fname)
        return not_derived


@dataclass(frozen=True)
class _Options:
    """The options of one ``%%autodiff`` run that say what to derive, checked."""

    functions: list
    wrt: list
    activities: list | None
    ret: object
    template: str
    force: bool
    checkpoint: object = None
    mode: str = "reverse"

    @classmethod
    def parse(cls, args, line_magic: bool) -> "_Options":
        if args.mode == "forward" and args.checkpoint is not None:
            raise UsageError("--checkpoint applies to reverse mode (forward mode keeps no tape "
                             "to checkpoint); leave it out with --mode forward")
        functions, wrt = split(args.func), split(args.wrt)
        activities, ret = _parse_activities(args)
        if activities is not None and wrt:
            raise UsageError("--wrt and --activities exclude each other: activities already say "
                             "which arguments are differentiated")
        if line_magic and not functions:
            raise UsageError("%autodiff (one %) derives functions defined earlier: name them "
                             "with --func, or use %%autodiff on a cell")
        try:
            schedule = checkpoint.parse_option(args.checkpoint)
        except AutodiffError as error:
            raise UsageError(f"--checkpoint: {error}") from None
        return cls(functions, wrt, activities, ret, args.name, args.force, schedule, args.mode)


def _source(derived):
    """The generated source of ``derived``, or None when it needs a first call.

    Before a first call the engine generates code for argument types guessed from the source;
    when that fails for lack of types the derivative may still be fine, but an unsupported
    construct is refused whatever the types, so that error is raised now, when the cell runs.
    """
    try:
        return derived.source
    except AutodiffError as error:
        cause = _innermost_autodiff_error(error)
        if isinstance(cause, (UnsupportedConstructError, SourceNotFoundError)):
            raise cause from None
        return None


def _innermost_autodiff_error(error: AutodiffError) -> AutodiffError:
    """The deepest AutodiffError in ``error``'s chain of causes and contexts."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if not isinstance(inner, AutodiffError) or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _derive(fun, options: _Options):
    """Derive ``fun``; return ``(derived, summary, gradient, argnums)`` where ``gradient`` is
    the function ``--check`` compares for ``argnums`` (None if there is nothing to check)."""
    if options.mode == "forward":
        return _derive_forward(fun, options)
    activities, ret = options.activities, options.ret
    if activities is None:
        argnums = _argnums(fun, options.wrt)
        derived = api.grad(fun, argnums=argnums, checkpoint=options.checkpoint)
        summary = f"gradient of {fun.__name__} w.r.t. {_describe(fun, argnums)}"
        return derived, summary, derived, argnums
    _require_arity(fun, activities)
    derived = api.reverse(fun, *activities, ret=ret, checkpoint=options.checkpoint)
    summary = (f"reverse derivative of {fun.__name__}({', '.join(map(repr, activities))}) "
               f"-> {ret!r}")
    gradient, argnums = gradient_of_reverse(derived, activities)
    if ret is not Active or not argnums:
        gradient = None
    return derived, summary, gradient, argnums


def _derive_forward(fun, options: _Options):
    """:func:`_derive` in forward mode: ``nbautodiff.forward(fun, ...)``; ``--check`` compares
    the gradient that forward mode computes (``nbautodiff.jacfwd``) for the Dual arguments."""
    activities, ret = options.activities, options.ret
    if activities is None:
        argnums = _argnums(fun, options.wrt)
        chosen = argnums if isinstance(argnums, tuple) else (argnums,)
        activities = [Dual if k in chosen else Const for k in range(len(parameters(fun)))]
    _require_arity(fun, activities)
    derived = forward_api.forward(fun, *activities, ret=ret)
    argnums = tuple(k for k, a in enumerate(activities) if a is not Const)
    summary = (f"forward derivative of {fun.__name__}({', '.join(map(repr, activities))}) "
               f"-> {ret!r}")
    if ret not in (Dual, DualOnly) or not argnums:
        return derived, summary, None, argnums
    argnums = argnums[0] if len(argnums) == 1 else argnums
    return derived, summary, _forward_gradient(fun, argnums), argnums


def _forward_gradient(fun, argnums):
    """The gradient of scalar-valued ``fun`` computed by forward mode, with the conventions of
    ``nbautodiff.grad`` (a float for a float argument, a tuple for a tuple ``argnums``)."""
    jacobian = forward_api.jacfwd(fun, argnums)

    def plain(block):
        return float(block) if np.ndim(block) == 0 else block

    def gradient(*args):
        blocks = jacobian(*args)
        return tuple(map(plain, blocks)) if isinstance(argnums, tuple) else plain(blocks)

    return gradient


def _parse_activities(args):
    forward = args.mode == "forward"
    if args.activities is None:
        return None, Dual if forward else None
    arguments, returns, mode = ((forward_api.FORWARD_ARGUMENT, (Dual, DualOnly, Const), "forward")
                                if forward else (REVERSE_ARGUMENT, REVERSE_RETURN, "reverse"))
    try:
        activities = [as_activity(a) for a in split(args.activities)]
        ret = as_activity(args.ret or ("Dual" if forward else "Active"))
    except AutodiffError as error:
        raise UsageError(str(error)) from None
    for a in activities:
        if a not in arguments:
            raise UsageError(f"activity {a!r} is not one of {mode} mode's "
                             f"{', '.join(map(repr, arguments))}")
    if ret not in returns:
        raise UsageError(f"--ret {ret!r} is not one of {mode} mode's "
                         f"{', '.join(map(repr, returns))}")
    return activities, ret


def _argnums(fun, wrt: list):
    params = parameters(fun)
    if not wrt:
        if not params:
            raise UsageError(f"{fun.__name__} takes no argument: nothing to differentiate")
        return 0
    missing = [w for w in wrt if w not in params]
    if missing:
        raise UsageError(f"--wrt {', '.join(missing)}: not an argument of "
                         f"{fun.__name__}({', '.join(params)})")
    argnums = tuple(params.index(w) for w in wrt)
    return argnums[0] if len(argnums) == 1 else argnums


def _require_arity(fun, activities) -> None:
    params = parameters(fun)
    if len(params) != len(activities):
        raise UsageError(f"{len(activities)} activities for {fun.__name__}({', '.join(params)}), "
                         f"which takes {len(params)} arguments")


def _describe(fun, argnums) -> str:
    params = parameters(fun)
    items = argnums if isinstance(argnums, tuple) else (argnums,)
    return ", ".join(params[k] for k in items)


def _undeclared(fun):
    """The original function of a function declared by nbautodiff.frontend.declarations, else ``fun``."""
    return fun.fun if custom.kind_of(fun) else fun
