"""Where a chat vector lives: per-layer norms and cosine similarity between deltas."""
