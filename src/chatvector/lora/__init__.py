"""Chat vectors as LoRA adapters: a truncated SVD of every linear layer's delta (:mod:`chatvector.lora.svd`),
planned by the merge's preflight and written as a PEFT adapter (:mod:`chatvector.lora.extract`); a copy
rescaled for another ratio (:mod:`chatvector.lora.scale`); the options of both (:mod:`chatvector.lora.options`).
The adapter format, and adapters read back as vector terms of ``apply``, live in :mod:`chatvector.io.adapter`.
numpy only: PEFT itself is needed only to load an adapter into a model."""

__all__: list[str] = []  # a namespace: import the modules themselves
