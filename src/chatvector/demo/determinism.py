"""The same numbers on every x86-64 machine: pinned kernels, one thread, and fingerprints.

Floating-point results depend on the order of additions, which depends on the thread count and
on the vector instructions the kernels pick at run time (AVX-512 on one machine, AVX2 on another).
The demo therefore trains and evaluates in worker processes started with :data:`PINNED_ENV`
(read by torch, MKL and oneDNN when they load, hence set before the worker imports torch) and
with one torch thread. AVX2 is what every x86-64 machine of the last decade has; measured on the
demo's own workload, pinning it costs little (docs/demo.md).

A fingerprint (sha256 of a family's weights) makes a drift visible: the tests compare the quick
family's with the one recorded in ``fingerprints.json`` beside this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels: the AVX2 build, not AVX-512
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: the AVX2 code path
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's kernels, likewise
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
FINGERPRINTS = Path(__file__).with_name("fingerprints.json")


@contextmanager
def pinned_environment() -> Iterator[None]:
    """Set :data:`PINNED_ENV` while worker processes are started (they inherit it), then restore."""
    saved = {name: os.environ.get(name) for name in PINNED_ENV}
    os.environ.update(PINNED_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def configure_torch() -> str:
    """One thread and deterministic algorithms; returns the CPU capability torch's kernels use."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch.backends.cpu.get_cpu_capability()


def weights_fingerprint(folder: Path) -> str:
    """sha256 over a saved model's tensors (names, dtypes, shapes and bytes, in sorted order)."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(folder / "model.safetensors"), framework="np") as handle:
        for name in sorted(handle.keys()):
            tensor = handle.get_tensor(name)
            digest.update(f"{name}:{tensor.dtype}:{tensor.shape}\n".encode())
            digest.update(tensor.tobytes())
    return digest.hexdigest()


def recorded_fingerprints() -> dict[str, dict[str, str]]:
    """The fingerprints recorded in the repository, by family key."""
    return json.loads(FINGERPRINTS.read_text(encoding="utf-8")) if FINGERPRINTS.exists() else {}
