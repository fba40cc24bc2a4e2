"""Random small programs of the kinds users write, for the differential tester.

``generate(chooser)`` builds one program, statement by statement, from a grammar of what loop-style
NumPy code does: array parameters (1-D and 2-D float64, a float scalar, an int index array),
local arrays (``x * 1.0``, ``np.zeros``, ``.copy()``), views (basic slices with steps, ``reshape``,
``.T``, ``np.transpose``, ``np.ascontiguousarray``, rows and columns), aliases (``B = A``), helper
callees that write their argument and/or return it, a view of it or a tuple, element and slice
stores (overlapping ones too), in-place operators, rebinding (same shape, array to scalar, scalar
to array), loops that read and write, integer-array and boolean-mask indexing, ``or``/``and``, and
scalars from ``math`` functions. The function returns a float that every array and scalar still
bound contributes to (``np.sum(a * a)`` for each array), so every write matters.

Each statement is executed as it is generated (plain Python, on the argument values), so the
grammar knows every name's type, shape and contiguity, and programs whose primal raises or goes
non-finite never come out (``generate`` raises :class:`Rejected`). ``chooser`` decides every
choice: :class:`RandomChooser` (a seed) for sweeps, or one drawing from hypothesis (``tests/
test_differential.py``), which then shrinks a failing program to a small one.

Run as a script for a sweep: ``python tests/differential.py --count 300`` checks 300 programs in
reverse, forward and batch mode (:func:`soundness.check_program`), prints the outcome counts and
each defect, minimised (statements deleted while the defect stays), grouped by mode and outcome.
"""
from __future__ import annotations

import math
import random
import re
import textwrap
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Program", "Rejected", "RandomChooser", "generate", "HELPERS"]


class Rejected(Exception):
    """The choices led to a program whose primal fails, or to no program at all."""


class RandomChooser:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)


# --------------------------------------------------------------------------------------------
# helper callees: name -> (source, kind of argument, what a call statement looks like)

HELPERS = {
    "h_write": ("""
def h_write(a):
    a[0] = 2.0 * a[0] + a[1] * a[-1]
""", "1d"),
    "h_write_ret": ("""
def h_write_ret(a):
    a[1] = a[0] * a[1]
    return a
""", "1d"),
    "h_write_view": ("""
def h_write_view(a):
    a[0] = a[0] * a[-1] + 0.5
    return a[1:]
""", "1d"),
    "h_write_tuple": ("""
def h_write_tuple(a):
    a[-1] = a[0] + a[-1] * 0.5
    return a, np.sum(a * a)
""", "1d"),
    "h_scan": ("""
def h_scan(a):
    for i in range(1, len(a)):
        a[i] = a[i] * 0.5 + math.sin(a[i - 1])
""", "1d"),
    "h_pair": ("""
def h_pair(a, b):
    for i in range(len(a)):
        a[i] = a[i] + b[i] * b[0]
""", "pair"),
    "h_pure": ("""
def h_pure(a):
    return a * 2.0 + 1.0
""", "1d"),
    "h_view": ("""
def h_view(a):
    return a[::2]
""", "1d"),
    "h_scalar": ("""
def h_scalar(a):
    return math.cos(a[0]) * a[-1]
""", "1d"),
    "h_col": ("""
def h_col(B):
    for i in range(B.shape[0]):
        B[i, 1] = B[i, 1] * B[i, 0]
""", "2d"),
    "h_col_slice": ("""
def h_col_slice(B):
    B[:, 0] = B[:, 0] * B[:, -1]
    return B[0]
""", "2d"),
}


@dataclass
class Program:
    params: list            # names
    args: tuple             # values
    argnums: tuple
    units: list             # each a list of body lines (a loop is one unit)
    terms: list             # return terms
    helpers: set = field(default_factory=set)

    def body_text(self, units=None, terms=None) -> str:
        units = self.units if units is None else units
        terms = self.terms if terms is None else terms
        lines = [f"def f({', '.join(self.params)}):"]
        for unit in units:
            lines += ["    " + line for line in unit]
        lines.append("    return " + (" + ".join(terms) if terms else "0.0"))
        return "\n".join(lines) + "\n"

    def source(self, units=None, terms=None) -> str:
        body = self.body_text(units, terms)
        used = [name for name in HELPERS if re.search(rf"\b{name}\(", body)]
        helpers = "".join(textwrap.dedent(HELPERS[name][0]).lstrip("\n") + "\n" for name in used)
        return helpers + body


