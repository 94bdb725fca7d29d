"""Evaluation: generation backends, suites, scorers and reports."""

__all__: list[str] = []  # a namespace: import the modules themselves
