"""benchmarks/compile_latency.py (``make bench-compile``) runs end to end and writes its section.

One kernel, two kinds, no JAX, no trip-count plot or profile: the script's machinery (warm and
fresh child processes, the never-seen copies of the kernel, numba's meter, the report) on the
smallest run. No timing is asserted: the machine is shared; the numbers are the benchmark's.
It runs for minutes, so only in the full suite (``NBAUTODIFF_FULL_CORPUS=1``, tests/budget.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import budget

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compile_latency.py"
BEGIN = "<!-- compile latency: begin (written by benchmarks/compile_latency.py) -->"
END = "<!-- compile latency: end -->"


@pytest.mark.slow
@pytest.mark.skipif(not budget.full(), reason=f"runs a benchmark for minutes: "
                    f"set {budget.FULL_CORPUS}=1 (the full suite)")
def test_quick_run_writes_a_well_formed_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\nkept above\n\n{BEGIN}\nold section\n{END}\n\nkept below\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "rosenbrock", "--kinds", "numba,grad",
         "--no-jax", "--no-trip", "--no-profile", "--results", str(results),
         "--plot", str(tmp_path / "plot.png"), "--json", str(tmp_path / "raw.json")],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(SCRIPT.parent), os.environ.get("PYTHONPATH", "")])),
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = results.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "old section" not in text
    assert text.startswith("# Results\n\nkept above\n") and text.rstrip().endswith("kept below")
    section = text[text.index(BEGIN):text.index(END)]
    # The warm and the fresh table: a row for the kernel with numbers (numba, grad, ratio).
    tables = section.split("**Fresh process")
    assert len(tables) == 2, section
    for table in tables:
        assert re.search(r"^\| rosenbrock \| [0-9.]+ \| [0-9.]+ \| [0-9.]+x \|$", table, re.M), \
            section
        assert "| **sum** |" in table
    verdicts = re.findall(r"^- (PASS|FAIL): (.+)$", section, re.M)
    assert len(verdicts) >= 5, section        # warm sum, worst kernel, ms beyond, fresh x2
    assert all("Measured:" in line for _, line in verdicts)
    assert "Errors:" not in section
    assert (tmp_path / "raw.json").exists()
