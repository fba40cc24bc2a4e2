"""check_grad over the whole derivative corpus: no false alarm at a smooth point.

The corpus (tests/corpus.py) draws its inputs away from kinks, ties and jumps, and its own tests
check every gradient against central differences. Here ``check_grad`` must agree: every
function passes, the complex step applies to every one of them, no detector warns, and the only
notes are zero derivatives of rounding and lookup tables that the function's source does have.
The gradients are those of test_corpus_reverse (compiled once per process); forward mode
against reverse mode is test_corpus_forward's, so it is left out here (it would compile a
forward variant per function), except for a few functions that check the default path.
Within the suite's time budget (tests/budget.py) a third of the corpus runs here;
``NBAUTODIFF_FULL_CORPUS=1`` runs all of it.
"""
from __future__ import annotations

import re

import pytest

import nbautodiff as nad
from nbautodiff.checks.check import COMPLEX, FORWARD

import corpus
from test_corpus_reverse import derived

ROUNDING_SPELLINGS = re.compile(r"\b(floor|ceil|trunc|int|round|rint|sign)\b")


def _check(case, forward=False):
    args = corpus.args_for(case, 0)
    return nad.check_grad(case.fun, *args, argnums=case.argnums, rtol=case.rtol,
                          gradient=derived("grad", case.fun, case.argnums), forward=forward)


@pytest.mark.parametrize("case", corpus.share(corpus.CORPUS, 3), ids=lambda c: c.name)
def test_check_grad_agrees_with_the_corpus(case):
    check = _check(case)
    assert check.ok, str(check)
    assert COMPLEX not in check.unavailable, check.unavailable[COMPLEX]
    assert not check.warnings, str(check)
    for finding in check.findings:
        assert finding.category in ("rounding", "lookup"), str(check)
        if finding.category == "rounding":
            assert ROUNDING_SPELLINGS.search(finding.source), finding
        else:
            assert "[" in finding.source, finding


@pytest.mark.parametrize("name", ["rosenbrock", "newton_sqrt", "matvec_quad[f32]",
                                  "tup_lambda_results"])
def test_default_check_with_forward_mode(name):
    case = next(c for c in corpus.CORPUS if c.name == name)
    check = _check(case, forward=True)
    assert check.ok and FORWARD not in check.unavailable, str(check)
    assert all(r.forward_error <= check.rtol for r in check.rows)
