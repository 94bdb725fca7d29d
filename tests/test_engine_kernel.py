"""The numpy engine against torch: its float32 kernels element by element, and whole merges cut
into many chunks and cache blocks (tiny models otherwise fit in one of each)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import chatvector
from chatvector.dtypes import DTYPES
from chatvector.merge import engine
from chatvector.merge.arithmetic import accumulate_term, all_finite, start_accumulator

TORCH_OF = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


def random_operand(dtype: str, size: int, seed: int) -> np.ndarray:
    """Values of a weight's scale, with signed zeros and one large value, in ``dtype``."""
    values = np.random.default_rng(seed).normal(0.0, 0.02, size).astype(np.float32)
    values[:4] = [0.0, -0.0, 1.0e4, -1.0e-8]
    return values.astype(DTYPES[dtype].numpy)


def as_torch(values: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(values.view(np.uint8).copy()).view(TORCH_OF[dtype])


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32", "F64"])
@pytest.mark.parametrize("ratio", [0.3, -1.7, 1.0, 0.0])
def test_kernel_matches_torch_float32_bit_for_bit(dtype, ratio):
    size = 5000
    target, plus, minus = (random_operand(dtype, size, seed) for seed in (1, 2, 3))
    acc = np.empty(size, np.float32)
    scratch, scratch_minus = np.empty(size, np.float32), np.empty(size, np.float32)
    start_accumulator(acc, target)
    accumulate_term(acc, ratio, plus, minus, scratch, scratch_minus)
    vector_ratio = 1.0 - ratio  # covers the unscaled path (1.0) when the pair term has r = 0
    accumulate_term(acc, vector_ratio, plus, None, scratch, scratch_minus)  # a stored-vector term
    t, p, m = (as_torch(a, dtype) for a in (target, plus, minus))
    expected = t.float() + ratio * (p.float() - m.float()) + vector_ratio * p.float()
    assert torch.equal(torch.from_numpy(acc), expected)
    # and the single cast to the output dtype rounds as torch does (nearest even)
    out = acc.astype(DTYPES[dtype].numpy)
    assert torch.equal(as_torch(out, dtype), expected.to(TORCH_OF[dtype]))


def test_accumulator_without_target_starts_at_zero():
    acc = np.full(8, 7.0, np.float32)
    assert not start_accumulator(acc, None).any()


@pytest.mark.parametrize(
    ("values", "out_dtype", "finite"),
    [
        ([1.0, -2.0], None, True),
        ([1.0, np.nan], None, False),
        ([np.inf, 0.0], None, False),
        ([7.0e4, 0.0], np.float16, False),  # fine in float32, overflows float16
        ([6.5e4, -6.5e4], np.float16, True),
        ([3.0e38, 0.0], ml_dtypes.bfloat16, True),
        ([3.4e38, 0.0], ml_dtypes.bfloat16, False),  # rounds past bfloat16's largest finite value
    ],
)
def test_all_finite_knows_the_output_range(values, out_dtype, finite):
    assert all_finite(np.array(values, np.float32), out_dtype) is finite


def test_all_finite_reads_bfloat16_and_float8():
    assert all_finite(np.array([1.0, -3.0], ml_dtypes.bfloat16))
    assert not all_finite(np.array([1.0, np.nan], ml_dtypes.bfloat16))
    assert not all_finite(np.array([np.nan], ml_dtypes.float8_e5m2))


def load_dir(folder) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks and blocks far smaller than any tensor and dividing none of their rows evenly."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 999)
    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 97)


def test_many_chunks_and_blocks_give_the_reference_bit_for_bit(trios, tmp_path, tiny_chunks):
    trio = trios["llama"]  # bfloat16, sharded
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.7, out=tmp_path / "o")
    merged, cp = load_dir(tmp_path / "o"), load_dir(trio.cp)
    chat, base = load_dir(trio.chat), load_dir(trio.base)
    assert sorted(merged) == sorted(cp)
    for name, value in merged.items():
        expected = cp[name].float() + 0.7 * (chat[name].float() - base[name].float())
        assert torch.equal(value, expected.to(value.dtype)), name


def test_row_aligned_embeddings_in_many_chunks_match_one_chunk(extended, tmp_path, monkeypatch):
    trio, cp_ext = extended
    chatvector.merge(base=trio.base, chat=trio.chat, target=cp_ext, ratio=0.5, out=tmp_path / "whole")
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 999)
    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 97)
    chatvector.merge(base=trio.base, chat=trio.chat, target=cp_ext, ratio=0.5, out=tmp_path / "chunked")
    whole, chunked = load_dir(tmp_path / "whole"), load_dir(tmp_path / "chunked")
    assert sorted(whole) == sorted(chunked)
    assert all(torch.equal(whole[n], chunked[n]) for n in whole)


def test_read_ahead_asks_for_each_chunk_once_and_within_its_tensor(trios, tmp_path, monkeypatch, tiny_chunks):
    from chatvector.io.checkpoint import Checkpoint

    asked: list[tuple[str, str, int, int]] = []
    real = Checkpoint.prefetch

    def recording(self, info, start, count):
        assert 0 <= start and count > 0 and start + count <= info.numel, (info.name, start, count)
        asked.append((str(self.ref.path), info.name, start, count))
        return real(self, info, start, count)

    monkeypatch.setattr(Checkpoint, "prefetch", recording)
    monkeypatch.setattr(engine, "PREFETCH_BYTES", 20_000)
    trio = trios["llama"]
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.7, out=tmp_path / "o")
    assert len(asked) > 100, "the tiny chunks should give many read-ahead requests"
    assert len(set(asked)) == len(asked), "a chunk was asked for twice"
    assert {path for path, *_ in asked} == {str(p.resolve()) for p in (trio.base, trio.chat, trio.cp)}
