"""Fuzz the safetensors header parser and the index reader: only clean ChatVectorErrors come out.

Each target runs 10,000 generated cases (derandomized, so CI sees the same cases every run). When
parsing succeeds, the result must still be safe to use: every tensor inside the file, spans that
match dtype and shape, no overlaps, and every shard inside the model directory.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from chatvector.dtypes import DTYPES
from chatvector.errors import ChatVectorError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.hub import ModelRef
from chatvector.io.safetensors_header import read_header

CASES = settings(
    max_examples=10_000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
small_int = st.one_of(st.integers(-4, 80), st.integers(-(2**64), 2**64))
entry = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(sorted(DTYPES)), st.text(max_size=5), json_leaf),
        "shape": st.one_of(st.lists(small_int, max_size=3), json_value),
        "data_offsets": st.one_of(st.lists(small_int, min_size=2, max_size=2), json_value),
    }
)
header_object = st.dictionaries(
    st.one_of(st.text(max_size=6), st.just("__metadata__")),
    st.one_of(entry, json_value, st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)),
    max_size=5,
)


@st.composite
def safetensors_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["raw", "structured", "structured", "mutated"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    text = json.dumps(draw(header_object), allow_nan=True).encode()
    if kind == "mutated" and text:
        position = draw(st.integers(0, len(text) - 1))
        text = text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1 :]
    claimed = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1), st.integers(0, len(text) + 16)))
    data = draw(st.binary(max_size=128))
    return struct.pack("<Q", claimed) + text + data


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.slow
def test_header_parser_fails_only_cleanly(scratch):
    path = scratch / "case.safetensors"
    seen = []

    @CASES
    @given(safetensors_bytes())
    def check(content: bytes) -> None:
        seen.append(len(content))
        path.write_bytes(content)
        try:
            header = read_header(path)
        except ChatVectorError:
            return
        spans = sorted((t.begin, t.end) for t in header.tensors.values() if t.nbytes)
        for info in header.tensors.values():
            assert 8 <= info.begin <= info.end <= len(content)
            assert info.nbytes == info.numel * DTYPES[info.dtype].itemsize
        assert all(a_end <= b_begin for (_, a_end), (b_begin, _) in zip(spans, spans[1:], strict=False))

    check()
    assert len(seen) >= 10_000


shard_name = st.one_of(
    st.sampled_from(
        [
            "a.safetensors",
            "b.safetensors",
            "../a.safetensors",
            "/etc/passwd",
            "",
            ".",
            "..",
            "link.safetensors",
            "sub/a.safetensors",
            "a.safetensors\x00",
            "missing.safetensors",
        ]
    ),
    st.text(max_size=12),
    json_leaf,
)


@st.composite
def index_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["raw", "json", "structured", "structured"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    weight_map = draw(st.one_of(st.dictionaries(st.text(max_size=8), shard_name, max_size=4), json_value))
    return json.dumps({"metadata": draw(json_value), "weight_map": weight_map}).encode()


@pytest.mark.slow
def test_index_reader_fails_only_cleanly_and_never_leaves_the_model(scratch):
    model = scratch / "model"
    model.mkdir()
    save_file({"x": torch.zeros(2)}, model / "a.safetensors")
    save_file({"y": torch.ones(3)}, model / "b.safetensors")
    outside = scratch / "outside.safetensors"
    save_file({"z": torch.ones(1)}, outside)
    (model / "link.safetensors").symlink_to(outside)
    index = model / "model.safetensors.index.json"
    ref = ModelRef(str(model), model, "target")
    seen = []

    @CASES
    @given(index_bytes())
    def check(content: bytes) -> None:
        seen.append(len(content))
        index.write_bytes(content)
        try:
            checkpoint = Checkpoint.open(ref)
        except ChatVectorError:
            return
        with checkpoint:
            for info in checkpoint.tensors.values():
                assert info.file.parent == model and info.file.resolve().parent == model.resolve()

    check()
    assert len(seen) >= 10_000
