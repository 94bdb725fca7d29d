"""Round the engine's float32 results to the output's float format: one routine for every output.

A safetensors output of ``--dtype float16``/``bfloat16`` and a GGUF file of type f16/bf16 are
rounded here, once, to nearest even. numpy casts float32 to float16 one element at a time
(``npy_floatbits_to_halfbits``): 2-5 ms per million elements on this machine, and up to 100 ms
where most values are float16 subnormals, against 0.4 ms for torch's vectorised cast (the CPU's
F16C instructions). Both round to nearest even, subnormals included, so they give the same bits
for every finite value (``tests/test_casts.py`` checks it on every float16 rounding boundary and
a stride through all float32). torch is optional and costs about a second of CPU to import, so a
run uses it only when it is installed and casts at least :data:`FAST_CAST_ELEMENTS` values to
float16, where the import pays for itself. bfloat16 (``ml_dtypes``: 1.4 ms per million) and any
block holding NaN or Inf (whose NaN payloads the two casts treat differently) go through numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["FAST_CAST_ELEMENTS", "Narrowing"]

# Where torch's cast saves more than its import costs: about 2.5 ms per million values saved,
# about 1 s to import (measured here), so from about 0.4 billion values (a 0.4B model) on.
FAST_CAST_ELEMENTS = 1 << 28
# Values per torch call: below torch's parallel grain (32768), so each copy runs in the calling
# worker thread instead of waking torch's own thread pool next to the engine's workers.
_PIECE = 1 << 14


class Narrowing:
    """How one run casts float32 to its output formats (see the module docstring)."""

    def __init__(self, torch: Any = None) -> None:
        self._torch = torch

    @classmethod
    def for_run(cls, float16_elements: int) -> Narrowing:
        """The cast for a run that rounds ``float16_elements`` values to float16."""
        if float16_elements < FAST_CAST_ELEMENTS:
            return cls()
        try:
            import torch
        except ImportError:
            return cls()
        return cls(torch)

    @property
    def vectorised(self) -> bool:
        """Whether float16 goes through torch's vectorised cast."""
        return self._torch is not None

    def cast(self, values: np.ndarray, out: np.ndarray, finite: bool | None = None) -> None:
        """Round float32 ``values`` into ``out`` (same length, any float dtype) to nearest even.

        Args:
            finite: whether ``values`` hold no NaN/Inf, when the caller knows (checked here if
                None and it matters).
        """
        if self._torch is None or out.dtype != np.float16 or values.dtype != np.float32:
            np.copyto(out, values, casting="unsafe")
            return
        if finite is None:
            finite = values.size == 0 or (math.isfinite(values.min()) and math.isfinite(values.max()))
        if not finite:
            np.copyto(out, values, casting="unsafe")
            return
        source, target = self._torch.from_numpy(values), self._torch.from_numpy(out)
        for start in range(0, values.size, _PIECE):
            target[start : start + _PIECE].copy_(source[start : start + _PIECE])
