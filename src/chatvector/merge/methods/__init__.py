"""Merge methods, one module each, behind a registry (see :mod:`chatvector.merge.methods.base`).

Every module of this package is imported here, so a method registers itself by existing: adding
one is one new file (plus its docs section; ``tests/test_methods_contract.py`` covers it).
"""

from __future__ import annotations

import importlib
import pkgutil

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Workspace, check_density
from chatvector.merge.methods.registry import method_class, parse_method, register, registered

__all__ = [
    "MergeMethod",
    "MethodParams",
    "ChunkTerms",
    "Workspace",
    "check_density",
    "register",
    "registered",
    "method_class",
    "parse_method",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
