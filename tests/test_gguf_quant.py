"""The GGUF writer's q8_0 packing equals the ``gguf`` package's reference quantizer bit for bit.

:func:`chatvector.io.gguf.quantize_q8_0` rounds half away from zero with a trick
(``trunc(v + copysign(0.49999997, v))``) and takes block maxima as a tree of strided passes;
both are checked here on values chosen to break them: exact ties after scaling, the float just
below a half, zero blocks, subnormals, the largest floats and NaN/Inf (handed to the reference).
"""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'chatvector[gguf]')")

from chatvector.io.gguf import quantize_q8_0  # noqa: E402

Q8_0 = gguf.GGMLQuantizationType.Q8_0


def reference(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(gguf.quants.quantize(values, Q8_0)).view(np.uint8).reshape(-1)


def packed(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.size // 32 * 34, dtype=np.uint8)
    quantize_q8_0(values, out, np.empty(values.size * 2, dtype=np.float32))
    return out


def adversarial_blocks() -> np.ndarray:
    rng = np.random.default_rng(7)
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    blocks = [
        # scale 1 (max 127): every x*id is x itself, so ties k+0.5 and the float below a half are exact
        np.concatenate([[127.0], np.arange(-15.5, 15.5, 1.0), [below_half - 1]])[:32],
        np.array([127.0, below_half, -below_half, 0.5, -0.5, 1.5, -2.5, 126.5] + [0.0] * 24),
        np.zeros(32),
        np.full(32, -0.0),
        np.full(32, 1e-40),  # subnormal float32: the scale itself is subnormal
        np.concatenate([[3.4e38], rng.standard_normal(31) * 1e37]),  # 1/d near the bottom of the range
        rng.standard_normal(32) * 1e-30,
    ]
    normal = [rng.standard_normal(32) * 0.02 for _ in range(200)]
    return np.concatenate(blocks + normal).astype(np.float32)


def test_q8_0_packing_equals_the_reference_bit_for_bit():
    values = adversarial_blocks()
    assert np.array_equal(packed(values), reference(values))


def test_q8_0_of_every_float_between_ties_matches():
    """Every float32 in [-130, 130) with a step that visits all mantissa tails, scaled by 1 (one 127 a block)."""
    bits = np.arange(0, 0x43020000, 9973, dtype=np.uint32)
    values = bits.view(np.float32)
    values = values[: values.size // 31 * 31].reshape(-1, 31)
    signs = np.where(np.arange(values.shape[0]) % 2, -1, 1).astype(np.float32)[:, None]
    blocks = np.concatenate([np.full((values.shape[0], 1), 127.0, np.float32), values * signs], axis=1)
    flat = np.ascontiguousarray(blocks).reshape(-1)
    assert np.array_equal(packed(flat), reference(flat))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_q8_0_with_nan_or_inf_gives_the_references_bytes(bad):
    values = adversarial_blocks()
    values[40] = bad
    with np.errstate(invalid="ignore"):
        assert np.array_equal(packed(values), reference(values))
