"""Work every derivative needs, done in the background before the first one is asked for.

A fresh process pays, at its first derivative, numba's one-off initialisation (its typing and
target contexts, LLVM's target machine: about 0.3 s on a laptop-class core) and the loading
of the runtime helpers that generated code calls (from numba's on-disk cache, or compiled on a
machine's first run). :func:`start` does both in a daemon thread; ``%load_ext nbautodiff``
calls it, so that the first cell that asks for a derivative finds them done. A cell that
compiles meanwhile waits for numba's compiler lock (one helper at a time, each a few
milliseconds when cached); nothing else is shared. ``NBAUTODIFF_WARMUP=0`` turns it off.
"""
from __future__ import annotations

import os
import threading

VARIABLE = "NBAUTODIFF_WARMUP"

_started: threading.Thread | None = None
_lock = threading.Lock()


def start() -> threading.Thread | None:
    """Start the warm-up thread once per process (None when turned off); returns it."""
    global _started
    if os.environ.get(VARIABLE, "").strip() == "0":
        return None
    with _lock:
        if _started is None:
            _started = threading.Thread(target=_warm_up, name="nbautodiff-warmup", daemon=True)
            _started.start()
        return _started


def _warm_up() -> None:
    try:
        run()
    except Exception:  # noqa: BLE001 (a warm-up that fails leaves the work to the first call)
        pass


def run() -> list[str]:
    """numba's initialisation, then the runtime helpers every reverse variant calls, for the
    types generated code gives them; returns what was compiled or loaded (for tests)."""
    import numba
    from numba.core import types

    from nbautodiff.kernels import arrays, memory, tape

    @numba.njit(cache=False)
    def _first(x):
        return x + 1

    _first(1)
    done = ["numba"]
    tapes = (types.Array(types.float64, 1, "C"), types.Array(types.int64, 1, "C"))
    wanted = [(tape.grown, (t, types.int64, types.int64)) for t in tapes]
    wanted += [(tape.trip_count, (types.int64,) * 3),
               (memory.affordable, (types.int64,) * 3)]
    wanted += [(arrays.zeros_like, (types.Array(types.float64, n, "C"),)) for n in (1, 2)]
    for dispatcher, signature in wanted:
        dispatcher.compile(signature)
        done.append(f"{dispatcher.py_func.__name__}{signature}")
    return done
