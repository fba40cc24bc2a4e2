"""The state the parts of the reverse transform share while they differentiate one function.

:class:`~nbautodiff.transforms.reverse.transform.ReverseTransform` generates the code; its
mixins (:class:`~nbautodiff.transforms.reverse.arrays.ArrayAdjoints` for whole-array statements,
:class:`~nbautodiff.transforms.reverse.loops.LoopReversal` for loops reversed in their original
order) and :mod:`nbautodiff.transforms.reverse.checkpointing` (checkpointed loops) generate
parts of it. What they share lives here, in one :class:`ReverseState` (``rt.state``), not in
attributes that one part sets and another reads: the request, facts about the function that
:meth:`ReverseTransform.build` computes before it writes any code, and what writing the code
records as it goes.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable

from nbautodiff.analysis.activity import Analysis
from nbautodiff.codegen import parameters


@dataclass(eq=False)
class ReverseState:
    """Everything the reverse transform of one function shares between its parts."""

    # -- the request (set once) ------------------------------------------------------------------
    tree: ast.FunctionDef          # the normalised function (tuples split) being differentiated
    a: Analysis                    # its analysis: types, activity, restored and needed values
    fs: object                     # its FunctionSource, for errors located in the user's code
    active_params: set             # the parameters differentiated
    result_active: bool            # the result takes a seed
    writeback: bool                # the caller's arrays get the primal's final contents
    keep_value: bool               # the primal result is computed and returned
    name: str                      # the generated function's name
    callee_variant: Callable       # (call, seeded) -> CalleeVariant of the function it calls
    callee_writes: Callable        # call -> positions of the arguments the callee writes
    checkpoint: object = None      # a function-level checkpoint Schedule, or None
    params: list = field(init=False)   # the parameter names, in order

    # -- facts about the function, computed by build() before any code is written ----------------
    rebound: set = field(default_factory=set)        # arrays whose successive bindings are kept
    single_use: set = field(default_factory=set)     # scalars whose adjoint is assigned, not summed
    unallocated: set = field(default_factory=set)    # shadows made by their first contribution
                                                     # (a name leaves it once that is written)
    updates: dict = field(default_factory=dict)      # id(statement) -> accumulator update role
    any_order: set = field(default_factory=set)      # ids of loops reversed in original order
    fused: set = field(default_factory=set)          # ... of those run inside their reversal
    checkpointed: dict = field(default_factory=dict)     # id(loop) -> CheckpointedLoop
    taped_after: dict = field(default_factory=dict)      # id(loop body) -> scalars pushed after
    taped_after_names: set = field(default_factory=set)  # their assignment (all of them)

    # -- what writing the code records -----------------------------------------------------------
    counter: int = 0                                  # for fresh names
    tapes_used: set = field(default_factory=set)     # "float", "int": the tapes pushed onto
    result_node: ast.expr | None = None              # the returned value
    pushed_counters: set = field(default_factory=set)    # while-loop counters on the tape
    callee_bytes_used: bool = False                  # a callee's memory report is read
    zero: set = field(default_factory=set)           # adjoints known to be zero at the point of
                                                     # the reverse sweep being written

    def __post_init__(self):
        self.params = parameters(self.tree)

    def fresh(self, prefix: str) -> str:
        """A name ``prefix<n>`` not used before in this function."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def type_of(self, name: str):
        """The numba type of variable ``name`` (None for one the analysis did not type)."""
        return self.a.types.get(name)
