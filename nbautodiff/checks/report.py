"""Rendering of gradient checks: the verdict in words, an HTML table, plain text and a
matplotlib figure, with the pitfalls found (:mod:`nbautodiff.checks.pitfalls`) next to them.

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
PASSING_ROWS = 5                # rows of a passing check (its worst components)
#: Errors of exactly zero are drawn at this value on the log scale.
ZERO_ERROR = 1e-17

_PASS_COLOUR, _FAIL_COLOUR, _NOTE_COLOUR = "#1a7f37", "#cf222e", "#9a6700"
#: The methods a check compares the gradient with, by the names the reports show.
CENTRAL, COMPLEX, FORWARD = "central differences", "complex step", "forward mode"


def verdict(check) -> str:
    """One sentence: passed or failed, on how many components, the worst relative error."""
    wrt = ", ".join(check.argnames[k] for k in check.argnums)
    n = len(check.rows)
    sample = f" (a random sample of {n} of {n + check.skipped})" if check.skipped else ""
    warnings = len(check.warnings)
    doubt = f", but {warnings} warning{'s' * (warnings > 1)} about this point" if warnings else ""
    if check.ok:
        return (f"gradient check passed: {check.function} w.r.t. {wrt}, {n} component"
                f"{'s' if n != 1 else ''}{sample}, max rel. error {_num(check.max_rel_error)} "
                f"<= tolerance {_num(check.rtol)} ({check.reference}){doubt}")
    bad = len(check.failures)
    return (f"gradient check FAILED: {bad} of {n} component{'s' if n != 1 else ''}{sample} of "
            f"{check.function} w.r.t. {wrt} exceed the tolerance {_num(check.rtol)}, "
            f"max rel. error {_num(check.max_rel_error)} ({check.reference})")


def explanation(check) -> str:
    """The verdict in words: which methods agree with the AD gradient, what a disagreement
    points at, and the pitfalls found."""
    rows = check.rows
    sentences = []
    fd_bad = [r for r in rows if not r.fd_error <= check.rtol]
    cs_bad = [r for r in rows if not r.cs_error <= check.rtol]
    fw_bad = [r for r in rows if not r.forward_error <= check.rtol]
    agreement = []
    agreement.append(_agreement(CENTRAL, fd_bad, [r.fd_error for r in rows], len(rows)))
    if COMPLEX not in check.unavailable:
        agreement.append(_agreement(COMPLEX, cs_bad, [r.cs_error for r in rows], len(rows)))
    if FORWARD not in check.unavailable:
        agreement.append(_agreement(FORWARD, fw_bad, [r.forward_error for r in rows], len(rows)))
    sentences.append("The AD gradient " + _join(agreement) + ".")
    for method, reason in check.unavailable.items():
        if reason != "not requested":
            sentences.append(f"The {method} does not apply here: {reason}.")
    reference_bad = cs_bad if check.reference == COMPLEX else fd_bad
    if any(not math.isfinite(r.ad) for r in rows):
        sentences.append("The AD gradient is not finite: see where the first NaN or inf "
                         "came from below.")
    elif reference_bad and FORWARD not in check.unavailable:
        if fw_bad:
            sentences.append("Forward and reverse mode disagree with each other: the reverse "
                             "derivative itself is wrong (a hand-written gradient, or a bug).")
        else:
            sentences.append("Forward and reverse mode agree with each other but not with the "
                             f"{check.reference}: both differentiate the code as written, so "
                             "look for a derivative that the code's structure hides (a pitfall "
                             "below, a primitive's rule, a declared derivative).")
    elif check.ok and fd_bad:
        sentences.append("Only the central differences disagree: the step sweep cannot resolve "
                         "this function (see below); the complex step needs no step.")
    steps = [r.step for r in rows if math.isfinite(r.step)]
    if steps:
        sentences.append(f"Central differences were taken at relative steps around "
                         f"{_num(float(np.median(steps)), 1)}, the bottom of the V-shaped error "
                         "curve: larger steps add truncation error (~h^2), smaller ones "
                         "rounding error (~eps/h).")
    warnings = [f for f in check.findings if f.severity == "warning"]
    notes = [f for f in check.findings if f.severity != "warning"]
    if warnings or notes:
        counted = [f"{len(x)} {word}{'s' * (len(x) > 1)}"
                   for x, word in ((warnings, "warning"), (notes, "note")) if x]
        sentences.append(f"Pitfalls: {' and '.join(counted)} below.")
    return " ".join(sentences)


def check_text(check, max_rows: int = MAX_ROWS_TEXT) -> str:
    """Plain text: the verdict, a fixed-width table of the components, the verdict in words,
    then the findings."""
    rows, note = _shown_rows(check, max_rows)
    columns = _columns(check)
    header = tuple(title for title, _ in columns) + ("",)
    table = [header] + [tuple(cell(r) for _, cell in columns) + ("ok" if r.ok else "FAIL",)
                        for r in rows]
    widths = [max(len(line[c]) for line in table) for c in range(len(header))]
    lines = [verdict(check)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    if note:
        lines.append(note)
    lines.append(explanation(check))
    for finding in check.findings:
        lines.append("")
        lines.append(f"{finding.severity.upper()}: {finding.title}")
        if finding.lineno is not None and finding.source:
            lines.append(f"  line {finding.lineno}: {finding.source}")
        lines.append(f"  {finding.explanation}")
        lines.append(f"  What to do: {finding.advice}")
    return "\n".join(lines)


def check_html(check, max_rows: int = MAX_ROWS_HTML) -> str:
    """An HTML table (component, AD value, each reference, rel. error) under a verdict line,
    the verdict in words, and one box per finding."""
    rows, note = _shown_rows(check, max_rows)
    colour, mark = _status(check)
    columns = _columns(check)
    out = ['<div class="nbautodiff-check">',
           f'<p style="color:{colour};font-weight:bold">{mark} {html.escape(verdict(check))}</p>',
           '<table class="nbautodiff-check-table">',
           "<thead><tr>" + "".join(f"<th>{html.escape(title)}</th>" for title, _ in columns)
           + "</tr></thead><tbody>"]
    for r in rows:
        style = "" if r.ok else f' style="color:{_FAIL_COLOUR};font-weight:bold"'
        cells = [f"<td><code>{html.escape(r.label)}</code></td>"]
        cells += [f"<td>{html.escape(cell(r))}</td>" for _, cell in columns[1:]]
        out.append(f"<tr{style}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f"<p><em>{html.escape(note)}</em></p>")
    out.append(f'<p class="nbautodiff-explanation">{html.escape(explanation(check))}</p>')
    for finding in check.findings:
        out.append(finding_html(finding))
    out.append("</div>")
    return "\n".join(out)


def finding_html(finding) -> str:
    """One finding as a box: severity, title, the user's line, explanation, what to do."""
    colour = _FAIL_COLOUR if finding.severity == "warning" else _NOTE_COLOUR
    parts = [f'<div class="nbautodiff-pitfall" style="border-left:4px solid {colour};'
             'padding:2px 10px;margin:6px 0">',
             f'<p><b style="color:{colour}">{html.escape(finding.severity)}</b> '
             f"<b>{html.escape(finding.title)}</b></p>"]
    if finding.lineno is not None and finding.source:
        parts.append(f"<p><code>line {finding.lineno}: {html.escape(finding.source)}</code></p>")
    parts.append(f"<p>{html.escape(finding.explanation)}</p>")
    parts.append(f"<p><i>What to do:</i> {html.escape(finding.advice)}</p></div>")
    return "".join(parts)


