"""The suite's time budget (CI: 20 minutes on 2 cores).

A family of tests that checks one mechanism on many instances (the corpus's programs, the rules'
second order, loop trip counts) runs on a share of them by default, chosen by position so that
every run checks the same ones; ``NBAUTODIFF_FULL_CORPUS=1`` runs all of them (the full suite,
for releases and for sweeps on a larger machine). Every family keeps at least one instance of
each kind in the default run.
"""
from __future__ import annotations

import os
import zlib

FULL_CORPUS = "NBAUTODIFF_FULL_CORPUS"


def full() -> bool:
    """Whether the full suite runs (``NBAUTODIFF_FULL_CORPUS`` set to a non-empty value)."""
    return bool(os.environ.get(FULL_CORPUS))


def share(cases, every: int, offset: int = 0) -> list:
    """Every ``every``-th of ``cases`` from position ``offset`` (two tests taking the shares
    of offsets 0 and 1 of every 2 cover all cases between them), or all of them in the full
    suite."""
    return list(cases) if full() else list(cases)[offset::every]


def sampled(name: str, every: int) -> bool:
    """Whether the instance called ``name`` is in the default run's share of one in ``every``
    (by a hash of the name, so the share does not move when instances are added); always True
    in the full suite."""
    return full() or zlib.crc32(name.encode()) % every == 0
