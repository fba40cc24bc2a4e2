"""Soundness checks of one program in every mode: right, refused where it says, or a defect.

The promise is "never a silently wrong derivative": for any program a user writes, each
transform either gives the right answer (and leaves the caller's arrays exactly as the function
itself leaves them) or refuses with an ``AutodiffError`` naming the user's own line. This module
checks that promise for one program, given as the text of a module::

    result = check_program('''
    def f(x):
        B = x.reshape(2, 3)
        B[1, 0] = B[0, 0] * B[1, 1]
        return np.sum(x * x)
    ''', (np.arange(1.0, 7.0),), argnums=0)
    assert_sound(result)          # fails with a readable report

The text is written to a file of its own (``import math`` and ``import numpy as np`` prepended)
and imported, so nbautodiff reads its source like any module's; it must define ``f`` (and may
define helpers). ``check_program`` runs the primal (plain Python) on copies of the arguments,
then each mode on fresh copies:

* ``reverse``: ``nad.grad(f, argnums)`` against central differences (``fd.central_diff``); for a
  function returning an array (or a tuple), ``nad.vjp`` with a random cotangent against
  ``fd.fd_vjp``;
* ``forward``: ``nad.jvp`` along a random direction against ``fd.directional_diff`` (for an array
  result, of ``sum(c * f)`` for a random ``c``);
* ``batch``: ``nad.batch(f, in_axes)`` on 3 stacked argument sets (the given one and two
  perturbed copies; float arrays and float scalars batched, ints and int/bool arrays ``None``)
  against a single primal call per set.

and classifies each as

* ``RIGHT``: matches (``|ad - fd| <= atol + rtol |fd|``, ``rtol=1e-5``, ``atol`` 1e-6 of the
  scale of the values) and the caller's arrays are as the primal leaves them;
* ``REFUSED``: an ``AutodiffError`` naming ``line N`` of the program's own functions (and, when it
  names a function, one the program defines);
* ``MISPLACED``: an ``AutodiffError`` naming no line, or a line / function outside the program
  (NumPy's source, generated code): a defect of the message;
* ``WRONG``: a result that differs from central differences (or, for batch, from the primal);
* ``SIDE_EFFECT``: a right result, but the caller's arrays differ from what the primal leaves;
* ``CRASH``: any other exception;
* ``UNSTABLE`` (reverse/forward) / ``SKIPPED`` (batch): the reference cannot be trusted here
  (central differences with two step sizes disagree: a kink or a branch next to the point; the
  perturbed argument sets make the primal fail), nothing is claimed.

The caller's arrays are compared with a relative tolerance of 1e-12 (not bit for bit: numba's
``np.sum`` adds in another order than NumPy's); a write the primal makes and the derivative
does not (or the other way round) is far above that.
"""
from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import re
import sys
import tempfile
import textwrap
import traceback
from dataclasses import dataclass, field

import numpy as np

import nbautodiff as nad
from fd import central_diff, copy_args, directional_diff, fd_vjp, max_abs

__all__ = ["RIGHT", "REFUSED", "MISPLACED", "WRONG", "SIDE_EFFECT", "CRASH", "UNSTABLE",
           "SKIPPED", "DEFECTS", "MODES", "Outcome", "ProgramResult", "PrimalError",
           "load_program", "check_program", "assert_sound", "check_vjp"]

RIGHT, REFUSED, MISPLACED = "RIGHT", "REFUSED", "MISPLACED"
WRONG, SIDE_EFFECT, CRASH = "WRONG", "SIDE_EFFECT", "CRASH"
UNSTABLE, SKIPPED = "UNSTABLE", "SKIPPED"
#: The outcomes that break the promise.
DEFECTS = (WRONG, SIDE_EFFECT, CRASH, MISPLACED)
MODES = ("reverse", "forward", "batch")

PRELUDE = "import math\nimport numpy as np\n"
_counter = itertools.count()
_folder = None


class PrimalError(Exception):
    """The program itself (plain Python) raised or returned something that is not a finite
    float, array or tuple of those: there is nothing to compare with."""


@dataclass
class Outcome:
    mode: str
    status: str
    detail: str = ""

    def __str__(self):
        return f"{self.mode}={self.status}" + (f": {self.detail}" if self.detail else "")


