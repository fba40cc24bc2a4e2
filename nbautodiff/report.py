"""Rendering of gradient checks: an HTML table, plain text and a matplotlib figure.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot, no global state), so this
module works under any backend, including Agg in scripts and tests.
"""
from __future__ import annotations

import html
import io
import math

import numpy as np

#: Rows shown before a table is cut down to its worst components.
MAX_ROWS_HTML = 50
MAX_ROWS_TEXT = 20
#: Errors of exactly zero are drawn at this value on the log scale.
ZERO_ERROR = 1e-17

_PASS_COLOUR, _FAIL_COLOUR = "#1a7f37", "#cf222e"


def verdict(check) -> str:
    """One sentence: passed or failed, on how many components, the worst relative error."""
    wrt = ", ".join(check.argnames[k] for k in check.argnums)
    n = len(check.rows)
    sample = f" (a random sample of {n} of {n + check.skipped})" if check.skipped else ""
    if check.ok:
        return (f"gradient check passed: {check.function} w.r.t. {wrt}, {n} component"
                f"{'s' if n != 1 else ''}{sample}, max rel. error {_num(check.max_rel_error)} "
                f"<= tolerance {_num(check.rtol)}")
    bad = len(check.failures)
    return (f"gradient check FAILED: {bad} of {n} component{'s' if n != 1 else ''}{sample} of "
            f"{check.function} w.r.t. {wrt} exceed the tolerance {_num(check.rtol)}, "
            f"max rel. error {_num(check.max_rel_error)}")


def check_text(check, max_rows: int = MAX_ROWS_TEXT) -> str:
    """Plain text: the verdict, then a fixed-width table of the components."""
    rows, note = _shown_rows(check, max_rows)
    header = ("component", "AD", "FD", "step", "rel. error", "")
    table = [header] + [(r.label, _num(r.ad, 10), _num(r.fd, 10), _num(r.step, 1),
                         _num(r.rel_error), "ok" if r.ok else "FAIL") for r in rows]
    widths = [max(len(line[c]) for line in table) for c in range(len(header))]
    lines = [verdict(check)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    if note:
        lines.append(note)
    return "\n".join(lines)


def check_html(check, max_rows: int = MAX_ROWS_HTML) -> str:
    """An HTML table (component, AD value, FD value, step, rel. error) under a verdict line."""
    rows, note = _shown_rows(check, max_rows)
    colour = _PASS_COLOUR if check.ok else _FAIL_COLOUR
    mark = "&#10003;" if check.ok else "&#10007;"
    out = ['<div class="nbautodiff-check">',
           f'<p style="color:{colour};font-weight:bold">{mark} {html.escape(verdict(check))}</p>',
           '<table class="nbautodiff-check-table">',
           "<thead><tr><th>component</th><th>AD value</th><th>FD value</th>"
           "<th>step</th><th>rel. error</th></tr></thead><tbody>"]
    for r in rows:
        style = "" if r.ok else f' style="color:{_FAIL_COLOUR};font-weight:bold"'
        out.append(f"<tr{style}><td><code>{html.escape(r.label)}</code></td>"
                   f"<td>{_num(r.ad, 10)}</td><td>{_num(r.fd, 10)}</td>"
                   f"<td>{_num(r.step, 1)}</td><td>{_num(r.rel_error)}</td></tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f"<p><em>{html.escape(note)}</em></p>")
    out.append("</div>")
    return "\n".join(out)


def check_figure(check, max_curves: int = 10):
    """Relative error of the central difference against the step size, log-log.

    One curve per component, with the chosen step marked, up to ``max_curves`` components;
    beyond that the median over components, the band from best to worst, and the worst
    component's curve. A correct gradient draws a V: rounding error on the left, truncation
    error on the right. A wrong one stays above the tolerance line.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    steps = check.steps
    errors = np.array([_drawable(r.errors) for r in check.rows]).reshape(len(check.rows), len(steps))
    if len(check.rows) <= max_curves:
        for r, err in zip(check.rows, errors):
            (line,) = ax.loglog(steps, err, marker=".", linewidth=1, label=r.label)
            if math.isfinite(r.step):
                ax.loglog([r.step], [_drawable(np.array([r.rel_error]))[0]], "o",
                          color=line.get_color(), markersize=7, markerfacecolor="none")
    else:
        with np.errstate(all="ignore"):
            ax.fill_between(steps, np.nanmin(errors, axis=0), np.nanmax(errors, axis=0),
                            alpha=0.25, label=f"all {len(check.rows)} components")
            ax.loglog(steps, np.nanmedian(errors, axis=0), linewidth=1.5, label="median")
        worst = check.worst(1)[0]
        ax.loglog(steps, _drawable(worst.errors), "--", linewidth=1, label=f"worst: {worst.label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.axhline(check.rtol, color="grey", linestyle=":", linewidth=1, label="tolerance")
    ax.set_xlabel("relative step h")
    ax.set_ylabel("|FD - AD| / max(|AD|, |FD|, floor)")
    status = "passed" if check.ok else "FAILED"
    ax.set_title(f"gradient check of {check.function}: {status}", color=_PASS_COLOUR if check.ok else _FAIL_COLOUR)
    ax.legend(fontsize="small", loc="best")
    ax.grid(True, which="major", linewidth=0.3)
    return fig


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (through Agg; no window, no pyplot)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _shown_rows(check, max_rows: int):
    if len(check.rows) <= max_rows:
        return list(check.rows), ""
    return check.worst(max_rows), f"showing the {max_rows} worst of {len(check.rows)} components"


def _drawable(errors: np.ndarray) -> np.ndarray:
    out = np.array(errors, dtype=float)
    out[out == 0.0] = ZERO_ERROR
    out[~np.isfinite(out)] = np.nan
    return out


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}g}"
