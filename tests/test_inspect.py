"""`chatvector inspect`: per-layer norms and cosine similarity, checked against direct computation."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

import chatvector
from chatvector.analysis.vector_stats import Delta, compare, group_of, module_of


def test_names_map_to_layers_and_modules():
    assert group_of("model.layers.12.mlp.up_proj.weight") == "layer 012"
    assert group_of("transformer.h.3.attn.c_attn.weight") == "layer 003"
    assert group_of("model.embed_tokens.weight") == "embeddings" and group_of("lm_head.weight") == "head"
    assert module_of("model.layers.0.mlp.up_proj.weight") == "up_proj"
    assert module_of("model.layers.0.input_layernorm.weight") == "input_layernorm"


def test_norms_and_cosine_match_direct_computation(trios, tmp_path):
    trio = trios["mistral"]
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "cv")
    stats = compare(Delta(str(tmp_path / "cv")), Delta(str(trio.cp), base=str(trio.base)))
    chat, base, cp = (load_file(p / "model.safetensors") for p in (trio.chat, trio.base, trio.cp))
    names = [n for n in chat if n.startswith("model.layers.1.")]
    a = torch.cat([(chat[n] - base[n]).flatten() for n in names])
    b = torch.cat([(cp[n] - base[n]).flatten() for n in names])
    layer = stats.by_group["layer 001"]
    assert layer.norm_a == pytest.approx(float(a.norm()), rel=1e-5)
    assert layer.norm_b == pytest.approx(float(b.norm()), rel=1e-5)
    assert layer.cosine == pytest.approx(float(torch.nn.functional.cosine_similarity(a, b, dim=0)), abs=1e-5)
    # a delta against itself is perfectly aligned
    same = compare(Delta(str(tmp_path / "cv")), Delta(str(tmp_path / "cv")))
    assert all(s.cosine == pytest.approx(1.0) for s in same.by_group.values())


def test_inspect_command_writes_a_heatmap(trios, tmp_path, monkeypatch, capsys):
    from chatvector.cli import main

    trio = trios["mistral"]
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "cv")
    plot = tmp_path / "heat.png"
    monkeypatch.setattr(
        sys,
        "argv",
        ["chatvector", "inspect", str(tmp_path / "cv"), str(trio.cp), "--base", str(trio.base), "--plot", str(plot)],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    assert "layer 001" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
