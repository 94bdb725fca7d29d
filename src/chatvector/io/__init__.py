"""File formats and I/O: safetensors headers, checkpoints read range by range, hub ids, staged outputs."""
