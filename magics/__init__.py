"""The IPython layer of nbautodiff: ``%load_ext nbautodiff`` registers the cell magics.

``%%autodiff`` (see :mod:`nbautodiff.magics.autodiff`) runs a cell and pushes derivatives of its
functions into the namespace. The magics only call nbautodiff's public Python API.
"""


def load_ipython_extension(ipython):
    """Register the magics with ``ipython`` (called by ``%load_ext nbautodiff``)."""
    from .autodiff import AutodiffMagics
    ipython.register_magics(AutodiffMagics)
