"""The IPython layer of nbautodiff: ``%load_ext nbautodiff`` registers the cell magics.

``%%autodiff`` (see :mod:`nbautodiff.magics.autodiff`) runs a cell and pushes derivatives of its
functions into the namespace; ``%%batch`` (see :mod:`nbautodiff.magics.batch`) pushes batched
versions of them (``nbautodiff.batch``); ``%%offload`` (see :mod:`nbautodiff.magics.offload`)
GPU versions (``nbautodiff.offload``). The magics only call nbautodiff's public Python API.
"""


def load_ipython_extension(ipython):
    """Register the magics with ``ipython`` (called by ``%load_ext nbautodiff``)."""
    from .autodiff import AutodiffMagics
    from .batch import BatchMagics
    from .offload import OffloadMagics
    ipython.register_magics(AutodiffMagics)
    ipython.register_magics(BatchMagics)
    ipython.register_magics(OffloadMagics)
