"""torch's vectorised float16 cast gives numpy's bits for every finite float32 (chatvector.casts).

The values: every float32 next to a float16 rounding boundary (the midpoint between each pair
of neighbouring float16 values, normal and subnormal, and the floats on either side of it, where
round-to-nearest-even decides), the overflow boundary, and a stride through all finite float32
bit patterns. Tests may set one torch thread; the engine's merge with the fast cast is compared
with the numpy cast's merge byte for byte.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the eval extra)")

from helpers import merge_args, run_cli  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from chatvector import casts  # noqa: E402
from chatvector.casts import Narrowing  # noqa: E402


def boundary_values() -> np.ndarray:
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)  # finite, >= 0
    midpoints = (halves[:-1].astype(np.float64) + halves[1:]) / 2  # exact in float32 (11+1 bits)
    middle = midpoints.astype(np.float32).view(np.uint32)
    near = np.concatenate([middle - 1, middle, middle + 1]).view(np.float32)
    edges = np.array([65504.0, 65519.99, 65520.0, 65536.0, 1e-8, 2.0**-24, 2.0**-25, 2.0**-26, 3e38], np.float32)
    values = np.concatenate([halves, near, edges])
    return np.concatenate([values, -values])


def stride_values() -> np.ndarray:
    bits = np.arange(0, 0x7F800000, 1009, dtype=np.uint32)  # every 1009th finite positive float32
    values = bits.view(np.float32)
    return np.concatenate([values, -values])


@pytest.mark.parametrize("values", [boundary_values(), stride_values()], ids=["boundaries", "stride"])
def test_the_vectorised_float16_cast_equals_numpys_bit_for_bit(values):
    want = values.astype(np.float16)
    got = np.empty_like(want)
    with np.errstate(over="ignore"):
        Narrowing(torch).cast(values, got, finite=True)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_nan_and_inf_go_through_numpy():
    payloads = np.array([0x7F800001, 0xFFA00000, 0x7FC00001, 0x7F812345], np.uint32).view(np.float32)
    values = np.concatenate([payloads, [np.inf, -np.inf, 1.5]]).astype(np.float32)
    got = np.empty(values.size, np.float16)
    Narrowing(torch).cast(values, got)  # finite unknown: checked
    assert np.array_equal(got.view(np.uint16), values.astype(np.float16).view(np.uint16))


def test_torch_is_imported_only_for_runs_large_enough_to_pay_for_it():
    assert not Narrowing.for_run(casts.FAST_CAST_ELEMENTS - 1).vectorised
    assert Narrowing.for_run(casts.FAST_CAST_ELEMENTS).vectorised


def test_a_float16_merge_is_the_same_with_the_vectorised_cast(monkeypatch, capsys, fresh, tmp_path):
    torch.set_num_threads(1)
    outputs = {}
    for name, threshold in (("numpy", 1 << 62), ("torch", 0)):
        monkeypatch.setattr(casts, "FAST_CAST_ELEMENTS", threshold)
        out = tmp_path / name
        code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out), "--dtype", "float16")
        assert code == 0, message
        outputs[name] = {k: v for p in sorted(out.glob("*.safetensors")) for k, v in load_file(p).items()}
    assert outputs["numpy"].keys() == outputs["torch"].keys()
    for name, values in outputs["numpy"].items():
        assert values.dtype == np.float16
        assert np.array_equal(values.view(np.uint16), outputs["torch"][name].view(np.uint16)), name
