"""Activities of arguments and results, as in Enzyme and Rust's ``std::autodiff``.

Reverse mode (``#[autodiff_reverse]``):

* ``Const``: not differentiated.
* ``Active``: a scalar whose adjoint is returned after the primal result.
* ``Duplicated``: an array followed by its shadow, into which the adjoint is accumulated.
* ``DuplicatedOnly``: as ``Duplicated``; on a result, the primal result is not returned.

Forward mode (``#[autodiff_forward]``):

* ``Dual``: an argument followed by its tangents (``width`` of them);
* ``DualOnly``: as ``Dual``; on a result, only the tangents are returned;
* ``Dualv``: an argument followed by ONE tangent holding all ``width`` directions (an array of
  shape ``(width,) + shape``, or ``width`` times its size flat), like Rust's ``Dualv``.
Each activity is a singleton; its name as a string is accepted wherever an activity is.
"""
from __future__ import annotations

from nbautodiff.errors import AutodiffError


class Activity:
    """One activity; compare with ``is`` or by name."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return (as_activity, (self.name,))


Const = Activity("Const")
Active = Activity("Active")
Duplicated = Activity("Duplicated")
DuplicatedOnly = Activity("DuplicatedOnly")
Dual = Activity("Dual")
DualOnly = Activity("DualOnly")
Dualv = Activity("Dualv")

ALL = {a.name: a for a in (Const, Active, Duplicated, DuplicatedOnly, Dual, DualOnly, Dualv)}
REVERSE_ARGUMENT = (Const, Active, Duplicated, DuplicatedOnly)
REVERSE_RETURN = (Const, Active, DuplicatedOnly)


def as_activity(value) -> Activity:
    """Return the activity named by ``value`` (an :class:`Activity` or its name)."""
    if isinstance(value, Activity):
        return value
    if isinstance(value, str) and value in ALL:
        return ALL[value]
    raise AutodiffError(f"unknown activity {value!r}; expected one of {', '.join(ALL)}")


def has_shadow(activity: Activity) -> bool:
    """Whether an argument with this activity is followed by a shadow argument."""
    return activity in (Duplicated, DuplicatedOnly, Dual, DualOnly, Dualv)
