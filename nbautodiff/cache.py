"""Content-addressed artifacts: generated sources and numba's compiled code, kept across processes.

The one place that knows about keys, folders, locks and checksums. An *artifact* is a generated
Python source (a derivative, a batched or offloaded function) plus what its builder needs to use
it again (``data``, pickled), stored as an *entry*: a folder named by the artifact's key. numba's
compiled code for the functions of that source is stored in the same entry (``cache=True`` on the
real file of the entry, whose path is stable for the key), so a new process skips both the
transform and numba's compilation.

Contracts:

* :func:`key` hashes everything that determines an artifact: its kind and the parts its builder
  gives (normalised source, keys of the callees' artifacts, global arrays' contents, argument
  types, options), the versions of nbautodiff (a digest of its sources, templates included),
  numba, llvmlite, NumPy and Python, numba's code-generation settings and the target (CPU name
  and features; for ``target="cuda"`` the compute capability, CUDA runtime and driver versions,
  or the simulator). A part that cannot be hashed faithfully (an object of unknown kind) makes
  the key *private*: the artifact is built and used in this process only, never shared.
* :func:`artifact` returns the entry of a key: read from the cache when present and intact
  (checksums of every file verified), else built by the caller's ``build()`` and stored. While
  it builds, it holds the key's file lock, so kernels compiling the same thing at once build it
  once. Entries are written to a temporary folder and renamed into place: an interrupt leaves no
  partial entry. A damaged entry is reported as a :class:`CacheWarning` and rebuilt.
* The folder is ``NBAUTODIFF_CACHE_DIR`` if set, else ``nbautodiff`` under IPython's cache
  folder when running under IPython, else the platform's user cache folder. It is created with
  mode 0700; a folder that other users can write to is refused (with a warning saying why) and a
  private one used instead.
* :func:`forced` rebuilds every artifact requested inside it once, and :func:`force_functions`
  every artifact of the functions it is given whenever first requested later (together, the
  ``--force`` of the magics); :func:`info`, :func:`clear` and :func:`set_limit` (least recently used entries are
  evicted beyond ``NBAUTODIFF_CACHE_SIZE`` bytes, 1 GiB by default) are ``nad.cache``'s controls.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import linecache
import os
import pickle
import platform
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import naming, progress
from .errors import PrivateKeyPart

try:
    import fcntl
except ImportError:                       # Windows: entries are still atomic, builds not locked
    fcntl = None

FORMAT = 1                                # of the entry layout below
FOLDER_VARIABLE = "NBAUTODIFF_CACHE_DIR"
LIMIT_VARIABLE = "NBAUTODIFF_CACHE_SIZE"
DEFAULT_LIMIT = 1 << 30
LOCK_TIMEOUT_S = 600.0
STALE_TEMPORARY_S = 3600.0                # a temporary folder this old belongs to a dead writer
RESCAN_EVERY = 200                        # additions between scans of the folder's size
EVICT_TO = 0.8                            # eviction leaves the cache at this share of its limit
NUMBA_FROZEN_ARRAY_BYTES = 10 ** 6        # numba freezes smaller global arrays into the code

LIBRARIES = ("builtins", "math", "cmath", "numpy", "numba")   # callables known by name

MANIFEST, DATA, NUMBA_SUMS = "manifest.json", "data.pkl", "numba-sums.json"
ENTRIES, LOCKS, USAGE = "entries", "locks", "usage.json"


class CacheWarning(UserWarning):
    """A cache folder refused, or a damaged entry found (and rebuilt)."""


# ---- keys -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """The hex ``digest`` naming an artifact, its ``kind``; ``shared`` is False for a key of this
    process only (see :func:`key`); ``forced`` is True for a key determined by a function given
    to :func:`force_functions` (not part of the key's identity)."""
    digest: str
    kind: str
    shared: bool = True
    forced: bool = field(default=False, compare=False)


def key(kind: str, *parts, target: str = "cpu", origin=None) -> Key:
    """The key of an artifact of ``kind`` determined by ``parts`` on ``target`` ("cpu" or
    "cuda"). Parts may be strings, numbers, None, numba types, NumPy arrays (hashed by content),
    other :class:`Key` objects (a dependency's artifact), functions (hashed by source and what
    they read, see :func:`fingerprint`), modules, and tuples, lists or dicts of those.
    ``origin``: the user's function the artifact is made from when no part names it (not
    hashed; :func:`force_functions` looks for it)."""
    digest = hashlib.sha256()
    digest.update(_environment(target).encode())
    digest.update(kind.encode())
    shared, forced = True, origin in _state.forced_functions
    for part in parts:
        read = set()                        # the functions and keys the part's text stands for
        try:
            text = _canonical(part, read)
        except PrivateKeyPart:
            shared, text = False, uuid.uuid4().hex
        read.update(_keys_in(part))
        shared = shared and all(k.shared for k in read if isinstance(k, Key))
        forced = forced or any(k.forced if isinstance(k, Key) else k in _state.forced_functions
                               for k in read)
        digest.update(b"\0" + text.encode())
    return Key(digest.hexdigest()[:40] if shared else "p" + digest.hexdigest()[:39], kind, shared,
               forced)


def _keys_in(part) -> list:
    """The :class:`Key` objects in ``part`` (in its tuples, lists and dict values)."""
    if isinstance(part, Key):
        return [part]
    if isinstance(part, (tuple, list)):
        return [k for p in part for k in _keys_in(p)]
    if isinstance(part, dict):
        return [k for p in part.values() for k in _keys_in(p)]
    return []


def _canonical(part, seen: set) -> str:
    """A string that determines ``part`` (raises :class:`PrivateKeyPart` for what cannot be hashed)."""
    if part is None or isinstance(part, (bool, int, float, str, np.generic)):
        return f"{type(part).__name__}:{part!r}"
    if isinstance(part, Key):
        return f"key:{part.digest}"
    if isinstance(part, np.ndarray):
        return "array:" + array_digest(part)
    if isinstance(part, tuple) and hasattr(part, "_fields"):
        return type(part).__qualname__ + _canonical(tuple(part), seen)
    if isinstance(part, (tuple, list)):
        return "(" + ",".join(_canonical(p, seen) for p in part) + ")"
    if isinstance(part, dict):
        items = sorted((_canonical(k, seen), _canonical(v, seen)) for k, v in part.items())
        return "{" + ",".join(f"{k}={v}" for k, v in items) + "}"
    if isinstance(part, types.ModuleType):
        return f"module:{part.__name__}"
    if type(part).__module__.startswith("numba.core.types"):
        return f"numba:{type(part).__name__}:{part}"
    known = key_of(part)
    if known is not None:
        seen.add(known)
        return _canonical(known, seen)
    if callable(part):
        return fingerprint(part, seen)
    raise PrivateKeyPart(f"{type(part).__qualname__} object")


def array_digest(array: np.ndarray) -> str:
    """Content digest of ``array`` with its dtype, shape and memory order."""
    if array.dtype.hasobject:
        raise PrivateKeyPart("array of Python objects")
    order = "C" if array.flags.c_contiguous else "F" if array.flags.f_contiguous else "A"
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}{order}".encode())
    digest.update(np.ascontiguousarray(array).view(np.uint8).data)
    return digest.hexdigest()


