"""Tiny random models with tokenizers llama.cpp can read, for the GGUF tests.

The word-level tokenizers of :mod:`tiny_models` have no llama.cpp form, so these models get
real subword tokenizers trained here on a small mixed Chinese/English/Korean/Japanese corpus:
a SentencePiece-style byte-fallback BPE (how transformers stores Llama-2 and Mistral), and
byte-level BPEs with Llama-3's and Qwen2's splitting rules. The special tokens keep the ids of
:data:`tiny_models.SPECIALS`, so :func:`tiny_models.config_for` fits them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import CHAT_TEMPLATE, NEW_WORDS, SPECIALS, Trio, _perturb, config_for
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from chatvector.io.gguf_model import LLAMA3_SPLIT, QWEN2_SPLIT

CORPUS = [
    "hello world, the cat sat on the mat. what is your name?",
    "please tell me about the city and the river, one two three.",
    "台北是台灣的首都，高雄在南部。你好，謝謝你的幫忙。",
    "我喜歡看書，也喜歡在河邊散步。今天天氣很好。",
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 좋네요.",
    "こんにちは、元気ですか。東京は日本の首都です。",
    "The year 2024 had 366 days; 12 months and 52 weeks.",
    "紅色和藍色的貓在書上睡覺。狗在河邊跑。",
]
SAMPLES = [
    "hello world, 你好，台北！",
    "안녕하세요 world 123 こんにちは",
    "The cat 在河邊 sat on 만나서 the mat.",
    "  two  spaces and\nnew lines\n\n台北 高雄 紅色",
    "謝謝 thanks ありがとう 감사합니다 4567",
]
TOKENIZERS = ("spm", "llama3", "qwen2", "demo")


def demo_tokenizer() -> PreTrainedTokenizerFast:
    """The demo family's tokenizer (seed 0's world): whole pieces, Chinese words added, no other merges."""
    from chatvector.demo.family import DemoConfig, make_tokenizer
    from chatvector.demo.world import make_world

    return make_tokenizer(make_world(0), DemoConfig())


def train_tokenizer(kind: str, extra_words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A trained subword tokenizer of ``kind`` (``spm``, ``llama3``, ``qwen2``), or the demo's (``demo``)."""
    if kind == "demo":
        return demo_tokenizer()
    if kind == "spm":
        core = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        core.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        core.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        specials = SPECIALS + [f"<0x{i:02X}>" for i in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    else:
        core = Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
        regex = LLAMA3_SPLIT if kind == "llama3" else QWEN2_SPLIT
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=700,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    core.train_from_iterator(CORPUS * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    if extra_words:
        tokenizer.add_tokens([AddedToken(word, normalized=False) for word in extra_words])
    return tokenizer


def build_gguf_model(
    family: str,
    kind: str,
    folder: Path,
    *,
    seed: int,
    perturb_seed: int | None = None,
    chat_stop: bool = False,
    extra_words: list[str] | None = None,
) -> Path:
    """Save a tiny model of ``family`` with a ``kind`` tokenizer."""
    tokenizer = train_tokenizer(kind)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(family, len(tokenizer)))
    if extra_words:
        # not normalized: transformers would otherwise match them with the "▁" its SentencePiece
        # normalizer prepends ("▁台北"), which no llama.cpp token type reproduces
        tokenizer.add_tokens([AddedToken(word, normalized=False) for word in extra_words])
        torch.manual_seed(5)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if perturb_seed is not None:
        _perturb(model, perturb_seed, 0.02)
    if chat_stop:
        tokenizer.chat_template = CHAT_TEMPLATE
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if chat_stop:
        end_id = tokenizer.convert_tokens_to_ids("<|end|>")
        GenerationConfig(eos_token_id=[end_id, 3], bos_token_id=2, pad_token_id=1).save_pretrained(folder)
    return folder


def build_gguf_trio(family: str, kind: str, root: Path, *, extended: bool = False) -> Trio:
    """base, chat (with template and stop ids) and cp (optionally with NEW_WORDS appended)."""
    root.mkdir(parents=True, exist_ok=True)
    return Trio(
        base=build_gguf_model(family, kind, root / "base", seed=0),
        chat=build_gguf_model(family, kind, root / "chat", seed=0, perturb_seed=1, chat_stop=True),
        cp=build_gguf_model(
            family, kind, root / "cp", seed=0, perturb_seed=2, extra_words=NEW_WORDS if extended else None
        ),
    )
