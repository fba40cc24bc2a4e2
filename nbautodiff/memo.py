"""Memo tables whose entries live exactly as long as the object they are about.

A builder remembers what it built for a function (its primal, its variants, its batched code...)
so that it builds it once. Re-running a notebook cell defines new function objects each time:
a process-global dict keyed by the functions would keep every old one, with all it was built
into, for the life of the kernel. :class:`weakref.WeakKeyDictionary` cannot help alone, because
the values refer to their key (a primal holds its function's source, which holds the function),
so the table itself would keep every key alive. A :class:`Memo` therefore keeps each object's
entries on the object (in one attribute per memo): the object and what was built for it then
form a cycle that Python's collector frees once nothing else refers to the object. The memo
itself holds its owners weakly (a :class:`weakref.WeakSet`), to count them and their entries.

The entries of an owner are keyed like any dict. ``functools.wraps`` copies a function's
attributes onto its wrapper, so an owner only reads a table made for itself (another object's,
copied onto it, is replaced); pickling an owner (``cloudpickle`` of a notebook function) leaves
its entries out.
"""
from __future__ import annotations

import threading
import weakref

class _Entries(dict):
    """The entries a memo keeps for one owner (a dict), and which owner that is."""

    def __init__(self, owner):
        super().__init__()
        self.owner = weakref.ref(owner)

    def __reduce__(self):
        return (_Entries._detached, ())

    @staticmethod
    def _detached():
        entries = dict.__new__(_Entries)
        entries.owner = lambda: None
        return entries


class Memo:
    """A memo table keyed by tuples whose first element is the owner the entry is about:
    ``memo[(func, code)]``, ``(prim, argtypes, flags) in memo``... The entry is kept on its
    owner, as the module docstring says; ``len(memo)`` counts the entries of the owners still
    alive, :meth:`owners` those owners."""

    def __init__(self, name: str):
        self.name = name
        self._attribute = f"__nad_memo_{name}__"
        self._owners: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.RLock()

    def _entries(self, owner, create: bool) -> _Entries | None:
        entries = vars(owner).get(self._attribute)
        if isinstance(entries, _Entries) and entries.owner() is owner:
            return entries
        if not create:
            return None
        with self._lock:
            entries = _Entries(owner)
            setattr(owner, self._attribute, entries)
            self._owners.add(owner)
        return entries

    def __contains__(self, key: tuple) -> bool:
        entries = self._entries(key[0], create=False)
        return entries is not None and key[1:] in entries

    def __getitem__(self, key: tuple):
        entries = self._entries(key[0], create=False)
        if entries is None:
            raise KeyError(key)
        return entries[key[1:]]

    def __setitem__(self, key: tuple, value) -> None:
        self._entries(key[0], create=True)[key[1:]] = value

    def get(self, key: tuple, default=None):
        entries = self._entries(key[0], create=False)
        return default if entries is None else entries.get(key[1:], default)

    def owners(self) -> list:
        """The owners alive that hold entries of this memo."""
        return [owner for owner in list(self._owners) if self._entries(owner, create=False)]

    def __len__(self) -> int:
        return sum(len(self._entries(owner, create=False) or ()) for owner in list(self._owners))

    def clear(self) -> None:
        for owner in list(self._owners):
            entries = self._entries(owner, create=False)
            if entries is not None:
                entries.clear()

    def __repr__(self) -> str:
        return f"<Memo {self.name}: {len(self)} entries>"


#: Every memo of the package, by name (a test checks that they stay bounded).
MEMOS: dict[str, Memo] = {}


def memo(name: str) -> Memo:
    """The memo ``name`` (made on first use), listed in :data:`MEMOS`."""
    if name not in MEMOS:
        MEMOS[name] = Memo(name)
    return MEMOS[name]
