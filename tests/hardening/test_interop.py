"""Class 8: what other tools read from an output is right.

- A target with only ``tokenizer.model`` (Chinese-LLaMA style) is aligned with sentencepiece,
  without transformers, row by row.
- The model card lists hub ids only as ``base_model`` (with ``base_model_relation: merge``), never
  a local path; a vector's card claims no library.
- The EOS kept or translated is the same in generation_config.json, config.json,
  tokenizer_config.json and special_tokens_map.json, and transformers stops on it (see also
  test_silent_results.py).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import yaml
from helpers import run_cli
from safetensors.numpy import load_file
from test_hub_ids import populate_cache
from tiny_models import _perturb, config_for
from transformers import AutoModelForCausalLM

WORDS = (
    "hello world the a cat dog sat on mat what is your name please tell me about city "
    "river book red blue green one two three four five yes no thanks good bad"
).split()


def sentencepiece_model(size: int, extra: tuple[str, ...] = ()) -> bytes:
    import sentencepiece

    lines = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 5
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=out,
        vocab_size=size,
        model_type="bpe",
        user_defined_symbols=list(extra),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    return out.getvalue()


def pieces(model: bytes) -> dict[str, int]:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    return {processor.IdToPiece(i): i for i in range(processor.GetPieceSize())}


def save(folder: Path, tokenizer: bytes, seed: int | None, chat_template: str | None = None) -> Path:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_for("llama", len(pieces(tokenizer))))
    if seed is not None:
        _perturb(model, seed, 0.02)
    for config in (model.config, model.generation_config):  # Llama's ids: <s> 1, </s> 2
        config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, None
    model.save_pretrained(folder)
    (folder / "tokenizer.model").write_bytes(tokenizer)
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer"}
    if chat_template:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def sentencepiece_trio(tmp_path_factory):
    root = tmp_path_factory.mktemp("sp")
    base_vocab = sentencepiece_model(60)
    extended = sentencepiece_model(66, ("台北", "你好", "謝謝"))
    return {
        "base": save(root / "base", base_vocab, None),
        "chat": save(root / "chat", base_vocab, 1, "{{ 'x' }}"),
        "cp": save(root / "cp", extended, 2),
    }


def test_a_tokenizer_model_only_target_is_aligned_with_sentencepiece(monkeypatch, capsys, sentencepiece_trio, tmp_path):
    trio = sentencepiece_trio
    monkeypatch.setitem(sys.modules, "transformers", None)  # the light core: no transformers to fall back on
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        trio["base"],
        "--chat",
        trio["chat"],
        "--target",
        trio["cp"],
        "--ratio",
        "0.5",
        "-o",
        tmp_path / "out",
    )
    assert code == 0, message
    assert "chat: align" in message
    cp_ids, chat_ids = (
        pieces((trio["cp"] / "tokenizer.model").read_bytes()),
        pieces((trio["chat"] / "tokenizer.model").read_bytes()),
    )
    out, cp = load_file(tmp_path / "out" / "model.safetensors"), load_file(trio["cp"] / "model.safetensors")
    chat, base = load_file(trio["chat"] / "model.safetensors"), load_file(trio["base"] / "model.safetensors")
    name = "model.embed_tokens.weight"
    shared = [p for p in cp_ids if p in chat_ids]
    assert len(shared) > 40 and any(cp_ids[p] != chat_ids[p] for p in shared)  # ids moved: alignment matters
    for piece in shared:
        row, source = cp_ids[piece], chat_ids[piece]
        expected = cp[name][row] + np.float32(0.5) * (chat[name][source] - base[name][source])
        assert np.array_equal(out[name][row], expected), piece
    for piece in ("台北", "你好", "謝謝"):
        assert np.array_equal(out[name][cp_ids[piece]], cp[name][cp_ids[piece]])
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["eos_token_id"] == cp_ids["</s>"]


def front_matter(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    return yaml.safe_load(text.split("---\n")[1])


def test_card_of_a_local_merge_lists_no_paths(monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        fresh["base"],
        "--chat",
        fresh["chat"],
        "--target",
        fresh["cp"],
        "-o",
        tmp_path / "out",
    )
    assert code == 0, message
    front = front_matter(tmp_path / "out")
    assert front["library_name"] == "transformers" and "base_model" not in front
    assert str(tmp_path) not in yaml.safe_dump(front)


@pytest.fixture
def hub(tmp_path, monkeypatch, trios):
    cache = tmp_path / "hub"
    for name in ("base", "chat", "cp"):
        populate_cache(cache, f"tiny/{name}", getattr(trios["llama"], name))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_card_of_a_hub_merge_lists_hub_ids_as_a_merge(monkeypatch, capsys, hub, trios, tmp_path):
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        "tiny/base",
        "--chat",
        "tiny/chat",
        "--target",
        "tiny/cp",
        "-o",
        tmp_path / "out",
    )
    assert code == 0, message
    front = front_matter(tmp_path / "out")
    assert front["base_model"] == ["tiny/cp", "tiny/chat", "tiny/base"]
    assert front["base_model_relation"] == "merge"
    # A hub input mixed with a local one: only the hub id is listed.
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        "tiny/base",
        "--chat",
        trios["llama"].chat,
        "--target",
        "tiny/cp",
        "-o",
        tmp_path / "mixed",
    )
    assert code == 0, message
    assert front_matter(tmp_path / "mixed")["base_model"] == ["tiny/cp", "tiny/base"]


def test_card_of_a_vector_claims_no_library(monkeypatch, capsys, hub, tmp_path):
    code, message = run_cli(
        monkeypatch, capsys, "extract", "--base", "tiny/base", "--chat", "tiny/chat", "-o", tmp_path / "vector"
    )
    assert code == 0, message
    front = front_matter(tmp_path / "vector")
    assert "library_name" not in front and "base_model_relation" not in front
    assert front["base_model"] == ["tiny/chat", "tiny/base"]
