"""CUDA runtime of offloaded functions: devices, launch configuration, allocation, kernel launches.

The host code of an offloaded function (:mod:`nbautodiff.transforms.offloading`) calls a :class:`Runtime`
to allocate device arrays and to launch its kernels. A launch runs ``count`` iterations of a loop
on a grid of ``blocks x threads`` CUDA threads, each taking iterations ``k, k + grid size, ...``
(a grid-stride loop); ``blocks`` is enough to cover the iterations, at most
:data:`BLOCKS_PER_SM` per multiprocessor. Reductions come back as one partial value per block,
combined here (in a fixed order: results do not depend on timing).

With several devices each launch splits its iterations into contiguous chunks, one per device,
and runs them concurrently; every device holds its own copy of the arrays (see
:class:`MultiRuntime`).

Under ``NUMBA_ENABLE_CUDASIM=1`` numba's simulator runs the kernels in Python threads: blocks are
small (:data:`SIMULATOR_THREADS`) so that tests stay fast.
"""
from __future__ import annotations

import contextlib
import functools
import math
import types
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import cuda

from nbautodiff import memo

THREADS = 256
BLOCKS_PER_SM = 32
SIMULATOR_THREADS = 16
SIMULATOR_MAX_BLOCKS = 2


def simulated() -> bool:
    return bool(numba.config.ENABLE_CUDASIM)


def available() -> bool:
    """Whether kernels can run: a CUDA GPU, or the simulator."""
    try:
        return simulated() or cuda.is_available()
    except Exception:          # a broken driver install reads as no GPU
        return False


def device_count() -> int:
    return len(cuda.gpus) if available() else 0


@functools.lru_cache(maxsize=None)
def device_name(device_id: int) -> str:
    if simulated():
        return "CUDA simulator"
    with cuda.gpus[device_id]:
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        return f"{name} (device {device_id}, compute capability {device.compute_capability})"


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is CUDA's out-of-memory error (as numba-cuda raises it)."""
    return "OUT_OF_MEMORY" in str(error) or "out of memory" in str(error).lower()


def is_device_array(value) -> bool:
    """A numba device array, or anything with ``__cuda_array_interface__`` (CuPy, PyTorch)."""
    return cuda.devicearray.is_cuda_ndarray(value) or hasattr(value, "__cuda_array_interface__")


@dataclass(frozen=True)
class LaunchConfig:
    blocks: int
    threads: int


