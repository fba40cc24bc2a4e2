"""From a function object to its syntax tree, with the user's own line numbers.

The contract: :func:`function_source` returns the ``def`` of a plain Python function or of a
numba dispatcher (through ``.py_func``), decorators removed, every node numbered as in the
file or notebook cell where it was written. :func:`resolve` looks a name or a dotted attribute
chain up in the function's closure, globals and builtins.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
from dataclasses import dataclass, field

from .errors import AutodiffError, SourceNotFoundError

MISSING = object()


@dataclass(eq=False)
class FunctionSource:
    """A user function ready for the transforms."""

    func: types.FunctionType
    tree: ast.FunctionDef
    filename: str
    closure: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.func.__name__

    @property
    def globals(self) -> dict:
        return self.func.__globals__

    @property
    def parameters(self) -> list[str]:
        return [a.arg for a in self.tree.args.args]

    def error(self, message: str, node: ast.AST | None = None, *, construct: str | None = None,
              kind: type[AutodiffError] = AutodiffError) -> AutodiffError:
        """An error located at ``node`` of this function (its line in the user's source)."""
        return kind(message, construct=construct, lineno=getattr(node, "lineno", None),
                    filename=self.filename, function=self.name)


def python_function(obj) -> types.FunctionType:
    """The plain Python function behind ``obj`` (itself, or a numba dispatcher's ``py_func``)."""
    py_func = getattr(obj, "py_func", None)
    if isinstance(py_func, types.FunctionType):
        return py_func
    if isinstance(obj, types.FunctionType):
        return obj
    raise AutodiffError(f"{obj!r} is not a Python function or a numba dispatcher; "
                        "only functions with Python source can be differentiated")


_cache: dict[types.FunctionType, tuple[object, FunctionSource]] = {}


def function_source(obj) -> FunctionSource:
    """Parse the source of ``obj``; raises :class:`SourceNotFoundError` where there is none."""
    func = python_function(obj)
    cached = _cache.get(func)
    if cached is not None and cached[0] is func.__code__:
        return cached[1]
    try:
        lines, first_line = inspect.getsourcelines(func)
        filename = inspect.getsourcefile(func) or func.__code__.co_filename
    except (OSError, TypeError) as exc:
        raise SourceNotFoundError(
            f"cannot find the source of function '{func.__qualname__}' ({exc}); define it in a "
            "file or a notebook cell, not with exec() or at an interactive prompt without history",
            function=func.__name__) from None
    module = ast.parse(textwrap.dedent("".join(lines)))
    tree = module.body[0] if module.body else None
    if isinstance(tree, ast.AsyncFunctionDef):
        raise AutodiffError("async functions cannot be differentiated", construct="async def",
                            lineno=first_line, filename=filename, function=func.__name__)
    if not isinstance(tree, ast.FunctionDef):
        raise SourceNotFoundError(
            f"the source of '{func.__qualname__}' is not a 'def' statement (a lambda?); "
            "define it with def", lineno=first_line, filename=filename, function=func.__name__)
    ast.increment_lineno(tree, first_line - 1)
    tree.decorator_list = []
    closure = {}
    if func.__closure__:
        for name, cell in zip(func.__code__.co_freevars, func.__closure__):
            closure[name] = cell.cell_contents
    fs = FunctionSource(func=func, tree=tree, filename=filename, closure=closure)
    _cache[func] = (func.__code__, fs)
    return fs


def register(fs: FunctionSource) -> None:
    """Make :func:`function_source` answer ``fs`` for ``fs.func``: for functions the transforms
    make themselves (lifted inner functions), which have no source file of their own."""
    _cache[fs.func] = (fs.func.__code__, fs)


def dotted_parts(node: ast.expr) -> list[str] | None:
    """``np.linalg.norm`` -> ['np', 'linalg', 'norm']; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def resolve(fs: FunctionSource, node: ast.expr):
    """The object a name or attribute chain refers to in ``fs``'s scope, or :data:`MISSING`."""
    parts = dotted_parts(node)
    if parts is None:
        return MISSING
    head = parts[0]
    if head in fs.closure:
        value = fs.closure[head]
    elif head in fs.globals:
        value = fs.globals[head]
    elif hasattr(builtins, head):
        value = getattr(builtins, head)
    else:
        return MISSING
    for attr in parts[1:]:
        value = getattr(value, attr, MISSING)
        if value is MISSING:
            return MISSING
    return value
