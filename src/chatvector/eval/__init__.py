"""Evaluation: generation backends, suites, scorers and reports."""
