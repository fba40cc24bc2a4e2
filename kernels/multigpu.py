"""Offloaded programs on several GPUs: each kernel's iterations split across the devices, each
device holding the rows of the arrays its iterations use.

An array is a :class:`Distributed`: one full-size buffer per device (and the host array), and
for each of these locations the rows where it holds the latest values. Nothing moves until it is
needed:

* before a launch each device gets the rows its chunk of iterations reads, from wherever they
  are freshest (the rows of each access ``A[c*i + k, ...]`` over the chunk; a stencil's reads
  ``u[i - 1]`` and ``u[i + 1]`` fetch one halo row from each neighbour); an access whose first
  index is not of that form needs every row;
* after it, rows written at ``A[c*i + k, ...]`` are fresh on their device only;
* arrays only added into (atomics, adjoints of shared reads) start from zeros on every device but
  the first, and are summed on the host after the launch; any other write is merged on the host
  by the elements each device changed (bitwise);
* the host reads single elements, and the results, from the freshest rows, which it fetches.

An argument copied in whole is copied to no device at all until a kernel needs its rows; one a
kernel overwrites is gathered to the host row by row from the devices that wrote it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from . import gpu

HOST = -1


class Distributed:
    """An array over ``devices`` (and the host). ``fresh[location]`` is a list of disjoint
    ``(start, stop)`` row intervals where that location holds the latest values."""

    def __init__(self, shape, dtype, devices: tuple, host: np.ndarray | None = None):
        self.shape, self.dtype, self.devices = tuple(shape), np.dtype(dtype), tuple(devices)
        self.host = host
        self.parts = []
        for device in self.devices:
            with cuda.gpus[device]:
                self.parts.append(cuda.device_array(self.shape, self.dtype))
        rows = (0, self.shape[0]) if self.shape and self.shape[0] else None
        self.fresh = {location: [] for location in (HOST, *range(len(self.devices)))}
        if host is not None and rows:
            self.fresh[HOST] = [rows]

    size = property(lambda self: int(np.prod(self.shape)))
    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0

    # -- freshness --------------------------------------------------------------------------------
    def ensure(self, location: int, start: int, stop: int) -> None:
        """Make rows [start, stop) fresh at ``location`` (``HOST`` or a device position)."""
        start, stop = max(start, 0), min(stop, self.rows)
        for a, b in _missing(self.fresh[location], start, stop):
            if location != HOST:
                self.ensure(HOST, a, b)
                with cuda.gpus[self.devices[location]]:
                    self.parts[location][a:b].copy_to_device(self._host()[a:b])
            else:
                for source, intervals in self.fresh.items():
                    if source == HOST:
                        continue
                    for c, d in _overlaps(intervals, a, b):
                        with cuda.gpus[self.devices[source]]:
                            self.parts[source][c:d].copy_to_host(self._host()[c:d])
            self.fresh[location] = _union(self.fresh[location], a, b)

    def wrote(self, location: int, start: int, stop: int) -> None:
        """Rows [start, stop) were changed at ``location``: stale everywhere else."""
        for other in self.fresh:
            self.fresh[other] = (_union(self.fresh[other], start, stop) if other == location
                                 else _minus(self.fresh[other], start, stop))

    def everywhere(self) -> None:
        """Every row fresh on every device (before a launch whose writes are merged)."""
        for k in range(len(self.devices)):
            self.ensure(k, 0, self.rows)

    def _host(self) -> np.ndarray:
        if self.host is None:
            self.host = np.empty(self.shape, self.dtype)
        return self.host

    # -- what the host code does --------------------------------------------------------------------
    def __getitem__(self, index):
        first = index[0] if isinstance(index, tuple) else index
        if isinstance(first, slice) or (isinstance(index, tuple) and len(index) < self.ndim) \
                or (not isinstance(index, tuple) and self.ndim > 1):
            raise TypeError("with several devices the host code may read single elements of "
                            "an array, not views of it")
        row = int(first) % self.rows
        self.ensure(HOST, row, row + 1)
        return self.host[index]

    def __setitem__(self, index, value) -> None:
        first = index[0] if isinstance(index, tuple) else index
        row = int(first) % self.rows
        self.ensure(HOST, row, row + 1)
        self.host[index] = value
        self.wrote(HOST, row, row + 1)

    def copy_to_host(self, host: np.ndarray | None = None) -> np.ndarray:
        self.ensure(HOST, 0, self.rows)
        if host is not None and host is not self.host:
            host[...] = self.host
            return host
        return self.host


def scatter(host: np.ndarray, devices: tuple) -> Distributed:
    """A caller's array over ``devices``: fresh on the host only, nothing copied yet."""
    return Distributed(host.shape, host.dtype, devices, np.ascontiguousarray(host))


