"""``chatvector search``: a ratio per group of tensors, chosen by Optuna on dev prompts and checked on
held-out ones (see :mod:`chatvector.search.run` and docs/search.md)."""
