"""``chatvector search``: a ratio per group of tensors, chosen by Optuna on dev prompts and checked on
held-out ones (see :mod:`chatvector.search.run` and docs/search.md)."""

__all__: list[str] = []  # a namespace: import the modules themselves
