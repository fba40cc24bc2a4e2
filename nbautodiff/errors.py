"""Every error class of nbautodiff, in one place.

Every error the tool raises deliberately derives from :class:`AutodiffError`. Errors about the
user's code carry the construct and the line in the user's own numbering (the cell's lines for
code typed in a notebook, the file's lines otherwise). The last section holds the exceptions
that one part of the pipeline raises for another to catch (they never reach the user as such).
Every module imports its error classes from here.
"""
from __future__ import annotations

import linecache
import os
import re


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


#: The environment variable that sets the memory limit of tapes and checkpoints (bytes, or with a
#: binary suffix ``K``, ``M``, ``G``, ``T``); :mod:`nbautodiff.kernels.memory` reads it.
MEMORY_LIMIT_VARIABLE = "NBAUTODIFF_MEMORY_LIMIT"


def human_bytes(nbytes: float) -> str:
    """``nbytes`` written for people, in binary units: ``812.3 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


class TapeMemoryRefused(TapeMemoryError):
    """The :class:`TapeMemoryError` of an allocation over the limit, built from numbers only, so
    that compiled code raises it without formatting text: ``nbytes`` more bytes for ``what`` (0 a
    tape, 1 checkpoint buffers) exceed ``limit`` bytes. The message names both sizes, where the
    limit comes from (:data:`MEMORY_LIMIT_VARIABLE` when set, else the available memory) and
    the remedy (checkpointing for a tape, fewer checkpoints for checkpoint buffers)."""

    def __init__(self, nbytes: int, what: int, limit: int):
        kind = "a tape" if what == 0 else "checkpoint buffers"
        hint = ("checkpoint the long loops: nad.grad(f, checkpoint=True) (or value_and_grad/"
                "reverse with checkpoint=...), %%autodiff --checkpoint, or mark one loop with "
                "'for t in nad.checkpointed(range(T)):'") if what == 0 else \
            "use fewer checkpoints: checkpoint='binomial' (or nad.checkpointed(..., snapshots=S))"
        setting = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
        source = f"{MEMORY_LIMIT_VARIABLE}={setting}" if setting else "available memory"
        super().__init__(f"the reverse pass needs {kind} of {human_bytes(nbytes)} but only "
                         f"{human_bytes(limit)} can be allocated ({source}); {hint}",
                         construct="tape memory")


class BatchError(AutodiffError, ValueError):
    """Bad batch axes or batch sizes; the message names the argument (or result element)."""


class ArgnumsError(AutodiffError, ValueError):
    """``argnums`` that do not select among a function's arguments (also a ValueError, as the
    gradient check raised before the API and the check shared one test)."""


class OffloadError(AutodiffError):
    """Code that cannot run on the GPU as written; the message names the construct and line."""


class ParallelismError(AutodiffError):
    """A loop marked parallel (or offloaded) whose iterations are not independent."""


class CellAutodiffError(AutodiffError):
    """An :class:`AutodiffError` raised while deriving a cell's functions, shown in IPython as
    two lines (the message and the offending source line), not a traceback.

    ``lineno`` and the other fields are those of the original error, except that an error
    without a filename is taken to be about ``primal_filename``, the file of the function being
    derived. ``file_label`` names a file for the message ("the cell", "In[3]"...).
    """

    def __init__(self, original: AutodiffError, derived_name: str,
                 primal_filename: str | None = None, file_label=None):
        super().__init__(original.message, construct=original.construct,
                         lineno=original.lineno, filename=original.filename or primal_filename,
                         function=original.function)
        self.derived_name = derived_name
        self.where = ""
        if self.lineno is not None:
            label = file_label(self.filename) if file_label and self.filename else self.filename
            self.where = f"line {self.lineno}" + (f" of {label}" if label else "")

    def _render_traceback_(self) -> list:
        where = ", ".join(p for p in (
            f"in function '{self.function}'" if self.function else "", self.where) if p)
        lines = [f"AutodiffError: cannot derive {self.derived_name}: "
                 + (f"{where}: " if where else "") + self.message]
        source = linecache.getline(self.filename, self.lineno) if self.filename and self.lineno else ""
        if source.strip():
            lines.append(f"{self.lineno:>6} | {source.rstrip()}")
        return lines


def numba_reason(exc: Exception) -> str:
    """The reason numba gives for failing to compile, in one line: its first line (colours
    removed), with the signature that had no implementation where it names one."""
    lines = [ln.strip() for ln in numba_text(exc).splitlines() if ln.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if reason.startswith("No implementation") and len(lines) > 1 and lines[1].startswith(">>>"):
        reason += " " + lines[1][3:].strip()
    return reason


def numba_text(exc: Exception) -> str:
    """``str(exc)`` without the terminal colours numba may add."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc))


def numba_locations(exc: Exception) -> list[tuple[str, int]]:
    """The (file, line) pairs numba's message names, in its order."""
    return [(m.group(1), int(m.group(2)))
            for m in re.finditer(r'File "([^"]+)", line (\d+)', numba_text(exc))]


# ---- raised by one pass, caught by another ----------------------------------------------------

class NotLaneable(Exception):
    """The function cannot run in the inner batch layout (:mod:`nbautodiff.transforms.lanes`);
    ``reason`` says why, ``lineno`` where. :mod:`nbautodiff.transforms.batching` turns it into a
    :class:`BatchError` or falls back to the outer layout."""

    def __init__(self, reason: str, lineno: int | None = None):
        self.reason, self.lineno = reason, lineno
        super().__init__(reason if lineno is None else f"{reason} (line {lineno})")


class NotReplayable(Exception):
    """The function cannot be replayed on complex numbers (:mod:`nbautodiff.checks.replay`);
    the message says why, and the gradient check reports it."""


class NotSplittable(Exception):
    """A reverse variant cannot be split in its two sweeps
    (:class:`nbautodiff.api.residuals.KeptForward`): it is run whole for each seed."""


class NotVectorizable(Exception):
    """The reverse sweep cannot carry its adjoints in lanes
    (:mod:`nbautodiff.transforms.reverse.vector`); ``reason`` says why, and the caller runs a
    loop of sweeps instead."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class PrivateKeyPart(Exception):
    """A part of an artifact's cache key that cannot be hashed faithfully
    (:mod:`nbautodiff.cache`): the artifact then stays in this process."""
