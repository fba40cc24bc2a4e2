"""The README and the docstrings name only paths and modules that exist.

Every ``nbautodiff/...py``, ``kernels/...py`` and ``magics/...py`` path, every dotted name
``nbautodiff.x.y`` and every relative Sphinx reference (``:mod:`.cache```) written in README.md
or in the package's sources must name a file, a module, or an attribute of a module that exists.
A move or a rename then cannot leave stale text behind.
"""
from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path

import pytest

from nbautodiff import _layout

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"(?<![\w/.])((?:nbautodiff|kernels|magics|tests|benchmarks)/[\w/]*\w+\.py)\b")
DOTTED = re.compile(r"(?<![\w.])(nbautodiff(?:\.\w+)+)")
RELATIVE = re.compile(r":(?:mod|func|class|meth|attr|data|exc):`~?(\.+[\w.]*\w)`")

#: Stale references in nbautodiff/api/, which another change (a Derivative base, the JAX
#: surface) rewrites as this test lands; they are tolerated here, nothing else is.
KNOWN_IN_API = {
    ("nbautodiff/api/forward.py", ".grad (= nbautodiff.api.grad)"),
    ("nbautodiff/api/reverse.py", ".grad (= nbautodiff.api.grad)"),
    ("nbautodiff/api/offload.py", "nbautodiff.kernels.gpu.MultiRuntime"),
    ("nbautodiff/api/offload.py", ".cache (= nbautodiff.api.cache)"),
}


def _texts():
    yield "README.md", None, (ROOT / "README.md").read_text()
    for module, path in _layout.modules().items():
        yield str(path.relative_to(path.parents[len(module.split(".")) - 1])), module, \
            path.read_text()


def _path_exists(path: str) -> bool:
    return (ROOT / path).is_file()


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or an attribute (chain) of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            value = importlib.import_module(name)
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(value, attr):
                return False
            value = getattr(value, attr)
        return True
    return False


def _absolute(reference: str, module: str, is_package: bool) -> str:
    dots = len(reference) - len(reference.lstrip("."))
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (dots - 1)]
    rest = reference[dots:]
    return ".".join(base + ([rest] if rest else []))


@functools.lru_cache(maxsize=1)
def _references():
    found = []
    for where, module, text in _texts():
        for path in PATH.findall(text):
            found.append((where, path, _path_exists(path)))
        for dotted in DOTTED.findall(text):
            found.append((where, dotted, _resolves(dotted)))
        if module is not None:
            is_package = where.endswith("__init__.py")
            for reference in RELATIVE.findall(text):
                target = _absolute(reference, module, is_package)
                found.append((where, f"{reference} (= {target})", _resolves(target)))
    return tuple(found)


def test_the_scan_sees_references_and_catches_a_stale_one():
    found = _references()
    assert len(found) > 100
    assert not _path_exists("nbautodiff/kernels/vecmath.py")     # the stale path of issue 19
    assert _path_exists("kernels/vecmath.py")
    assert not _resolves("nbautodiff.program") and _resolves("nbautodiff.pipeline.program.primal")
    assert _absolute(".cache", "nbautodiff.emit", False) == "nbautodiff.cache"
    assert _absolute("..checks", "nbautodiff.api.reverse", False) == "nbautodiff.checks"


@pytest.mark.parametrize("where", sorted({where for where, _, _ in _references()}))
def test_every_named_path_and_module_exists(where):
    stale = [name for w, name, ok in _references()
             if w == where and not ok and (w, name) not in KNOWN_IN_API]
    assert stale == []