def fingerprint(func, seen: set | None = None) -> str:
    """A string determining a callable: for Python functions (and numba dispatchers, and the
    wrappers of :mod:`nbautodiff.frontend.declarations`) their source, line, and the fingerprint of every global, closure
    variable and callee they read, recursively; library callables (``math.sin``, ufuncs) by
    qualified name. Raises :class:`PrivateKeyPart` when something read cannot be hashed."""
    seen = set() if seen is None else seen
    if getattr(type(func), "__nad_derivative__", None):            # a custom.py wrapper
        rule = getattr(func, "rule", None)
        return (f"wrapper:{type(func).__name__}:{fingerprint(func.py_func, seen)}:"
                + (fingerprint(rule, seen) if rule is not None else "no rule"))
    python = getattr(func, "py_func", func)
    if not isinstance(python, types.FunctionType):
        module = getattr(func, "__module__", None) or type(func).__module__
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
        if name is None or not module.split(".")[0] in LIBRARIES:
            raise PrivateKeyPart(f"callable {func!r}")
        return f"callable:{module}.{name}"
    if python in seen:
        return f"recursive:{python.__qualname__}"
    seen.add(python)
    code = python.__code__
    try:
        text = inspect.getsource(python)
    except (OSError, TypeError):
        text = repr((code.co_code, code.co_consts))
    reads = []
    for name in sorted(_global_names(code)):
        if name in python.__globals__:
            reads.append(f"{name}={_canonical(python.__globals__[name], seen)}")
    for name, cell in zip(code.co_freevars, python.__closure__ or ()):
        reads.append(f"{name}:={_canonical(cell.cell_contents, seen)}")
    return (f"function:{python.__qualname__}@{code.co_firstlineno}:"
            f"{hashlib.sha256(text.encode()).hexdigest()}[{';'.join(reads)}]")


def _global_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def private_key(kind: str) -> Key:
    """A new key of this process only (an artifact nobody else may reuse)."""
    return Key("p" + uuid.uuid4().hex, kind, shared=False)


