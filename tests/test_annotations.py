"""Node annotations go through one module, nbautodiff.annotations (Tangent's annotations.py model)."""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest

from nbautodiff import _layout
from nbautodiff import annotations as anno


def test_set_get_has_and_copies():
    call = ast.parse("f(x)", mode="eval").body
    assert not anno.has(call, anno.KIND)
    assert anno.get(call, anno.KIND, None) is None
    with pytest.raises(AttributeError):
        anno.get(call, anno.KIND)
    anno.set(call, anno.KIND, "user")
    anno.set(call, anno.TARGET, len)
    assert anno.has(call, anno.KIND) and anno.get(call, anno.KIND) == "user"
    copied = copy.deepcopy(call)                  # the transforms copy trees before changing them
    assert anno.get(copied, anno.KIND) == "user" and anno.get(copied, anno.TARGET) is len
    assert [name for name, _ in anno.items(call)] == ["nad_kind", "nad_target"]


def test_only_declared_keys():
    with pytest.raises(KeyError, match="not an annotation key"):
        anno.set(ast.Pass(), anno.Key("kind", "a key declared elsewhere"), 1)
    for key in anno.KEYS.values():
        assert key.doc.strip(), key.name


def test_no_module_touches_annotation_attributes_directly():
    """Every annotation is read and written through nbautodiff.annotations: no other module
    spells one of their attribute names (``nad_kind``, ``nad_in_place``...)."""
    attributes = "|".join(key.attribute for key in anno.KEYS.values())
    offenders = []
    for module, path in _layout.modules().items():
        if module == "nbautodiff.annotations":
            continue
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            if re.search(rf"\b({attributes})\b", line):
                offenders.append(f"{module}:{number}: {line.strip()}")
    assert offenders == []
