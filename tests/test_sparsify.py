"""TIES and DARE sparsification, checked tensor by tensor against an independent whole-tensor torch reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import run_cli, trio_merge
from safetensors.torch import save_file
from test_merge_core import load_dir
from tiny_models import NEW_WORDS

import chatvector
from chatvector.merge import engine
from chatvector.merge.methods.draws import draws as dare_draws
from chatvector.merge.recipe import parse_recipe
from chatvector.merge.sparsify import parse_sparsify

F32 = torch.float32


def ties_reference(target, deltas, ratios, density):
    """TIES on whole tensors: top-k by magnitude (stable sort: ties go to the lower index), sign of the
    sum of the scaled deltas (0 counts as +), mean of the agreeing scaled entries."""
    weighted = []
    for delta, ratio in zip(deltas, ratios, strict=True):
        flat = delta.reshape(-1)
        k = min(flat.numel(), max(1, int(density * flat.numel())))
        order = torch.sort(flat.abs(), descending=True, stable=True).indices
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[order[:k]] = True
        weighted.append(torch.tensor(ratio, dtype=F32) * torch.where(keep, flat, torch.zeros((), dtype=F32)))
    total = torch.zeros_like(weighted[0])
    for w in weighted:
        total = total + w
    elected = total >= 0
    mixed, count = torch.zeros_like(total), torch.zeros_like(total)
    for w in weighted:
        agree = torch.where(elected, w > 0, w < 0)
        mixed = mixed + torch.where(agree, w, torch.zeros((), dtype=F32))
        count = count + agree.to(F32)
    return target.float() + (mixed / count.clamp(min=1)).reshape(target.shape)


def kept_mask(seed, term, name, numel, density):
    """The tensor's whole random stream at once: entry i is kept when its 32-bit draw < round(D·2³²)."""
    draws = torch.from_numpy(dare_draws(seed, term, name, 0, numel).astype(np.int64))
    return draws < round(density * 2**32)


def dare_reference(target, deltas, ratios, terms, name, density, seed):
    """DARE on whole tensors: keep the entries the stream says, rescale by 1/D."""
    result = target.float()
    for delta, ratio, term in zip(deltas, ratios, terms, strict=True):
        keep = kept_mask(seed, term, name, delta.numel(), density).reshape(delta.shape)
        kept = torch.where(keep, delta / torch.tensor(density, dtype=F32), torch.zeros((), dtype=F32))
        result = result + torch.tensor(ratio, dtype=F32) * kept
    return result


def deltas_of(trio_models, name):
    return [chat[name].float() - base[name].float() for chat, base in trio_models]


@pytest.mark.parametrize("family", ["llama", "qwen2_tied"])
def test_ties_single_term_equals_reference(family, trios, tmp_path):
    trio = trios[family]
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        ratio=0.7,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(sparsify="ties:density=0.2"),
    )
    out, cp, chat, base = (load_dir(p) for p in (tmp_path / "o", trio.cp, trio.chat, trio.base))
    for name, value in out.items():
        expected = ties_reference(cp[name], deltas_of([(chat, base)], name), [0.7], 0.2)
        assert torch.equal(value, expected.to(cp[name].dtype)), name


def test_ties_two_terms_elect_signs_and_average(trios, tmp_path):
    mistral = trios["mistral"]  # float32: every kept entry shows in the output
    recipe = parse_recipe(
        {
            "target": str(mistral.cp),
            "options": {"sparsify": "ties:density=0.5"},
            "terms": [
                {"base": str(mistral.base), "chat": str(mistral.chat), "ratio": 0.8},
                {"base": str(mistral.base), "chat": str(mistral.cp), "ratio": -0.6},
            ],
        },
        "test",
    )
    chatvector.merge(recipe=recipe, out=tmp_path / "o")
    out, cp, chat, base = (load_dir(p) for p in (tmp_path / "o", mistral.cp, mistral.chat, mistral.base))
    disagreements = 0
    for name, value in out.items():
        deltas = deltas_of([(chat, base), (cp, base)], name)
        expected = ties_reference(cp[name], deltas, [0.8, -0.6], 0.5)
        assert torch.equal(value, expected), name
        disagreements += int(((value - cp[name]).abs() > 0).sum())
    assert disagreements  # the test would also pass on an empty merge otherwise
    report = chatvector.verify(tmp_path / "o", recompute=True, full=True)
    assert report.ok, report.summary()


def test_dare_equals_reference_and_keeps_about_density(trios, tmp_path):
    trio = trios["mistral"]
    recipe = parse_recipe(
        {
            "target": str(trio.cp),
            "options": {"sparsify": "dare:density=0.3,seed=11"},
            "terms": [
                {"base": str(trio.base), "chat": str(trio.chat), "ratio": 0.9},
                {"base": str(trio.base), "chat": str(trio.cp), "ratio": 0.25},
            ],
        },
        "test",
    )
    chatvector.merge(recipe=recipe, out=tmp_path / "o")
    out, cp, chat, base = (load_dir(p) for p in (tmp_path / "o", trio.cp, trio.chat, trio.base))
    for name, value in out.items():
        expected = dare_reference(
            cp[name], deltas_of([(chat, base), (cp, base)], name), [0.9, 0.25], [0, 1], name, 0.3, 11
        )
        assert torch.equal(value, expected), name
    kept = sum(int(kept_mask(11, 0, n, v.numel(), 0.3).sum()) for n, v in cp.items())
    total = sum(v.numel() for v in cp.values())
    assert abs(kept / total - 0.3) < 0.02
    report = chatvector.verify(tmp_path / "o", recompute=True, full=True)
    assert report.ok, report.summary()


