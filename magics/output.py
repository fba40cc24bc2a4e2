"""What the magics show: the cell's result, highlighted generated source, short errors.

Each object renders as HTML in notebooks and as text in terminals.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from nbautodiff.checks.report import figure_png


@dataclass(frozen=True)
class Derived:
    """One derived function pushed into the user namespace: ``name`` is its name there,
    ``function`` it, ``summary`` a short description (``gradient of loss w.r.t. p``),
    ``source`` its generated code (None until a first call when the types cannot be guessed),
    ``memory`` the tape and checkpoint bytes of its last call (after ``--check``), or None."""

    name: str
    function: object
    summary: str
    check: object = None
    show_source: bool = False
    source: str | None = None
    memory: object = None

    @property
    def line(self) -> str:
        memory = f" [memory of the check: {self.memory}]" if self.memory is not None else ""
        return f"{self.summary}{memory}"


@dataclass
class AutodiffResult:
    """The value of a ``%%autodiff`` cell: the derived functions, each with its gradient check
    (when ``--check`` was given) and generated source (when ``--show`` was given).

    In IPython it displays as a sequence of outputs (see :meth:`outputs`): the list of derived
    names, then per function the check's HTML table, its plot as a PNG, and the source.
    """

    derived: list = field(default_factory=list)

    @property
    def names(self) -> dict:
        """Derived name -> derived function."""
        return {d.name: d.function for d in self.derived}

    @property
    def checks(self) -> dict:
        """Derived name -> :class:`nbautodiff.checks.check.GradientCheck`, for the checked ones."""
        return {d.name: d.check for d in self.derived if d.check is not None}

    def outputs(self) -> list:
        """The display objects of this result, in display order."""
        from IPython.display import Image

        items = [_Summary(self.derived)]
        for d in self.derived:
            if d.check is not None:
                items.append(d.check)
                items.append(Image(data=figure_png(d.check.plot()), format="png"))
            if d.show_source:
                items.append(HighlightedSource(d.name, d.source))
        return items

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(*self.outputs())

    def __repr__(self) -> str:
        return _Summary(self.derived).text()


@dataclass(frozen=True)
class _Summary:
    derived: list

    def text(self) -> str:
        return "\n".join(f"{d.name}: {d.line}" for d in self.derived)

    def _repr_html_(self) -> str:
        items = "".join(f"<li><code>{html.escape(d.name)}</code>: {html.escape(d.line)}</li>"
                        for d in self.derived)
        return f'<ul class="nbautodiff-derived">{items}</ul>'

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.text())


@dataclass(frozen=True)
class HighlightedSource:
    """Generated Python source, highlighted with pygments (inline styles, so the HTML stays
    highlighted once exported). A ``source`` of None says the code is generated at the first
    call."""

    name: str
    source: str | None

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        title = f"generated source of <code>{html.escape(self.name)}</code>"
        if self.source is None:
            return f"<p>{title}: {html.escape(self._pending())}</p>"
        code = highlight(self.source, PythonLexer(), HtmlFormatter(noclasses=True))
        lines = self.source.count("\n")
        return (f"<details><summary>{title} ({lines} lines; click to read)</summary>{code}"
                "</details>")

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(f"# generated source of {self.name}\n{self.source or '# ' + self._pending()}")

    def _pending(self) -> str:
        return (f"generated at the first call, for the argument types of that call: call "
                f"{self.name}(...) once, then read {self.name}.source (or use --check)")
