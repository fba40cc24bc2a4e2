"""GradBench's ``manual`` C++ tool without a rebuild at each ``define``:
``python peer_manual.py <gradbench checkout>``, run in a directory whose ``tools`` is the
checkout's.

GradBench runs it as ``python/gradbench/gradbench/cpp.py manual``, whose ``define`` rebuilds
``tools/manual/bin/<eval>`` with ``make -B``; the runner builds the binaries once beforehand
(``checkout.build_manual``: ``NATIVE=yes``, ``MULTITHREADED=no``), so ``define`` here only
checks that the binary exists. Evaluation is ``cpp.py``'s own (the binary runs the function
``min_runs`` times and prints its timings).
"""
import argparse
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root / "python/gradbench"))

from gradbench import cpp  # noqa: E402


def define(*, args, module):
    binary = Path("tools") / args.tool / "bin" / module
    if binary.exists():
        return {"success": True}
    return {"success": False, "error": f"{binary} was not built"}


cpp.define = define
try:
    cpp.run(argparse.Namespace(tool="manual", multithreaded=False))
except (EOFError, BrokenPipeError):
    pass
