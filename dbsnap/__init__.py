"""dbsnap: snapshots of a Django database paired with its migration folders."""

__version__ = "0.1.0"
