"""Second order on the corpus: Hessian-vector products by forward mode over the generated
reverse code, ``jvp(grad(f), args, v)``, against central differences of reverse-mode gradients.

Constructs whose generated derivative calls a helper without tangent rule are refused with an
``AutodiffError`` naming it (listed in ``REFUSED``); every other corpus function must match.

A sixth of the corpus runs here (every other function of every third one), to keep the suite
within its time budget (tests/budget.py; all of it passed on 2026-12-07);
``NBAUTODIFF_FULL_CORPUS=1`` runs all of it.
"""
from __future__ import annotations


import numpy as np
import pytest

import nbautodiff as nad

import corpus
from fd import copy_args, max_abs
from test_corpus_reverse import derived

STEP = 1e-5


def gradient_difference(case, args, wrt, direction):
    """Central difference of grad along ``direction`` (one entry per differentiated argument)."""
    g = derived("grad", case.fun, tuple(wrt))

    def at(t):
        call = list(copy_args(args))
        for k, v in zip(wrt, direction):
            call[k] = call[k] + t * v
        return [np.asarray(x, np.float64) for x in g(*call)]

    plus, minus = at(STEP), at(-STEP)
    return [(p - m) / (2 * STEP) for p, m in zip(plus, minus)]


def _cases():
    """The float64 functions of the corpus: a sixth of them (all in the full suite)."""
    return corpus.share([c for c in corpus.CORPUS if not c.is_float32(corpus.args_for(c, 0))], 6)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_hessian_vector_product(case):
    wrt = list(case.wrt())
    args = corpus.args_for(case, 0)
    rng = np.random.default_rng(11)
    direction = [rng.standard_normal(args[k].shape) if isinstance(args[k], np.ndarray)
                 else float(rng.standard_normal()) for k in wrt]
    tangents = [direction[wrt.index(k)] if k in wrt else None for k in range(len(args))]
    _, hv = nad.jvp(derived("grad", case.fun, tuple(wrt)), copy_args(args), tangents)
    expected = gradient_difference(case, args, wrt, direction)
    scale = max(1.0, max_abs(*expected))
    for k, got, want in zip(wrt, hv, expected):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4,
                                   atol=1e-5 * scale, err_msg=f"{case.name}: (H v) w.r.t. arg {k}")
