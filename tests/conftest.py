"""Shared fixtures for the test suite.

The helper modules next to this file (``fd``, ``corpus``, ``corpus_helpers``) are imported by
plain name; the tests folder is put on ``sys.path`` here so that works whatever pytest's import
mode is.

Offload tests run under numba's CUDA simulator unless ``NUMBA_ENABLE_CUDASIM`` says otherwise
(``NUMBA_ENABLE_CUDASIM=0`` on a machine with a GPU runs them, and the ``gpu`` tests, for real);
numba compiles at -O0 unless ``NUMBA_OPT`` says otherwise. numba reads both once, at its import,
so they are set here before anything imports numba.
Each test session gets an empty artifact cache (``NBAUTODIFF_CACHE_DIR``), shared by its
xdist workers (they inherit the folder from the controller, which removes it at exit): tests do
not depend on earlier runs, and what one worker compiled the other reads from the cache
instead of compiling it again (the cache is made for concurrent processes; the tests of the
cache itself use folders of their own).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# Compiling is most of the suite's time, and LLVM's optimisations are most of compiling:
# the tests check what code computes, so numba compiles at -O0 unless NUMBA_OPT says otherwise
# (what the optimiser makes of loops is checked in a subprocess at -O3, tests/test_vecmath.py).
os.environ.setdefault("NUMBA_OPT", "0")

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

SEED = 20261121

SESSION_CACHE = "NBAUTODIFF_TEST_SESSION_CACHE"
if SESSION_CACHE not in os.environ:       # the session's first process: pytest, or xdist's controller
    os.environ[SESSION_CACHE] = tempfile.mkdtemp(prefix="nbautodiff-test-cache-")
    atexit.register(shutil.rmtree, os.environ[SESSION_CACHE], ignore_errors=True)
os.environ["NBAUTODIFF_CACHE_DIR"] = os.environ[SESSION_CACHE]
# numba's own cache of `cache=True` functions (the runtime kernels) goes there too, so code the
# suite compiled at -O0 never lands beside the package's sources, where benchmarks would load it.
os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.environ[SESSION_CACHE], "numba")


@pytest.fixture(scope="session")
def ip():
    """The in-process IPython shell of IPython's test support, with ``%load_ext nbautodiff``.

    One fixture for every module: IPython starts that shell once per process, and a second
    ``globalipapp.get_ipython()`` imported before the start would return None."""
    from IPython.testing import globalipapp
    shell = globalipapp.start_ipython() or globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nbautodiff")
    return shell


@pytest.fixture
def rng():
    """A seeded NumPy Generator (fresh for each test, so tests do not depend on their order)."""
    return np.random.default_rng(SEED)
