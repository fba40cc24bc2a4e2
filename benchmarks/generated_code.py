"""The generated code of every benchmark kernel, written to one file, to compare before and after a change.

A refactoring that moves modules must not change what the transforms write. This script builds,
in a fresh artifact cache, each benchmark kernel's gradient (reverse mode, plain and with ``fastmath``), its tangent (forward
mode), its Hessian-vector product (forward over reverse), a checkpointed gradient
and the batched kernels of ``benchmarks/batching.py``, then writes every generated source file of
that cache, sorted by file name, to ``--out``. Two runs compare with ``diff``::

    python benchmarks/generated_code.py --out /tmp/before.txt
    (change the code)
    python benchmarks/generated_code.py --out /tmp/after.txt && diff /tmp/before.txt /tmp/after.txt

Only the first few elements of each kernel's arguments matter for the code (types and ranks do),
so the arguments are those of the benchmarks themselves; nothing is timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def build_everything() -> None:
    """Call every derivative of every benchmark kernel once, so that its code is generated."""
    import nbautodiff as nad
    sys.path.insert(0, str(Path(__file__).parent))
    import batching
    import checkpointing
    import reverse_mode

    rng = np.random.default_rng(20261121)
    for kernel in reverse_mode.kernels(rng):
        nad.grad(kernel.fun, kernel.argnums)(*kernel.args)
        nad.grad(kernel.fun, kernel.argnums, fastmath=True)(*kernel.args)
        argnums = kernel.argnums if isinstance(kernel.argnums, tuple) else (kernel.argnums,)
        tangents = tuple(np.ones_like(a) if i in argnums and isinstance(a, np.ndarray)
                         else (1.0 if i in argnums else 0.0) if isinstance(a, float) else
                         np.zeros_like(a) if isinstance(a, np.ndarray) else a
                         for i, a in enumerate(kernel.args))
        try:
            nad.jvp(kernel.fun, kernel.args, tangents)
            nad.jvp(nad.grad(kernel.fun, kernel.argnums), kernel.args, tangents)
        except nad.AutodiffError as error:
            print(f"{kernel.name}: forward mode refused: {error}".splitlines()[0])
    for _, fun, args, in_axes, _ in batching.kernels(8, rng):
        for options in batching.LAYOUTS.values():
            nad.batch(fun, in_axes, **options)(*args)
    arguments = checkpointing.arguments(64, 20)
    for variant in checkpointing.VARIANTS.values():
        nad.grad(checkpointing.allen_cahn, checkpoint=variant)(*arguments)


def generated_sources(cache_folder: Path) -> str:
    """Every generated ``.py`` under the cache's entries, sorted by file name, one after another."""
    files = sorted(cache_folder.rglob("*.py"), key=lambda p: (p.name, p.read_text()))
    return "".join(f"===== {path.name}\n{path.read_text()}" for path in files)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the file to write the sources to")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["NBAUTODIFF_CACHE_DIR"] = folder
        build_everything()
        Path(options.out).write_text(generated_sources(Path(folder)))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
