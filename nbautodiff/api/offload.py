"""``offload(fun, devices=None)``: run a function's parallel loops on CUDA GPUs.

The function's ``prange`` loops become kernels and the rest runs on the host
(:mod:`nbautodiff.transforms.offloading`); arrays move as the analysis decides:

* an argument array the function reads is copied to the device; one it only writes is
  allocated there when a kernel provably writes every element, copied otherwise;
* an argument array it writes is copied back into the caller's array after the call;
* a device array (``numba.cuda`` or anything with ``__cuda_array_interface__``) is used in place;
* tuples, namedtuples and dataclasses of arrays move field by field;
* arrays the function allocates and returns come back as NumPy arrays, unless every array
  argument was a device array (then results stay on the device too).

``offload(grad(f))``, ``offload(value_and_grad(f))``, ``offload(reverse(f, ...))`` and
``offload(forward(f, ...))`` run the generated derivative the same way: its loops that are
independent become kernels, adjoints added into shared elements by atomic additions.

``devices``: None (the current device), an int, a list of ints, or "all". With several devices
every kernel splits its iterations across them (:class:`~nbautodiff.kernels.gpu.MultiRuntime`).

Without a GPU (and without ``NUMBA_ENABLE_CUDASIM=1``) the call says so in one line and runs on
the CPU: the function compiled by ``numba.njit(parallel=True)``, a derivative as it is.
``.plan`` describes the latest call: what moved where, how many bytes, which kernels ran.
"""
from __future__ import annotations

import dataclasses
import html
import numbers
import sys
from dataclasses import dataclass, field

import numba
import numpy as np

from nbautodiff import cache, naming
from nbautodiff.errors import AutodiffError
from nbautodiff.frontend.source import function_source, python_function
from nbautodiff.kernels import gpu, multigpu
from nbautodiff.pipeline import program
from nbautodiff.transforms import offloading
from nbautodiff.errors import OffloadError
from nbautodiff.transforms.offloading import ArgumentKind
from .derivative import Derivative

_warned_no_gpu = False


@dataclass(frozen=True)
class Movement:
    """How one array argument (or field) moved: ``action`` is "copied in", "copied in and out",
    "allocated, copied out", "copied in (shape only)" or "on the device (in place)"."""

    name: str
    shape: tuple
    dtype: str
    action: str
    nbytes: int


