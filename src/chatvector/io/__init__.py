"""File formats and I/O: safetensors headers, checkpoints read by range, hub ids, PEFT adapters, staged outputs."""

__all__: list[str] = []  # a namespace: import the modules themselves
