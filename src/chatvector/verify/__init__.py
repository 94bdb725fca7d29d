"""Checking a finished output against an independent whole-tensor float32 recomputation."""
