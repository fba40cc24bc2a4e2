"""The differential tester: random small programs, every mode, against central differences.

hypothesis draws a program from the grammar of :mod:`differential` (views, aliases, callees that
write, rebinding, loops, fancy and boolean indexing, ``or``/``and``, math scalars), runs its primal
in plain Python (programs whose primal raises or goes non-finite are discarded with ``assume``),
then :func:`soundness.check_program` in reverse, forward and batch mode: each must be right with
the caller's arrays left as the primal leaves them, or refused naming the program's own line.

CI runs a bounded, reproducible part: ``derandomize=True``, 25 programs, no shrinking (the failure
report prints the whole program), and at most ``NBAUTODIFF_DIFFERENTIAL_BUDGET_S`` (80) seconds.
``NBAUTODIFF_FULL_DIFFERENTIAL=1`` runs 2000 programs with shrinking. Other settings:
``NBAUTODIFF_DIFFERENTIAL_EXAMPLES=N`` sets the number of programs;
``NBAUTODIFF_DIFFERENTIAL_SEED=S`` draws other programs; ``NBAUTODIFF_DIFFERENTIAL_EXCLUDE=or_and,fancy``
leaves constructs out. At the end of the module the number of programs tried and their outcomes
are printed to the terminal (no ``-s`` needed; under xdist the line is written to
``NBAUTODIFF_DIFFERENTIAL_REPORT`` if that is set). To collect every defect instead of stopping at
the first, minimised and grouped, run a sweep: ``python tests/differential.py --count 300``.
"""
from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st

from differential import Rejected, generate
from soundness import PrimalError, assert_sound, check_program

FULL = os.environ.get("NBAUTODIFF_FULL_DIFFERENTIAL") == "1"
EXAMPLES = int(os.environ.get("NBAUTODIFF_DIFFERENTIAL_EXAMPLES", 2000 if FULL else 25))
SEED = os.environ.get("NBAUTODIFF_DIFFERENTIAL_SEED")
PHASES = tuple(Phase) if FULL else (Phase.explicit, Phase.reuse, Phase.generate)
#: Seconds of checking after which the remaining examples are skipped (CI: the suite is near its
#: time limit; the programs come in the same order every run, so a slower machine checks a prefix
#: of the same sequence). ``NBAUTODIFF_DIFFERENTIAL_BUDGET_S=0``: no limit.
BUDGET_S = float(os.environ.get("NBAUTODIFF_DIFFERENTIAL_BUDGET_S", 0 if FULL else 80))

#: Constructs left out (see ``differential.EXCLUDABLE``), to look past known defects.
EXCLUDE = [e for e in os.environ.get("NBAUTODIFF_DIFFERENTIAL_EXCLUDE", "").split(",") if e]

STATS = Counter()
_START = []


class DataChooser:
    """Every choice of the generator drawn from hypothesis (so it can shrink them)."""

    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    line = (f"differential tester: {STATS['programs']} programs tried "
            f"({STATS['discarded']} discarded, {STATS['over budget']} skipped over the time "
            f"budget); " +
            ", ".join(f"{mode} {status} {n}" for (mode, status), n in
                      sorted((k, v) for k, v in STATS.items() if isinstance(k, tuple))))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)
        else:
            reporter.write_line("\n" + line)
    path = os.environ.get("NBAUTODIFF_DIFFERENTIAL_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


def _sweep_settings(test):
    test = settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None,
                    database=None, phases=PHASES, print_blob=True,
                    suppress_health_check=list(HealthCheck))(test)
    return seed(int(SEED))(test) if SEED is not None else test


@_sweep_settings
@given(st.data())
def test_generated_programs_are_right_or_refused_with_their_line(data):
    if not _START:
        _START.append(time.monotonic())
    try:
        program = generate(DataChooser(data), exclude=EXCLUDE)
    except Rejected:
        STATS["discarded"] += 1
        assume(False)
    if BUDGET_S and time.monotonic() - _START[0] > BUDGET_S:
        # skipped, not rejected, and after drawing as every example does: hypothesis calls a
        # run whose last examples are all rejected, or draw less on a replay, an error
        STATS["over budget"] += 1
        return
    try:
        result = check_program(program.source(), program.args, program.argnums)
    except PrimalError:
        STATS["discarded"] += 1
        assume(False)
    STATS["programs"] += 1
    for outcome in result.outcomes.values():
        STATS[(outcome.mode, outcome.status)] += 1
    assert_sound(result)
