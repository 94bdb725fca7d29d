"""Where a chat vector lives: per-layer norms and cosine similarity between deltas."""

__all__: list[str] = []  # a namespace: import the modules themselves