def launch_config(count: int, device_id: int | None = None) -> LaunchConfig:
    """Blocks and threads for ``count`` iterations on device ``device_id`` (default: the
    current device)."""
    if simulated():
        return LaunchConfig(max(1, min(SIMULATOR_MAX_BLOCKS, -(-count // SIMULATOR_THREADS))),
                            SIMULATOR_THREADS)
    sms = _multiprocessors(cuda.get_current_device().id if device_id is None else device_id)
    return LaunchConfig(max(1, min(sms * BLOCKS_PER_SM, -(-count // THREADS))), THREADS)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id: int) -> int:
    with cuda.gpus[device_id]:
        return cuda.get_current_device().MULTIPROCESSOR_COUNT


@functools.lru_cache(maxsize=1)
def _single_device() -> bool:
    return simulated() or len(cuda.gpus) == 1


def on_device(device_id: int):
    """Context in which CUDA calls go to ``device_id`` (no switch on a one-GPU machine)."""
    if _single_device():
        return contextlib.nullcontext()
    return cuda.gpus[device_id]


def threads_per_block() -> int:
    return SIMULATOR_THREADS if simulated() else THREADS


@cuda.jit
def _fill(flat, value):
    for k in range(cuda.grid(1), flat.size, cuda.gridsize(1)):
        flat[k] = value


def fill(array, value) -> None:
    """Set every element of device array ``array`` (C-contiguous) to ``value``."""
    if array.size == 0:
        return
    config = launch_config(array.size)
    _fill[config.blocks, config.threads](array.reshape(array.size), array.dtype.type(value))


#: NumPy dtype -> the numba type name a kernel's shared memory is declared with.
def numba_type_name(value) -> str:
    dtype = np.asarray(value).dtype
    if dtype == np.bool_:
        dtype = np.dtype(np.int64)
    return str(numba.from_dtype(dtype))


def device_function(function):
    """``function`` (a Python function or numba dispatcher) compiled for the device, its own
    callees compiled for the device too."""
    return _device_function(getattr(function, "py_func", function))


_device_functions = memo.memo("device functions")   # (function,) -> its CUDA device function


def _device_function(function: types.FunctionType):
    found = _device_functions.get((function,))
    if found is None:
        found = _device_functions[(function,)] = _compiled_device_function(function)
    return found


def _compiled_device_function(function: types.FunctionType):
    names = {}
    for name in function.__code__.co_names:
        value = function.__globals__.get(name)
        if _is_callee(value):
            names[name] = device_function(value)
    if names:
        scope = dict(function.__globals__, **names)
        function = types.FunctionType(function.__code__, scope, function.__name__,
                                      function.__defaults__, function.__closure__)
    return cuda.jit(device=True)(function)


def _is_callee(value) -> bool:
    function = getattr(value, "py_func", value)
    return isinstance(function, types.FunctionType) and getattr(
        function, "__module__", "") not in ("math", "numpy") and not getattr(
        value, "_nad_no_device", False)


_COMBINE = {"+": lambda a, b: a + b, "*": lambda a, b: a * b, "max": max, "min": min}
_REDUCE = {"+": np.sum, "*": np.prod, "max": np.max, "min": np.min}


@dataclass
class LaunchRecord:
    kernel: int
    count: int
    blocks: int
    threads: int
    device: int


@dataclass
class Runtime:
    """What the host code of one offloaded program calls: allocation on ``device`` and kernel
    launches. ``kernels(number, threads, dtypes)`` returns the compiled kernel of that loop.
    ``launches`` records what ran (for the plan); ``events`` the CUDA events of ``timed`` runs."""

    kernels: object
    device: int = 0
    timed: bool = False
    launches: list = field(default_factory=list)
    events: list = field(default_factory=list)

    def kernel_seconds(self) -> float:
        """Seconds the kernels ran (CUDA events around each launch; ``timed`` runtimes only)."""
        total = 0.0
        for start, stop in self.events:
            stop.synchronize()
            total += start.elapsed_time(stop) / 1e3
        return total

    # allocations, with NumPy's signatures -------------------------------------------------------
    def empty(self, shape, dtype=float):
        with on_device(self.device):
            return cuda.device_array(shape, np.dtype(dtype))

    def full(self, shape, fill_value, dtype=None):
        array = self.empty(shape, np.asarray(fill_value).dtype if dtype is None else dtype)
        with on_device(self.device):
            fill(array, fill_value)
        return array

    def zeros(self, shape, dtype=float):
        return self.full(shape, 0, dtype)

    def ones(self, shape, dtype=float):
        return self.full(shape, 1, dtype)

    def empty_like(self, array, dtype=None):
        return self.empty(array.shape, array.dtype if dtype is None else dtype)

    def zeros_like(self, array, dtype=None):
        return self.zeros(array.shape, array.dtype if dtype is None else dtype)

    def ones_like(self, array, dtype=None):
        return self.ones(array.shape, array.dtype if dtype is None else dtype)

    def full_like(self, array, fill_value, dtype=None):
        return self.full(array.shape, fill_value, array.dtype if dtype is None else dtype)

    # launches -----------------------------------------------------------------------------------
    def launch(self, number: int, start, stop, step, arguments: tuple, initials: tuple):
        """Run kernel ``number`` over ``range(start, stop, step)``; returns the reductions'
        values, each combined with its value before the loop (``initials``)."""
        count = len(range(start, stop, step))
        if count == 0:
            return initials
        with on_device(self.device):
            partials = self.start(number, self.device, start, step, count, arguments, initials)
            if not initials:
                return ()
            return combined(initials, [[p.copy_to_host()] for p in partials],
                            self.kernels.operators(number))

    def start(self, number: int, device: int, first, step, count: int, arguments: tuple,
              initials: tuple) -> list:
        """Launch kernel ``number`` for iterations ``first, first + step, ...`` (``count`` of
        them) on ``device``, already current; returns the reductions' per-block partials (device
        arrays, ready once the launch is done)."""
        config = launch_config(count, device)
        dtypes = tuple(numba_type_name(v) for v in initials)
        operators = self.kernels.operators(number)
        kernel = self.kernels(number, config.threads, dtypes)
        partials = [cuda.device_array(config.blocks, np.dtype(d)) for d in dtypes]
        identities = tuple(identity(op, np.dtype(d)) for op, d in zip(operators, dtypes))
        if self.timed:
            events = (cuda.event(), cuda.event())
            events[0].record()
        kernel[config.blocks, config.threads](first, step, count, *arguments, *partials,
                                               *identities)
        if self.timed:
            events[1].record()
            self.events.append(events)
        self.launches.append(LaunchRecord(number, count, config.blocks, config.threads, device))
        return partials


def combined(initials: tuple, partials: list, operators: tuple) -> tuple:
    """Each reduction's value before the loop combined with its per-block partial values
    (``partials[r]``: a list of arrays, one per device), in a fixed order."""
    return tuple(_COMBINE[op](initial, type(initial)(_REDUCE[op](np.concatenate(parts))))
                 for initial, parts, op in zip(initials, partials, operators))


def identity(operator: str, dtype: np.dtype):
    if operator == "+":
        return dtype.type(0)
    if operator == "*":
        return dtype.type(1)
    if dtype.kind == "f":
        return dtype.type(-math.inf if operator == "max" else math.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.min if operator == "max" else info.max)


def to_device(host: np.ndarray, device: int = 0):
    with on_device(device):
        return cuda.to_device(np.ascontiguousarray(host))


def empty_like(host: np.ndarray, device: int = 0):
    with on_device(device):
        return cuda.device_array(host.shape, host.dtype)


def copy_to_host(device_array, host: np.ndarray | None = None):
    if host is None:
        return device_array.copy_to_host()
    if host.flags.c_contiguous:
        device_array.copy_to_host(host)
    else:
        host[...] = device_array.copy_to_host()
    return host


def synchronize(device: int = 0) -> None:
    with on_device(device):
        cuda.synchronize()
