"""Everything the runner needs from a GradBench checkout, outside Docker.

* :func:`find_checkout`: the checkout (``--gradbench`` or ``$GRADBENCH``), checked to hold
  ``python/gradbench`` (the evals and the Python tools) and ``tools/manual``.
* :func:`build_manual`: the ``manual`` C++ tool, built with GradBench's own Makefile
  (``NATIVE=yes``, ``MULTITHREADED=no``: one thread). The evals need it too: they validate
  every output against ``tools/manual/bin/<eval>``. Its only dependency, nlohmann's
  ``json.hpp``, is taken from ``cpp/json.hpp`` (what ``make -C cpp`` downloads),
  ``$JSON_HPP_DIR`` or the system (``apt-get install nlohmann-json3-dev``).
* :func:`make_run_dir`: the working directory of a session. Evals read ``evals/<eval>/data``
  and run ``tools/manual/bin`` relative to theirs, so the run directory links ``tools`` and
  each ``evals/<eval>`` to the checkout. Git checkouts of GradBench made without its large
  files lack ``evals/lstm/data/lstm_full.txt`` (and the largest ``ht`` inputs); the ``lstm``
  eval then reads a substitute text made here from the checkout's own README files (ASCII,
  the first 200,000 characters), which the run reports. The substitute changes the input's
  characters, not its shapes (``b`` is the number of bits of the largest character code).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MANUAL_EVALS = ("hello", "lse", "llsq", "det", "kmeans", "ode", "gmm", "lstm", "ba", "ht")
LSTM_TEXT = Path("evals/lstm/data/lstm_full.txt")


class CheckoutError(RuntimeError):
    pass


def find_checkout(path: str | None) -> Path:
    value = path or os.environ.get("GRADBENCH")
    if not value:
        raise CheckoutError("no GradBench checkout: pass GRADBENCH=<path> (git clone "
                            "https://github.com/gradbench/gradbench)")
    root = Path(value).expanduser().resolve()
    for needed in ("python/gradbench/gradbench/eval.py", "tools/manual/Makefile",
                   "cpp/gradbench/main.hpp"):
        if not (root / needed).exists():
            raise CheckoutError(f"{root} is not a GradBench checkout (no {needed})")
    return root


def json_hpp_dir(root: Path) -> Path:
    candidates = [root / "cpp", Path(os.environ.get("JSON_HPP_DIR", "/nonexistent")),
                  Path("/usr/include/nlohmann"), Path("/usr/local/include/nlohmann")]
    for directory in candidates:
        if (directory / "json.hpp").exists():
            return directory
    raise CheckoutError("nlohmann's json.hpp not found (run `make -C cpp` in the checkout, "
                        "install nlohmann-json3-dev, or set JSON_HPP_DIR)")


def manual_environment(root: Path) -> dict:
    """The environment under which GradBench's Makefile finds json.hpp: ``CXXFLAGS`` is its
    default (``-std=c++17 -O3 -Wall -I../../cpp``) plus the directory of json.hpp."""
    env = dict(os.environ)
    env["CXXFLAGS"] = f"-std=c++17 -O3 -Wall -I../../cpp -I{json_hpp_dir(root)}"
    return env


def build_manual(root: Path, evals: list[str], log) -> None:
    targets = [f"bin/{name}" for name in evals if name in MANUAL_EVALS]
    if not targets:
        return
    command = ["make", "-C", str(root / "tools/manual"), *targets, "NATIVE=yes",
               "MULTITHREADED=no"]
    log(f"building the manual tool: {' '.join(command)}")
    done = subprocess.run(command, env=manual_environment(root), text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise CheckoutError(f"building the manual tool failed:\n{done.stdout}\n{done.stderr}")


def lstm_substitute(root: Path) -> str:
    parts = [root / "README.md", root / "CONTRIBUTING.md",
             *sorted((root / "evals").glob("*/README.md"))]
    text = "".join(p.read_text(encoding="utf8", errors="replace") for p in parts if p.exists())
    return "".join(ch for ch in text if ord(ch) < 128)[:200_000]


def make_run_dir(root: Path, run_dir: Path) -> list[str]:
    """Fill ``run_dir`` (links into the checkout); return notes on substituted inputs."""
    notes = []
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "evals").mkdir(parents=True)
    (run_dir / "tools").symlink_to(root / "tools")
    for eval_dir in sorted((root / "evals").iterdir()):
        if eval_dir.is_dir() and eval_dir.name != "lstm":
            (run_dir / "evals" / eval_dir.name).symlink_to(eval_dir)
    lstm_data = run_dir / LSTM_TEXT
    lstm_data.parent.mkdir(parents=True)
    original = root / LSTM_TEXT
    if original.exists() and original.stat().st_size > 0:
        lstm_data.symlink_to(original)
    else:
        lstm_data.write_text(lstm_substitute(root), encoding="utf8")
        notes.append(f"{LSTM_TEXT} is missing from the checkout (a Git LFS-sized file): lstm "
                     "read a substitute text made of the checkout's README files")
    return notes


def supported(root: Path, tool: str) -> set[str]:
    """The evals a GradBench tool lists in ``tools/<tool>/evals.txt``."""
    listing = root / "tools" / tool / "evals.txt"
    return set(listing.read_text().split()) if listing.exists() else set()
