"""Ratio sweeps: merge at several ratios, evaluate each, report and recommend a ratio."""

__all__: list[str] = []  # a namespace: import the modules themselves