# --------------------------------------------------------------------------------------------
# the generator

class _Gen:
    def __init__(self, chooser, exclude=frozenset()):
        self.c = chooser
        self.exclude = frozenset(exclude)
        self.env = {"np": np, "math": math}
        for name, (src, _) in HELPERS.items():
            exec(textwrap.dedent(src), self.env)          # noqa: S102 - our own helpers
        self.names = []          # bound local/param names, in order
        self.hidden = set()      # names the program no longer uses (parameters copied away)
        self.counter = 0
        self.units = []

    # choices -------------------------------------------------------------------------------
    def int(self, lo, hi):
        return self.c.int(lo, hi)

    def pick(self, seq):
        seq = list(seq)
        if not seq:
            raise Rejected("nothing to pick")
        return seq[self.int(0, len(seq) - 1)]

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    # the state -----------------------------------------------------------------------------
    def arrays(self, ndim=None, min_len=1, float_only=True):
        out = []
        for n in self.names:
            v = self.env.get(n)
            if isinstance(v, np.ndarray) and (not float_only or v.dtype.kind == "f") and \
                    (ndim is None or v.ndim == ndim) and v.size >= 1 and \
                    (v.ndim == 0 or min(v.shape) >= min_len) and v.ndim in (1, 2):
                out.append(n)
        return out

    def scalars(self):
        return [n for n in self.names if isinstance(self.env.get(n), float)]

    def run(self, lines):
        """Execute ``lines`` (one unit) in the environment and record it."""
        try:
            exec("\n".join(lines), self.env)               # noqa: S102 - the program itself
        except Exception as err:                            # noqa: BLE001
            raise Rejected(f"{lines}: {err}") from err
        for n in list(self.env):
            if n not in self.names and n not in ("np", "math", "__builtins__") and n not in self.hidden and \
                    n not in HELPERS and not n.startswith("_"):
                self.names.append(n)
        for n in self.names:
            v = self.env.get(n)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and \
                    not np.all(np.isfinite(v) & (np.abs(v) < 1e6)):
                raise Rejected("values blow up")
            if isinstance(v, (float, np.floating)):
                if not (math.isfinite(v) and abs(v) < 1e6):
                    raise Rejected("values blow up")
                self.env[n] = float(v)
        self.units.append(list(lines))

    # expressions ---------------------------------------------------------------------------
    def scalar_atom(self):
        options = []
        for n in self.arrays(1, 1):
            options.append(lambda n=n: f"{n}[{self.int(0, len(self.env[n]) - 1)}]")
            options.append(lambda n=n: f"{n}[-1]")
        for n in self.arrays(2, 1):
            options.append(lambda n=n: f"{n}[{self.int(0, self.env[n].shape[0] - 1)}, "
                                       f"{self.int(0, self.env[n].shape[1] - 1)}]")
        for n in self.scalars():
            options.append(lambda n=n: n)
        options.append(lambda: self.pick(["0.5", "1.5", "2.0"]))
        return self.pick(options)()

    def scalar_expr(self):
        a, b = self.scalar_atom(), self.scalar_atom()
        return self.pick([f"{a} * {b}", f"math.sin({a}) + {b}", f"{a} * 0.5 + {b}",
                          f"math.exp(-{a} * {a}) * {b}", f"math.sqrt({a} * {a} + 1.0)",
                          f"{a} ** 2 - {b}", f"math.tanh({a}) * {b}", f"({a} + 1.0) / (1.0 + {b} * {b})"])

    def slices_of(self, n, length):
        """Expressions of views of array ``n`` with 1-D shape ``(length,)``."""
        v = self.env[n]
        out = []
        if v.ndim == 1:
            m = len(v)
            for k in range(0, m - length + 1):
                out.append(f"{n}[{k}:{k + length}]")
            if m == length:
                out.append(n)
            if (m + 1) // 2 == length:
                out.append(f"{n}[::2]")
            if m // 2 == length:
                out.append(f"{n}[1::2]")
            if m == length:
                out.append(f"{n}[::-1]")
        elif v.ndim == 2:
            r, c = v.shape
            if c == length:
                out += [f"{n}[{i}]" for i in range(r)] + [f"{n}[{i}, :]" for i in range(r)]
            if r == length:
                out += [f"{n}[:, {j}]" for j in range(c)]
        return out

    def array_expr(self, shape):
        """An array expression of ``shape`` (1-D or 2-D) built from what is bound."""
        atoms = []
        for n in self.arrays():
            if self.env[n].shape == shape:
                atoms.append(n)
            if len(shape) == 1:
                atoms += self.slices_of(n, shape[0])
            if len(shape) == 2 and self.env[n].ndim == 2 and self.env[n].shape[::-1] == shape:
                atoms.append(f"{n}.T")
            if len(shape) == 2 and self.env[n].ndim == 1 and self.env[n].size == shape[0] * shape[1] \
                    and self.env[n].flags.c_contiguous:
                atoms.append(f"{n}.reshape({shape[0]}, {shape[1]})")
        if not atoms:
            return f"np.ones({shape!r})"
        a, b = self.pick(atoms), self.pick(atoms)
        s = self.scalar_atom()
        return self.pick([a, f"{a} * {b}", f"np.sin({a}) + {b}", f"{a} * {s}", f"{a} + {s}",
                          f"np.cos({a}) * {b}", f"{a} * 0.5 - {b}"])

    # statements ----------------------------------------------------------------------------
    def st_local(self):
        n = self.pick(self.arrays())
        shape = self.env[n].shape
        name = self.fresh("L")
        self.run([f"{name} = " + self.pick(
            [f"{n} * 1.0", f"{n}.copy()", f"np.zeros({shape!r})", f"np.ones_like({n})",
             f"np.sin({n}) + {n}", f"{n} * {self.scalar_atom()}"])])

    def st_view(self):
        n = self.pick(self.arrays())
        v = self.env[n]
        name = self.fresh("V")
        if v.ndim == 1:
            m = len(v)
            options = [f"{n}[1:]", f"{n}[:-1]", f"{n}[::2]", f"{n}[1::2]", f"{n}[:]",
                       f"{n}[1:{max(2, m - 1)}]", f"{n}.T", f"np.transpose({n})",
                       f"np.ascontiguousarray({n})", f"{n}[::-1]"]
            if v.flags.c_contiguous and m % 2 == 0:
                options += [f"{n}.reshape(2, {m // 2})", f"np.reshape({n}, ({m // 2}, 2))"]
            if v.flags.c_contiguous and m % 3 == 0 and m > 3:
                options.append(f"{n}.reshape(3, {m // 3})")
        else:
            r, c = v.shape
            options = [f"{n}[{self.int(0, r - 1)}]", f"{n}[:, {self.int(0, c - 1)}]", f"{n}.T",
                       f"np.transpose({n})", f"{n}[1:, :]", f"{n}[:, ::2]",
                       f"np.ascontiguousarray({n})", f"{n}[:, 1:]"]
            if v.flags.c_contiguous:
                options += [f"{n}.reshape({r * c})", f"{n}.reshape({c}, {r})", f"np.reshape({n}, ({r * c},))"]
        self.run([f"{name} = {self.pick(options)}"])

    def st_alias(self):
        n = self.pick(self.arrays())
        self.run([f"{self.fresh('B')} = {n}"])

    def st_elem_store(self):
        n = self.pick(self.arrays())
        v = self.env[n]
        idx = (f"{self.int(0, len(v) - 1)}" if v.ndim == 1 else
               f"{self.int(0, v.shape[0] - 1)}, {self.int(0, v.shape[1] - 1)}")
        op = self.pick(["=", "+=", "*=", "-="])
        self.run([f"{n}[{idx}] {op} {self.scalar_expr()}"])

    def st_slice_store(self):
        n = self.pick(self.arrays())
        v = self.env[n]
        if v.ndim == 1:
            m = len(v)
            target, length = self.pick([(f"{n}[1:]", m - 1), (f"{n}[:-1]", m - 1),
                                        (f"{n}[:]", m), (f"{n}[::2]", (m + 1) // 2),
                                        (f"{n}[1:3]", min(m, 3) - 1)])
            if length < 1:
                raise Rejected("empty slice")
            special = [f"{n}[:-1]", f"{n}[1:]", f"{n}[1:] * {n}[:-1]"] if length == m - 1 else []
            src = self.pick(special + [self.array_expr((length,))]) if special and self.int(0, 1) \
                else self.array_expr((length,))
        else:
            r, c = v.shape
            target, shape = self.pick([(f"{n}[0]", (c,)), (f"{n}[:, 0]", (r,)), (f"{n}[:]", (r, c)),
                                       (f"{n}[1:, :]", (r - 1, c))])
            if 0 in shape:
                raise Rejected("empty slice")
            src = self.array_expr(shape if len(shape) == 2 and shape[0] > 1 else (shape[-1],)
                                  if len(shape) == 1 else shape)
            if len(shape) == 2 and shape[0] == 1:
                src = self.array_expr((shape[1],))
        op = self.pick(["=", "+=", "*="])
        self.run([f"{target} {op} {src}"])

    def st_inplace(self):
        n = self.pick(self.arrays())
        shape = self.env[n].shape
        op = self.pick(["+=", "*=", "-="])
        rhs = self.pick([self.array_expr(shape), self.scalar_atom()])
        self.run([f"{n} {op} {rhs}"])

    def st_call(self):
        name = self.pick([h for h in HELPERS if h not in self.excluded_helpers()])
        kind = HELPERS[name][1]
        if kind == "2d":
            a = self.pick([n for n in self.arrays(2) if self.env[n].shape[1] >= 2] or
                          [n + ".T" for n in self.arrays(2) if self.env[n].shape[0] >= 2])
            args = a
        elif kind == "pair":
            n = self.pick(self.arrays(1, 2) or self.arrays(2, 2))
            v = self.env[n]
            if v.ndim == 1:
                m = len(v)
                others = [k for k in self.arrays(1) if len(self.env[k]) == m]
                args = self.pick([f"{n}, {n}", f"{n}[1:], {n}[:-1]", f"{n}[:-1], {n}[1:]",
                                  f"{n}, {self.pick(others)}", f"{n}[::2], {n}[1::2]"
                                  if m % 2 == 0 else f"{n}, {n}[::-1]"])
            else:
                args = self.pick([f"{n}[0], {n}[-1]", f"{n}[:, 0], {n}[:, 1]", f"{n}[0], {n}[0]"])
        else:
            candidates = [n for n in self.arrays(1, 2)]
            candidates += [s for n in self.arrays(2, 2) for s in (f"{n}[0]", f"{n}[:, 1]")]
            candidates += [f"{n}[1:]" for n in self.arrays(1, 3)]
            args = self.pick(candidates)
        call = f"{name}({args})"
        if name in ("h_write", "h_scan", "h_pair", "h_col"):
            line = call
        elif name == "h_write_tuple":
            line = f"{self.fresh('Z')}, {self.fresh('c')} = {call}"
        elif name == "h_scalar":
            line = f"{self.fresh('c')} = {call}"
        else:
            line = f"{self.fresh('Z')} = {call}"
        self.run([line])

    def st_rebind(self):
        kind = self.pick([k for k, what in enumerate(("", "array_to_scalar", "scalar_to_array"))
                          if what not in self.exclude])
        if kind == 0:
            n = self.pick(self.arrays())
            self.run([f"{n} = " + self.pick([f"{n} + 1.0", f"{n} * {n}", f"np.cos({n})",
                                             f"{n} * {self.scalar_atom()}"])])
        elif kind == 1:
            n = self.pick(self.arrays())
            self.run([f"{n} = " + self.pick([f"np.sum({n} * {n})", f"{n}[0] * 2.0",
                                             f"np.sum({n}) * 0.5"])])
        else:
            c = self.pick(self.scalars() or [None])
            if c is None:
                c = self.fresh("c")
                self.run([f"{c} = {self.scalar_expr()}"])
            n = self.pick(self.arrays())
            self.run([f"{c} = {n} * {c}"])

    def st_scalar(self):
        a, b = self.scalar_atom(), self.scalar_atom()
        name = self.fresh("c")
        options = [self.scalar_expr(), f"np.sum({self.pick(self.arrays())} * {b})",
                   *([] if "or_and" in self.exclude else [f"{a} or {b}", f"{a} and {b}"])]
        pairs = [(m, n) for m in self.arrays() for n in self.arrays()
                 if self.env[m].shape == self.env[n].shape]
        if pairs:
            m, n = self.pick(pairs)
            options.append(f"np.sum({m} * {n})")
        self.run([f"{name} = {self.pick(options)}"])

    def st_fancy(self):
        ints = [n for n in self.names if isinstance(self.env.get(n), np.ndarray)
                and self.env[n].dtype.kind == "i"]
        options = []
        for n in self.arrays(1):
            v = self.env[n]
            t = self.pick(["0.0", "0.2", "-0.3"])
            if np.min(np.abs(v - float(t))) > 1e-2:
                options += [f"{self.fresh('c')} = np.sum({n}[{n} > {t}] ** 2)",
                            f"{n}[{n} > {t}] = {n}[{n} > {t}] * 2.0",
                            f"{n}[{n} < {t}] *= 0.5"]
            for idx in ints:
                if np.max(self.env[idx]) < len(v):
                    k = len(self.env[idx])
                    options += [f"{self.fresh('c')} = np.sum({n}[{idx}] ** 2)",
                                f"{n}[{idx}] = {self.array_expr((k,))}",
                                f"{n}[{idx}] += {self.array_expr((k,))}",
                                f"{self.fresh('L')} = {n}[{idx}] * 1.0"]
        for n in self.arrays(2):
            for idx in ints:
                if np.max(self.env[idx]) < self.env[n].shape[0]:
                    options.append(f"{self.fresh('c')} = np.sum({n}[{idx}] ** 2)")
        self.run([self.pick(options)])

    def st_loop(self):
        kind = self.pick([k for k, what in enumerate(("", "", "scalar_read_rebind", "loopvar", "", ""))
                          if what not in self.exclude])
        n = self.pick(self.arrays(1, 2))
        m = len(self.env[n])
        if kind == 0:
            others = [k for k in self.arrays(1) if len(self.env[k]) == m]
            q = self.pick(others)
            c = self.scalar_atom()
            lines = [f"for i in range({m}):", f"    {n}[i] = {n}[i] * {c} + {q}[i]"]
        elif kind == 1:
            lines = [f"for i in range(1, len({n})):",
                     f"    {n}[i] = {n}[i - 1] * 0.5 + {self.pick([f'{n}[i]', f'math.sin({n}[i])'])}"]
        elif kind == 2:
            s = self.fresh("s")
            v = self.fresh("v")
            self.run([f"{s} = 0.0"])
            lines = [f"for t in range({self.int(1, 3)}):", f"    {v} = {n}[0]",
                     f"    {s} += {v} * {v}", f"    {n} = {n} + {v}"]
        elif kind == 3:
            s = self.fresh("s")
            self.run([f"{s} = 0.0"])
            lines = [f"for i in range(len({n}) - 1):", "    i = i + 1",
                     f"    {s} += {n}[i] * {n}[i]"]
        elif kind == 4:
            s = self.fresh("s")
            others = [k for k in self.arrays(1) if len(self.env[k]) == m]
            q = self.pick(others)
            self.run([f"{s} = 0.0"])
            lines = [f"for i in range({m}):", f"    {s} = {s} + {n}[i] * {q}[i]",
                     f"    {q}[i] = {s} * 0.5"]
        else:
            q = self.pick([k for k in self.arrays(1) if len(self.env[k]) == m])
            lines = [f"for t in range(2):", f"    {n}[:] = {n} * 0.5 + {q}"]
        self.run(lines)

    def excluded_helpers(self):
        out = set()
        if "callee_returns" in self.exclude:
            out |= {"h_write_ret", "h_write_view", "h_write_tuple", "h_view", "h_col_slice"}
        if "callee_pair" in self.exclude:
            out.add("h_pair")
        return out

    def statements(self):
        return [st for st in self.STATEMENTS if st[3:] not in self.exclude]

    STATEMENTS = ["st_local", "st_view", "st_elem_store", "st_slice_store", "st_alias",
                  "st_call", "st_inplace", "st_scalar", "st_rebind", "st_loop", "st_fancy"]


#: What ``exclude`` may name: constructs with known defects, left out so that a sweep finds the
#: others (``NBAUTODIFF_DIFFERENTIAL_EXCLUDE=or_and,fancy`` for the test, ``--exclude`` here).
EXCLUDABLE = ("or_and", "fancy", "param_writes", "param_rebind", "array_to_scalar",
              "scalar_to_array", "loopvar", "scalar_read_rebind", "callee_returns", "callee_pair",
              "view", "alias", "call", "loop", "inplace", "slice_store")


def generate(chooser, max_statements=7, exclude=()) -> Program:
    """One program (see the module's docstring); :class:`Rejected` when the choices lead to a
    primal that fails. ``exclude``: names of :data:`EXCLUDABLE` constructs to leave out."""
    unknown = set(exclude) - set(EXCLUDABLE)
    if unknown:
        raise ValueError(f"unknown constructs to exclude: {sorted(unknown)}")
    g = _Gen(chooser, exclude)
    signature = g.int(0, 5)
    seed = g.int(0, 1000)
    rng = np.random.default_rng(seed)
    params, args, argnums = ["x"], [rng.uniform(-1.5, 1.5, 6)], [0]
    if signature == 1:
        params.append("A"); args.append(rng.uniform(-1.5, 1.5, (2, 3))); argnums.append(1)
    elif signature == 2:
        params.append("s"); args.append(float(rng.uniform(0.2, 1.5))); argnums.append(1)
    elif signature == 3:
        params[0] = "A"; args[0] = rng.uniform(-1.5, 1.5, (3, 3))
    elif signature == 4:
        params.append("y"); args.append(rng.uniform(-1.5, 1.5, 6)); argnums.append(1)
    elif signature == 5:
        params.append("idx"); args.append(np.array([rng.integers(0, 3), 2, 2, rng.integers(3, 6)]))
    if signature == 3 and g.int(0, 1):
        params.append("idx"); args.append(np.array([0, 2, 2]))
    for p, a in zip(params, args):
        g.env[p] = a.copy() if isinstance(a, np.ndarray) else a
        g.names.append(p)
    if "param_writes" in g.exclude or g.int(0, 2) < 2:   # mostly, work on copies
        for p, a in zip(params, args):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                target = p + "c" if "param_rebind" in g.exclude else p
                g.run([f"{target} = {p} * 1.0" if g.int(0, 1) == 0 else f"{target} = {p}.copy()"])
                if target != p:
                    g.names.remove(p)
                    g.hidden.add(p)
    count = g.int(1, max_statements)
    for _ in range(count):
        statements = g.statements()
        statement = statements[g.int(0, len(statements) - 1)]
        getattr(g, statement)()
    terms = []
    for n in g.names:
        v = g.env.get(n)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            terms.append(f"np.sum({n} * {n})")
        elif isinstance(v, float):
            terms.append(n)
    program = Program(params, tuple(args), tuple(argnums), g.units, terms)
    check_primal(program)
    return program


def check_primal(program, units=None, terms=None):
    """Run the program's source in plain Python on copies of its arguments; :class:`Rejected`
    when it raises or returns a non-finite (or huge) value."""
    env = {"np": np, "math": math}
    try:
        exec(program.source(units, terms), env)             # noqa: S102
        out = env["f"](*[a.copy() if isinstance(a, np.ndarray) else a for a in program.args])
    except Exception as err:                                 # noqa: BLE001
        raise Rejected(f"primal raises {type(err).__name__}: {err}") from err
    if not isinstance(out, (float, int, np.floating)) or not math.isfinite(out) or abs(out) > 1e8:
        raise Rejected(f"primal returns {out!r}")
    return out


# --------------------------------------------------------------------------------------------
# sweeps and minimisation

def check(program, units=None, terms=None, modes=("reverse", "forward", "batch")):
    from soundness import check_program
    return check_program(program.source(units, terms), program.args, program.argnums, modes)


def minimise(program, mode, status, budget=40):
    """Delete units (or lines inside loops) and return terms while ``mode`` still gives
    ``status``; returns ``(units, terms)``."""
    from soundness import PrimalError
    units, terms = [list(u) for u in program.units], list(program.terms)
    tries = 0

    def still(us, ts):
        nonlocal tries
        tries += 1
        try:
            check_primal(program, us, ts)
            return check(program, us, ts, (mode,)).status(mode) == status
        except (Rejected, PrimalError):
            return False

    changed = True
    while changed and tries < budget:
        changed = False
        for k in range(len(units) - 1, -1, -1):
            if tries >= budget:
                break
            trial = units[:k] + units[k + 1:]
            if still(trial, terms):
                units, changed = trial, True
                continue
            if len(units[k]) > 2:                        # a loop: drop one body line
                for j in range(len(units[k]) - 1, 0, -1):
                    body = units[k][:j] + units[k][j + 1:]
                    trial = units[:k] + [body] + units[k + 1:]
                    if tries < budget and still(trial, terms):
                        units, changed = trial, True
                        break
        for k in range(len(terms) - 1, -1, -1):
            if tries >= budget or len(terms) == 1:
                break
            trial = terms[:k] + terms[k + 1:]
            if still(units, trial):
                terms, changed = trial, True
    return units, terms


def sweep(count, seed=0, minimise_per_group=3, log=print, minutes=None, minimise_minutes=None,
          exclude=()):
    """Check ``count`` programs (or as many as ``minutes`` allow), log each defect as found, then
    minimise up to ``minimise_per_group`` of each (mode, outcome) group (for at most
    ``minimise_minutes``). Returns ``(tried, counts, failures)``."""
    import time
    from collections import Counter, defaultdict

    from soundness import DEFECTS, PrimalError
    counts = Counter()
    tried = 0
    failures = defaultdict(list)
    attempt = 0
    start = time.monotonic()
    while tried < count and (minutes is None or time.monotonic() - start < 60 * minutes):
        attempt += 1
        try:
            program = generate(RandomChooser(seed * 1_000_003 + attempt), exclude=exclude)
        except Rejected:
            continue
        try:
            result = check(program)
        except PrimalError:
            continue
        tried += 1
        bad = []
        for mode, outcome in result.outcomes.items():
            counts[(mode, outcome.status)] += 1
            if outcome.status in DEFECTS:
                failures[(mode, outcome.status)].append((program, outcome))
                bad.append(outcome)
        if bad:
            log(f"[program {tried}, chooser seed {seed * 1_000_003 + attempt}] " + result.summary())
            log(textwrap.indent(program.source(), "    "))
        if tried % 10 == 0:
            log(f"{tried} programs: " + ", ".join(f"{m}/{s}={n}" for (m, s), n in sorted(counts.items())))
    log(f"\n== {tried} programs tried ({attempt} generated); outcomes:")
    for (m, s), n in sorted(counts.items()):
        log(f"  {m:8s} {s:12s} {n}")
    log("\n== defects, minimised (smallest programs of each group):")
    start = time.monotonic()
    for (mode, status), items in sorted(failures.items()):
        log(f"\n--- {mode} {status}: {len(items)} program(s)")
        items = sorted(items, key=lambda it: len(it[0].source()))
        seen = set()
        for program, outcome in items[:minimise_per_group]:
            if minimise_minutes is not None and time.monotonic() - start > 60 * minimise_minutes:
                units, terms = program.units, program.terms
            else:
                units, terms = minimise(program, mode, status, budget=25)
            text = program.source(units, terms)
            if text in seen:
                continue
            seen.add(text)
            final = check(program, units, terms, (mode,)).outcomes[mode]
            log(textwrap.indent(text, "    "))
            log("    args: " + ", ".join(np.array2string(a, precision=3, separator=", ")
                                         if isinstance(a, np.ndarray) else repr(a)
                                         for a in program.args) + f"  argnums={program.argnums}")
            log(textwrap.indent(f"{final.status}: {final.detail}", "    -> "))
    return tried, counts, failures


if __name__ == "__main__":
    import argparse
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-group", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--minimise-minutes", type=float, default=None)
    parser.add_argument("--exclude", default="", help="comma-separated: " + ", ".join(EXCLUDABLE))
    opts = parser.parse_args()
    sweep(opts.count, opts.seed, opts.per_group, log=lambda s: print(s, flush=True),
          minutes=opts.minutes, minimise_minutes=opts.minimise_minutes,
          exclude=[e for e in opts.exclude.split(",") if e])