def check_figure(check, max_curves: int = 10):
    """Relative error of the central difference against the step size, log-log, and one
    panel per finding with a curve (the gradient against the loop length...).

    One curve per component, with the chosen step marked, up to ``max_curves`` components;
    beyond that the median over components, the band from best to worst, and the worst
    component's curve. A correct gradient draws a V: rounding error on the left, truncation
    error on the right. A wrong one stays above the tolerance line. The complex step's error
    (no step) is a dashed horizontal line.
    """
    from matplotlib.figure import Figure

    curves = [f for f in check.findings if f.curve]
    fig = Figure(figsize=(6.4 + 4.4 * len(curves), 4.0), layout="constrained")
    axes = fig.subplots(1, 1 + len(curves), squeeze=False)[0]
    _error_curves(axes[0], check, max_curves)
    for ax, finding in zip(axes[1:], curves):
        _finding_curve(ax, finding)
    return fig


def _error_curves(ax, check, max_curves: int) -> None:
    steps = check.steps
    errors = np.array([_drawable(r.errors) for r in check.rows]).reshape(len(check.rows), len(steps))
    if len(check.rows) <= max_curves:
        for r, err in zip(check.rows, errors):
            (line,) = ax.loglog(steps, err, marker=".", linewidth=1, label=r.label)
            if math.isfinite(r.step):
                ax.loglog([r.step], [_drawable(np.array([r.fd_error]))[0]], "o",
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
    cs = [r.cs_error for r in check.rows if not math.isnan(r.cs_error)]
    if cs:
        ax.axhline(_drawable(np.array([max(cs)]))[0], color="black", linestyle="--",
                   linewidth=1, label="complex step (worst)")
    ax.axhline(check.rtol, color="grey", linestyle=":", linewidth=1, label="tolerance")
    ax.text(0.02, 0.02, "← rounding ~ eps/h", transform=ax.transAxes, fontsize="x-small",
            color="grey")
    ax.text(0.98, 0.02, "truncation ~ h² →", transform=ax.transAxes, fontsize="x-small",
            color="grey", ha="right")
    ax.set_xlabel("relative step h")
    ax.set_ylabel("|FD - AD| / max(|AD|, |FD|, floor)")
    status = "passed" if check.ok else "FAILED"
    warnings = len(check.warnings)
    if warnings:
        status += f", {warnings} warning{'s' * (warnings > 1)}"
    ax.set_title(f"gradient check of {check.function}: {status}", color=_status(check)[0])
    ax.legend(fontsize="small", loc="best")
    ax.grid(True, which="major", linewidth=0.3)


def _finding_curve(ax, finding) -> None:
    curve = finding.curve
    plot = ax.semilogy if curve.get("logy") else ax.plot
    plot(curve["x"], curve["y"], marker="o", linewidth=1)
    ax.set_xlabel(curve.get("xlabel", ""))
    ax.set_ylabel(curve.get("ylabel", ""))
    colour = _FAIL_COLOUR if finding.severity == "warning" else _NOTE_COLOUR
    ax.set_title(curve.get("title", finding.category), color=colour)
    ax.grid(True, which="major", linewidth=0.3)


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (through Agg; no window, no pyplot)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _status(check) -> tuple[str, str]:
    """(colour, HTML mark) of a check: passed, passed with warnings, failed."""
    if not check.ok:
        return _FAIL_COLOUR, "&#10007;"
    if check.warnings:
        return _NOTE_COLOUR, "&#9888;"
    return _PASS_COLOUR, "&#10003;"


def _columns(check) -> list:
    """(title, cell of a row) of each column of the table, the methods that ran only."""
    columns = [("component", lambda r: r.label), ("AD", lambda r: _num(r.ad, 10)),
               ("central diff.", lambda r: _num(r.fd, 10)), ("step", lambda r: _num(r.step, 1))]
    if COMPLEX not in check.unavailable:
        columns.append(("complex step", lambda r: _num(r.cs, 10)))
    if FORWARD not in check.unavailable:
        columns.append(("forward mode", lambda r: _num(r.forward, 10)))
    columns.append(("rel. error", lambda r: _num(r.rel_error)))
    return columns


def _agreement(method: str, bad: list, errors: list, n: int) -> str:
    finite = [e for e in errors if not math.isnan(e)]
    worst = max(finite) if finite else math.nan
    method = "the complex step" if method == "complex step" else method
    if not bad:
        return f"agrees with {method} (max rel. error {_num(worst)})"
    return (f"disagrees with {method} on {len(bad)} of {n} component{'s' * (n > 1)} "
            f"(max rel. error {_num(worst)})")


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _shown_rows(check, max_rows: int):
    """The rows a report shows: a passing check's few worst (its agreement is the news), a
    failing check's every failing component, then its worst passing ones up to ``max_rows``."""
    total = len(check.rows)
    failing = [row for row in check.worst(total) if not row.ok]
    if not failing:
        if total <= PASSING_ROWS:
            return list(check.rows), ""
        return check.worst(PASSING_ROWS), (f"all {total} components agree; the "
                                           f"{PASSING_ROWS} with the largest errors shown")
    if total <= max_rows:
        return list(check.rows), ""
    shown = failing + [row for row in check.worst(max_rows) if row.ok][:max(0, max_rows
                                                                            - len(failing))]
    return shown, (f"showing the {len(shown)} worst of {total} components "
                   f"({len(failing)} outside the tolerance, every one shown)")


def _drawable(errors: np.ndarray) -> np.ndarray:
    out = np.array(errors, dtype=float)
    out[out == 0.0] = ZERO_ERROR
    out[~np.isfinite(out)] = np.nan
    return out


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}g}"
