"""The ``%%offload`` cell magic: run a cell, then push GPU versions of its functions.

Naming rule: the offloaded version of ``f`` is ``{name}_{kind}`` with ``kind`` ``offload``:
``f_offload = nbautodiff.offload(f, devices)``; with ``--autodiff`` also
``f_grad_offload = nbautodiff.offload(nbautodiff.grad(f, argnums))``. ``--name`` replaces the
template (as in ``%%autodiff``). ``--compare EXPR`` runs one example call, shows its data
movement plan, and times the function on the CPU and the GPU over a range of sizes (see
:mod:`nbautodiff.magics.offload_compare`) with a plot and a table.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbautodiff import progress
from .cell import (DEFAULT_TEMPLATE, cell_objects, derived_name, example_arguments, forced_if,
                   parameters, parse_options, run_cell_body, short_errors, split, user_function)
from .offload_compare import DEFAULT_SIZES, SIMULATOR_SIZES, compare
from .progress_bar import display_for

KIND = "offload"


@magics_class
class OffloadMagics(Magics):
    """``%%offload``, registered by ``%load_ext nbautodiff``."""

    @magic_arguments()
    @argument("-h", "--help", action="store_true", help="show this help and do nothing else")
    @argument("-f", "--func", nargs="+", metavar="NAME",
              help="functions to offload (names, space or comma separated; default: every "
                   "function the cell defines at top level)")
    @argument("-d", "--devices", nargs="+", metavar="DEVICE",
              help="CUDA device(s): an index, or 'all' (default: the current device)")
    @argument("-a", "--autodiff", nargs="*", metavar="ARG", default=None,
              help="offload the gradient too (nbautodiff.grad, by default with respect to the "
                   "first argument; name others: --autodiff u alpha)")
    @argument("-n", "--name", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
              help="name of each offloaded function, a str.format template with {name} and "
                   "{kind} (offload, or grad_offload for the gradient); default: {name}_{kind}")
    @argument("-c", "--compare", nargs="+", metavar="EXPR",
              help="example arguments of ONE call, a Python expression evaluated in the user "
                   "namespace (a tuple, or one value for a single argument): runs it once on "
                   "the GPU (shows the data movement plan and checks the result against the "
                   "CPU), then times CPU serial, CPU parallel=True, GPU kernel only and GPU with "
                   "transfers with the arrays resized to each N of --sizes")
    @argument("--sizes", nargs="+", type=int, metavar="N",
              help="the sizes of --compare (default: "
                   + " ".join(str(n) for n in DEFAULT_SIZES) + "; under the CUDA simulator "
                   + " ".join(str(n) for n in SIMULATOR_SIZES) + ")")
    @argument("--force", action="store_true", help="build everything again")
    @no_var_expand
    @line_cell_magic
    def offload(self, line, cell=None):
        """Run the cell, then push a GPU version of each of its functions.

        f_offload = nbautodiff.offload(f) runs f's prange loops as CUDA kernels, moving the
        arrays they use; without a GPU it says so and runs on the CPU (parallel=True).

        Example::

            %%offload --autodiff --compare (u0, 0.1)
            def smooth(u, alpha):
                ...
        """
        args = parse_options(self.offload, line)
        if args.help:
            from IPython.display import Pretty
            return Pretty(self.offload.parser.format_help())
        from nbautodiff.kernels import gpu
        devices = _devices(args.devices)
        functions = split(args.func)
        if cell is None and not functions:
            raise UsageError("%offload (one %) offloads functions defined earlier: name them "
                             "with --func, or use %%offload on a cell")
        if args.sizes and args.compare is None:
            raise UsageError("--sizes is the sizes of --compare: give --compare EXPR too")
        if args.sizes and any(n < 1 for n in args.sizes):
            raise UsageError("--sizes must be at least 1")
        run = run_cell_body(self.shell, KIND, line, cell) if cell is not None else None
        names = functions or list(run.functions if run else ())
        if not names:
            raise UsageError("the cell defines no function at top level; "
                             "define one or choose one with --func")
        example = self._example(args.compare) if args.compare is not None else None
        sizes = tuple(args.sizes) if args.sizes else (
            SIMULATOR_SIZES if gpu.simulated() else DEFAULT_SIZES)
        result = OffloadResult(gpu.device_name(devices if isinstance(devices, int) else 0)
                               if gpu.available() else "no CUDA GPU (CPU, parallel=True)")
        steps = len(names) * (1 + (2 if example is not None else 0))
        with forced_if(args.force, cell_objects(self.shell, run,
                                                    map(self._function, names))), \
                progress.task(
                f"%%offload {', '.join(names)}", steps, display_for(self.shell)) as task:
            for fname in names:
                result.offloaded.append(self._offload(fname, args, devices, names, run, example,
                                                      sizes, task))
        return result

    def _offload(self, fname, args, devices, names, run, example, sizes, task) -> "Offloaded":
        import nbautodiff
        fun = self._function(fname)
        oname = derived_name(args.name, fname, KIND, len(names))
        with short_errors(self.shell, oname, run.filename if run else None, fun):
            task.step(f"offloading {oname}")
            offloaded = nbautodiff.offload(fun, devices)
            self.shell.user_ns[oname] = offloaded
            entry = Offloaded(oname, offloaded)
            gradient = None
            if args.autodiff is not None:
                gradient = nbautodiff.grad(fun, argnums=_argnums(fun, args.autodiff))
                entry.gradient_name = derived_name(args.name, fname, "grad_" + KIND, len(names))
                entry.gradient = nbautodiff.offload(gradient, devices)
                self.shell.user_ns[entry.gradient_name] = entry.gradient
            if example is not None:
                _require_arity(fun, example)
                task.step(f"checking {oname} against the CPU")
                entry.check = _check(fun, offloaded, example)
                entry.plan = offloaded.plan
                task.step(f"timing {oname}")
                entry.comparison = compare(fun, offloaded, example, sizes)
                if gradient is not None:
                    entry.gradient_comparison = compare(fun, entry.gradient, example, sizes,
                                                        gradient=gradient)
        return entry

    def _example(self, words) -> tuple:
        return example_arguments(self.shell, words, "--compare")

    def _function(self, name: str, option: str = "--func"):
        return user_function(self.shell, name, option)


def _devices(words):
    if not words:
        return None
    items = [w for word in words for w in word.replace(",", " ").split() if w]
    if items == ["all"]:
        return "all"
    try:
        values = [int(w) for w in items]
    except ValueError:
        raise UsageError(f"--devices {' '.join(words)}: expected device indices or 'all'") \
            from None
    return values[0] if len(values) == 1 else values


def _argnums(fun, names: list) -> int | tuple:
    params = parameters(fun)
    if not names:
        return 0
    chosen = split(names)
    unknown = [n for n in chosen if n not in params]
    if unknown:
        raise UsageError(f"--autodiff {unknown[0]}: {fun.__name__}() has no argument of that "
                         f"name ({', '.join(params)})")
    positions = tuple(params.index(n) for n in chosen)
    return positions[0] if len(positions) == 1 else positions


def _require_arity(fun, example: tuple) -> None:
    params = parameters(fun)
    if len(example) != len(params):
        raise UsageError(f"--compare: {len(example)} example arguments for {fun.__name__}"
                         f"({', '.join(params)}), which takes {len(params)}")


def _check(fun, offloaded, example: tuple) -> str:
    """One example call on the GPU against the same call on the CPU, in a sentence."""
    import numpy as np

    def fresh():
        return [a.copy() if isinstance(a, np.ndarray) else a for a in example]
    cpu_args, gpu_args = fresh(), fresh()
    expected, got = fun(*cpu_args), offloaded(*gpu_args)
    pairs = list(zip(cpu_args, gpu_args)) + [(expected, got)]
    worst = 0.0
    for a, b in pairs:
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            if x is None or isinstance(x, str):
                continue
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            scale = np.maximum(np.abs(x), np.finfo(float).tiny)
            worst = max(worst, float(np.max(np.abs(x - y) / scale, initial=0.0)))
    return ("the offloaded call equals the CPU call exactly" if worst == 0.0 else
            f"the offloaded call differs from the CPU call by a relative {worst:.2g} at most")


@dataclass
class Offloaded:
    """One offloaded function pushed into the namespace (and its gradient with --autodiff)."""

    name: str
    function: object
    gradient_name: str | None = None
    gradient: object = None
    check: str = ""
    plan: object = None
    comparison: object = None
    gradient_comparison: object = None


@dataclass
class OffloadResult:
    """The value of a ``%%offload`` cell: the names pushed, then per ``--compare`` the example
    call's check and plan, the table of times and the plot."""

    device: str
    offloaded: list = field(default_factory=list)

    @property
    def names(self) -> dict:
        out = {}
        for o in self.offloaded:
            out[o.name] = o.function
            if o.gradient_name:
                out[o.gradient_name] = o.gradient
        return out

    def outputs(self) -> list:
        from IPython.display import HTML, Image
        items = [HTML(self._summary_html())]
        for o in self.offloaded:
            if o.plan is not None:
                items.append(o.plan)
            for comparison in (o.comparison, o.gradient_comparison):
                if comparison is not None:
                    items += [comparison, Image(data=comparison.png(), format="png")]
        return items

    def _summary_html(self) -> str:
        lines = []
        for o in self.offloaded:
            extra = (f", gradient <code>{html.escape(o.gradient_name)}</code>"
                     if o.gradient_name else "")
            check = f"; {html.escape(o.check)}" if o.check else ""
            lines.append(f"<li><code>{html.escape(o.name)}</code>{extra}{check}</li>")
        return (f'<p>offloaded to {html.escape(self.device)}:</p>'
                f'<ul class="nbautodiff-offloaded">{"".join(lines)}</ul>')

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(*self.outputs())

    def __repr__(self) -> str:
        return "\n".join(f"{o.name}" + (f", {o.gradient_name}" if o.gradient_name else "")
                         + (f": {o.check}" if o.check else "") for o in self.offloaded)
