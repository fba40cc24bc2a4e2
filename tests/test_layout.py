"""The package's layout holds: layers import only downwards, no import circles, the README says so.

See ``nbautodiff/_layout.py`` (``python -m nbautodiff._layout`` prints the layers and arrows).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from nbautodiff import _layout

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_imports_a_higher_layer():
    assert _layout.upward_imports(_layout.graph()) == []


def test_the_imports_form_no_circle():
    assert _layout.circles(_layout.graph()) == []


def test_every_module_belongs_to_a_layer():
    names = {name for name, _ in _layout.LAYERS}
    assert {_layout.layer_of(m) for m in _layout.graph()} <= names


def test_the_checker_sees_upward_imports_and_circles():
    """The checks themselves can fail: a made-up graph with one of each is caught."""
    edges = {"nbautodiff.frontend.a": {"nbautodiff.api.b"}, "nbautodiff.api.b": {"nbautodiff.api.c"},
             "nbautodiff.api.c": {"nbautodiff.api.b"}}
    assert _layout.upward_imports(edges) == [("nbautodiff.frontend.a", "nbautodiff.api.b")]
    assert _layout.circles(edges) == [["nbautodiff.api.b", "nbautodiff.api.c"]]


def test_function_level_imports_count(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ..api import reverse\n    return reverse\n")
    found = _layout.imports("nbautodiff.frontend.m", module,
                            {"nbautodiff.api", "nbautodiff.api.reverse"})
    assert found == {"nbautodiff.api.reverse"}


def test_the_readme_layout_table_names_every_folder_and_module():
    """The README's layout table lists each sub-package with its modules, as the tree has them."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("<!-- layout: begin -->"):readme.index("<!-- layout: end -->")]
    for module, path in _layout.modules().items():
        if path.name == "__init__.py":
            continue
        parts = module.split(".")
        if len(parts) == 3 and parts[1] not in ("kernels", "magics"):
            assert re.search(rf"`{parts[1]}/`[^\n]*\b{parts[2]}\b", table), module
        elif len(parts) == 4:
            assert re.search(rf"`{parts[1]}/{parts[2]}/`[^\n]*\b{parts[3]}\b", table), module


def test_the_command_prints_the_layers():
    out = subprocess.run([sys.executable, "-m", "nbautodiff._layout"], capture_output=True,
                         text=True, check=True).stdout
    for name, _ in _layout.LAYERS:
        assert f"{name}:" in out
    assert "no upward import, no circle" in out