def remember_key(obj, artifact_key: Key) -> None:
    """Record that ``obj`` (a dispatcher made from an artifact) is determined by ``artifact_key``,
    so that keys of artifacts using ``obj`` can name it."""
    obj.__nad_cache_key__ = artifact_key


def key_of(obj) -> Key | None:
    """The key recorded for ``obj`` by :func:`remember_key`, or None."""
    found = getattr(obj, "__nad_cache_key__", None)
    return found if isinstance(found, Key) else None


@functools.lru_cache(maxsize=None)
def _environment(target: str) -> str:
    """What every key depends on besides its parts, as a JSON string."""
    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from numba.core import config
    environment = {
        "format": FORMAT,
        "nbautodiff": _sources_digest(),
        "numba": numba.__version__, "llvmlite": llvmlite.__version__,
        "numpy": np.__version__, "python": sys.version, "machine": platform.machine(),
        "system": platform.system(),
        "numba config": [str(getattr(config, name, None)) for name in
                         ("OPT", "BOUNDSCHECK", "FASTMATH", "DEBUGINFO_DEFAULT", "CPU_NAME",
                          "CPU_FEATURES", "DISABLE_JIT")],
        "cpu": llvm.get_host_cpu_name(), "cpu features": llvm.get_host_cpu_features().flatten(),
    }
    if target == "cuda":
        environment["cuda"] = _cuda_target()
    elif target != "cpu":
        raise ValueError(f"unknown target {target!r} (use 'cpu' or 'cuda')")
    return json.dumps(environment, sort_keys=True)


def _cuda_target() -> dict:
    """The GPU target: simulator, or compute capability, CUDA runtime and driver versions."""
    from numba import config
    if config.ENABLE_CUDASIM:
        return {"simulator": True}
    try:
        from numba import cuda
        device = cuda.get_current_device()
        return {"simulator": False, "compute capability": list(device.compute_capability),
                "runtime": list(cuda.runtime.get_version()),
                "driver": list(cuda.cudadrv.driver.driver.get_version()),
                "device": str(device.name)}
    except Exception as error:        # noqa: BLE001 - no GPU: nothing will be compiled for one
        return {"simulator": False, "unavailable": type(error).__name__}


def _sources_digest() -> str:
    """Digest of nbautodiff's own sources (the transforms, the rule templates, the kernels)."""
    from . import kernels
    digest = hashlib.sha256()
    for root in (os.path.dirname(__file__), *kernels.__path__):
        for folder, subfolders, names in sorted(os.walk(root)):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            for name in sorted(names):
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(folder, name), root)
                    with open(os.path.join(folder, name), "rb") as handle:
                        digest.update(relative.encode() + b"\0" + handle.read())
    return digest.hexdigest()


# ---- the folder -------------------------------------------------------------------------------

def folder() -> str:
    """The cache folder, created (mode 0700) and checked: see the module docstring."""
    wanted = _wanted_folder()
    with _state.lock:
        if _state.folder_for != wanted:
            _state.folder = _usable_folder(wanted)
            _state.folder_for = wanted
        return _state.folder


def _wanted_folder() -> str:
    configured = os.environ.get(FOLDER_VARIABLE)
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return _default_folder()


def _default_folder() -> str:
    ipython = sys.modules.get("IPython")            # only when IPython runs: the core needs none
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        from IPython.paths import get_ipython_cache_dir
        return os.path.join(get_ipython_cache_dir(), "nbautodiff")
    from numba.misc.appdirs import AppDirs
    return AppDirs("nbautodiff", appauthor=False).user_cache_dir


def _usable_folder(wanted: str) -> str:
    reason = _prepare(wanted)
    if reason is None:
        return wanted
    fallback = _default_folder()
    if fallback == wanted or _prepare(fallback) is not None:
        fallback = _private_folder()
    warnings.warn(f"nbautodiff does not use the cache folder {wanted}: {reason}, so code "
                  f"loaded from it could be someone else's; using {fallback} instead",
                  CacheWarning, stacklevel=3)
    return fallback


def _prepare(path: str) -> str | None:
    """Create ``path`` and its subfolders (0700); the reason it is unsafe, or None."""
    try:
        for sub in ("", ENTRIES, LOCKS):
            target = os.path.join(path, sub)
            if not os.path.isdir(target):
                os.makedirs(target, mode=0o700, exist_ok=True)
            reason = unsafe_reason(target)
            if reason is not None:
                return reason
    except OSError as error:
        return f"it cannot be created ({error.strerror})"
    return None