@dataclass
class ProgramResult:
    source: str                      # the module text as written to the file (prelude included)
    path: str
    args: tuple
    argnums: tuple
    outcomes: dict = field(default_factory=dict)     # mode -> Outcome

    @property
    def defects(self) -> list:
        return [o for o in self.outcomes.values() if o.status in DEFECTS]

    def status(self, mode: str) -> str:
        return self.outcomes[mode].status

    def summary(self) -> str:
        return "  ".join(f"{m}={o.status}" for m, o in self.outcomes.items())

    def report(self) -> str:
        numbered = "\n".join(f"{n:4d} | {line}" for n, line in
                             enumerate(self.source.splitlines(), 1))
        lines = [f"program ({self.path}):", numbered,
                 "arguments: " + ", ".join(_short(a) for a in self.args),
                 f"argnums: {self.argnums}"]
        for o in self.outcomes.values():
            lines.append(f"  {o.mode:8s} {o.status}" + (f"\n{textwrap.indent(o.detail, '      ')}"
                                                          if o.detail else ""))
        return "\n".join(lines)


def _short(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array({np.array2string(a, precision=4, separator=', ')}, dtype={a.dtype})"
    return repr(a)


# ---------------------------------------------------------------------------------------------
# loading

def _tmp_folder() -> str:
    global _folder
    if _folder is None:
        _folder = tempfile.mkdtemp(prefix="nad-soundness-")
    return _folder


def load_program(src: str, name: str | None = None):
    """Write ``src`` (dedented, the prelude prepended) to a module file of its own and import
    it; returns the module (its ``__file__`` is the file nbautodiff reads)."""
    text = PRELUDE + textwrap.dedent(src).lstrip("\n")
    name = name or f"nad_program_{os.getpid()}_{next(_counter)}"
    path = os.path.join(_tmp_folder(), name + ".py")
    with open(path, "w") as fh:
        fh.write(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def program_lines(path: str) -> tuple:
    """``(lines, names)``: the line numbers inside the module's functions (def line to last line,
    nested ones included) and the names of every function and named lambda it defines."""
    with open(path) as fh:
        tree = ast.parse(fh.read())
    lines, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.lineno - len(node.decorator_list), node.end_lineno + 1))
            names.add(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return lines, names


_LINE = re.compile(r"\bline (\d+)")
_FUNCTION = re.compile(r"in function '([^']+)'")


def classify_refusal(err: Exception, path: str) -> Outcome:
    """REFUSED when the message names lines of the program's functions only (at least one), and
    any function it names is the program's; MISPLACED otherwise."""
    message = str(err)
    first = message.splitlines()[0] if message else type(err).__name__
    lines, names = program_lines(path)
    named = [int(n) for n in _LINE.findall(message)]
    functions = _FUNCTION.findall(message)
    problems = []
    if not named:
        problems.append("names no line")
    outside = [n for n in named if n not in lines]
    if outside:
        problems.append(f"names line(s) {outside} outside the program's functions "
                        f"(lines {min(lines)}-{max(lines)})")
    strangers = [fn for fn in functions if fn.split(".")[-1] not in names]
    if strangers:
        problems.append(f"names function(s) {strangers} the program does not define")
    filename = getattr(err, "filename", None)
    if filename and os.path.abspath(filename) != os.path.abspath(path):
        problems.append(f"its filename is {filename}")
    if problems:
        return Outcome("", MISPLACED, f"{'; '.join(problems)}: {type(err).__name__}: {first}")
    return Outcome("", REFUSED, first)


def _crash(err: Exception) -> Outcome:
    frames = traceback.extract_tb(err.__traceback__)
    where = next((f"{fr.filename}:{fr.lineno}" for fr in reversed(frames)
                  if "site-packages" not in fr.filename), "")
    message = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    first = message[0][:300] if message else ""
    # numba's typing errors put the reason a few lines down
    noise = ("Failed in nopython", "- Resolution failure", "None", "During: Pass", "<source elided>")
    reasons = [line[:200] for line in message[1:] if not line.startswith(noise)][:3]
    return Outcome("", CRASH, f"{type(err).__name__}: {first}" + (f"  [at {where}]" if where else "")
                   + "".join(f"\n  {line}" for line in reasons))


# ---------------------------------------------------------------------------------------------
# comparisons

def _floaty(a) -> bool:
    return (isinstance(a, np.ndarray) and a.dtype.kind == "f") or \
        (isinstance(a, (float, np.floating)) and not isinstance(a, bool))


def _leaves(value) -> list:
    if isinstance(value, tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _is_scalar_result(out) -> bool:
    return not isinstance(out, (tuple, np.ndarray)) or (isinstance(out, np.ndarray)
                                                        and out.shape == ())


def _close(ad, ref, rtol, atol) -> bool:
    a = np.asarray(ad, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if a.shape != r.shape:
        return False
    return bool(np.all(np.abs(a - r) <= atol + rtol * np.abs(r)))


def _same_arrays(got: tuple, expected: tuple) -> str:
    """'' when every array of ``got`` equals the one of ``expected`` (relative 1e-12), else a
    description of the first that differs."""
    for k, (g, e) in enumerate(zip(got, expected)):
        if not isinstance(e, np.ndarray):
            continue
        if g.shape != e.shape:
            return f"argument {k}: shape {g.shape} vs {e.shape}"
        if e.dtype.kind in "fc":
            scale = max(1.0, max_abs(e)) if e.size else 1.0
            same = np.allclose(g, e, rtol=1e-12, atol=1e-13 * scale, equal_nan=True)
        else:
            same = np.array_equal(g, e)
        if not same:
            return (f"argument {k} of the caller after the call: {_short(g)}\n"
                    f"  the primal leaves it as:          {_short(e)}")
    return ""


def _describe(ad, ref, rtol, atol, what="") -> str:
    a = np.asarray(ad, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if a.shape != r.shape:
        return f"{what}shape {a.shape}, expected {r.shape}"
    return (f"{what}got      {np.array2string(a, precision=6, separator=', ')}\n"
            f"{' ' * len(what)}expected {np.array2string(r, precision=6, separator=', ')}"
            f"  (rtol={rtol:g}, atol={atol:.2g})")


# ---------------------------------------------------------------------------------------------
# the modes

def _run_mode(mode, path, body) -> Outcome:
    try:
        outcome = body()
    except nad.AutodiffError as err:
        outcome = classify_refusal(err, path)
    except Exception as err:                          # noqa: BLE001 - everything else is a crash
        outcome = _crash(err)
    outcome.mode = mode
    return outcome


def _fd_stable(f, args, nums, reference, rtol, atol) -> bool:
    """Central differences with a 10x larger step agree with ``reference``: no kink or branch
    next to the point."""
    try:
        other = central_diff(f, args, nums, rel_step=1e-3)
    except Exception:                                  # noqa: BLE001
        return False
    return all(_close(a, b, 100 * rtol, 100 * atol) for a, b in zip(other, reference))


def check_program(src: str, args: tuple, argnums=0, modes=MODES, *, seed: int = 0,
                  rtol: float = 1e-5, atol: float = 1e-6, batch_size: int = 3) -> ProgramResult:
    """Run ``f`` of the module text ``src`` at ``args`` in each of ``modes``; see the module's
    docstring. ``atol`` is relative to the scale of the values (the largest of 1, the result and
    the reference derivative). Raises :class:`PrimalError` when ``f`` itself fails at ``args``."""
    module = load_program(src)
    path = module.__file__
    with open(path) as fh:
        text = fh.read()
    f = module.f
    args = tuple(args)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    result = ProgramResult(text, path, copy_args(args), nums)

    primal_args = copy_args(args)
    try:
        out = f(*primal_args)
    except Exception as err:                           # noqa: BLE001
        raise PrimalError(f"the primal raises {type(err).__name__}: {err}") from err
    leaves = _leaves(out)
    if not all(isinstance(v, (int, float, np.integer, np.floating, np.ndarray)) for v in leaves):
        raise PrimalError(f"the primal returns {type(out).__name__}")
    if not all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in leaves):
        raise PrimalError("the primal returns a non-finite value")

    rng = np.random.default_rng(seed)
    scalar_out = _is_scalar_result(out)
    if scalar_out:
        target, cot = f, None
    else:
        cot = tuple(rng.standard_normal(np.shape(v)) if _floaty(np.asarray(v)) else None
                    for v in leaves)

        def target(*a):
            total = 0.0
            for c, v in zip(cot, _leaves(f(*a))):
                if c is not None:
                    total += float(np.sum(c * np.asarray(v, dtype=np.float64)))
            return total
    value_scale = max(1.0, max_abs(*[v for v in leaves if np.asarray(v).dtype.kind in "fiu"]))

    reference = None
    stable = True
    if "reverse" in modes or "forward" in modes:
        reference = central_diff(target, args, nums)
        scale = max(value_scale, max_abs(*reference))
        stable = _fd_stable(target, args, nums, reference, rtol, atol * scale)
    else:
        scale = value_scale
    tol = atol * scale

    if "reverse" in modes:
        def reverse():
            if not stable:
                return Outcome("", UNSTABLE, "central differences with steps 1e-4 and 1e-3 differ")
            call = copy_args(args)
            if scalar_out:
                grads = nad.grad(f, argnums=nums)(*call)
            else:
                _, vjp_fn = nad.vjp(f, *call)
                cotangent = _cotangent_for(out, iter(cot))
                adjoints = vjp_fn(cotangent)
                grads = tuple(adjoints[k] for k in nums)
            if not isinstance(grads, tuple) or len(grads) != len(nums):
                return Outcome("", WRONG, f"gradient {grads!r} is not a tuple of {len(nums)}")
            bad = [k for k, (g, r) in enumerate(zip(grads, reference))
                   if g is None or not _close(g, r, rtol, tol)]
            if bad:
                return Outcome("", WRONG, "\n".join(
                    _describe(grads[k], reference[k], rtol, tol, f"d/d arg {nums[k]}: ")
                    for k in bad))
            differs = _same_arrays(call, primal_args)
            if differs:
                return Outcome("", SIDE_EFFECT, differs)
            return Outcome("", RIGHT)
        result.outcomes["reverse"] = _run_mode("reverse", path, reverse)

    if "forward" in modes:
        def forward():
            if not stable:
                return Outcome("", UNSTABLE, "central differences with steps 1e-4 and 1e-3 differ")
            directions = [rng.standard_normal(np.shape(args[k])) if isinstance(args[k], np.ndarray)
                          else float(rng.standard_normal()) for k in nums]
            tangents = tuple(directions[nums.index(i)] if i in nums else None
                             for i in range(len(args)))
            expected = sum(float(np.sum(np.asarray(r) * d)) for r, d in zip(reference, directions))
            # the reference is the gradient dotted with the direction; the directional
            # difference is an independent second opinion, used when they disagree
            call = copy_args(args)
            _, tangent = nad.jvp(f, call, tangents)
            if scalar_out:
                got = float(np.asarray(tangent, dtype=np.float64))
            else:
                got = 0.0
                for c, t in zip(cot, _leaves(tangent)):
                    if c is not None:
                        got += float(np.sum(c * np.asarray(t, dtype=np.float64)))
            ftol = tol * max(1.0, sum(float(np.sum(np.abs(d))) for d in directions))
            if not _close(got, expected, rtol, ftol):
                direct = directional_diff(target, args, nums, directions)
                if not _close(got, direct, rtol, ftol):
                    return Outcome("", WRONG, _describe(got, expected, rtol, ftol,
                                                        "directional derivative: "))
            differs = _same_arrays(call, primal_args)
            if differs:
                return Outcome("", SIDE_EFFECT, differs)
            return Outcome("", RIGHT)
        result.outcomes["forward"] = _run_mode("forward", path, forward)

    if "batch" in modes:
        result.outcomes["batch"] = _run_mode("batch", path,
                                             lambda: _check_batch(f, args, out, rng, batch_size))
    return result


def _cotangent_for(out, cots):
    if isinstance(out, tuple):
        return tuple(_cotangent_for(o, cots) for o in out)
    c = next(cots)
    return c if c is not None else None


def _check_batch(f, args, out, rng, size) -> Outcome:
    batched_args = [k for k, a in enumerate(args) if _floaty(a)]
    if not batched_args:
        return Outcome("", SKIPPED, "no float argument to batch")
    sets = [copy_args(args)]
    for _ in range(size - 1):
        sets.append(tuple(a + 0.05 * rng.standard_normal(np.shape(a)) * max(1.0, max_abs(a))
                          if k in batched_args else
                          (a.copy() if isinstance(a, np.ndarray) else a)
                          for k, a in enumerate(args)))
    expected, after = [], []
    for s in sets:
        call = copy_args(s)
        try:
            value = f(*call)
        except Exception as err:                       # noqa: BLE001
            return Outcome("", SKIPPED, f"the primal raises at a perturbed point: {err}")
        if any(np.shape(v) != np.shape(w) for v, w in zip(_leaves(value), _leaves(out))) or \
                not all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in _leaves(value)):
            return Outcome("", SKIPPED, "the result's shape or finiteness changes between sets")
        expected.append(value)
        after.append(call)
    in_axes = tuple(0 if k in batched_args else None for k in range(len(args)))
    stacked = tuple(np.stack([np.asarray(s[k], dtype=np.float64) if isinstance(args[k], float)
                              else s[k] for s in sets]) if k in batched_args
                    else (args[k].copy() if isinstance(args[k], np.ndarray) else args[k])
                    for k in range(len(args)))
    got = nad.batch(f, in_axes=in_axes)(*stacked)
    problems = []
    # Sums of float32 arrays may be ordered differently in compiled code than in NumPy.
    eps = max([np.finfo(a.dtype).eps for a in args
               if isinstance(a, np.ndarray) and a.dtype.kind == "f"], default=0.0)
    rtol, atol = max(1e-9, 100 * eps), max(1e-12, 100 * eps)
    for n, leaf in enumerate(_leaves(out)):
        want = np.stack([np.asarray(_leaves(e)[n], dtype=np.float64) for e in expected])
        have = _leaves(got)[n] if isinstance(got, tuple) else got
        scale = max(1.0, max_abs(want))
        if not _close(have, want, rtol, atol * scale):
            problems.append(_describe(have, want, rtol, atol * scale, f"result {n}: "))
    if problems:
        return Outcome("", WRONG, "\n".join(problems))
    for k in batched_args:
        if isinstance(args[k], np.ndarray):
            want = np.stack([a[k] for a in after])
            differs = _same_arrays((stacked[k],), (want,))
            if differs:
                return Outcome("", SIDE_EFFECT, f"(batched argument {k}) {differs}")
    unbatched = [k for k in range(len(args)) if k not in batched_args]
    differs = _same_arrays(tuple(stacked[k] for k in unbatched),
                           tuple(after[0][k] for k in unbatched))
    if differs:
        return Outcome("", SIDE_EFFECT, f"(unbatched arguments {unbatched}) {differs}")
    return Outcome("", RIGHT)


def check_vjp(src: str, args: tuple, cotangent, argnums=0, *, rtol=1e-5, atol=1e-6) -> Outcome:
    """``nad.vjp`` of ``f`` (returning an array) with the given cotangent against ``fd.fd_vjp``."""
    module = load_program(src)
    f = module.f
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    reference = fd_vjp(f, args, cotangent, nums)
    tol = atol * max(1.0, max_abs(*reference))

    def body():
        _, vjp_fn = nad.vjp(f, *copy_args(args))
        adjoints = vjp_fn(cotangent)
        bad = [k for k, r in zip(nums, reference) if not _close(adjoints[k], r, rtol, tol)]
        if bad:
            return Outcome("", WRONG, "\n".join(_describe(adjoints[k], reference[nums.index(k)],
                                                          rtol, tol, f"vjp arg {k}: ")
                                                for k in bad))
        return Outcome("", RIGHT)
    return _run_mode("vjp", module.__file__, body)


def assert_sound(result: ProgramResult, allow=(RIGHT, REFUSED, UNSTABLE, SKIPPED)):
    """Fail with the program and every mode's outcome when one is not in ``allow``."""
    bad = [o for o in result.outcomes.values() if o.status not in allow]
    if bad:
        raise AssertionError(f"{', '.join(f'{o.mode} {o.status}' for o in bad)}\n"
                             + result.report())
