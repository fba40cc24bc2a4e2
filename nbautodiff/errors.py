"""The errors nbautodiff raises on purpose.

Every error the tool raises deliberately derives from :class:`AutodiffError`. Errors about the
user's code carry the construct and the line in the user's own numbering (the cell's lines for
code typed in a notebook, the file's lines otherwise).
"""
from __future__ import annotations


class AutodiffError(Exception):
    """Base of every error nbautodiff raises on purpose.

    ``construct`` names what was refused (``"try/except"``, ``"call to print"``...), ``lineno`` is
    the 1-based line in the user's source and ``filename`` where that source lives.
    """

    def __init__(self, message: str, *, construct: str | None = None,
                 lineno: int | None = None, filename: str | None = None,
                 function: str | None = None):
        self.construct = construct
        self.lineno = lineno
        self.filename = filename
        self.function = function
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.function:
            where.append(f"in function '{self.function}'")
        if self.lineno is not None:
            where.append(f"line {self.lineno}")
        prefix = f"{', '.join(where)}: " if where else ""
        return prefix + self.message


class SourceNotFoundError(AutodiffError):
    """The source of a function to differentiate cannot be found."""


class UnsupportedConstructError(AutodiffError):
    """The user's code uses something the transforms do not support."""


class TapeMemoryError(AutodiffError, MemoryError):
    """A reverse pass's tape or checkpoint buffers would not fit in memory (raised before
    allocating them; see :mod:`nbautodiff.kernels.memory`)."""