def unsafe_reason(path: str) -> str | None:
    """Why other users could put code into folder ``path`` (None if they cannot): it is not
    ours, or group or others may write to it."""
    if not hasattr(os, "getuid"):
        return None                                   # Windows: per-user folders by default
    info = os.stat(path)
    if info.st_uid != os.getuid():
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"other users can write to it (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _private_folder() -> str:
    """A folder of this process only (mode 0700, removed at exit): private keys' entries, and
    the cache when the configured folders are refused."""
    if _state.private_folder is None:
        _state.private_folder = tempfile.mkdtemp(prefix="nbautodiff-cache-")
        atexit.register(shutil.rmtree, _state.private_folder, ignore_errors=True)
        for sub in (ENTRIES, LOCKS):
            os.mkdir(os.path.join(_state.private_folder, sub), 0o700)
    return _state.private_folder


# ---- entries ----------------------------------------------------------------------------------

@dataclass
class Built:
    """What a builder returns: the ``stem`` of the source file's name, the ``text`` of the
    source, and ``data`` (anything picklable) the builder needs to use the artifact again."""
    stem: str
    text: str
    data: object = None


@dataclass(eq=False)
class Entry:
    """An artifact in the cache: its source ``text`` in the file ``source_path``, its ``data``;
    ``from_cache`` tells whether it was read (True) or built by this request."""
    key: Key
    path: str
    stem: str
    text: str
    data: object = None
    from_cache: bool = False

    @property
    def source_path(self) -> str:
        return os.path.join(self.path, f"{self.stem}.py")

    @property
    def module_name(self) -> str:
        return f"{naming.GENERATED_MODULE}.{self.stem}_{self.key.digest[:12]}"

    def load(self, namespace: dict) -> dict:
        """Execute the source in a new module holding ``namespace`` (dunder names excepted);
        returns the module's namespace. The module is registered in ``sys.modules`` under
        :attr:`module_name`, where numba's cached code finds it again."""
        module = types.ModuleType(self.module_name)
        module.__dict__.update({name: value for name, value in namespace.items()
                                if not (name.startswith("__") and name.endswith("__"))})
        module.__file__ = self.source_path
        if naming.GENERATED_MODULE not in sys.modules:     # the parent, for pickle's imports
            package = types.ModuleType(naming.GENERATED_MODULE)
            package.__path__ = []
            sys.modules[naming.GENERATED_MODULE] = package
        sys.modules[self.module_name] = module
        linecache.cache[self.source_path] = (len(self.text), None, self.text.splitlines(True),
                                             self.source_path)
        exec(compile(self.text, self.source_path, "exec"), module.__dict__)
        return module.__dict__

    def njit(self, function, **options):
        """``numba.njit(function, **options)`` with its compiled code kept in this entry (when
        numba can cache it: not with global arrays of more than 1 MB, which it does not freeze)."""
        import numba
        dispatcher = numba.njit(function, **options)
        if self.key.shared and _freezable(function):
            try:
                self.attach(dispatcher)
            except (OSError, RuntimeError):           # the entry went away (cleared, evicted):
                pass                                  # compile without keeping the code
        remember_key(dispatcher, self.key)
        return dispatcher

    def attach(self, dispatcher) -> None:
        """Keep ``dispatcher``'s compiled code in this entry, checksummed. For a dispatcher made
        with ``cache=True`` (e.g. ``numba.cuda.jit(cache=True)`` on a function of
        :meth:`load`'s module) its own numba cache is wrapped; for one without, numba's CPU
        cache is made, in the entry's ``__pycache__``. Dispatchers with no numba cache at all
        (the CUDA simulator's kernels) are left as they are."""
        from numba.core.caching import NullCache
        inner = getattr(dispatcher, "_cache", None)
        if inner is None or not self.key.shared:
            return
        if isinstance(inner, NullCache):
            inner = _entry_function_cache(dispatcher.py_func)
        dispatcher._cache = _CheckedNumbaCache(inner, self)


def frozen(arrays: dict) -> dict:
    """The global arrays a generated module reads (name -> array), as copies where numba freezes
    them into compiled code (up to 1 MB, contiguous): the key hashes what the code holds, even if
    the user's array changes before numba compiles. Larger arrays, read at run time, are kept."""
    return {name: array.copy() if frozen_by_numba(array) else array
            for name, array in arrays.items()}


def frozen_by_numba(array: np.ndarray) -> bool:
    """Whether numba copies global ``array`` into compiled code (else it reads it at its
    address on every call)."""
    return array.nbytes <= NUMBA_FROZEN_ARRAY_BYTES and (array.flags.c_contiguous
                                                        or array.flags.f_contiguous)


