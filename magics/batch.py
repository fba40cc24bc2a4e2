"""The ``%%batch`` cell magic: run a cell, then push batched versions of its functions.

Naming rule: the batched version of ``f`` is ``{name}_{kind}`` with ``kind`` ``batch``:
``f_batch = nbautodiff.batch(f, in_axes, out_axes, parallel)``; ``--name`` replaces the template
(as in ``%%autodiff``). ``--compare EXPR`` times it against a loop of single compiled calls and
``np.vectorize`` (see :mod:`nbautodiff.magics.batch_compare`) and shows a plot and a table.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbautodiff import progress
from nbautodiff.transforms.batching import LAYOUTS
from .batch_compare import DEFAULT_SIZES, METHODS, compare
from .cell import (DEFAULT_TEMPLATE, cell_objects, derived_name, example_arguments, forced_if,
                   parameters, parse_options, run_cell_body, short_errors, split, user_function)
from .progress_bar import display_for

KIND = "batch"


@magics_class
class BatchMagics(Magics):
    """``%%batch``, registered by ``%load_ext nbautodiff``."""

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help and do nothing else")
    @argument("-f", "--func", nargs="+", metavar="NAME",
              help="functions to batch (names, space or comma separated; default: every "
                   "function the cell defines at top level)")
    @argument("-i", "--in-axes", nargs="+", default=["0"], metavar="AXIS",
              help="batched axis of each argument: one value for all arguments, or one per "
                   "argument, space or comma separated, None for an argument that is not "
                   "batched (passed whole to every call); e.g. --in-axes 0 None. Default: 0")
    @argument("-o", "--out-axes", nargs="+", default=["0"], metavar="AXIS",
              help="axis of the results along which the N results are stacked: one value, or "
                   "one per result of a function returning a tuple. Default: 0")
    @argument("-p", "--parallel", action="store_true",
              help="spread the batch across CPU cores (numba prange; with the inner layout, "
                   "blocks of slices)")
    @argument("-l", "--layout", default="auto", metavar="LAYOUT",
              help="where the batch loop goes: inner (innermost in every statement, over "
                   "blocks of slices: vectorises across slices), outer (one call of the "
                   "compiled function per slice), auto (inner where the function allows it, "
                   "else outer; the default). Both equal single calls bit for bit")
    @argument("--vector-math", action="store_true",
              help="in the inner layout, compute exp, log, tanh, erf... with nbautodiff's "
                   "vectorisable implementations (nbautodiff.kernels.vecmath, within the "
                   "accuracy it documents) instead of the C library, so that loops calling "
                   "them vectorise too; results then differ from single calls in the last "
                   "bits")
    @argument("-n", "--name", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
              help="name of each batched function, a str.format template with {name} (the "
                   "function's name) and {kind} (batch); default: {name}_{kind}")
    @argument("-c", "--compare", nargs="+", metavar="EXPR",
              help="example arguments of ONE call, a Python expression evaluated in the user "
                   "namespace (a tuple, or one value for a single argument): N copies are "
                   "stacked along the --in-axes and the batched call is timed against a Python "
                   "loop of N single compiled calls and against np.vectorize of the Python "
                   "function, for each N of --sizes; shows a log-log plot and a table of the "
                   "speedups")
    @argument("--sizes", nargs="+", type=int, metavar="N",
              help="the batch sizes of --compare (default: "
                   + " ".join(str(n) for n in DEFAULT_SIZES) + "); a method is not run at a "
                   "size where one run is expected to take more than a second")
    @argument("--force", action="store_true",
              help="generate and compile again, bypassing the artifact cache "
                   "(nbautodiff.cache): what this cell builds replaces the cached entries")
    @no_var_expand
    @line_cell_magic
    def batch(self, line, cell=None):
        """Run the cell, then push a batched version of each of its functions.

        f_batch = nbautodiff.batch(f, in_axes, out_axes, parallel) evaluates f for every
        slice along the batched axes in one compiled call (vmap semantics). As a line magic,
        %batch batches functions defined earlier, named with --func.

        Example::

            %%batch --in-axes 0 None --compare (x0, w) --sizes 10 1000 100000
            def predict(x, w):
                ...
        """
        args = parse_options(self.batch, line)
        if args.help:
            from IPython.display import Pretty
            return Pretty(self.batch.parser.format_help())
        options = _Options.parse(args, line_magic=cell is None)
        batch = _batch_transform()
        run = run_cell_body(self.shell, KIND, line, cell) if cell is not None else None
        names = options.functions or list(run.functions if run else ())
        if not names:
            raise UsageError("the cell defines no function at top level; "
                             "define one or choose one with --func")
        example = self._example(args.compare) if args.compare is not None else None
        targets = {derived_name(options.template, fname, KIND, len(names)): self._function(fname)
                   for fname in names}
        if len(targets) < len(names):
            raise UsageError(f"--name {options.template!r} gives several functions the same name")

        result = BatchResult()
        steps = len(targets) * (1 + (len(options.sizes) * len(METHODS) if example else 0))
        with forced_if(args.force, cell_objects(self.shell, run, targets.values())), \
                progress.task(
                f"%%batch {', '.join(targets)}", steps, display_for(self.shell)) as task:
            for bname, fun in targets.items():
                in_axes = _per_argument(fun, options.in_axes)
                with short_errors(self.shell, bname, run.filename if run else None, fun):
                    task.step(f"batching {bname}")
                    batched = batch(fun, in_axes=options.in_axes, out_axes=options.out_axes,
                                    parallel=options.parallel, layout=options.layout,
                                    vector_math=options.vector_math)
                    self.shell.user_ns[bname] = batched
                    comparison = None
                    if example is not None:
                        _require_arity(fun, example, "--compare")
                        comparison = compare(fun, batched, example, in_axes, options.out_axes,
                                             options.sizes, step=task.step)
                result.batched.append(Batched(bname, batched, _summary(fun, options, batched),
                                              comparison))
        return result

    def _example(self, words) -> tuple:
        return example_arguments(self.shell, words, "--compare")

    def _function(self, name: str, option: str = "--func"):
        return user_function(self.shell, name, option)


def _batch_transform():
    """``nbautodiff.batch``, looked up at each use (tests replace it by a stand-in)."""
    import nbautodiff

    return nbautodiff.batch


@dataclass(frozen=True)
class _Options:
    """The options of one ``%%batch`` run, checked."""

    functions: list
    in_axes: object
    out_axes: object
    parallel: bool
    template: str
    sizes: tuple
    layout: str = "auto"
    vector_math: bool = False

    @classmethod
    def parse(cls, args, line_magic: bool) -> "_Options":
        functions = split(args.func)
        if line_magic and not functions:
            raise UsageError("%batch (one %) batches functions defined earlier: name them "
                             "with --func, or use %%batch on a cell")
        sizes = tuple(args.sizes) if args.sizes else DEFAULT_SIZES
        if any(n < 1 for n in sizes):
            raise UsageError(f"--sizes {' '.join(map(str, sizes))}: batch sizes must be "
                             "at least 1")
        if args.sizes and args.compare is None:
            raise UsageError("--sizes is the batch sizes of --compare: give --compare EXPR too")
        if args.layout not in LAYOUTS:
            raise UsageError(f"--layout {args.layout}: expected one of {', '.join(LAYOUTS)}")
        if args.vector_math and args.layout == "outer":
            raise UsageError("--vector-math applies to the inner layout: drop --layout outer")
        return cls(functions, parse_axes(args.in_axes, "--in-axes"),
                   parse_axes(args.out_axes, "--out-axes"), args.parallel, args.name, sizes,
                   args.layout, args.vector_math)


def parse_axes(words, option: str):
    """``0`` -> 0, ``None`` -> None, ``0 None``, ``0,None`` or ``(0, None)`` -> (0, None),
    ``(1,)`` -> (1,): one value for all, or a tuple with one value per argument or result."""
    text = " ".join(words).strip()
    bracketed = text[:1] in "([" and text[-1:] in ")]"
    items = [item for item in re.split(r"[\s,]+", text.strip("()[] ")) if item]
    if not items:
        raise UsageError(f"{option} {text!r}: expected axes, e.g. 0, None or 0 None")
    axes = []
    for item in items:
        if item == "None":
            axes.append(None)
            continue
        try:
            axes.append(int(item))
        except ValueError:
            raise UsageError(f"{option} {text}: {item!r} is not an axis (an integer or "
                             "None)") from None
    return tuple(axes) if bracketed or len(axes) > 1 else axes[0]


def _per_argument(fun, in_axes) -> list:
    """``in_axes`` as one axis per argument of ``fun``; a UsageError if the count is wrong."""
    params = parameters(fun)
    if not isinstance(in_axes, tuple):
        return [in_axes] * len(params)
    if len(in_axes) != len(params):
        raise UsageError(f"--in-axes gives {len(in_axes)} axes for {fun.__name__}"
                         f"({', '.join(params)}), which takes {len(params)} arguments")
    return list(in_axes)


def _require_arity(fun, example: tuple, option: str) -> None:
    params = parameters(fun)
    if len(example) != len(params):
        raise UsageError(f"{option}: {len(example)} example arguments for {fun.__name__}"
                         f"({', '.join(params)}), which takes {len(params)}")


def _summary(fun, options: _Options, batched) -> str:
    layout = {"inner": "innermost, over blocks of slices (inner layout)",
              "outer": "one compiled call per slice (outer layout)",
              "auto": "innermost where the function allows it (layout auto)"}[options.layout]
    cores = ", blocks across cores (prange)" if options.parallel else ""
    math = ", vectorisable math functions" if options.vector_math else ""
    used = getattr(batched, "variant", None)
    if used is not None and options.layout == "auto":       # called by --compare: known
        layout = "innermost, over blocks of slices (inner layout)" if used.layout == "inner" \
            else f"one compiled call per slice ({used.layout_note})"
    return (f"{fun.__name__} batched over in_axes={options.in_axes!r}, "
            f"out_axes={options.out_axes!r}, batch loop {layout}{cores}{math}")


@dataclass(frozen=True)
class Batched:
    """One batched function pushed into the user namespace, with its speed comparison (a
    :class:`~nbautodiff.magics.speedup.SpeedComparison`, when ``--compare`` was given)."""

    name: str
    function: object
    summary: str
    comparison: object = None


@dataclass
class BatchResult:
    """The value of a ``%%batch`` cell. In IPython it displays as the list of batched names,
    then per ``--compare`` the table of times and speedups and the plot as a PNG."""

    batched: list = field(default_factory=list)

    @property
    def names(self) -> dict:
        """Batched name -> batched function."""
        return {b.name: b.function for b in self.batched}

    @property
    def comparisons(self) -> dict:
        """Batched name -> SpeedComparison, for those compared."""
        return {b.name: b.comparison for b in self.batched if b.comparison is not None}

    def outputs(self) -> list:
        """The display objects of this result, in display order."""
        from IPython.display import HTML, Image

        items = [HTML(self._summary_html())]
        for b in self.batched:
            if b.comparison is not None:
                items += [b.comparison, Image(data=b.comparison.png(), format="png")]
        return items

    def _summary_html(self) -> str:
        lines = "".join(f"<li><code>{html.escape(b.name)}</code>: {html.escape(b.summary)}</li>"
                        for b in self.batched)
        return f'<ul class="nbautodiff-batched">{lines}</ul>'

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(*self.outputs())

    def __repr__(self) -> str:
        return "\n".join(f"{b.name}: {b.summary}" for b in self.batched)
