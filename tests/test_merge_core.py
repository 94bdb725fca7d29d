"""Core identities of chat-vector arithmetic, checked against an independent float32 recomputation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import FAMILIES, NEW_WORDS

import chatvector


def load_dir(folder) -> dict[str, torch.Tensor]:
    """All tensors of a model directory, read with the safetensors library."""
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


def within_rounding(result: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether ``result`` equals the float32 ``reference`` up to one rounding step of result's dtype."""
    bits = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}.get(result.dtype, 24)
    ref = reference.float()
    step = torch.where(
        ref == 0, torch.full_like(ref, 2.0**-126), torch.exp2(torch.floor(torch.log2(ref.abs())) - (bits - 1))
    )
    return bool(((result.float() - ref).abs() <= step * 1.0001).all())


def reference(target, terms):
    """target + Σ r·(plus − minus), whole tensors, float32."""
    result = {}
    for name, t in target.items():
        value = t.float()
        for ratio, plus, minus in terms:
            value = value + ratio * (plus[name].float() - (minus[name].float() if minus else 0))
        result[name] = value
    return result


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_equals_float32_recomputation(family, trios, tmp_path):
    trio = trios[family]
    out = tmp_path / "out"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.7, out=out)
    merged = load_dir(out)
    target = load_dir(trio.cp)
    expected = reference(target, [(0.7, load_dir(trio.chat), load_dir(trio.base))])
    assert sorted(merged) == sorted(target)
    for name, value in merged.items():
        assert value.dtype == target[name].dtype, name
        assert within_rounding(value, expected[name]), name
        # and it is exactly the float32 result cast once to the output dtype
        assert torch.equal(value, expected[name].to(value.dtype)), name


def test_ratio_zero_reproduces_target_exactly(trios, tmp_path):
    trio = trios["llama"]
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.0, out=tmp_path / "o")
    merged, target = load_dir(tmp_path / "o"), load_dir(trio.cp)
    assert all(torch.equal(merged[n], target[n]) for n in target)


def test_chat_equal_base_reproduces_target_exactly(trios, tmp_path):
    trio = trios["mistral"]
    chatvector.merge(base=trio.base, chat=trio.base, target=trio.cp, ratio=1.3, out=tmp_path / "o")
    merged, target = load_dir(tmp_path / "o"), load_dir(trio.cp)
    assert all(torch.equal(merged[n], target[n]) for n in target)


def test_linear_in_ratio(trios, tmp_path):
    trio = trios["mistral"]  # float32, so the comparison is not blurred by bf16 rounding
    for r in (0.25, 0.5, -0.5):
        chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=r, out=tmp_path / str(r))
    target = load_dir(trio.cp)
    quarter, half, minus_half = (load_dir(tmp_path / str(r)) for r in (0.25, 0.5, -0.5))
    for name, t in target.items():
        torch.testing.assert_close(half[name] - t, 2 * (quarter[name] - t), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(minus_half[name] - t, -(half[name] - t), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2_tied"])
def test_extract_then_apply_equals_one_pass_merge(family, trios, tmp_path):
    trio = trios[family]
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "vec")
    chatvector.apply(target=trio.cp, vectors=[(tmp_path / "vec", 0.6)], out=tmp_path / "applied")
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.6, out=tmp_path / "merged")
    applied, merged = load_dir(tmp_path / "applied"), load_dir(tmp_path / "merged")
    assert sorted(applied) == sorted(merged)
    assert all(torch.equal(applied[n], merged[n]) for n in merged)
    vector = load_dir(tmp_path / "vec")
    chat, base = load_dir(trio.chat), load_dir(trio.base)
    for name, delta in vector.items():
        assert delta.dtype == torch.float32
        assert torch.equal(delta, chat[name].float() - base[name].float()), name
    manifest = json.loads((tmp_path / "vec" / "chatvector.json").read_text())
    assert manifest["format"] == "chatvector-vector"
    assert (tmp_path / "vec" / "chat_template.jinja").exists()


def test_two_vectors_combine_as_weighted_sum(trios, tmp_path):
    mistral = trios["mistral"]
    chatvector.extract(base=mistral.base, chat=mistral.chat, out=tmp_path / "v1")
    chatvector.extract(base=mistral.base, chat=mistral.cp, out=tmp_path / "v2")
    chatvector.apply(target=mistral.cp, vectors=[(tmp_path / "v1", 0.5), (tmp_path / "v2", -0.25)], out=tmp_path / "o")
    out, target = load_dir(tmp_path / "o"), load_dir(mistral.cp)
    v1, v2 = load_dir(tmp_path / "v1"), load_dir(tmp_path / "v2")
    for name, t in target.items():
        expected = t.float() + 0.5 * v1[name] + (-0.25) * v2[name]
        assert torch.equal(out[name], expected.to(t.dtype)), name