def _freezable(function) -> bool:
    """Whether numba can cache code reading ``function``'s globals (numba refers to large or
    non-contiguous global arrays by address, and then refuses to cache)."""
    return not any(isinstance(value, np.ndarray) and not frozen_by_numba(value)
                   for value in getattr(function, "__globals__", {}).values())


def artifact(artifact_key: Key, build: Callable[[], Built]) -> Entry:
    """The entry of ``artifact_key``: from the cache if there and intact, else ``build()``
    stored (see the module docstring). ``build`` may request other artifacts."""
    if not artifact_key.shared:
        return _built(artifact_key, build, _private_folder())
    root = folder()
    path = os.path.join(root, ENTRIES, artifact_key.digest)
    if not _forcing(artifact_key):
        found = _read(path, artifact_key)
        if found is not None:
            return found
    with _locked(root, artifact_key.digest):
        if not _forcing(artifact_key):
            found = _read(path, artifact_key)        # built by another process meanwhile
            if found is not None:
                return found
        entry = _built(artifact_key, build, root)
    _evict(root, _folder_bytes(entry.path))
    return entry


def _built(artifact_key: Key, build, root: str) -> Entry:
    started = time.perf_counter()
    made = build()
    entry = _write(os.path.join(root, ENTRIES, artifact_key.digest), artifact_key, made)
    if _state.force_depth:
        _state.force_done.add(artifact_key.digest)
    if artifact_key.forced:
        _state.forced_done.add(artifact_key.digest)
    if _state.force_depth or artifact_key.forced:      # what is derived from it is forced too
        entry.key = dataclasses.replace(artifact_key, forced=True)
    _state.counts["misses"] += 1
    _state.in_use.add(artifact_key.digest)
    progress.report(made.stem, artifact_key.kind, "generated", time.perf_counter() - started)
    return entry


