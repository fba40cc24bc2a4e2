"""nad.batch over the derivative corpus: every argument batched, results equal to a loop of single
compiled calls bit for bit, in the layout "auto" picks (inner for most functions).

A sixth of the corpus runs here, to keep the suite within its time budget (all 245 cases passed
when the inner layout landed, 234 of them inner: see benchmarks/RESULTS.md);
``NBAUTODIFF_FULL_CORPUS=1`` runs all of them.
"""
from __future__ import annotations

import numpy as np
import pytest

import corpus
import nbautodiff as nad
from nbautodiff.pipeline import program

SEEDS = range(3)
CASES = corpus.share(corpus.CORPUS, 6)
#: Why "auto" may keep a call per slice: what the inner layout cannot express.
DOCUMENTED = ("returns an array", "is an array that differs between slices",
              "that differs between slices and is used across", "writes argument")


def _stacked(case):
    sets = [corpus.args_for(case, seed) for seed in SEEDS]
    return sets, tuple(np.stack([np.asarray(s[k]) for s in sets]) for k in range(len(sets[0])))


def _copies(values):
    return [v.copy() if isinstance(v, np.ndarray) else v for v in values]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_batch_of_corpus_function_equals_single_calls(case):
    sets, stacked = _stacked(case)
    if any(np.shape(a) != np.shape(b) for s in sets for a, b in zip(s, sets[0])):
        pytest.skip("argument shapes differ between draws")
    single = program.primal(case.fun).dispatcher
    expected = [single(*_copies(s)) for s in sets]
    batched = nad.batch(case.fun, 0)
    out = batched(*_copies(stacked))
    variant = batched.variant
    assert variant.layout == "inner" or any(why in variant.layout_note for why in DOCUMENTED), \
        variant.layout_note
    outs = out if isinstance(out, tuple) else (out,)
    for k, part in enumerate(outs):
        column = [e[k] if isinstance(e, tuple) else e for e in expected]
        np.testing.assert_array_equal(part, np.stack([np.asarray(c) for c in column]))