def test_recipe_with_two_terms_equals_reference(trios, tmp_path):
    mistral = trios["mistral"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"target: {mistral.cp}\n"
        "terms:\n"
        f"  - {{base: {mistral.base}, chat: {mistral.chat}, ratio: 0.8}}\n"
        f"  - {{base: {mistral.base}, chat: {mistral.cp}, ratio: -0.1}}\n"
        "options: {dtype: bfloat16}\n"
    )
    chatvector.merge(recipe=recipe, out=tmp_path / "o")
    out = load_dir(tmp_path / "o")
    base, chat, cp = (load_dir(p) for p in (mistral.base, mistral.chat, mistral.cp))
    expected = reference(cp, [(0.8, chat, base), (-0.1, cp, base)])
    for name, value in out.items():
        assert value.dtype == torch.bfloat16
        assert torch.equal(value, expected[name].to(torch.bfloat16)), name
    # the output carries a recipe that reproduces it
    chatvector.merge(recipe=tmp_path / "o" / "chatvector_recipe.yaml", out=tmp_path / "again")
    again = load_dir(tmp_path / "again")
    assert all(torch.equal(again[n], out[n]) for n in out)


def test_exclude_keeps_target_tensors(trios, tmp_path):
    trio = trios["llama"]
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        ratio=1.0,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(exclude=["layers\\.1\\.", "norm"]),
    )
    out, target = load_dir(tmp_path / "o"), load_dir(trio.cp)
    kept = [n for n in target if "layers.1." in n or "norm" in n]
    changed = [n for n in target if n not in kept]
    assert kept and changed
    assert all(torch.equal(out[n], target[n]) for n in kept)
    assert not any(torch.equal(out[n], target[n]) for n in changed)


def test_extended_vocabulary_aligns_rows_by_token(extended, tmp_path):
    trio, cp_ext = extended
    out = tmp_path / "o"
    report = chatvector.merge(base=trio.base, chat=trio.chat, target=cp_ext, ratio=0.5, out=out)
    assert report.embedding_policy == {"chat": "align"}
    merged, target = load_dir(out), load_dir(cp_ext)
    chat, base = load_dir(trio.chat), load_dir(trio.base)
    vocab_target = json.loads((cp_ext / "tokenizer.json").read_text())["model"]["vocab"]
    vocab_chat = json.loads((trio.chat / "tokenizer.json").read_text())["model"]["vocab"]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert merged[name].shape == target[name].shape  # never truncated
        for token, row in vocab_target.items():
            if token in vocab_chat:
                c = vocab_chat[token]
                expected = target[name][row] + 0.5 * (chat[name][c] - base[name][c])
                assert torch.equal(merged[name][row], expected), (name, token)
            else:
                assert token in NEW_WORDS
                assert torch.equal(merged[name][row], target[name][row]), (name, token)


def test_extended_vocabulary_with_add_policy_fails_naming_align(extended, tmp_path):
    trio, cp_ext = extended
    with pytest.raises(chatvector.PreflightError, match="--embeddings align"):
        chatvector.merge(
            base=trio.base,
            chat=trio.chat,
            target=cp_ext,
            out=tmp_path / "o",
            options=chatvector.MergeOptions(embeddings="add"),
        )
    assert not (tmp_path / "o").exists()


def test_skip_policy_leaves_embeddings_alone(extended, tmp_path):
    trio, cp_ext = extended
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=cp_ext,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(embeddings="skip"),
    )
    merged, target = load_dir(tmp_path / "o"), load_dir(cp_ext)
    assert torch.equal(merged["model.embed_tokens.weight"], target["model.embed_tokens.weight"])
    assert not torch.equal(merged["model.norm.weight"], target["model.norm.weight"])


def test_apply_vector_to_extended_vocabulary(extended, tmp_path):
    trio, cp_ext = extended
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "vec")
    chatvector.apply(target=cp_ext, vectors=[(tmp_path / "vec", 0.5)], out=tmp_path / "applied")
    chatvector.merge(base=trio.base, chat=trio.chat, target=cp_ext, ratio=0.5, out=tmp_path / "merged")
    applied, merged = load_dir(tmp_path / "applied"), load_dir(tmp_path / "merged")
    assert all(torch.equal(applied[n], merged[n]) for n in merged)


def test_dtype_override_and_sharded_output(trios, tmp_path):
    trio = trios["llama"]
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(dtype="float32"),
        run=chatvector.RunOptions(shard_size=20_000),
    )
    index = json.loads((tmp_path / "o" / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((tmp_path / "o" / s).exists() for s in shards)
    out = load_dir(tmp_path / "o")
    assert all(v.dtype == torch.float32 for v in out.values())
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["torch_dtype"] == "float32"


@pytest.mark.parametrize(
    "beside", [{"base": "x"}, {"chat": "x"}, {"ratio": 0.5}, {"options": chatvector.MergeOptions(dtype="float32")}]
)
def test_a_recipe_refuses_terms_and_options_beside_it(beside, tmp_path):
    recipe = chatvector.Recipe(target="t", terms=(chatvector.PairTerm(base="b", chat="c"),))
    with pytest.raises(chatvector.InputError, match="cannot be given with a recipe"):
        chatvector.merge(recipe=recipe, out=tmp_path / "o", **beside)
    assert not (tmp_path / "o").exists()
