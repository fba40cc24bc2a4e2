"""What the pipeline builds: a compiled primal, and reverse- and forward-mode variants of it.

:mod:`nbautodiff.pipeline.program` builds them (and :mod:`nbautodiff.pipeline.custom_variants`
for functions with custom rules); the API calls their dispatchers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nbautodiff import emit
from nbautodiff.frontend.normalize import Normalized
from nbautodiff.frontend.source import FunctionSource
from . import module_state


@dataclass(eq=False)
class Primal:
    """A user function normalised and compiled."""
    fs: FunctionSource
    normalized: Normalized
    rendered: emit.Rendered
    path: str
    namespace: dict
    dispatcher: object
    writes: set = field(default_factory=set)         # positions of array params it writes
    returns: dict = field(default_factory=dict)      # position -> view kinds of the params its
                                                     # result may be or view (see .aliasing)
    key: object = None                               # cache.Key of its artifact
    reads: module_state.Reads | None = None          # what it read from module state
    unloaded: dict = field(default_factory=dict)     # the namespace its source is loaded in
    callees: dict = field(default_factory=dict)      # binding -> Primal of each callee
    in_place: object = None                          # see in_place_dispatcher

    @property
    def py_func(self):
        return self.dispatcher.py_func

    def hold(self) -> bool:
        """Whether everything this primal read from module state is unchanged (callees too)."""
        return self.reads is None or self.reads.hold()


@dataclass(eq=False)
class Variant:
    """A reverse-mode variant compiled for one signature."""
    name: str
    source: str
    path: str
    dispatcher: object
    shadows: list[bool]
    adjoint_positions: list[int]
    result_type: object
    checkpointed: list = field(default_factory=list)   # (line, schedule) of checkpointed loops
    user_lines: list = field(default_factory=list)     # line of the source -> line of the user's


@dataclass(eq=False)
class ForwardVariant:
    """A forward-mode variant compiled for one signature."""
    name: str
    source: str
    path: str
    dispatcher: object
    duals: list[bool]              # per argument: followed by ``width`` tangents
    result_dual: bool              # returns (result, tangents...)
    result_type: object
    width: int