def _read(path: str, artifact_key: Key) -> Entry | None:
    """The intact entry at ``path``, or None (a damaged one is reported and removed)."""
    started = time.perf_counter()
    try:
        with open(os.path.join(path, MANIFEST), "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        if os.path.isdir(path):                      # no manifest: never completed, or evicted
            _remove(path)                            # while in use; not a damaged entry
        return None
    except OSError as error:
        return _damaged(path, f"its manifest cannot be read ({error.strerror})")
    try:
        manifest = json.loads(raw)
        stem, sums = manifest["stem"], dict(manifest["files"])
        if manifest["format"] != FORMAT or manifest["key"] != artifact_key.digest:
            return _damaged(path, "its manifest names another key or format")
    except (ValueError, KeyError, TypeError, AttributeError):
        return _damaged(path, "its manifest is not valid")
    contents = {}
    for name, expected in sums.items():
        try:
            with open(os.path.join(path, name), "rb") as handle:
                contents[name] = handle.read()
        except OSError:
            return _damaged(path, f"{name} is missing")
        if hashlib.sha256(contents[name]).hexdigest() != expected:
            return _damaged(path, f"{name} does not match its checksum")
    try:
        text = contents[f"{stem}.py"].decode()
        data = pickle.loads(contents[DATA]) if DATA in contents else None
    except (KeyError, UnicodeDecodeError, pickle.UnpicklingError, EOFError, AttributeError,
            ImportError, IndexError, TypeError, ValueError) as error:
        return _damaged(path, f"its contents cannot be read ({type(error).__name__})")
    _touch(path)
    _state.counts["hits"] += 1
    _state.in_use.add(artifact_key.digest)
    progress.report(stem, artifact_key.kind, "cache", time.perf_counter() - started)
    return Entry(artifact_key, path, stem, text, data, from_cache=True)


def _damaged(path: str, why: str) -> None:
    warnings.warn(f"nbautodiff cache entry {path} is damaged ({why}): building it again",
                  CacheWarning, stacklevel=4)
    _remove(path)
    return None


def _write(path: str, artifact_key: Key, made: Built) -> Entry:
    """Store ``made`` at ``path`` atomically: written into a temporary folder, renamed into
    place (replacing what was there); nothing is left behind if interrupted."""
    entries = os.path.dirname(path)
    temporary = os.path.join(entries, f".tmp-{artifact_key.digest}-{uuid.uuid4().hex[:12]}")
    try:
        os.mkdir(temporary, 0o700)
        files = {f"{made.stem}.py": made.text.encode()}
        if made.data is not None:
            files[DATA] = pickle.dumps(made.data, protocol=pickle.HIGHEST_PROTOCOL)
        for name, content in files.items():
            _write_file(os.path.join(temporary, name), content)
        manifest = {"format": FORMAT, "key": artifact_key.digest, "kind": artifact_key.kind,
                    "stem": made.stem, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "files": {name: hashlib.sha256(c).hexdigest() for name, c in files.items()}}
        _write_file(os.path.join(temporary, MANIFEST), json.dumps(manifest, indent=1).encode())
        if os.path.exists(path):
            _remove(path)
        os.rename(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return Entry(artifact_key, path, made.stem, made.text, made.data, from_cache=False)


def _write_file(path: str, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)


def _remove(path: str) -> None:
    """Remove folder ``path``: renamed first, so that nobody sees it half removed."""
    trash = os.path.join(os.path.dirname(path), f".trash-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _touch(path: str) -> None:
    """Mark the entry used now (its folder's time orders least-recently-used eviction)."""
    try:
        os.utime(path)
    except OSError:
        pass


@contextlib.contextmanager
def _locked(root: str, digest: str, shared: bool = False):
    """Hold the file lock of ``digest`` (exclusive, or shared for readers of numba's files).
    Reentrant within a process; after LOCK_TIMEOUT_S it warns and goes on without it."""
    if fcntl is None or digest in _state.locks_held:
        yield
        return
    handle = open(os.path.join(root, LOCKS, f"{digest}.lock"), "a+b")
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    try:
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    warnings.warn(f"nbautodiff: waited {LOCK_TIMEOUT_S:.0f} s for the cache lock "
                                  f"{handle.name}; going on without it", CacheWarning,
                                  stacklevel=3)
                    break
                time.sleep(0.02)
        _state.locks_held.add(digest)
        try:
            yield
        finally:
            _state.locks_held.discard(digest)
    finally:
        handle.close()                                # releases the lock


# ---- numba's compiled code --------------------------------------------------------------------

def _entry_function_cache(py_func):
    """numba's CPU function cache for ``py_func``, always in the ``__pycache__`` folder next to
    its file (the entry), whatever ``NUMBA_CACHE_DIR`` says."""
    from numba.core.caching import CompileResultCacheImpl, FunctionCache, InTreeCacheLocator

    class EntryCacheImpl(CompileResultCacheImpl):
        _locator_classes = [InTreeCacheLocator]

    class EntryFunctionCache(FunctionCache):
        _impl_class = EntryCacheImpl

    return EntryFunctionCache(py_func)


class _CheckedNumbaCache:
    """numba's cache of one function (``inner``) with the files checksummed in the entry: files
    that do not match (truncated, garbage, interrupted while written) are reported, removed and
    compiled again instead of being unpickled. Counts hits and misses, reports progress."""

    def __init__(self, inner, entry: Entry):
        self._inner = inner
        self._entry = entry
        self._started: float | None = None

    cache_path = property(lambda self: self._inner.cache_path)

    def enable(self):
        self._inner.enable()

    def disable(self):
        self._inner.disable()

    def flush(self):
        self._inner.flush()

    def _files(self) -> dict:
        base = self._inner._impl.filename_base
        try:
            names = os.listdir(self._inner.cache_path)
        except OSError:
            return {}
        return {name: os.path.join(self._inner.cache_path, name) for name in names
                if name.startswith(base + ".") and name.endswith((".nbi", ".nbc"))}

    def _sums_path(self) -> str:
        return os.path.join(self._entry.path, NUMBA_SUMS)

    def _recorded(self) -> dict:
        try:
            with open(self._sums_path()) as handle:
                return json.load(handle).get(self._inner._impl.filename_base, {})
        except (OSError, ValueError, AttributeError):
            return {}

    def _discard(self, why: str) -> None:
        warnings.warn(f"nbautodiff: compiled code in cache entry {self._entry.path} is damaged "
                      f"({why}): compiling again", CacheWarning, stacklevel=5)
        for path in self._files().values():
            with contextlib.suppress(OSError):
                os.unlink(path)

    def load_overload(self, sig, target_context):
        root = os.path.dirname(os.path.dirname(self._entry.path))
        with _locked(root, self._entry.key.digest, shared=True):
            files, recorded = self._files(), self._recorded()
            bad = [name for name, path in files.items()
                   if recorded.get(name) != _file_digest(path)]
            result = None
            if bad:
                self._discard(f"{', '.join(sorted(bad))} does not match its checksum")
            else:
                try:
                    result = self._inner.load_overload(sig, target_context)
                except Exception as error:           # noqa: BLE001 - any failure: compile again
                    self._discard(f"numba cannot load it: {type(error).__name__}: {error}")
        name = self._entry.stem
        if result is not None:
            _state.counts["compiled hits"] += 1
            progress.report(name, "compiled code", "cache", 0.0)
        else:
            _state.counts["compiled misses"] += 1
            self._started = time.perf_counter()
        return result

    def save_overload(self, sig, data):
        root = os.path.dirname(os.path.dirname(self._entry.path))
        seconds = time.perf_counter() - (self._started or time.perf_counter())
        if os.path.exists(os.path.join(self._entry.path, MANIFEST)):   # not evicted meanwhile
            with _locked(root, self._entry.key.digest):
                self._inner.save_overload(sig, data)
                added = self._record_sums()
            _evict(root, added)
        progress.report(self._entry.stem, "compiled code", "compiled", seconds)

    def _record_sums(self) -> int:
        """Record the checksums of this function's numba files; returns their bytes."""
        try:
            with open(self._sums_path()) as handle:
                sums = json.load(handle)
        except (OSError, ValueError):
            sums = {}
        files = self._files()
        sums[self._inner._impl.filename_base] = {name: _file_digest(path)
                                                 for name, path in files.items()}
        temporary = f"{self._sums_path()}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            _write_file(temporary, json.dumps(sums, indent=1).encode())
            os.replace(temporary, self._sums_path())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return sum(os.path.getsize(path) for path in files.values())


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


# ---- control: --force, info, clear, size limit ------------------------------------------------

@contextlib.contextmanager
def forced():
    """Inside, every artifact requested is built again (once per block), replacing its entry,
    and compiled again: what ``--force`` of the magics does. In-memory caches of the builders
    follow through :func:`memoized`."""
    with _state.lock:
        _state.force_depth += 1
    try:
        yield
    finally:
        with _state.lock:
            _state.force_depth -= 1
            if not _state.force_depth:
                _state.force_done.clear()
                _state.force_memory.clear()


def force_functions(functions) -> None:
    """From now on, artifacts determined by any of ``functions`` (Python functions or objects
    with a ``py_func``) are built again, once each, whenever first requested: ``--force`` then
    also covers what is built after the magic ran (a derivative's variant for the argument types
    of a later call)."""
    with _state.lock:
        for function in functions:
            python = getattr(function, "py_func", function)
            if isinstance(python, types.FunctionType):
                _state.forced_functions.add(python)
        _state.forced_done.clear()


def _forcing(artifact_key: Key) -> bool:
    if _state.force_depth and artifact_key.digest not in _state.force_done:
        return True
    return artifact_key.forced and artifact_key.digest not in _state.forced_done


def memoized(memo: dict, memory_key) -> bool:
    """Whether ``memo[memory_key]`` (a builder's in-memory cache) may be used: it is there, and
    no :func:`forced` block wants it built again (each key once per block)."""
    if _state.force_depth and memory_key not in _state.force_memory:
        _state.force_memory.add(memory_key)
        return False
    return memory_key in memo


@dataclass(frozen=True)
class CacheInfo:
    """What :func:`info` returns: the folder, its entries and bytes, the size limit, and this
    process's hits and misses (of artifacts, and of numba's compiled code)."""
    folder: str
    entries: int
    bytes: int
    limit: int
    hits: int
    misses: int
    compiled_hits: int
    compiled_misses: int

    def __str__(self) -> str:
        return (f"nbautodiff cache {self.folder}: {self.entries} entries, "
                f"{self.bytes / 2 ** 20:.1f} MiB of {self.limit / 2 ** 20:.0f} MiB; this process: "
                f"{self.hits} hits, {self.misses} misses (compiled code: {self.compiled_hits} "
                f"hits, {self.compiled_misses} misses)")


def info() -> CacheInfo:
    """Entries, bytes and limit of the cache folder; hits and misses of this process."""
    root = folder()
    listed = _entries(root)
    counts = _state.counts
    return CacheInfo(root, len(listed), sum(size for _, size, _ in listed), limit(),
                     counts["hits"], counts["misses"], counts["compiled hits"],
                     counts["compiled misses"])


def clear() -> int:
    """Remove every entry of the cache folder; returns how many. Artifacts already loaded in
    running processes keep working."""
    root = folder()
    removed = 0
    for _, _, path in _entries(root, every=True):
        _discard(root, path)
        removed += not os.path.basename(path).startswith(".")
    _state.estimate, _state.additions = 0, 0
    _record_usage(root, 0)
    return removed


def limit() -> int:
    """The size limit in bytes: :func:`set_limit`'s, else ``NBAUTODIFF_CACHE_SIZE`` (bytes, or
    with a K, M or G suffix), else 1 GiB."""
    if _state.limit is not None:
        return _state.limit
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LIMIT
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kKmMgG]?)(?:i?[bB])?", text)
    if match is None:
        warnings.warn(f"{LIMIT_VARIABLE}={text!r} is not a size (bytes, or with a K, M or G "
                      "suffix); using 1 GiB", CacheWarning, stacklevel=2)
        return DEFAULT_LIMIT
    number, unit = match.groups()
    return int(float(number) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit.upper()])


