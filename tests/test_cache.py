"""The artifact cache (nbautodiff.cache): hits and misses across processes, invalidation,
damaged entries, concurrent builders, folder permissions, control and progress.

Cross-process behaviour is tested in fresh Python processes (as numba's own cache tests do),
each with the cache folder given by ``NBAUTODIFF_CACHE_DIR``; a probe script computes a
gradient of ``model.loss`` (whose helper lives in another module) and prints what the cache saw.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nbautodiff as nad
from nbautodiff import cache, progress
from nbautodiff.magics.progress_bar import NotebookDisplay

HELPER_CUBE = "def shape(x):\n    return x * x * x\n"
HELPER_SINE = "import math\n\n\ndef shape(x):\n    return math.sin(x)\n"
MODEL = textwrap.dedent("""\
    from helper import shape


    def loss(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += shape(x[i]) * (i + 1.0)
        return s
    """)
PROBE = textwrap.dedent("""\
    import json, sys, time, warnings
    warnings.simplefilter("always")
    import numpy as np
    import nbautodiff as nad
    import model
    if len(sys.argv) > 1:                     # start together with another process
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
    x = np.linspace(0.1, 0.9, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = nad.grad(model.loss)
        value = g(x)
    info = nad.cache.info()
    print(json.dumps({
        "grad": value.tolist(), "entries": info.entries, "hits": info.hits,
        "misses": info.misses, "compiled_hits": info.compiled_hits,
        "compiled_misses": info.compiled_misses,
        "numba_hits": sum(g.variant.dispatcher.stats.cache_hits.values()),
        "warnings": [str(w.message) for w in caught
                     if issubclass(w.category, nad.cache.CacheWarning)]}))
    """)
X = np.linspace(0.1, 0.9, 5)
WEIGHTS = np.arange(1.0, 6.0)


def _project(folder, helper: str = HELPER_CUBE):
    """Modules and probe in ``folder``/code, the cache in ``folder``/cache."""
    code = folder / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "helper.py").write_text(helper)
    (code / "model.py").write_text(MODEL)
    (code / "probe.py").write_text(PROBE)
    return folder


def _start(folder, *args):
    """A fresh process running the probe on ``folder``'s cache, numba at its default
    optimisation level as users have it (the suite compiles at -O0, where numba declines to
    cache code that reads large constant arrays, such as kernels.vecmath's tables)."""
    env = dict(os.environ, NBAUTODIFF_CACHE_DIR=str(folder / "cache"),
               PYTHONPATH=os.pathsep.join([str(folder / "code"), os.environ.get("PYTHONPATH", "")]),
               NUMBA_OPT="3")
    return subprocess.Popen([sys.executable, str(folder / "code" / "probe.py"), *args],
                            env=env, cwd=folder / "code", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(process) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _probe(folder) -> dict:
    return _result(_start(folder))


def _entries(folder, kind: str | None = None, stem: str = "") -> list:
    """Entry folders of the cache in ``folder`` (of ``kind``, with ``stem`` in their stem)."""
    found = []
    for entry in (folder / "cache" / cache.ENTRIES).iterdir():
        if entry.name.startswith("."):
            continue
        manifest = json.loads((entry / cache.MANIFEST).read_text())
        if (kind is None or manifest["kind"] == kind) and stem in manifest["stem"]:
            found.append(entry)
    return found


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A cache filled by one fresh process, and what that process saw."""
    folder = _project(tmp_path_factory.mktemp("populated"))
    return folder, _probe(folder)


def _copy(populated, tmp_path):
    folder, _ = populated
    shutil.copytree(folder, tmp_path / "copy")
    return tmp_path / "copy"


def test_a_fresh_process_builds_then_one_more_reads_everything_from_the_cache(populated,
                                                                           tmp_path):
    _, cold = populated
    np.testing.assert_allclose(cold["grad"], 3.0 * X ** 2 * WEIGHTS, rtol=1e-12)
    assert cold["hits"] == 0 and cold["misses"] == cold["entries"] == 4  # 2 primals, 2 variants
    assert cold["compiled_misses"] >= 1 and cold["numba_hits"] == 0 and not cold["warnings"]
    warm = _probe(_copy(populated, tmp_path))
    assert warm["grad"] == cold["grad"]
    assert warm["misses"] == 0 and warm["hits"] == 4 and warm["entries"] == 4
    assert warm["compiled_misses"] == 0 and warm["compiled_hits"] >= 1
    assert warm["numba_hits"] == 1 and not warm["warnings"]     # numba's own count agrees


def test_a_changed_helper_in_another_module_rebuilds_the_derivative_calling_it(populated,
                                                                            tmp_path):
    folder = _copy(populated, tmp_path)
    (folder / "code" / "helper.py").write_text(HELPER_SINE)
    changed = _probe(folder)
    np.testing.assert_allclose(changed["grad"], np.cos(X) * WEIGHTS, rtol=1e-12)
    assert changed["misses"] == 4 and changed["entries"] == 8 and changed["hits"] == 0


def test_damaged_entries_are_reported_and_rebuilt(populated, tmp_path):
    folder = _copy(populated, tmp_path)
    (variant,) = _entries(folder, "reverse", "loss")
    source = next(variant.glob("*.py"))
    source.write_text(source.read_text()[:40])                           # truncated
    (callee,) = _entries(folder, "reverse", "shape")
    (compiled,) = callee.glob("__pycache__/*.nbc")
    compiled.write_bytes(os.urandom(compiled.stat().st_size))            # garbage
    (prim,) = _entries(folder, "primal", "loss")
    manifest = json.loads((prim / cache.MANIFEST).read_text())
    manifest["files"] = {name: "0" * 64 for name in manifest["files"]}   # wrong checksums
    (prim / cache.MANIFEST).write_text(json.dumps(manifest))
    repaired = _probe(folder)
    np.testing.assert_allclose(repaired["grad"], 3.0 * X ** 2 * WEIGHTS, rtol=1e-12)
    warned = " ".join(repaired["warnings"])
    assert len(repaired["warnings"]) == 3 and warned.count(" is damaged (") == 3
    assert str(variant) in warned and str(prim) in warned and str(callee) in warned
    again = _probe(folder)
    assert not again["warnings"] and again["misses"] == 0 and again["compiled_misses"] == 0


def test_two_processes_building_the_same_artifacts_at_once_both_succeed(tmp_path):
    folder = _project(tmp_path)
    start = f"{time.time() + 2.0}"            # both wait until then, after importing
    first, second = _start(folder, start), _start(folder, start)
    results = [_result(first), _result(second)]
    for result in results:
        np.testing.assert_allclose(result["grad"], 3.0 * X ** 2 * WEIGHTS, rtol=1e-12)
        assert not result["warnings"]
    assert len(_entries(folder)) == 4
    assert not [p for p in (folder / "cache" / cache.ENTRIES).iterdir() if p.name[0] == "."]


OFFLOADED = textwrap.dedent("""\
    import json, sys
    import numpy as np
    from numba import config, prange
    import nbautodiff as nad


    def smooth(u, out):
        total = 0.0
        for i in prange(1, u.shape[0] - 1):
            out[i] = 0.25 * u[i - 1] + 0.5 * u[i] + 0.25 * u[i + 1]
            total += out[i]
        return total


    u = np.linspace(0.0, 1.0, 101) ** 2
    out = np.zeros_like(u)
    total = nad.offload(smooth)(u, out)
    info = nad.cache.info()
    print(json.dumps({"total": total, "out": out.tolist(), "hits": info.hits,
                      "misses": info.misses, "compiled_hits": info.compiled_hits,
                      "compiled_misses": info.compiled_misses,
                      "simulator": bool(config.ENABLE_CUDASIM)}))
    """)


def test_offloaded_host_code_and_kernels_are_read_back_by_a_fresh_process(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.py").write_text(OFFLOADED)
    cold, warm = _probe(tmp_path), _probe(tmp_path)
    u = np.linspace(0.0, 1.0, 101) ** 2
    expected = 0.25 * u[:-2] + 0.5 * u[1:-1] + 0.25 * u[2:]
    for run in (cold, warm):
        np.testing.assert_allclose(run["out"][1:-1], expected, rtol=1e-12)
        np.testing.assert_allclose(run["total"], expected.sum(), rtol=1e-12)
    assert cold["misses"] == 2 and cold["hits"] == 0           # the host code, one kernel
    assert warm["misses"] == 0 and warm["hits"] == 2
    if cold["simulator"]:                       # the simulator's kernels have no compiled code
        assert cold["compiled_misses"] == warm["compiled_hits"] == 0
    else:
        assert cold["compiled_misses"] == warm["compiled_hits"] == 1
        assert warm["compiled_misses"] == 0


# ---- in this process: a cell, the folder, control ---------------------------------------------

def test_a_changed_helper_in_another_cell_changes_the_derivative(ip):
    cell = "def f(x):\n    return helper(x) + x\n"
    ip.run_cell("def helper(x):\n    return x * x\n")
    ip.run_cell_magic("autodiff", "", cell)
    assert ip.user_ns["f_grad"](1.5) == 2.0 * 1.5 + 1.0
    ip.run_cell("def helper(x):\n    return x * x * x\n")
    ip.run_cell_magic("autodiff", "", cell)
    assert ip.user_ns["f_grad"](1.5) == 3.0 * 1.5 ** 2 + 1.0


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache folder and fresh counters for this test."""
    monkeypatch.setenv(cache.FOLDER_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_state", cache._State())
    monkeypatch.setattr(cache, "_default_folder", lambda: str(tmp_path / "default"))
    return tmp_path / "cache"


def _artifact(name: str, calls: list, size: int = 100, fail=None):
    def build():
        calls.append(name)
        if fail is not None:
            raise fail
        return cache.Built(name, f"# {name}\n" + "x = 1\n" * (size // 6), {"name": name})
    return cache.artifact(cache.key("test", name), build)


def test_the_folder_is_private_and_one_others_can_write_to_is_refused(fresh, tmp_path,
                                                                      monkeypatch):
    assert cache.folder() == str(fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(cache.FOLDER_VARIABLE, str(shared))
    with pytest.warns(cache.CacheWarning, match="other users can write to it"):
        assert cache.folder() == str(tmp_path / "default")
    assert not os.path.exists(shared / cache.ENTRIES) or not os.listdir(shared / cache.ENTRIES)
    assert _artifact("private", []).path.startswith(str(tmp_path / "default"))


def test_info_clear_and_least_recently_used_eviction(fresh):
    calls = []
    for name in ("a", "b", "c"):
        _artifact(name, calls, size=6000)
    time.sleep(0.05)
    assert _artifact("a", calls).from_cache and calls == ["a", "b", "c"]   # a: used last
    info = cache.info()
    assert (info.entries, info.hits, info.misses) == (3, 1, 3) and info.bytes > 18000
    cache._state.in_use.clear()                 # as in a later process: nothing is in use
    cache.set_limit(info.bytes * 2 // 3 + 1)    # room for two entries
    assert cache.info().entries == 2
    assert _artifact("a", calls).from_cache and not _artifact("b", calls).from_cache
    assert cache.info().entries == 2                 # c, used least recently, made room for b
    cache.set_limit(None)
    assert cache.clear() == 2 and cache.info().entries == 0


def test_a_new_process_starts_from_the_recorded_usage_and_eviction_leaves_headroom(fresh,
                                                                                 monkeypatch):
    calls = []
    for name in ("a", "b", "c"):
        _artifact(name, calls, size=6000)
    scanned = cache.info().bytes
    cache.set_limit(10 * scanned)                    # a scan, recorded in the folder
    assert cache._recorded_usage(str(fresh)) == scanned
    cache._state.estimate, cache._state.in_use = None, set()      # as in a later process
    scans = []
    real_entries = cache._entries
    monkeypatch.setattr(cache, "_entries", lambda *a, **k: scans.append(1) or real_entries(*a, **k))
    _artifact("d", calls, size=6000)
    assert not scans                                 # the first save did not walk the folder
    assert cache._state.estimate > scanned
    cache._state.in_use = set()
    cache._state.limit = scanned                     # now over the limit: the next save scans
    _artifact("e", calls, size=6000)
    assert scans
    assert real_entries(str(fresh)) and cache.info().bytes <= cache.EVICT_TO * scanned
    assert cache._recorded_usage(str(fresh)) == cache.info().bytes


def test_a_damaged_usage_record_means_a_scan(fresh):
    calls = []
    _artifact("a", calls, size=6000)
    with open(fresh / cache.USAGE, "w") as handle:
        handle.write("{not json")
    assert cache._recorded_usage(str(fresh)) is None
    cache._state.estimate = None
    _artifact("b", calls, size=6000)
    assert cache._recorded_usage(str(fresh)) == cache.info().bytes


def test_an_interrupted_build_leaves_no_entry(fresh, monkeypatch):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        _artifact("a", calls, fail=KeyboardInterrupt())

    def interrupted(path, content):
        if path.endswith(cache.MANIFEST):
            raise KeyboardInterrupt
        with open(path, "wb") as handle:
            handle.write(content)

    monkeypatch.setattr(cache, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _artifact("a", calls)
    assert os.listdir(fresh / cache.ENTRIES) == []
    monkeypatch.undo()
    monkeypatch.setenv(cache.FOLDER_VARIABLE, str(fresh))
    assert not _artifact("a", calls).from_cache and _artifact("a", calls).from_cache


def test_forced_rebuilds_each_artifact_once(fresh):
    calls = []
    _artifact("a", calls)
    with cache.forced():
        assert not _artifact("a", calls).from_cache
        assert _artifact("a", calls).from_cache
    assert _artifact("a", calls).from_cache and calls == ["a", "a"]
    memo = {"k": 1}
    with cache.forced():
        assert not cache.memoized(memo, "k") and cache.memoized(memo, "k")
    assert cache.memoized(memo, "k")


def test_force_option_of_the_magics_rebuilds(ip, monkeypatch):
    cell = "def sq(x):\n    return x * x * 2.0\n"
    monkeypatch.setattr(cache, "_state", cache._State())
    ip.run_cell_magic("autodiff", "--check 1.5", cell)
    built = cache.info().misses
    ip.run_cell_magic("autodiff", "--check 1.5", cell)
    assert cache.info().misses == built and cache.info().hits >= built
    ip.run_cell_magic("autodiff", "--check 1.5 --force", cell)
    assert cache.info().misses == 2 * built
    ip.run_cell_magic("batch", "--compare 1.5 --sizes 2", cell)
    built = cache.info().misses
    ip.run_cell_magic("batch", "--compare 1.5 --sizes 2 --force", cell)
    assert cache.info().misses > built


def test_force_also_covers_what_is_built_after_the_magic(ip, monkeypatch):
    cell = "def cube(x):\n    return x * x * x\n"
    monkeypatch.setattr(cache, "_state", cache._State())
    xs = np.linspace(0.5, 2.0, 4)

    def call_and_count():
        np.testing.assert_array_equal(ip.user_ns["cube_batch"](xs), xs * xs * xs)
        return cache.info().misses

    ip.run_cell_magic("batch", "", cell)
    built = call_and_count()                 # the batched variant is built at the call
    ip.run_cell_magic("batch", "", cell)
    assert call_and_count() == built
    ip.run_cell_magic("batch", "--force", cell)
    assert call_and_count() == 2 * built
    ip.run_cell_magic("batch", "", cell)               # rebuilt once, then read again
    assert call_and_count() == 2 * built


def test_progress_says_where_each_artifact_came_from(fresh):
    stream = io.StringIO()
    with progress.task("two steps", 2, progress.TextDisplay(stream, delay_s=0.0)) as task:
        task.step("first")
        _artifact("a", [])
        task.step("second")
        _artifact("a", [])
    text = stream.getvalue()
    assert "[1/2] first" in text and "[2/2] second" in text
    assert "a (test): generated" in text and "a (test): from the cache" in text
    assert "1 from the cache, 1 generated" in text
    running = NotebookDisplay.html(progress.Task("t", 4, done=1, label="now"))
    assert '<progress value="1" max="4"' in running and "now" in running
    assert "1 from the cache" in NotebookDisplay.html(task, finished=True)


def test_keys_depend_on_everything_given_and_private_parts_stay_private():
    base = cache.key("k", "text", (1, 2.0), np.arange(3.0))
    assert base == cache.key("k", "text", (1, 2.0), np.arange(3.0)) and base.shared
    assert base != cache.key("k", "text", (1, 2.0), np.arange(3.0) + 1.0)
    assert base != cache.key("k", "text", (1, 2), np.arange(3.0))
    assert not cache.key("k", object()).shared
    assert cache.key("k", object()) != cache.key("k", object())
