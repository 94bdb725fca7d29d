"""A merged directory is a normal Hugging Face model: loads, chats with the chat template, stops."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import chatvector


@pytest.mark.parametrize("family", ["llama", "qwen2_tied", "gpt2"])
def test_merged_model_loads_and_generates_with_chat_template(family, trios, tmp_path):
    trio = trios[family]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=1.0, out=out)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    # the template comes from the chat model (the cp model has none)
    assert tokenizer.chat_template is not None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello cat"}],
                                           add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|user|> hello cat") and prompt.endswith("<|assistant|>")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids.shape[1]
    # stop ids come from the chat model's generation config
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    assert model.generation_config.eos_token_id == [end_id, 3]
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [end_id, 3]


@pytest.mark.parametrize("family", ["qwen2_tied", "gpt2"])
def test_tied_embeddings_stay_tied(family, trios, tmp_path):
    trio = trios[family]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        names = set(handle.keys())
    assert not any("lm_head" in n for n in names)  # still stored once
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    config = json.loads((out / "config.json").read_text())
    assert config.get("tie_word_embeddings", True) is True


def test_model_card_and_recipe_record_the_merge(trios, tmp_path):
    trio = trios["llama"]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    card = (out / "README.md").read_text()
    assert "chatvector" in card and "0.5" in card and str(trio.chat) in card
    recipe = (out / "chatvector_recipe.yaml").read_text()
    assert "ratio: 0.5" in recipe and "header_sha256" in recipe
    from safetensors import safe_open

    first = sorted(out.glob("*.safetensors"))[0]
    with safe_open(str(first), framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["chatvector_recipe"])["terms"][0]["ratio"] == 0.5


def test_verify_recomputes_and_detects_tampering(trios, tmp_path):
    trio = trios["mistral"]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    report = chatvector.verify(out, recompute=True, full=True)
    assert report.ok and len(report.recomputed) == report.tensors
    # flip one stored value: the recomputation must notice
    from safetensors.torch import load_file, save_file

    path = out / "model.safetensors"
    tensors = load_file(path)
    name = sorted(tensors)[3]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, path, metadata={"format": "pt"})
    broken = chatvector.verify(out, recompute=True, full=True)
    assert not broken.ok and broken.beyond_rounding == [name]
