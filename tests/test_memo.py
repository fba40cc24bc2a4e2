"""The builders' memo tables do not grow with re-runs of a notebook cell (issue 19).

Each run of a cell defines new function objects; what was built for the old ones must be freed
with them. The memos of :mod:`nbautodiff.memo` keep each entry on its owner, so re-running a
cell 25 times leaves each table as large as one run leaves it.
"""
from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest

from nbautodiff import memo

CELL = '''
import numpy as np
import nbautodiff as nad

def helper(v, w):
    return v * w + np.sin(v)

def energy(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        s += helper(x[i], w) ** 2
    return s

g = nad.grad(energy)(x0, 0.5)
t = nad.jvp(energy, (x0, 0.5), (np.ones_like(x0), 0.0))
b = nad.batch(helper, in_axes=(0, None))(x0, 0.5)
'''


def _sizes() -> dict:
    """Entries and owners of each memo, once what is unreachable is freed. numba keeps the last
    dispatchers it serialised alive (its own bounded cache, ``_MemoMixin._recent``); that is
    cleared first, so that the sizes show what nbautodiff keeps."""
    from numba.core.dispatcher import _MemoMixin
    _MemoMixin._recent.clear()
    gc.collect()
    return {name: (len(table), len(table.owners())) for name, table in memo.MEMOS.items()}


def test_re_running_a_cell_25_times_leaves_the_tables_bounded(ip):
    """One run of CELL builds two primals (energy, helper), their variants and a batched
    variant. The functions of earlier runs are freed, with what was built for them, so the
    tables do not grow from the 5th run to the 25th (beyond a few entries whose owner numba or
    IPython still holds for a while); other tests' entries may be there too."""
    ip.user_ns["x0"] = np.linspace(0.1, 1.0, 6)
    defined = []
    for run in range(25):
        assert ip.run_cell(CELL).success
        defined.append(weakref.ref(ip.user_ns["energy"]))
        if run == 4:
            after_five = _sizes()
    after_last = _sizes()
    assert sum(ref() is not None for ref in defined) <= 3
    grown = {name: (after_five.get(name, (0, 0))[0], entries)
             for name, (entries, _) in after_last.items()
             if entries > after_five.get(name, (0, 0))[0] + 4}
    assert grown == {}
    assert {"primals", "reverse variants", "forward variants", "batched variants",
            "sources"} <= set(memo.MEMOS)


def test_entries_live_with_their_owner_only():
    table = memo.Memo("test")

    def f():
        pass

    table[(f, 1)] = "one"
    assert (f, 1) in table and table[(f, 1)] == "one" and table.get((f, 2)) is None
    assert len(table) == 1 and table.owners() == [f]

    def wrapper():
        pass

    wrapper.__dict__.update(f.__dict__)            # what functools.wraps does
    assert (wrapper, 1) not in table               # a table copied from f is not wrapper's
    table[(wrapper, 1)] = "own"
    assert table[(f, 1)] == "one" and table[(wrapper, 1)] == "own"
    copied = pickle.loads(pickle.dumps(vars(f)))   # pickling leaves the entries out
    assert all(not entries for entries in copied.values())
    del f, wrapper
    gc.collect()
    assert len(table) == 0


def test_a_missing_entry_raises_key_error():
    table = memo.Memo("test")

    def f():
        pass

    with pytest.raises(KeyError):
        table[(f, 1)]
