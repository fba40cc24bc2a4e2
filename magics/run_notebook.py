"""Execute a notebook through a real Jupyter kernel and render it to HTML.

    python -m nbautodiff.magics.run_notebook IN.ipynb OUT.html [--timeout SECONDS]

The kernel runs on the current interpreter (``sys.executable``), so a virtual environment's
notebook sees that environment's packages whatever kernel specs are installed. Cells run in the
notebook's folder. The HTML is written even when a cell fails, so the failure can be read in
it; the exit status is then 1. On success the path written is printed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "nbautodiff-current-python"


def execute_notebook(path, timeout: int = 600):
    """Execute the notebook at ``path`` and return it (an ``nbformat`` node) with its outputs.

    Raises ``nbclient.exceptions.CellExecutionError`` when a cell fails; the error's notebook
    is then available as ``error.notebook`` (outputs up to the failing cell).
    """
    import nbformat
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as kernels:
        spec_dir = Path(kernels, KERNEL_NAME)
        spec_dir.mkdir()
        # ipykernel's own spec for this interpreter: argv starts with sys.executable.
        (spec_dir / "kernel.json").write_text(json.dumps(get_kernel_dict()))
        manager = KernelManager(kernel_name=KERNEL_NAME,
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        client = NotebookClient(notebook, km=manager, timeout=timeout,
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        try:
            client.execute()
        except CellExecutionError as error:
            error.notebook = notebook
            raise
        finally:
            # nbclient leaves a kernel manager it was given running: stop the kernel here.
            if client.kc is not None:
                client.kc.stop_channels()
            if manager.has_kernel:
                manager.shutdown_kernel()
    return notebook


def write_html(notebook, out) -> Path:
    """Render ``notebook`` to a standalone HTML file at ``out`` (images embedded)."""
    from nbconvert import HTMLExporter

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    out.write_text(body, encoding="utf-8")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbautodiff.magics.run_notebook",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="the .ipynb to execute")
    parser.add_argument("html", help="where to write the executed notebook as HTML")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    from nbclient.exceptions import CellExecutionError

    try:
        notebook = execute_notebook(args.notebook, timeout=args.timeout)
    except CellExecutionError as error:
        written = write_html(error.notebook, args.html)
        print(f"{args.notebook}: a cell failed; the notebook up to the failure is in {written}\n"
              f"{error}", file=sys.stderr)
        return 1
    print(write_html(notebook, args.html))
    return 0


if __name__ == "__main__":
    sys.exit(main())
