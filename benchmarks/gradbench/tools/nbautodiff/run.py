"""Entry point of the nbautodiff tool for GradBench: ``python tools/nbautodiff/run.py``.

Speaks GradBench's protocol on stdin/stdout (``nad_gradbench/protocol.py`` says how it works).
Without ``--multithreaded`` it runs on one thread: BLAS (NumPy/SciPy, used by ``np.dot`` and
``@`` in compiled code) is limited to one thread before NumPy is imported; numba's own code is
single-threaded here (no ``parallel=True``).
"""
import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--multithreaded", action="store_true",
                    help="leave the BLAS thread count alone")
args = parser.parse_args()
if not args.multithreaded:
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS"):
        os.environ[variable] = "1"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nad_gradbench.protocol import main  # noqa: E402

if __name__ == "__main__":
    main()
