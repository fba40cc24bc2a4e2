"""What a replay (:mod:`nbautodiff.checks.replay`) records while it runs: the probes its code calls.

A replayed function calls these probes where the user's code decides something on a value that
depends on the differentiated inputs: a comparison (a branch), a kink (``abs``, ``min``,
``max``), a rounding (``floor``, ``int``...), an index made from a rounded value (a lookup
table), a ``while`` loop whose condition depends on them. Each probe computes what the code
would (on real parts) and, while a :class:`Recorder` is active (:func:`recording`), records per
:class:`Site`:

* the *margin* of each execution: how far the value is from the boundary where the decision
  changes (``|a - b|`` for ``a < b``, ``|x|`` for ``abs(x)``, the distance to the next integer
  for ``floor(x)``), and its *spread*: the first-order change of that difference when every
  differentiated input ``x_i`` moves by ``max(1, |x_i|)``, accumulated over the complex-step
  runs (one per input component, each carrying ``i H max(1, |x_k|)`` on its component ``k``).
  ``margin / spread`` is then the relative change of the inputs that reaches the boundary, to
  first order: :meth:`Record.distances`;
* branch outcomes, and the iteration count of each run of a ``while`` loop.

Runs of one replay take the same branches (the imaginary parts do not change real arithmetic),
so the k-th execution of a site is the same in every run; margins are kept from the first run.
With :attr:`Recorder.extra_iterations` set, a probed ``while`` loop keeps going for that many
more iterations (at least as many as it ran) after its condition turns false: how the
derivative converges compared with the value (:mod:`nbautodiff.checks.pitfalls`).
"""
from __future__ import annotations

import linecache
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import complex_math
from .complex_math import re

#: Imaginary step of the complex-step runs, relative to ``max(1, |x|)``.
H = 1e-60

_OPERATORS = {"Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt, "GtE": operator.ge,
              "Eq": operator.eq, "NotEq": operator.ne}
_SYMBOLS = {"Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Eq": "==", "NotEq": "!="}
#: Rounding functions by their spelling in normalised code -> where their jumps are.
ROUNDING = {"math.floor": "integer", "math.ceil": "integer", "math.trunc": "integer",
            "np.floor": "integer", "np.ceil": "integer", "np.trunc": "integer",
            "int": "integer", "np.int64": "integer", "np.int32": "integer", "np.intp": "integer",
            "round": "half", "np.rint": "half", "np.sign": "zero", "bool": "zero"}


@dataclass(eq=False)
class Site:
    """A place in the user's code where a decision depends on differentiated inputs.

    ``kind`` is one of "branch", "kink", "rounding", "lookup", "loop"; ``what`` names the
    construct (``abs``, ``<``, ``math.floor``, ``while``), ``function``/``filename``/``lineno``
    where it is in the user's source."""

    kind: str
    what: str
    function: str
    filename: str
    lineno: int

    @property
    def text(self) -> str:
        """The user's line of source, stripped ('' when it cannot be read)."""
        return linecache.getline(self.filename, self.lineno).strip() if self.filename else ""

    @property
    def where(self) -> str:
        return f"line {self.lineno} of {self.function}"


@dataclass(eq=False)
class Record:
    """What was seen at one site (see the module docstring)."""

    site: Site
    margins: list = field(default_factory=list)       # one float or flat array per execution
    spreads: list = field(default_factory=list)
    outcomes: list = field(default_factory=lambda: [0, 0])   # executions deciding True, False
    iterations: list = field(default_factory=list)    # loop: iterations of each run of the loop
    executions: int = 0

    def distances(self) -> np.ndarray:
        """Relative distance to the boundary of every execution (and array element): the
        margin over the spread; 0 on the boundary, inf where the boundary does not move (also
        for a tie of two values that move together, such as ``max(a, a)``)."""
        if not self.margins:
            return np.zeros(0)
        margins = np.concatenate([np.ravel(m) for m in self.margins]).astype(float)
        spreads = np.concatenate([np.ravel(s) for s in self.spreads]).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where((margins == 0.0) & (spreads > 0.0), 0.0, margins / spreads)
        out[np.isnan(out)] = np.inf
        return out

    def closest(self) -> float:
        distances = self.distances()
        return float(distances.min()) if distances.size else np.inf


