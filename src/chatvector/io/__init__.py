"""File formats and I/O: safetensors headers, checkpoints read range by range, hub ids, staged outputs."""

__all__: list[str] = []  # a namespace: import the modules themselves
