"""Tiny random model families for tests: base, chat and CP models of the same architecture.

Each trio shares a base initialisation; chat and CP are the base plus distinct random deltas
(as fine-tuning and continued pre-training would produce), so every identity of chat-vector
arithmetic can be checked exactly. Tokenizers are real (built with the ``tokenizers`` library)
and carry a chat template and their own special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.utils import logging as transformers_logging

transformers_logging.disable_progress_bar()  # one bar per tiny model load drowns the test output

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS = (
    "hello world the a cat dog sat on mat what is your name please tell me about city "
    "river book red blue green one two three four five yes no thanks good bad"
).split()
NEW_WORDS = ["台北", "高雄", "你好", "謝謝", "貓", "狗", "書", "河", "紅色", "藍色"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }} <|end|> "
    "{% elif m['role'] == 'system' %}{{ m['content'] }} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(words: list[str], chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``SPECIALS + words`` (ids in that order)."""
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


# Declared context of the tiny models. Real chat models take thousands of tokens; the judge and
# served-model tests send prompts of a few hundred, which `transformers serve` (5.25 and newer)
# refuses when they exceed the declared context. Rotary models carry no weights for it; GPT-2's
# position table grows by CONTEXT x 32 numbers.
CONTEXT = 1024


def config_for(family: str, vocab_size: int):  # noqa: ANN201 - a transformers config
    common = dict(vocab_size=vocab_size, bos_token_id=2, eos_token_id=3, pad_token_id=1)
    if family == "llama":
        return LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=CONTEXT,
            **common,
        )
    if family == "mistral":
        return MistralConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=CONTEXT,
            sliding_window=None,
            **common,
        )
    if family == "qwen2_tied":
        return Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=CONTEXT,
            tie_word_embeddings=True,
            **common,
        )
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=CONTEXT, **common)
    raise ValueError(family)


FAMILIES = ("llama", "mistral", "qwen2_tied", "gpt2")


def _perturb(model: torch.nn.Module, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=generator) * scale)


@dataclass(frozen=True)
class Trio:
    base: Path
    chat: Path
    cp: Path


def build_model(
    family: str,
    folder: Path,
    *,
    seed: int,
    perturb_seed: int | None = None,
    words: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    chat_stop: bool = False,
    max_shard_size: str | None = None,
) -> Path:
    """Save a tiny model of ``family`` initialised from ``seed`` (+ a delta from ``perturb_seed``)."""
    words = list(words or WORDS)
    tokenizer = make_tokenizer(words, CHAT_TEMPLATE if chat_stop else None)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(family, len(tokenizer)))
    if perturb_seed is not None:
        _perturb(model, perturb_seed, 0.02)
    model = model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    tokenizer.save_pretrained(folder)
    if chat_stop:
        end_id = tokenizer.convert_tokens_to_ids("<|end|>")
        GenerationConfig(eos_token_id=[end_id, 3], bos_token_id=2, pad_token_id=1).save_pretrained(folder)
    return folder


def build_trio(
    family: str, root: Path, *, dtype: torch.dtype = torch.float32, max_shard_size: str | None = None
) -> Trio:
    """base, chat (base + delta, with chat template and stop ids) and cp (base + other delta)."""
    root.mkdir(parents=True, exist_ok=True)
    kwargs = dict(dtype=dtype, max_shard_size=max_shard_size)
    return Trio(
        base=build_model(family, root / "base", seed=0, **kwargs),
        chat=build_model(family, root / "chat", seed=0, perturb_seed=1, chat_stop=True, **kwargs),
        cp=build_model(family, root / "cp", seed=0, perturb_seed=2, **kwargs),
    )


def build_extended_cp(family: str, base: Path, folder: Path) -> Path:
    """A CP model whose vocabulary appends NEW_WORDS to the base's (embeddings resized)."""
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = make_tokenizer(WORDS + NEW_WORDS)
    torch.manual_seed(5)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    _perturb(model, 3, 0.02)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
