"""The layers of nbautodiff and the imports between them: ``python -m nbautodiff._layout``.

The package is a pipeline, and its folders are its stages, lowest first (:data:`LAYERS`). A
module may import modules of its own layer and of the layers below it, never above, and the
imports form no circle (a function-level import counts like any other). ``tests/test_layout.py``
holds the tree to this; run as a script, this module prints each layer with its modules and
the layers each one imports.
"""
from __future__ import annotations

import ast
import importlib.util
import itertools
import sys
from pathlib import Path

PACKAGE = "nbautodiff"

#: (layer, what it holds), lowest first; a module's layer is its sub-package, or for a module at
#: the top of the package (and the runtime kernels) "foundation", the package itself "public".
LAYERS = (
    ("foundation", "errors, the rules table, names, code helpers, the artifact cache, runtime kernels"),
    ("frontend", "a function's source to a normalised syntax tree"),
    ("analysis", "types, activity, aliasing, tuples, parallel loops"),
    ("transforms", "reverse, forward, batching, lanes, offloading, dead code, BLAS raising"),
    ("pipeline", "the passes each artifact goes through, the artifacts, custom rules' variants"),
    ("api", "grad, jvp, vjp, reverse, forward, batch, offload and their activities"),
    ("checks", "gradient checks, pitfall detectors, replays, reports"),
    ("public", "the package's public names (nbautodiff/__init__.py)"),
    ("magics", "the IPython magics, on the public names"),
)
#: The one import against the layers, by necessity: ``%load_ext nbautodiff`` calls the package's
#: ``load_ipython_extension``, which hands over to the magics (imported on that call only).
ENTRY_POINTS = {("nbautodiff", "nbautodiff.magics")}
_RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def package_root() -> Path:
    return Path(__file__).resolve().parent


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (``nbautodiff.frontend.source``), with its file.
    The magics and kernels live in folders of their own beside the package (see pyproject.toml)."""
    found = {}
    for package, folder in ((PACKAGE, package_root()),
                            *((f"{PACKAGE}.{name}", _folder_of(f"{PACKAGE}.{name}"))
                              for name in ("kernels", "magics"))):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[0] in ("kernels", "magics") and package == PACKAGE:
                continue                        # an editable install's links, if any
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _folder_of(package: str) -> Path:
    return Path(importlib.util.find_spec(package).submodule_search_locations[0])


def layer_of(module: str) -> str:
    """The layer of a dotted module name of the package."""
    parts = module.split(".")
    if len(parts) == 1:
        return "public"
    if parts[1] == "kernels" or len(parts) == 2:
        return "foundation" if parts[1] not in _RANK else parts[1]
    return parts[1]


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                origin = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and target.split(".")[0] == PACKAGE:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``, less the :data:`ENTRY_POINTS`."""
    found = modules()
    known = set(found)
    return {module: imports(module, path, known) - {b for a, b in ENTRY_POINTS if a == module}
            for module, path in found.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where the imported module sits in a higher layer."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if _RANK[layer_of(b)] > _RANK[layer_of(a)])


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = itertools.count()

    def visit(node):
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(edges: dict[str, set[str]]) -> str:
    """Each layer, its modules, and the layers they import (the arrows)."""
    lines = []
    for name, what in LAYERS:
        members = sorted(m for m in edges if layer_of(m) == name)
        arrows = sorted({layer_of(t) for m in members for t in edges[m]} - {name},
                        key=_RANK.get)
        lines.append(f"{name}: {what}")
        lines.append(f"  imports: {', '.join(arrows) or '-'}")
        lines.append("  " + ", ".join(m.removeprefix(PACKAGE + ".") for m in members))
    problems = [f"upward: {a} -> {b}" for a, b in upward_imports(edges)]
    problems += ["circle: " + " <-> ".join(c) for c in circles(edges)]
    return "\n".join(lines + (problems or ["no upward import, no circle"]))


if __name__ == "__main__":
    print(describe(graph()))