def set_limit(nbytes: int | None) -> None:
    """Set the size limit (None: back to ``NBAUTODIFF_CACHE_SIZE`` or 1 GiB); entries used least
    recently are evicted when the cache grows beyond it."""
    _state.limit = None if nbytes is None else int(nbytes)
    _evict(folder(), scan=True)


def _entries(root: str, every: bool = False) -> list[tuple[float, int, str]]:
    """(time of last use, bytes, path) of each entry; ``every``: temporary folders too."""
    listed = []
    try:
        scanned = list(os.scandir(os.path.join(root, ENTRIES)))
    except OSError:
        return listed
    for item in scanned:
        if item.name.startswith(".") and not every:
            continue
        try:
            used = item.stat().st_mtime
        except OSError:
            continue
        listed.append((used, _folder_bytes(item.path), item.path))
    return listed


def _folder_bytes(path: str) -> int:
    total = 0
    with contextlib.suppress(OSError), os.scandir(path) as items:
        for item in items:
            with contextlib.suppress(OSError):
                if item.is_dir(follow_symlinks=False):
                    total += _folder_bytes(item.path)
                else:
                    total += item.stat(follow_symlinks=False).st_size
    return total


def _evict(root: str, added: int = 0, scan: bool = False) -> None:
    """Remove least recently used entries when the cache outgrows its limit, down to
    ``EVICT_TO`` of it after an addition and to the limit when ``scan`` (entries this process
    uses are kept), and temporary folders of writers that died. Scanning the folder walks every
    entry (seconds for a full cache), so it is rare: the total a scan found is kept in the
    folder's ``usage.json``, which a new process starts from; after that the total is estimated
    from this process's additions (``added`` bytes now), and scanned again when the estimate
    passes the limit, after ``RESCAN_EVERY`` additions, or when ``scan``. Other processes'
    additions since the last scan are not counted: the limit is kept within what several
    processes add between their scans."""
    if _state.estimate is None and not scan:
        _state.estimate, _state.additions = _recorded_usage(root), 0
    if not scan and _state.estimate is not None and _state.estimate + added <= limit() \
            and _state.additions < RESCAN_EVERY:
        _state.estimate += added
        _state.additions += 1
        return
    now = time.time()
    for used, _, path in _entries(root, every=True):
        if os.path.basename(path).startswith(".") and now - used > STALE_TEMPORARY_S:
            shutil.rmtree(path, ignore_errors=True)
    listed = sorted(_entries(root))
    total = sum(size for _, size, _ in listed)
    if total > limit():
        allowed = limit() if scan else int(limit() * EVICT_TO)
        for _, size, path in listed:
            if total <= allowed:
                break
            if os.path.basename(path) in _state.in_use:
                continue
            _discard(root, path)
            total -= size
    _state.estimate, _state.additions = total, 0
    _record_usage(root, total)


