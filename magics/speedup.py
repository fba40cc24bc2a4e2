"""Timing several ways of doing the same N evaluations, over a range of N, and showing the result
as a log-log plot and a table of speedups (the ``--compare`` output of ``%%batch``).

A *method* is a label and a ``prepare(n)`` function returning a callable of no argument that does
the n evaluations once (preparing the inputs is not timed). A method is measured at increasing n
while one run is expected (linearly from the last size measured) to take at most the time budget;
larger n are skipped for it (shown as ``-``), so a slow baseline does not hold the cell up for
minutes.
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass

from nbautodiff.checks.report import figure_png

#: A method is not run at a size where one run is expected to take longer than this.
DEFAULT_BUDGET_S = 1.0
#: Runs are repeated (best time kept) until they add up to this, at most ``MAX_REPEATS`` times.
REPEAT_UNTIL_S = 0.05
MAX_REPEATS = 5


@dataclass
class SpeedComparison:
    """Seconds per run of each method at each size; ``reference`` is the method the others are
    divided by (the speedup of the reference over method m at size n is ``times[m][k] /
    times[reference][k]``). A time of None means not measured (over the budget). ``note`` is a
    line shown under the table (e.g. whether the methods' results agree)."""

    title: str
    sizes: tuple
    times: dict
    reference: str
    note: str = ""
    unit: str = "calls"

    def speedups(self) -> dict:
        """Method (other than the reference) -> speedup of the reference over it, per size."""
        ref = self.times[self.reference]
        return {label: [t / r if t is not None and r else None for t, r in zip(times, ref)]
                for label, times in self.times.items() if label != self.reference}

    def plot(self):
        """A ``matplotlib.figure.Figure``: time per run against N (log-log), one line per
        method, and the speedup of the reference over each other method (right panel)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10.0, 3.8), layout="constrained")
        ax_time, ax_ratio = fig.subplots(1, 2)
        colour = {label: f"C{k}" for k, label in enumerate(self.times)}
        for label, times in self.times.items():
            xs, ys = _measured(self.sizes, times)
            ax_time.plot(xs, ys, "o-", label=label, color=colour[label],
                         linewidth=2.5 if label == self.reference else 1.5)
        ax_time.set(xscale="log", yscale="log", xlabel=f"N ({self.unit})", ylabel="seconds",
                    title=self.title)
        ax_time.grid(True, which="both", alpha=0.3)
        ax_time.legend(fontsize="small")
        for label, ratios in self.speedups().items():
            xs, ys = _measured(self.sizes, ratios)
            ax_ratio.plot(xs, ys, "o-", label=f"vs {label}", color=colour[label])
        ax_ratio.axhline(1.0, color="grey", linewidth=0.8)
        ax_ratio.set(xscale="log", yscale="log", xlabel=f"N ({self.unit})",
                     ylabel=f"speedup of {self.reference}", title="speedup (higher is better)")
        ax_ratio.grid(True, which="both", alpha=0.3)
        ax_ratio.legend(fontsize="small")
        return fig

    def png(self) -> bytes:
        return figure_png(self.plot())

    def rows(self) -> list:
        """Table rows: N, the time of each method, then each speedup, as strings."""
        speedups = self.speedups()
        return [[f"{n:,}"] + [_seconds(self.times[m][k]) for m in self.times]
                + [_ratio(speedups[m][k]) for m in speedups]
                for k, n in enumerate(self.sizes)]

    def header(self) -> list:
        return (["N"] + [f"{m} (s)" for m in self.times]
                + [f"speedup vs {m}" for m in self.speedups()])

    def __str__(self) -> str:
        table = [self.header()] + self.rows()
        widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
        lines = [self.title] + ["  ".join(cell.rjust(w) for cell, w in zip(row, widths))
                                for row in table]
        return "\n".join(lines + ([self.note] if self.note else []))

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self.rows())
        note = f"<p><em>{html.escape(self.note)}</em></p>" if self.note else ""
        return (f'<div class="nbautodiff-speedup"><p><strong>{html.escape(self.title)}</strong>'
                f'</p><table class="nbautodiff-speedup-table"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>{note}</div>")


def measure(methods: dict, sizes, budget_s: float = DEFAULT_BUDGET_S, step=None) -> dict:
    """Label -> seconds per run at each size, in increasing order of size (None where skipped,
    see the module docstring), for ``methods`` (label -> ``prepare(n)``). Each size is run once
    untimed first (caches, lazy compilation), then timed, repeated while the runs add up to less
    than ``REPEAT_UNTIL_S``; the best time is kept. ``step(label)``, if given, is called before
    each method at each size (progress)."""
    times = {}
    for label, prepare in methods.items():
        row, last = [], None
        for n in sorted(sizes):
            if step is not None:
                step(f"timing {label} at N = {n:,}")
            if last is not None and last[1] * n / last[0] > budget_s:
                row.append(None)
                continue
            row.append(_best_time(prepare(n)))
            last = (n, row[-1])
        times[label] = row
    return times


def _best_time(run) -> float:
    run()
    best, total = math.inf, 0.0
    for _ in range(MAX_REPEATS):
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        best, total = min(best, elapsed), total + elapsed
        if total > REPEAT_UNTIL_S:
            break
    return best


def _measured(sizes, values):
    pairs = [(n, v) for n, v in zip(sizes, values) if v is not None]
    return [n for n, _ in pairs], [v for _, v in pairs]


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.3g}x"
