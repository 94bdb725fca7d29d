"""The merge: recipes, opening inputs, preflight planning, float32 arithmetic, the streaming engine, outputs."""
