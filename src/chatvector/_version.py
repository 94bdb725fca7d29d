"""The package's version, in a module of its own so that anything may read it without importing
the package's public API (``chatvector/__init__`` imports ``api``, which imports the merge path)."""

__version__ = "0.2.0"
