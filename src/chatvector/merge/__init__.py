"""The merge: recipes, opening inputs, preflight planning, float32 arithmetic, the streaming engine, outputs."""

__all__: list[str] = []  # a namespace: import the modules themselves