def _recorded_usage(root: str) -> int | None:
    """The folder's bytes at its last scan, from ``usage.json`` (None if absent or damaged)."""
    try:
        with open(os.path.join(root, USAGE)) as handle:
            recorded = json.load(handle)["bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recorded if isinstance(recorded, int) and recorded >= 0 else None


def _record_usage(root: str, total: int) -> None:
    """Write ``usage.json`` atomically (best effort: a read-only folder keeps the old one)."""
    temporary = os.path.join(root, f".{USAGE}.{uuid.uuid4().hex[:12]}")
    try:
        _write_file(temporary, json.dumps({"bytes": total}).encode())
        os.replace(temporary, os.path.join(root, USAGE))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _discard(root: str, path: str) -> None:
    """Remove entry folder ``path`` and its lock file."""
    _remove(path)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(root, LOCKS, f"{os.path.basename(path)}.lock"))


# ---- state of this process --------------------------------------------------------------------

@dataclass
class _State:
    lock: threading.RLock = field(default_factory=threading.RLock)
    folder: str | None = None
    folder_for: str | None = None
    private_folder: str | None = None
    limit: int | None = None
    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("hits", "misses", "compiled hits", "compiled misses"), 0))
    in_use: set = field(default_factory=set)            # digests of entries this process uses
    locks_held: set = field(default_factory=set)
    force_depth: int = 0
    force_done: set = field(default_factory=set)        # digests rebuilt in the forced block
    force_memory: set = field(default_factory=set)      # in-memory keys rebuilt in it
    forced_functions: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    forced_done: set = field(default_factory=set)       # digests rebuilt for forced functions
    estimate: int | None = None                         # bytes in the folder (see _evict)
    additions: int = 0                                  # entries added since the last scan


_state = _State()
