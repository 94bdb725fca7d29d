"""Shared fixtures: tiny model trios built once per test run.

torch and transformers are imported by the fixtures that build models, not here, so tests of the
light core (parsers, preflight, options) run without loading them.
"""

from __future__ import annotations

import os

import pytest

# Generation with tiny models is 10-100x slower with torch's default threading on 2 busy cores.
# torch reads this when it is imported (here or in any subprocess a test starts).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def trios(tmp_path_factory):
    """One (base, chat, cp) trio per family; llama in bfloat16 and sharded."""
    import torch
    from tiny_models import FAMILIES, build_trio

    root = tmp_path_factory.mktemp("trios")
    built = {}
    for family in FAMILIES:
        if family == "llama":
            built[family] = build_trio(family, root / family, dtype=torch.bfloat16, max_shard_size="40KB")
        else:
            built[family] = build_trio(family, root / family)
    return built


@pytest.fixture(scope="session")
def extended(tmp_path_factory):
    """A float32 llama trio plus a CP model whose vocabulary was extended with Chinese tokens."""
    from tiny_models import build_extended_cp, build_trio

    root = tmp_path_factory.mktemp("extended")
    trio = build_trio("llama", root / "trio")
    return trio, build_extended_cp("llama", trio.base, root / "cp-ext")


@pytest.fixture
def fresh(trios, tmp_path):
    """Private copies of the mistral trio (single-file float32), so tests may break them."""
    from helpers import copy_model

    trio = trios["mistral"]
    return {role: copy_model(getattr(trio, role), tmp_path / role) for role in ("base", "chat", "cp")}
