"""Annotations on syntax-tree nodes: what one pass tells a later one about a node.

Tangent's ``annotations.py`` model. A pass that learns something about a node that its source
text does not say (which rule a call resolved to, that an assignment was ``A += ...``, which
schedule checkpoints a loop) records it with :func:`set`; a later pass reads it with
:func:`get` or :func:`has`. Every key is declared below, once, with what it means, the pass
that sets it and the passes that read it; nothing else annotates nodes.

An annotation is stored on its node (as the attribute ``nad_<key>``), so it survives
``copy.deepcopy`` of a tree, which the transforms do before changing one (its value is deep
copied too: a function object stays itself, a rule is copied), and a shallow ``copy.copy`` of
a node keeps it. :func:`nbautodiff.emit.annotations` lists a tree's annotations for the cache
key of a normalised function (what the transforms read beyond its text).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

_ATTRIBUTE_PREFIX = "nad_"
_MISSING = object()


@dataclass(frozen=True)
class Key:
    """One kind of annotation: ``name`` and what it means (where it is set, who reads it)."""
    name: str
    doc: str

    @property
    def attribute(self) -> str:
        return _ATTRIBUTE_PREFIX + self.name


KEYS: dict[str, Key] = {}


def _key(name: str, doc: str) -> Key:
    key = KEYS[name] = Key(name, doc)
    return key


# ---- the keys ---------------------------------------------------------------------------------

KIND = _key("kind", """On a call of a normalised function: what the call is, as
:mod:`nbautodiff.frontend.normalize` resolved it: "rule" (a scalar primitive with a derivative
rule), "array" (a whole-array primitive), "zero" (a call whose derivative is zero), "opaque" (a
library call without a rule, refused where its value is not constant), "constructor", "user" (a
function of the user's, differentiated too), "copy", "nondiff", "helper" (a runtime helper) or
"list" (a method of a list). Read by the analyses and every transform;
:mod:`nbautodiff.transforms.raising` sets it on the BLAS calls it writes.""")

TARGET = _key("target", """On a call, with :data:`KIND`: what it calls. The rule
(:mod:`nbautodiff.rules`) for "rule" and "array", the helper rule for "helper", the function for
"user" (or the wrapper of :mod:`nbautodiff.frontend.declarations` for a declared derivative) and
"nondiff", the library callable for "opaque", the method name for "list", None for "zero",
"constructor" and "copy" (inside a condition, the callable itself). Set by normalisation;
:mod:`nbautodiff.pipeline.passes` changes it where it merges repeated arguments.""")

IN_PLACE = _key("in_place", """On an assignment ``A = t`` that normalisation wrote for
``A op= ...``: True. An array is then updated in place, as NumPy does (forward mode stores into
it, reverse mode refuses it on arrays the caller sees, the in-place primal stores into it).""")

AUGMENTED = _key("augmented", """On such an assignment: its position in
``Normalized.augmented`` (the user's augmented assignments, in order), which
:mod:`nbautodiff.frontend.bindings` reads when it renames bindings.""")

VIEW = _key("view", """On an assignment whose value is a view made by a call that the transforms
follow (:mod:`nbautodiff.analysis.aliasing` sets it): "call" (the shadow is the same call on the
operand's shadow) or "alias" (the shadow is the operand's).""")

CHECKPOINT = _key("checkpoint", """On a ``for`` loop of a normalised function: the
:class:`nbautodiff.frontend.checkpoint_markers.Schedule` of its ``nad.checkpointed(...)``
marker, put there by :mod:`nbautodiff.frontend.checkpoint_markers`; read by
:mod:`nbautodiff.transforms.reverse.checkpointing`.""")

DOC = _key("doc", """On a generated function definition: its docstring, which
:func:`nbautodiff.emit.render` writes as the function's first line (set by the passes that
name a variant, and by batching).""")

STATEMENT = _key("statement", """On a call, during the reverse transform: the statement it is
the value of (set by :func:`nbautodiff.transforms.reverse.transform.transform`).""")

ASSIGNED_TO = _key("assigned_to", """On a call assigned to names, during the reverse transform:
those names (set with :data:`STATEMENT`).""")

COUNTER = _key("counter", """On a ``while`` loop, during the reverse transform: the name of the
counter of its iterations, made when it is first needed.""")

CHECKPOINTED = _key("checkpointed", """On the function the reverse transform returns: ``(line,
schedule)`` of each loop it checkpointed, for reports.""")

ATOMIC = _key("atomic", """On an accumulation in a loop that
:mod:`nbautodiff.transforms.offloading` runs on the GPU: True where it must be an atomic
addition (iterations may add into the same element).""")


# ---- access -----------------------------------------------------------------------------------

def set(node: ast.AST, key: Key, value) -> None:
    """Annotate ``node`` with ``value`` under ``key`` (replacing an earlier value)."""
    setattr(node, _declared(key).attribute, value)


def get(node: ast.AST, key: Key, default=_MISSING):
    """The annotation of ``node`` under ``key``; ``default`` when it has none (without a
    default, an AttributeError, as for a missing attribute)."""
    if default is _MISSING:
        return getattr(node, _declared(key).attribute)
    return getattr(node, _declared(key).attribute, default)


def has(node: ast.AST, key: Key) -> bool:
    """Whether ``node`` is annotated under ``key``."""
    return hasattr(node, _declared(key).attribute)


def items(node: ast.AST) -> list[tuple[str, object]]:
    """``(attribute, value)`` of every annotation of ``node``, sorted by attribute."""
    return sorted((name, value) for name, value in vars(node).items()
                  if name.startswith(_ATTRIBUTE_PREFIX)
                  and name[len(_ATTRIBUTE_PREFIX):] in KEYS)


def _declared(key: Key) -> Key:
    if not isinstance(key, Key) or KEYS.get(key.name) is not key:
        raise KeyError(f"{key!r} is not an annotation key declared in nbautodiff.annotations")
    return key

