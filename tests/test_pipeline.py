"""The pass pipelines of nbautodiff/pipeline/passes.py: what they list is what program runs."""
from __future__ import annotations

import subprocess
import sys

import numba
import numpy as np

from nbautodiff.pipeline import passes, program


def energy(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        s += np.sin(x[i] * w) ** 2
    return s


def test_reverse_and_forward_share_every_pass_but_the_one_that_differentiates():
    reverse = [step.name for step in passes.REVERSE.passes]
    forward = [step.name for step in passes.FORWARD.passes]
    assert reverse[0] == "no reverse over reverse"
    assert [n for n in reverse[1:] if n != "reverse mode"] == \
        [n for n in forward if n != "forward mode"]
    assert reverse.index("reverse mode") == forward.index("forward mode") + 1


def test_the_command_prints_every_pipeline_and_pass():
    out = subprocess.run([sys.executable, "-m", "nbautodiff.pipeline"], capture_output=True,
                         text=True, check=True).stdout
    for pipeline in passes.PIPELINES:
        assert f"{pipeline.name}:" in out
        for step in pipeline.passes:
            assert step.name in out and step.doc in out


def test_each_pass_adds_its_part_and_the_last_gives_what_program_compiles():
    prim = program.primal(energy)
    argtypes = (numba.typeof(np.ones(3)), numba.float64)
    state = passes.VariantState("reverse", prim, argtypes, [True, False], True,
                                program.ARTIFACTS, keep_value=False)
    seen = {}
    for step in passes.REVERSE.passes:
        state = step.function(state)
        seen[step.name] = (bool(state.types), state.tree is not None,
                           state.analysis is not None, state.built is not None)
    assert seen["types"] == (True, False, False, False)
    assert seen["array fence"][:2] == (True, True)
    assert seen["activity"][2] and not seen["activity"][3]
    assert seen["render"] == (True, True, True, True)
    variant = program.reverse_variant(energy, argtypes, [True, False], True, writeback=False,
                                      keep_value=False)
    assert state.built.text == variant.source and state.name == variant.name
