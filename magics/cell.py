"""The layer the cell magics share: running a cell's body, naming what it derives, options,
short errors.

The body of a cell magic runs as ordinary code in the user namespace. It is registered in ``linecache`` through IPython's compiler, so that ``inspect.getsource``
finds the functions it defines (nbautodiff reads their source) and tracebacks show its lines.
The registered text starts with the magic line as a comment: line numbers, ``co_firstlineno``
and the ``lineno`` of errors then count from the cell's first line, the ``%%magic`` line, the
same numbering as the notebook shows.
"""
from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from nbautodiff import cache
from nbautodiff.errors import AutodiffError, CellAutodiffError

DEFAULT_TEMPLATE = "{name}_{kind}"        # --name: the derivative of f is f_grad, its batch f_batch


def parse_options(magic, line: str):
    """``parse_argstring(magic, line)``, with an unknown option answered by the nearest ones
    the magic has: ``UsageError: %%autodiff: unknown option --chek; did you mean --check?``."""
    try:
        return parse_argstring(magic, line)
    except UsageError as error:
        message = str(error)
        if not message.startswith("unrecognized arguments:"):
            raise
        known = sorted(magic.parser._option_string_actions)
        unknown = [token for token in message.split(":", 1)[1].split()
                   if token.startswith("-") and token not in known]
        if not unknown:
            raise
        name = magic.__name__
        hints = []
        for token in unknown:
            close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.75)
            hints.append(f"unknown option {token}" + (
                f"; did you mean {close[0]}?" if close else ""))
        raise UsageError(f"%%{name}: " + "; ".join(hints)
                         + f" (%%{name} --help lists the options)") from None


@dataclass(frozen=True)
class CellRun:
    """What running a cell produced: the name its source is registered under and the names of
    the functions it defines at top level, in order of definition."""

    filename: str
    functions: tuple


def run_cell_body(shell, magic: str, line: str, body: str) -> CellRun:
    """Execute ``body`` (the cell below ``%%magic line``) in ``shell``'s user namespace."""
    text = f"# %%{magic} {line}".rstrip() + "\n" + shell.transform_cell(body)
    filename = shell.compile.cache(text, shell.execution_count, raw_code=text)
    tree = shell.compile.ast_parse(text, filename=filename)
    shell.ex(shell.compile(tree, filename, "exec"))
    return CellRun(filename=filename, functions=top_level_functions(tree))


def cell_objects(shell, run: CellRun | None, chosen=()) -> list:
    """The functions the cell ``run`` defined (as bound in ``shell``'s namespace now), then
    ``chosen`` (those a magic works on, which may come from earlier cells)."""
    defined = [shell.user_ns[name] for name in (run.functions if run else ())
               if name in shell.user_ns]
    return defined + list(chosen)


def forced_if(force: bool, functions=()):
    """With ``force`` (``--force``): everything the magic builds is built and compiled again,
    replacing the cached entries (:func:`nbautodiff.cache.forced`), and so is what is built
    later for ``functions``, the cell's (:func:`nbautodiff.cache.force_functions`)."""
    if not force:
        return contextlib.nullcontext()
    cache.force_functions(functions)
    return cache.forced()


def top_level_functions(tree: ast.Module) -> tuple:
    """Names bound by ``def`` at the top level of ``tree``, each once, in order."""
    names = [node.name for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return tuple(dict.fromkeys(names))


def derived_name(template: str, fname: str, kind: str, count: int) -> str:
    """The name ``--name`` ``template`` gives the ``kind`` derived from ``fname`` (one of
    ``count`` functions derived by the cell); a UsageError when it is not a Python name or
    cannot tell the functions apart."""
    try:
        name = template.format(name=fname, kind=kind)
    except (KeyError, IndexError, ValueError) as error:
        raise UsageError(f"--name {template!r}: not a template with {{name}} and {{kind}} "
                         f"({error})") from None
    if not name.isidentifier():
        raise UsageError(f"--name {template!r} gives {name!r}, not a Python name")
    if count > 1 and "{name}" not in template:
        raise UsageError(f"--name {template!r} has no {{name}}, but {count} functions are derived")
    return name


def parameters(fun) -> list:
    """The parameter names of ``fun`` (of its ``py_func`` for a dispatcher or a wrapper)."""
    return list(inspect.signature(getattr(fun, "py_func", fun)).parameters)


def split(values) -> list:
    """Option values given space and/or comma separated, as one flat list."""
    return [item for value in values or () for item in value.split(",") if item]


@contextmanager
def short_errors(shell, derived: str, cell_filename: str | None, fun):
    """Turn an AutodiffError into a :class:`CellAutodiffError`: a short message with the line
    of the cell (or of the earlier cell or file it is about), no traceback."""
    def file_label(filename: str) -> str:
        if filename == cell_filename:
            return "the cell"
        named = shell.compile.format_code_name(filename)
        return named[1] if named else filename

    try:
        yield
    except CellAutodiffError:
        raise
    except AutodiffError as error:
        raise CellAutodiffError(error, derived, _code_filename(fun), file_label) from None


def example_arguments(shell, words, option: str) -> tuple:
    """The example arguments of ``option`` (``--check``, ``--compare``): ``words`` evaluated as
    one expression in the user namespace, a tuple (one value becomes a 1-tuple)."""
    expression = " ".join(words)
    try:
        example = shell.ev(expression)
    except Exception as error:
        raise UsageError(f"{option} {expression}: {type(error).__name__}: {error}") from None
    return example if isinstance(example, tuple) else (example,)


def user_function(shell, name: str, option: str = "--func"):
    """The callable ``name`` of the user namespace, or a UsageError naming ``option``."""
    try:
        fun = shell.user_ns[name]
    except KeyError:
        raise UsageError(f"{option} {name}: no such name in the namespace") from None
    if not callable(fun):
        raise UsageError(f"{option} {name}: {type(fun).__name__} is not a function")
    return fun


def _code_filename(fun):
    code = getattr(getattr(fun, "py_func", fun), "__code__", None)
    return code.co_filename if code is not None else None
