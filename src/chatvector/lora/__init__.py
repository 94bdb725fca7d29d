"""Chat vectors as LoRA adapters: a truncated SVD of every linear layer's delta (:mod:`chatvector.lora.svd`),
written as a PEFT adapter (:mod:`chatvector.lora.extract`). The adapter format, and adapters read back
as vector terms of ``apply``, live in :mod:`chatvector.merge.lora`. numpy only: PEFT itself is needed
only to load an adapter into a model."""

__all__: list[str] = []  # a namespace: import the modules themselves