@dataclass(eq=False)
class Recorder:
    """Records of the sites reached during the runs inside :func:`recording`."""

    extra_iterations: int = 0
    budget: int | None = None                           # most loop iterations of one run
    records: dict = field(default_factory=dict)        # Site -> Record
    run: int = 0
    _counters: dict = field(default_factory=dict)
    _loops: list = field(default_factory=list)         # [site, iterations, extras left] per loop

    def start_run(self, run: int) -> None:
        self.run = run
        self._counters = {}
        self._loops = []

    def record(self, site: Site) -> Record:
        found = self.records.get(site)
        if found is None:
            found = self.records[site] = Record(site)
        return found

    def observe(self, site: Site, margin, spread) -> None:
        record = self.record(site)
        k = self._counters.get(site, 0)
        self._counters[site] = k + 1
        if self.run == 0:
            record.executions += 1
            record.margins.append(np.abs(margin).astype(float) if np.ndim(margin) else
                                  abs(float(margin)))
            record.spreads.append(np.abs(spread).astype(float) if np.ndim(spread) else
                                  abs(float(spread)))
        elif k < len(record.spreads):
            record.spreads[k] = record.spreads[k] + np.abs(spread)

    def outcome(self, site: Site, result) -> None:
        if self.run == 0 and np.ndim(result) == 0:
            self.record(site).outcomes[0 if result else 1] += 1


_current: Recorder | None = None


@contextmanager
def recording(recorder: Recorder):
    """Make ``recorder`` record what the probes see until the block ends."""
    global _current
    saved, _current = _current, recorder
    try:
        yield recorder
    finally:
        _current = saved


def _difference(site: Site, difference) -> None:
    if _current is not None:
        _current.observe(site, re(difference), np.imag(difference) / H)


def compare(site: Site, op: str, left, right):
    """``left <op> right`` on real parts, recording the margin ``|left - right|``."""
    result = _OPERATORS[op](re(left), re(right))
    if _current is not None:
        _difference(site, left - right)
        _current.outcome(site, result)
    return result


def kink(site: Site, rule: str, *args):
    """``abs``/``fabs`` (margin ``|x|``), ``min``/``max`` (``|x - y|``), ``np.max``/``np.min``
    of an array (the gap between its two extreme elements), evaluated as the complex step does."""
    if _current is not None:
        if rule in ("abs_", "fabs"):
            _difference(site, args[0])
        elif rule in ("minimum", "maximum"):
            _difference(site, args[0] - args[1])
        elif np.size(args[0]) > 1:                                 # max_ / min_
            flat = np.ravel(args[0])
            order = np.argsort(re(flat))
            first, second = (order[-1], order[-2]) if rule == "max_" else (order[0], order[1])
            _difference(site, flat[first] - flat[second])
    return complex_math.BY_RULE[rule](*args)


def rounding(site: Site, function, jumps: str, value, *rest):
    """``function(value, *rest)`` on real parts, recording the distance of ``value`` to the
    nearest jump of ``function`` (an integer, a half-integer, or zero)."""
    if _current is not None:
        real = np.asarray(re(value), dtype=float)
        if jumps == "integer":
            margin = np.abs(real - np.round(real))
        elif jumps == "half":
            margin = np.abs(np.abs(real - np.floor(real)) - 0.5)
        else:
            margin = np.abs(real)
        _current.observe(site, margin, np.imag(value) / H)
    return complex_math.real_call(function, value, *rest)


def lookup(site: Site) -> None:
    """An array is indexed with a value rounded from differentiated inputs."""
    if _current is not None:
        _current.observe(site, np.inf, 0.0)


def enter(site: Site) -> None:
    """A probed ``while`` loop starts."""
    if _current is not None:
        _current._loops.append([site, 0, None])


def iterate(site: Site, condition) -> bool:
    """The test of a probed ``while`` loop: ``condition``, counting iterations, and with
    ``extra_iterations`` continuing that many more (or as many as it ran) once it is false."""
    recorder = _current
    if recorder is None or not recorder._loops or recorder._loops[-1][0] is not site:
        return bool(condition)
    state = recorder._loops[-1]
    if recorder.budget is not None:
        recorder.budget -= 1
        if recorder.budget < 0:
            raise RuntimeError("a loop run further did not stop")
    if condition and state[2] is None:
        state[1] += 1
        return True
    if recorder.extra_iterations and state[2] is None:
        state[2] = max(recorder.extra_iterations, state[1])
    if state[2]:
        state[2] -= 1
        return True
    recorder._loops.pop()
    if recorder.run == 0:
        recorder.record(site).iterations.append(state[1])
    return False


def symbol(op: str) -> str:
    return _SYMBOLS[op]
