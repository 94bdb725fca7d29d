"""Checking a finished output against an independent whole-tensor float32 recomputation."""

__all__: list[str] = []  # a namespace: import the modules themselves