def chunks(count: int, pieces: int) -> list[tuple[int, int]]:
    """``range(count)`` cut into ``pieces`` contiguous (start, stop), sizes differing by one."""
    bounds = [count * k // pieces for k in range(pieces + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(pieces) if bounds[k] < bounds[k + 1]]


@dataclass
class MultiRuntime(gpu.Runtime):
    """:class:`~nbautodiff.kernels.gpu.Runtime` over ``devices`` (see the module docstring).
    ``kernels.effects(number)`` says per kernel argument how the kernel writes it, and
    ``kernels.row_forms(number)`` which rows of it an iteration reads or writes (``()``: it only
    writes it; None: unknown rows)."""

    devices: tuple = (0,)
    merges: list = field(default_factory=list)

    def empty(self, shape, dtype=float):
        shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
        array = Distributed(shape, dtype, self.devices)
        for k in range(len(self.devices)):            # undefined values are fresh anywhere
            array.fresh[k] = [(0, array.rows)] if array.rows else []
        return array

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
        values = dict(zip(self.kernels.argument_names(number), arguments))
        effects, forms = self.kernels.effects(number), self.kernels.row_forms(number)
        merges = self._prepared(arguments, effects, forms, pieces, start, step, values)
        partials = [[] for _ in initials]
        for d, (first, last) in enumerate(pieces):
            local = [a.parts[d] if isinstance(a, Distributed) else a for a in arguments]
            with cuda.gpus[self.devices[d]]:
                parts = self.start(number, self.devices[d], start + first * step, step,
                                   last - first, local, initials)
            for r, part in enumerate(parts):
                partials[r].append(part)
        partials = [[part.copy_to_host() for part in parts] for parts in partials]
        for array, kind, detail in merges:
            self._merge(array, kind, detail)
        return gpu.combined(initials, partials, self.kernels.operators(number)) \
            if initials else ()

    def _prepared(self, arguments, effects, forms, pieces, start, step, values) -> list:
        """Fetch the rows each device reads; returns the merges to do after the launch."""
        merges = []
        for argument, effect, form in zip(arguments, effects, forms):
            if not isinstance(argument, Distributed):
                continue
            spans = [_span(form, start + first * step, start + (last - 1) * step, values)
                     for first, last in pieces]
            eager = effect is not None and effect[0] != "rows"
            if eager or any(span is None for span in spans):
                argument.everywhere()
            elif form == ():
                pass                                   # written, never read: nothing to fetch
            else:
                for d, (low, high) in enumerate(spans):
                    argument.ensure(d, low, high)
            if effect is None:
                continue
            if effect[0] == "rows":
                written = [_span((effect[1],), start + first * step,
                                 start + (last - 1) * step, values) for first, last in pieces]
                if all(w is not None for w in written):
                    merges.append((argument, "rows", written))
                    continue
                effect = ("changed",)
            if effect[0] == "added":
                for part, device in zip(argument.parts[1:], self.devices[1:]):
                    with cuda.gpus[device]:
                        gpu.fill(part, 0)
                merges.append((argument, "added", None))
            else:
                merges.append((argument, "changed", argument.copy_to_host().copy()))
        return merges

    def _merge(self, array: Distributed, kind: str, detail) -> None:
        if kind == "rows":
            for d, (low, high) in enumerate(detail):
                array.wrote(d, low, high)
        else:
            if kind == "added":
                total = array.parts[0].copy_to_host()
                for part, device in zip(array.parts[1:], self.devices[1:]):
                    with cuda.gpus[device]:
                        total = total + part.copy_to_host()
            else:
                total = detail.copy()
                for part, device in zip(array.parts, self.devices):
                    with cuda.gpus[device]:
                        mine = part.copy_to_host()
                    changed = _bits(mine) != _bits(detail)
                    total[changed] = mine[changed]
            array._host()[...] = total
            array.fresh = {location: [] for location in array.fresh}
            array.wrote(HOST, 0, array.rows)
        self.merges.append((kind, array.shape))


def _span(forms, first_index: int, last_index: int, values: dict):
    """Rows [low, high) that accesses of first index ``c*i + k`` (each of ``forms``) touch for
    ``i`` from ``first_index`` to ``last_index``; None when unknown."""
    if forms is None:
        return None
    low, high = None, None
    for coefficient, constant, terms in forms:
        offset = constant
        for term, count in terms:
            value = values.get(term)
            if not isinstance(value, (int, np.integer)):
                return None
            offset += count * int(value)
        ends = (coefficient * first_index + offset, coefficient * last_index + offset)
        low = min(ends) if low is None else min(low, *ends)
        high = max(ends) if high is None else max(high, *ends)
    return (low, high + 1) if low is not None else (0, 0)


def _missing(intervals: list, start: int, stop: int) -> list:
    out, cursor = [], start
    for a, b in intervals:
        if b <= cursor or a >= stop:
            continue
        if a > cursor:
            out.append((cursor, min(a, stop)))
        cursor = max(cursor, b)
    if cursor < stop:
        out.append((cursor, stop))
    return out


def _overlaps(intervals: list, start: int, stop: int) -> list:
    return [(max(a, start), min(b, stop)) for a, b in intervals if a < stop and b > start]


def _union(intervals: list, start: int, stop: int) -> list:
    if start >= stop:
        return intervals
    merged = []
    for a, b in sorted(intervals + [(start, stop)]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _minus(intervals: list, start: int, stop: int) -> list:
    out = []
    for a, b in intervals:
        if b <= start or a >= stop:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if b > stop:
            out.append((stop, b))
    return out


def _bits(array: np.ndarray) -> np.ndarray:
    """The elements of ``array`` as unsigned integers of their size (NaN and -0.0 compared
    exactly)."""
    return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")