def test_dare_seed_changes_the_result(trios, tmp_path):
    trio = trios["mistral"]
    for seed in (1, 2):
        chatvector.merge(
            base=trio.base,
            chat=trio.chat,
            target=trio.cp,
            out=tmp_path / str(seed),
            options=chatvector.MergeOptions(sparsify=f"dare:density=0.5,seed={seed}"),
        )
    one, two = load_dir(tmp_path / "1"), load_dir(tmp_path / "2")
    assert not torch.equal(one["model.layers.0.mlp.up_proj.weight"], two["model.layers.0.mlp.up_proj.weight"])


def write_model(folder, tensors):
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return folder


@pytest.fixture(scope="module")
def tied_deltas(tmp_path_factory):
    """Deltas with a handful of distinct values, so thousands of entries tie at every threshold."""
    root = tmp_path_factory.mktemp("ties")
    generator = torch.Generator().manual_seed(4)
    shapes = {
        "model.layers.0.mlp.up_proj.weight": (37, 101),
        "model.layers.1.mlp.up_proj.weight": (5003,),
        "model.norm.weight": (7,),
    }
    base = {n: torch.randn(s, generator=generator) for n, s in shapes.items()}
    chat = {n: b + torch.randint(-2, 3, b.shape, generator=generator).float() / 4 for n, b in base.items()}
    cp = {n: b + torch.randn(b.shape, generator=generator) for n, b in base.items()}
    return {role: write_model(root / role, d) for role, d in (("base", base), ("chat", chat), ("cp", cp))}


@pytest.mark.parametrize("method", ["ties:density=0.3", "dare:density=0.4,seed=3"])
def test_independent_of_chunk_size_and_threads(method, tied_deltas, tmp_path, monkeypatch):
    models = tied_deltas
    outputs = []
    for chunk, block, threads in ((1 << 20, 1 << 17, 2), (1000, 77, 1), (4099, 333, 3), (64, 16, 2)):
        monkeypatch.setattr(engine, "CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(engine, "BLOCK_ELEMENTS", block)
        out = tmp_path / f"{chunk}-{threads}"
        chatvector.merge(
            base=models["base"],
            chat=models["chat"],
            target=models["cp"],
            ratio=1.5,
            out=out,
            options=chatvector.MergeOptions(sparsify=method),
            run=chatvector.RunOptions(threads=threads),
        )
        outputs.append(load_dir(out))
    cp, chat, base = (load_dir(models[r]) for r in ("cp", "chat", "base"))
    spec = parse_sparsify(method)
    for name in cp:
        deltas = deltas_of([(chat, base)], name)
        if spec.name == "ties":
            expected = ties_reference(cp[name], deltas, [1.5], spec.params.density)
            changed = int((expected != cp[name]).sum())
            assert changed == max(1, int(spec.params.density * cp[name].numel()))  # exactly k, ties cut by index
        else:
            expected = dare_reference(cp[name], deltas, [1.5], [0], name, spec.params.density, spec.params.seed)
        for output in outputs:
            assert torch.equal(output[name], expected), name


def test_ties_on_aligned_embeddings(extended, tmp_path):
    trio, cp_ext = extended
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=cp_ext,
        ratio=0.5,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(sparsify="ties:density=0.1"),
    )
    out, target = load_dir(tmp_path / "o"), load_dir(cp_ext)
    chat, base = load_dir(trio.chat), load_dir(trio.base)
    vocab_target = json.loads((cp_ext / "tokenizer.json").read_text())["model"]["vocab"]
    vocab_chat = json.loads((trio.chat / "tokenizer.json").read_text())["model"]["vocab"]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        delta = torch.zeros_like(target[name])  # the chat delta in the target's row order; new tokens get none
        for token, row in vocab_target.items():
            if token in vocab_chat:
                delta[row] = chat[name][vocab_chat[token]] - base[name][vocab_chat[token]]
            else:
                assert token in NEW_WORDS
        assert torch.equal(out[name], ties_reference(target[name], [delta], [0.5], 0.1)), name


def test_plain_merge_is_unchanged_without_sparsify(trios, tmp_path):
    trio = trios["llama"]
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        ratio=0.5,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(sparsify="ties:density=1"),
    )
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "plain")
    dense, plain = load_dir(tmp_path / "o"), load_dir(tmp_path / "plain")
    assert all(torch.equal(dense[n], plain[n]) for n in plain)  # density 1 keeps everything: the plain merge


@pytest.mark.parametrize(
    "text, words",
    [
        ("tie:density=0.2", "ties:density=0.2 or dare"),
        ("ties", "give the density"),
        ("ties:density=0", "not in (0, 1]"),
        ("dare:density=0.5,seed=x", "seed must be an integer"),
        ("ties:density=0.2,seed=1", "ties takes density, not seed"),
    ],
)
def test_bad_sparsify_flag_names_the_flag(text, words, trios, tmp_path, monkeypatch, capsys):
    trio = trios["mistral"]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "o", "--sparsify", text),
    )
    assert code != 0 and "--sparsify" in message and words in message, message
    assert not (tmp_path / "o").exists()


def test_recipe_records_the_canonical_form(trios, tmp_path):
    trio = trios["mistral"]
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(sparsify=" DARE:density=0.50 "),
    )
    text = (tmp_path / "o" / "chatvector_recipe.yaml").read_text()
    assert "sparsify: dare:density=0.5,seed=0" in text
    assert "sparsified: `dare:density=0.5,seed=0`" in (tmp_path / "o" / "README.md").read_text()
