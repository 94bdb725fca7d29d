"""A text model's chat vector applied to a LLaVA model whose language tower descends from the same base."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import run_cli, trio_merge
from safetensors.torch import load_file, save_file
from test_merge_core import load_dir
from tiny_models import CHAT_TEMPLATE, WORDS, make_tokenizer

import chatvector

IMAGE_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# transformers 5 writes LLaVA in the original layout; checkpoints saved by transformers 4.52-4.57 use this one
NEW_LAYOUT = (
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)


def build_llava(cp, folder, layout):
    """A tiny LLaVA (tiny CLIP vision tower) whose language model is ``cp`` with one <image> token added."""
    from transformers import (
        AutoModelForCausalLM,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = make_tokenizer(list(WORDS))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>", "<image>"]})
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    text = AutoModelForCausalLM.from_pretrained(cp)
    torch.manual_seed(3)
    text.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text.config,
        image_token_index=image_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(text.model.state_dict())
    model.lm_head.load_state_dict(text.lm_head.state_dict())
    model.save_pretrained(folder)
    processor = LlavaProcessor(
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=IMAGE_TEMPLATE,
    )
    processor.save_pretrained(folder)
    if layout == "new":
        weights = load_file(folder / "model.safetensors")
        renamed = {}
        for name, value in weights.items():
            for old, new in NEW_LAYOUT:
                if name.startswith(old):
                    name = new + name[len(old) :]
                    break
            renamed[name] = value
        save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module", params=["saved", "new"])
def llava(request, extended, tmp_path_factory):
    trio, _ = extended  # float32 llama trio
    layout = request.param
    return trio, build_llava(trio.cp, tmp_path_factory.mktemp(f"llava-{layout}") / "llava", layout), layout


def language_name(name, layout):
    """Where a text model's tensor sits in the LLaVA checkpoint of ``layout``."""
    if layout == "saved":
        return "language_model." + name
    return "lm_head.weight" if name == "lm_head.weight" else "model.language_model." + name[len("model.") :]


def test_chat_vector_merges_into_the_language_tower(llava, tmp_path):
    trio, target, layout = llava
    report = chatvector.merge(base=trio.base, chat=trio.chat, target=target, ratio=0.8, out=tmp_path / "o")
    assert any("tensor names mapped chat side → target (found from the checkpoints)" in n for n in report.notes)
    out, llava_weights = load_dir(tmp_path / "o"), load_dir(target)
    chat, base = load_dir(trio.chat), load_dir(trio.base)
    assert sorted(out) == sorted(llava_weights)
    vocab_chat = json.loads((trio.chat / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = json.loads((target / "tokenizer.json").read_text())
    vocab_target = {**tokens["model"]["vocab"], **{t["content"]: t["id"] for t in tokens["added_tokens"]}}
    mapped = {language_name(n, layout): n for n in chat}
    for name, value in out.items():
        if name not in mapped:  # vision tower and projector: untouched, byte for byte
            assert torch.equal(value, llava_weights[name]) and "language" not in name, name
            continue
        text_name = mapped[name]
        delta = chat[text_name] - base[text_name]
        if value.shape == delta.shape:
            assert torch.equal(value, llava_weights[name] + 0.8 * delta), name
            continue
        for token, row in vocab_target.items():  # embeddings: one more row (<image>), aligned by token
            expected = llava_weights[name][row]
            if token in vocab_chat:
                expected = expected + 0.8 * delta[vocab_chat[token]]
            else:
                assert token == "<image>"
            assert torch.equal(value[row], expected), (name, token)
    assert sum(1 for n in out if n not in mapped) > 30  # the vision tower is really there
    processor_files = [n for n in ("preprocessor_config.json", "processor_config.json") if (target / n).exists()]
    assert processor_files  # transformers 5 writes processor_config.json only, 4.x both
    for name in processor_files:
        assert (tmp_path / "o" / name).read_bytes() == (target / name).read_bytes()
    assert "<image>" in (tmp_path / "o" / "chat_template.jinja").read_text()  # the target's template, kept
    assert chatvector.verify(tmp_path / "o", recompute=True, full=True).ok


def test_merged_llava_loads_and_generates_from_an_image(llava, tmp_path):
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    trio, target, _ = llava
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "cv")
    chatvector.apply(target=target, vectors=[(tmp_path / "cv", 1.0)], out=tmp_path / "o")
    model = LlavaForConditionalGeneration.from_pretrained(tmp_path / "o")
    processor = AutoProcessor.from_pretrained(tmp_path / "o")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is the cat"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 16
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
    with torch.no_grad():  # the merged language tower is what runs: it differs from the target's
        before = LlavaForConditionalGeneration.from_pretrained(target)(**inputs).logits
        after = model(**inputs).logits
    assert not torch.allclose(before, after)


def test_map_overrides_the_found_mapping(llava, tmp_path, monkeypatch, capsys):
    trio, target, layout = llava
    found = tmp_path / "found"
    chatvector.merge(base=trio.base, chat=trio.chat, target=target, ratio=0.5, out=found)
    if layout == "saved":
        maps = ["model.=language_model.model.", "lm_head.=language_model.lm_head."]
    else:
        maps = ["model.=model.language_model."]
    args = [f"--map={m}" for m in maps]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "given", "--ratio", "0.5", *args, target=target),
    )
    assert code == 0, message
    assert "given with --map" in message
    given, first = load_dir(tmp_path / "given"), load_dir(found)
    assert all(torch.equal(given[n], first[n]) for n in first)
    # a wrong mapping is reported before anything is written
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "bad", "--map", "model.=model.nowhere.", target=target),
    )
    assert code != 0 and "PreflightError" in message and not (tmp_path / "bad").exists()


def test_chat_template_option_takes_the_chat_models(llava, tmp_path):
    trio, target, _ = llava
    chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=target,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(chat_template="chat"),
    )
    assert (tmp_path / "o" / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    assert (tmp_path / "o" / "processor_config.json").exists()  # the processor still comes from the target
