"""``%%offload --compare``: time a function on the CPU and on the GPU over a range of sizes.

From one example call ``f(*example)``, the inputs of size N are the example's arrays resized
along their first axis to N (``np.resize``: the example's values repeated); scalars stay. Four
methods run ``f`` on them:

* ``CPU serial``: ``numba.njit(f)`` (``prange`` runs as ``range``);
* ``CPU parallel=True``: ``numba.njit(parallel=True)(f)`` on all cores;
* ``GPU kernel only``: the offloaded function called with device arrays (no transfers),
  synchronised;
* ``GPU with transfers``: the offloaded function called with the NumPy arrays.

(A derivative takes NumPy arrays: for it only the time with transfers is measured.)

Without a GPU the two GPU methods are left out and the note says so. With ``gradient`` (the
magic's ``--autodiff``) the methods time ``grad(f)`` instead: ``CPU`` (nbautodiff's gradient) and
the two GPU ways.
"""
from __future__ import annotations

import numba
import numpy as np

from nbautodiff.frontend.source import python_function
from nbautodiff.kernels import gpu
from .speedup import SpeedComparison, measure

SERIAL, PARALLEL, KERNEL, TRANSFERS = ("CPU serial", "CPU parallel=True", "GPU kernel only",
                                       "GPU with transfers")
GRADIENT_CPU = "CPU gradient"
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
SIMULATOR_SIZES = (32, 64, 128)


def compare(fun, offloaded, example: tuple, sizes=DEFAULT_SIZES, gradient=None,
            budget_s: float | None = None) -> SpeedComparison:
    """Seconds per call of ``fun`` (or of ``gradient``, ``grad(fun)``, when given) by the methods
    of the module docstring, at each size of ``sizes``; ``offloaded`` is ``offload(fun)`` (or
    ``offload(grad(fun))``)."""
    sizes = tuple(sorted(sizes))

    def inputs(n):
        return [np.resize(v, (n,) + np.shape(v)[1:]) if isinstance(v, np.ndarray) and v.ndim
                else v for v in example]

    def timed(call, args):
        def run():
            call(*args)
            if gpu.available():
                gpu.synchronize()
        return run

    methods = {}
    if gradient is None:
        plain = python_function(fun)
        serial, parallel = numba.njit(plain), numba.njit(parallel=True)(plain)
        methods[SERIAL] = lambda n: timed(serial, inputs(n))
        methods[PARALLEL] = lambda n: timed(parallel, inputs(n))
        reference = PARALLEL
    else:
        methods[GRADIENT_CPU] = lambda n: timed(gradient, inputs(n))
        reference = GRADIENT_CPU
    note = ""
    if gpu.available():
        if gradient is None:
            methods[KERNEL] = lambda n: timed(offloaded, _on_device(inputs(n)))
        methods[TRANSFERS] = lambda n: timed(offloaded, inputs(n))
        if gpu.simulated():
            note = "CUDA simulator: the GPU times are those of numba's simulator, not of a GPU"
    else:
        note = "no CUDA GPU here: only the CPU methods were measured"
    times = measure(methods, sizes) if budget_s is None else measure(methods, sizes, budget_s)
    what = "gradient of " if gradient is not None else ""
    return SpeedComparison(title=f"{what}{getattr(fun, '__name__', 'function')}: one call "
                           "at size N", sizes=sizes, times=times, reference=reference, note=note,
                           unit="elements")


def _on_device(args):
    """The array arguments moved to the device once (not timed)."""
    return [gpu.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
