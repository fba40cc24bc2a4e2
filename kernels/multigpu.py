"""Offloaded programs on several GPUs: each kernel's iterations split across the devices.

Every device holds a copy of every array (:class:`Replicas`); a launch gives each device a
contiguous chunk of the iterations and runs the chunks at once; afterwards the copies of each
array the kernel wrote are made equal again, by what :mod:`nbautodiff.parallel` knows of the
writes:

* written at index position 0 ``c*i + k`` (iterations touch disjoint rows): each device's rows
  are copied to the others (a slab per device, through the host);
* only added into (atomics, or the adjoints of shared reads): devices other than the first
  start from zeros and the copies are summed;
* anything else: each device's changed elements (bitwise, against a copy taken before the
  launch) are copied to the others.

Reductions combine the per-block partials of every device. Host code reads single elements
from the first device and writes them to all. The copies go through the host, so a kernel that
moves little data per element gains less than its share of devices; compute-heavy kernels
gain most.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from . import gpu


class Replicas:
    """One array held on several devices (``parts[k]`` on ``devices[k]``), equal between
    launches. Quacks like a device array for the host code of an offloaded program."""

    def __init__(self, parts: list, devices: tuple):
        self.parts, self.devices = list(parts), tuple(devices)

    shape = property(lambda self: self.parts[0].shape)
    dtype = property(lambda self: self.parts[0].dtype)
    size = property(lambda self: self.parts[0].size)
    ndim = property(lambda self: len(self.parts[0].shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        with cuda.gpus[self.devices[0]]:
            first = self.parts[0][index]
        if not gpu.is_device_array(first):
            return first
        views = [first]
        for part, device in zip(self.parts[1:], self.devices[1:]):
            with cuda.gpus[device]:
                views.append(part[index])
        return Replicas(views, self.devices)

    def __setitem__(self, index, value) -> None:
        for part, device in zip(self.parts, self.devices):
            with cuda.gpus[device]:
                part[index] = value

    def copy_to_host(self, host: np.ndarray | None = None) -> np.ndarray:
        with cuda.gpus[self.devices[0]]:
            return gpu.copy_to_host(self.parts[0], host)

    def broadcast(self, values: np.ndarray, rows: slice = slice(None), skip: int = -1) -> None:
        """Write ``values`` into ``rows`` of every copy but ``skip``."""
        for k, (part, device) in enumerate(zip(self.parts, self.devices)):
            if k != skip:
                with cuda.gpus[device]:
                    part[rows].copy_to_device(np.ascontiguousarray(values))

    def part_to_host(self, k: int, rows: slice = slice(None)) -> np.ndarray:
        with cuda.gpus[self.devices[k]]:
            return self.parts[k][rows].copy_to_host()


def replicate(host: np.ndarray, devices: tuple) -> Replicas:
    return Replicas([gpu.to_device(host, d) for d in devices], devices)


def chunks(count: int, pieces: int) -> list[tuple[int, int]]:
    """``range(count)`` cut into ``pieces`` contiguous (start, stop), sizes differing by one."""
    bounds = [count * k // pieces for k in range(pieces + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(pieces) if bounds[k] < bounds[k + 1]]


@dataclass
class MultiRuntime(gpu.Runtime):
    """:class:`~nbautodiff.kernels.gpu.Runtime` over ``devices``: arrays are
    :class:`Replicas`, launches split their iterations (see the module docstring).
    ``kernels.effects(number)`` says, per kernel argument, how the kernel writes it."""

    devices: tuple = (0,)
    merges: list = field(default_factory=list)

    def empty(self, shape, dtype=float):
        return Replicas([cuda_empty(shape, dtype, d) for d in self.devices], self.devices)

    def full(self, shape, fill_value, dtype=None):
        array = self.empty(shape, np.asarray(fill_value).dtype if dtype is None else dtype)
        for part, device in zip(array.parts, self.devices):
            with cuda.gpus[device]:
                gpu.fill(part, fill_value)
        return array

    def launch(self, number: int, start, stop, step, arguments: tuple, initials: tuple):
        count = len(range(start, stop, step))
        if count == 0:
            return initials
        pieces = chunks(count, len(self.devices))
        merges = self._planned_merges(number, arguments, pieces, start, step)
        dtypes = tuple(gpu.numba_type_name(v) for v in initials)
        operators = self.kernels.operators(number)
        partials = [[] for _ in initials]
        for d, ((first, last), device) in enumerate(zip(pieces, self.devices)):
            with cuda.gpus[device]:
                config = gpu.launch_config(last - first, device)
                kernel = self.kernels(number, config.threads, dtypes)
                parts = [cuda.device_array(config.blocks, np.dtype(t)) for t in dtypes]
                identities = tuple(gpu.identity(op, np.dtype(t))
                                   for op, t in zip(operators, dtypes))
                local = [a.parts[d] if isinstance(a, Replicas) else a for a in arguments]
                kernel[config.blocks, config.threads](start + first * step, step, last - first,
                                                       *local, *parts, *identities)
                self.launches.append(gpu.LaunchRecord(number, last - first, config.blocks,
                                                      config.threads, device))
                for r, part in enumerate(parts):
                    partials[r].append(part)
        partials = [[part.copy_to_host() for part in parts] for parts in partials]
        for array, kind, detail in merges:
            self._merge(array, kind, detail)
        return gpu.combined(initials, partials, operators) if initials else ()

    def _planned_merges(self, number, arguments, pieces, start, step) -> list:
        """Per array the kernel writes: (array, kind, detail), decided (and readied: copies
        taken, accumulators zeroed) before the launch; kinds as in the module docstring."""
        values = dict(zip(self.kernels.argument_names(number), arguments))
        merges = []
        for argument, effect in zip(arguments, self.kernels.effects(number)):
            if effect is None:
                continue
            if effect[0] == "rows":
                rows = [_rows(effect[1], start + first * step, start + (last - 1) * step,
                              values, len(argument)) for first, last in pieces]
                if all(r is not None for r in rows):
                    merges.append((argument, "rows", rows))
                    continue
                effect = ("changed",)
            if effect[0] == "added":
                for part, device in zip(argument.parts[1:], argument.devices[1:]):
                    with cuda.gpus[device]:
                        gpu.fill(part, 0)
                merges.append((argument, "added", None))
            else:
                merges.append((argument, "changed", argument.copy_to_host()))
        return merges

    def _merge(self, array: Replicas, kind: str, detail) -> None:
        if kind == "rows":
            for d, selected in enumerate(detail):
                array.broadcast(array.part_to_host(d, selected), selected, skip=d)
        elif kind == "added":
            total = array.part_to_host(0)
            for d in range(1, len(array.parts)):
                total = total + array.part_to_host(d)
            array.broadcast(total)
        else:
            merged = detail.copy()
            for d in range(len(array.parts)):
                mine = array.part_to_host(d)
                changed = _bits(mine) != _bits(detail)
                merged[changed] = mine[changed]
            array.broadcast(merged)
        self.merges.append((kind, tuple(array.shape)))


def cuda_empty(shape, dtype, device: int):
    with cuda.gpus[device]:
        return cuda.device_array(shape, np.dtype(dtype))


def _rows(form, first_index: int, last_index: int, values: dict, length: int):
    """The slice of rows ``c*i + k`` covers for ``i`` from ``first_index`` to ``last_index``,
    or None when ``k`` cannot be evaluated from the kernel's arguments or leaves the array."""
    coefficient, constant, terms = form
    offset = constant
    for term, count in terms:
        value = values.get(term)
        if not isinstance(value, (int, np.integer)):
            return None
        offset += count * int(value)
    ends = sorted((coefficient * first_index + offset, coefficient * last_index + offset))
    if ends[0] < 0 or ends[1] >= length:
        return None
    return slice(ends[0], ends[1] + 1)


def _bits(array: np.ndarray) -> np.ndarray:
    """The elements of ``array`` as unsigned integers of their size (NaN and -0.0 compared
    exactly)."""
    return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")
