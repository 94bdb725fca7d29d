"""Ratio sweeps: merge at several ratios, evaluate each, report and recommend a ratio."""