@dataclass
class OffloadPlan:
    """The data movement and kernels of one offloaded call."""

    function: str
    device: str
    kernel_seconds: float | None = None    # with ``OffloadFunction.timed``: kernels' run time
    movements: list = field(default_factory=list)
    kernels: list = field(default_factory=list)   # (kernel number, line, iterations, blocks,
    #                                                threads, reductions, atomics, device)
    merges: list = field(default_factory=list)    # several devices: (how, shape) per array
    #                                               made equal again after a launch

    @property
    def bytes_to_device(self) -> int:
        return sum(m.nbytes for m in self.movements if "in" in m.action.split(",")[0]
                   and "shape only" not in m.action and "place" not in m.action
                   and not m.action.startswith("allocated"))

    @property
    def bytes_to_host(self) -> int:
        return sum(m.nbytes for m in self.movements if "out" in m.action)

    def rows(self) -> list[tuple]:
        return [(m.name, "x".join(map(str, m.shape)) or "()", m.dtype, m.action,
                 _bytes(m.nbytes)) for m in self.movements]

    def __str__(self) -> str:
        lines = [f"offload plan of {self.function}() on {self.device}:"]
        for row in self.rows():
            lines.append("  {:<16} {:>12} {:>8}  {:<26} {:>10}".format(*row))
        lines.append(f"  to device {_bytes(self.bytes_to_device)}, to host "
                     f"{_bytes(self.bytes_to_host)}")
        for how, shape in self.merges:
            lines.append(f"  merged across devices: {'x'.join(map(str, shape))} by {how}")
        for number, line, count, blocks, threads, reductions, atomics, device in self.kernels:
            extra = "".join([f", reduces {', '.join(reductions)}" if reductions else "",
                             f", {atomics} atomic addition(s)" if atomics else ""])
            lines.append(f"  kernel {number} (loop at line {line}): {count} iterations on "
                         f"{blocks}x{threads} threads of device {device}{extra}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("array", "shape", "dtype", "movement", "bytes"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows())
        kernels = "<br>".join(html.escape(line) for line in str(self).splitlines()
                              if line.lstrip().startswith("kernel"))
        return (f"<div><b>offload plan of {html.escape(self.function)}()</b> on "
                f"{html.escape(self.device)}<table><tr>{head}</tr>{body}</table>"
                f"to device {_bytes(self.bytes_to_device)}, to host "
                f"{_bytes(self.bytes_to_host)}<br>{kernels}</div>")


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class OffloadFunction(Derivative):
    """``offload(fun, devices)``; see the module docstring. ``.plan`` is the latest call's
    :class:`OffloadPlan`, ``.source`` the latest program's host code and kernels. For a
    derivative ``fun`` (any :class:`~nbautodiff.api.derivative.Derivative` that can run its
    compiled calls elsewhere) its generated code runs here: ``fun.offloaded(runner)``."""

    kind = "offload"

    def __init__(self, fun, devices=None):
        self.devices = _checked_devices(devices)
        self.derived = isinstance(fun, Derivative)
        super().__init__(fun)
        self._plan = None
        self.timed = False           # True: time each kernel with CUDA events (plan.kernel_seconds)
        self._programs: dict = {}
        self._latest = None
        self._on_device = None
        self.__doc__ = f"{getattr(fun, '__name__', 'function')} offloaded to a CUDA GPU"

    @property
    def function_name(self) -> str:
        inner = getattr(self.primal, "function_name", None)
        return inner if isinstance(inner, str) else getattr(self.primal, "__name__", "function")

    def lower_refusal(self) -> str:
        return ("an offloaded function runs on a GPU; differentiate or batch the function, "
                "then offload the result")

    def __call__(self, *args):
        if not gpu.available():
            return self._on_cpu(args)
        if self.derived:
            if self._on_device is None:
                self._on_device = self.primal.offloaded(
                    lambda dispatcher, arguments: self._run(python_function(dispatcher),
                                                            arguments))
            return self._on_device(*args)
        return self._run(python_function(self.primal), args)

    # -- CPU fallback ------------------------------------------------------------------------------
    def _on_cpu(self, args):
        global _warned_no_gpu
        if not _warned_no_gpu:
            print("nbautodiff: no CUDA GPU here; offloaded functions run on the CPU "
                  "(numba parallel=True)", file=sys.stderr)
            _warned_no_gpu = True
        if self.derived:
            return self.primal(*args)
        cpu = self._programs.get("cpu")
        if cpu is None:
            cpu = self._programs["cpu"] = numba.njit(parallel=True)(
                python_function(self.primal))
        return cpu(*args)

    # -- GPU ---------------------------------------------------------------------------------------
    def _run(self, func, args):
        fs = function_source(func)
        if len(args) != len(fs.parameters):
            raise TypeError(f"{fs.name}() takes {len(fs.parameters)} arguments, got {len(args)}")
        kinds = {name: _kind(value, name, fs.name) for name, value in zip(fs.parameters, args)}
        key = (func, tuple((n, _structure(k)) for n, k in kinds.items()), self.devices)
        entry = self._programs.get(key)
        if entry is None:
            entry = self._programs[key] = _Compiled(func, fs, kinds, self.devices)
        self._latest = entry
        try:
            result, self._plan = entry.call(args, self.timed)
        except Exception as error:
            if not gpu.out_of_memory(error):
                raise
            need = sum(a.nbytes for a in args if isinstance(a, np.ndarray))
            raise OffloadError(
                f"{fs.name}(): the GPU ran out of memory ({_bytes(need)} of array arguments, "
                f"plus what the function allocates); use smaller arrays, free device arrays, "
                f"or several devices") from None
        return result

    @property
    def plan(self) -> OffloadPlan | None:
        """The latest call's :class:`OffloadPlan` (None before the first call on a GPU)."""
        if callable(self._plan):
            self._plan = self._plan()
        return self._plan

    @property
    def source(self) -> str:
        """The host code and kernels of the latest call's program ("" before the first call)."""
        return "" if self._latest is None else self._latest.describe()

    @property
    def parameters(self) -> list[str]:
        inner = getattr(self.primal, "parameters", None)
        return inner if isinstance(inner, list) else function_source(self.primal).parameters


class _Compiled:
    """One offload program, its host function, its kernels compiled on demand. It is the
    ``kernels`` of its runtime (:class:`~nbautodiff.kernels.gpu.Runtime`): called with (kernel
    number, threads, reduction dtypes) it returns that kernel compiled; its other methods say
    what each kernel reduces, reads and writes. The host code and every kernel are artifacts of
    :mod:`.cache` (target "cuda"), keyed by ``func`` (its source and all it reads) and the
    generated text; a kernel's compiled code is kept in its entry, so a new process on the same
    GPU neither generates nor compiles again."""

    def __init__(self, func, fs, kinds: dict, devices: tuple):
        self.fs = fs
        self.program = offloading.split(fs, dict(kinds), fs.generated,
                                        lambda callee: program.primal(callee).writes)
        self.devices = devices
        self._kernels: dict = {}
        scope = dict(fs.globals)
        scope.update(fs.closure)
        self.scope = scope
        self.key = cache.key("offload host", func, self.program.host_source, target="cuda")
        host = _artifact(self.key, f"offload_host_{fs.name}", self.program.host_source + "\n")
        self.host = host.load(dict(scope))[self.program.host_name]

    def describe(self) -> str:
        kernels = "\n\n".join(k.source(gpu.threads_per_block(),
                                       tuple("float64" for _ in k.reductions))
                              for k in self.program.kernels)
        return f"{self.program.host_source}\n\n# kernels\n{kernels}"

    def __call__(self, number: int, threads: int, dtypes: tuple):
        key = (number, threads, dtypes)
        compiled = self._kernels.get(key)
        if compiled is None:
            spec = self.program.kernels[number]
            namespace = dict(self.scope)
            namespace.update(cuda=gpu.cuda, numba=numba, math=__import__("math"))
            for name in _called_names(spec):
                value = namespace.get(name)
                if gpu._is_callee(value):
                    namespace[name] = gpu.device_function(value)
            text = spec.source(threads, dtypes)
            entry = _artifact(cache.key("offload kernel", self.key, text, target="cuda"),
                              f"offload_kernel_{self.fs.name}_{number}", text)
            compiled = gpu.cuda.jit(entry.load(namespace)[spec.name], cache=entry.key.shared)
            entry.attach(compiled)
            self._kernels[key] = compiled
        return compiled

    def operators(self, number: int) -> tuple:
        return tuple(r.operator for r in self.program.kernels[number].reductions)

    def argument_names(self, number: int) -> tuple:
        return self.program.kernels[number].arguments

    def row_forms(self, number: int) -> list:
        """Per argument of kernel ``number``: the forms of the first index of its accesses,
        () when the kernel writes but never reads it, None when unknown (see parallel)."""
        loop = self.program.kernels[number].loop
        def forms(name):
            if name not in loop.row_forms:
                return ()                           # not indexed in the loop (a shape, a scalar)
            if name in loop.arrays_written and name not in loop.arrays_read:
                return () if loop.row_forms[name] is not None else None
            return loop.row_forms[name]
        return [forms(name) for name in self.program.kernels[number].arguments]

    def effects(self, number: int) -> list:
        """Per argument of kernel ``number``: None (not written), ("rows", form) (written at
        rows ``c*i + k``), ("added",) (only added into) or ("changed",)."""
        loop = self.program.kernels[number].loop
        effects = []
        for name in self.program.kernels[number].arguments:
            if name not in loop.arrays_written:
                effects.append(None)
            elif name in loop.partitions and loop.partitions[name][0] == 0:
                effects.append(("rows", loop.partitions[name][1]))
            elif name in loop.accumulated:
                effects.append(("added",))
            else:
                effects.append(("changed",))
        return effects

    def call(self, args, timed: bool = False):
        """Run the program on ``args``: (result, a function building the call's plan)."""
        program = self.program
        device = self.devices[0]
        runtime = (gpu.Runtime(self, device, timed) if len(self.devices) == 1 else
                   multigpu.MultiRuntime(self, device, timed, devices=self.devices))
        self.host.__globals__[naming.OFFLOAD_RUNTIME] = runtime
        self._refuse_shared_memory(args)
        moved_arrays, leaves, write_back = [], [], []
        all_on_device = True
        for name, value in zip(self.fs.parameters, args):
            for leaf, item in _leaves(name, value, program):
                on_host = isinstance(item, np.ndarray)
                if not (on_host or gpu.is_device_array(item)):
                    leaves.append(item)
                    continue
                moved, action = self._to_device(leaf, item, device, on_host)
                if on_host:
                    all_on_device = False
                    if leaf in program.writes:
                        write_back.append((moved, item))
                moved_arrays.append((leaf, item, moved, action))
                leaves.append(moved)
        result = self.host(*leaves)
        for moved, original in write_back:
            gpu.copy_to_host(moved, original)
        host_of = {id(moved): item for _, item, moved, _ in moved_arrays if moved is not item}
        result = _results(result, host_of, all_on_device)
        kernel_seconds = runtime.kernel_seconds() if timed else None
        return result, lambda: self._plan(device, moved_arrays, runtime.launches, kernel_seconds,
                                          getattr(runtime, "merges", []))

    def _refuse_shared_memory(self, args) -> None:
        """An OffloadError when two host arrays passed share memory and the function writes
        one: each gets a device copy of its own, so a write through one would not be seen
        through the other, as it is on the CPU."""
        arrays = [(leaf, item) for name, value in zip(self.fs.parameters, args)
                  for leaf, item in _leaves(name, value, self.program)
                  if isinstance(item, np.ndarray)]
        for k, (leaf, item) in enumerate(arrays):
            for other, other_item in arrays[k + 1:]:
                written = [x for x in (leaf, other) if x in self.program.writes]
                if written and _overlap(item, other_item):
                    raise OffloadError(
                        f"arguments '{_label(leaf)}' and '{_label(other)}' "
                        f"share memory and the function writes '{_label(written[0])}': on the "
                        "GPU each is a copy of its own, so the write would not be seen through "
                        f"the other; pass a copy ('{_label(other)}.copy()')",
                        construct="arguments sharing memory", function=self.fs.name)

    def _plan(self, device, moved_arrays, launches, kernel_seconds, merges) -> OffloadPlan:
        kernels = self.program.kernels
        movements = [Movement(_label(leaf), tuple(item.shape), str(item.dtype), action,
                              int(item.nbytes)) for leaf, item, _, action in moved_arrays]
        names = ", ".join(gpu.device_name(d) for d in self.devices)
        return OffloadPlan(self.fs.name, names, kernel_seconds, movements,
                           [(r.kernel, kernels[r.kernel].lineno, r.count, r.blocks, r.threads,
                             [x.name for x in kernels[r.kernel].reductions],
                             kernels[r.kernel].atomics, r.device) for r in launches],
                           list(merges))

    def _to_device(self, leaf: str, value, device: int, on_host: bool):
        program = self.program
        if len(self.devices) > 1:
            if not on_host:
                raise OffloadError(f"argument '{_label(leaf)}' is a device array: with several "
                                   "devices pass NumPy arrays (each device gets a copy)")
            return multigpu.scatter(value, self.devices), \
                f"rows copied in{' and out' if leaf in program.writes else ''} as needed"
        if not on_host:
            return value, "on the device (in place)"
        read, written = leaf in program.reads, leaf in program.writes
        if leaf in program.overwritten:
            return gpu.empty_like(value, device), "allocated, copied out"
        if not read and not written:
            return gpu.empty_like(value, device), "allocated (shape only)"
        moved = gpu.to_device(value, device)
        return moved, "copied in and out" if written else "copied in"


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` share memory (True when NumPy cannot tell cheaply)."""
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:
        return True


def _artifact(artifact_key, stem: str, text: str):
    """The cache entry of generated offload code ``text`` (see :class:`_Compiled`)."""
    return cache.artifact(artifact_key, lambda: cache.Built(stem, text))


def _called_names(spec) -> set[str]:
    import ast
    return {n.func.id for n in ast.walk(ast.Module(body=spec.loop.loop.body, type_ignores=[]))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _kind(value, name: str, fname: str) -> ArgumentKind:
    if isinstance(value, (bool, numbers.Number, np.generic)):
        return _SCALAR
    if isinstance(value, np.ndarray) or gpu.is_device_array(value):
        return _ARRAYS[len(value.shape)] if len(value.shape) < len(_ARRAYS) else \
            ArgumentKind("array", len(value.shape))
    fields = _aggregate_fields(value)
    if fields is not None:
        return ArgumentKind("aggregate", fields=tuple(
            (k, _kind(v, f"{name}.{k}", fname)) for k, v in fields), container=type(value))
    raise OffloadError(f"argument '{name}' of {fname}() is {type(value).__name__}: offload "
                       "takes numbers, arrays (NumPy or device) and tuples, namedtuples or "
                       "dataclasses of those")


def _aggregate_fields(value) -> list | None:
    """(key, field) pairs of a tuple, namedtuple or dataclass instance; None for anything else."""
    if isinstance(value, tuple):
        return ([(k, getattr(value, k)) for k in value._fields] if hasattr(value, "_fields")
                else list(enumerate(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    return None


_SCALAR = ArgumentKind("scalar")
_ARRAYS = [ArgumentKind("array", ndim) for ndim in range(8)]


def _structure(kind: ArgumentKind):
    if kind.kind == "aggregate":
        return ("aggregate", kind.container, tuple((k, _structure(s)) for k, s in kind.fields))
    return (kind.kind, kind.ndim)


def _leaves(name: str, value, program):
    """(flattened name, value) of an argument: itself, or each field of an aggregate."""
    if name not in program.leaves:
        return [(name, value)]
    out = []
    for key, leaf in program.leaves[name]:
        item = getattr(value, key) if isinstance(key, str) else value[key]
        out.append((leaf, item))
    return out


def _label(leaf: str) -> str:
    if leaf.startswith(naming.OFFLOAD_FIELD):
        parameter, key = leaf[len(naming.OFFLOAD_FIELD):].split("__", 1)
        return f"{parameter}.{key}" if not key.isdigit() else f"{parameter}[{key}]"
    return leaf


def _results(value, host_of: dict, stay_on_device: bool):
    if isinstance(value, tuple):
        return tuple(_results(v, host_of, stay_on_device) for v in value)
    if isinstance(value, multigpu.Distributed) or gpu.is_device_array(value):
        if id(value) in host_of:
            return host_of[id(value)]
        return value if stay_on_device else value.copy_to_host()
    return value


def _checked_devices(devices) -> tuple:
    if devices is None:
        return (0,)
    count = gpu.device_count()
    if isinstance(devices, str):
        if devices != "all":
            raise OffloadError(f"devices must be None, an int, a list of ints or 'all', got "
                               f"{devices!r}")
        return tuple(range(max(count, 1)))
    chosen = (devices,) if isinstance(devices, numbers.Integral) else tuple(devices)
    if not chosen or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                             for d in chosen):
        raise OffloadError(f"devices must be None, an int, a list of ints or 'all', got "
                           f"{devices!r}")
    if gpu.available():
        missing = [d for d in chosen if not 0 <= d < count]
        if missing:
            raise OffloadError(f"no CUDA device {missing[0]}: this machine has {count} "
                               f"(0..{count - 1})")
    if len(set(chosen)) != len(chosen):
        raise OffloadError(f"device listed twice in {devices!r}")
    return tuple(int(d) for d in chosen)


def offload(fun, devices=None) -> OffloadFunction:
    """``fun`` with its parallel loops run on CUDA GPU(s); see the module docstring."""
    if isinstance(fun, OffloadFunction):
        raise AutodiffError("function is offloaded already")
    if isinstance(fun, Derivative) and not fun.offloadable:
        fun.offloaded(None)                  # the AutodiffError saying why
    return OffloadFunction(fun, devices)
