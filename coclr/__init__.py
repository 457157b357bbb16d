"""CoCLR: self-supervised co-training of RGB and optical-flow video encoders.

The package is organised by pipeline stage; every Snakemake rule calls one
sub-command of ``python -m coclr`` (see :mod:`coclr.cli`).
"""

__version__ = "0.1.0"
