"""Build (or reuse from a cache) the demo's base, chat and cp models.

Each model is cached under a key that hashes exactly the settings it depends on (``base``: the
world, tokenizer, shape and pre-training; ``chat`` and ``cp``: base's key plus their own), so a
changed setting never reuses a stale model and a changed chat setting does not retrain base. A
model is written to a staging directory and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from transformers import GenerationConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from chatvector.demo import corpus
from chatvector.demo.tokenizer import ASSISTANT, DOCUMENT_END, USER, build_tokenizer
from chatvector.demo.train import ModelShape, chat_batches, document_batches, new_model, train
from chatvector.demo.world import HELD_OUT_PEOPLE, VALUES, World, make_world

log = logging.getLogger(__name__)

FAMILY_FORMAT = 6  # bump when code changes in a way that changes the trained models

# Which settings each model depends on (besides the seed and FAMILY_FORMAT).
STAGE_FIELDS = {
    "base": (
        "held_out_people",
        "shape",
        "batch_size",
        "zh_words",
        "end_token",
        "base_documents",
        "base_zh_share",
        "base_parallel_share",
        "base_qa_share",
        "base_dialogue_share",
        "qa_style",
        "base_code_switch_share",
        "paragraphs",
        "dialogue_kinds",
        "base_steps",
        "base_lr",
    ),
    "chat": ("chat_transcripts", "chat_steps", "chat_lr", "chat_word_rows", "chat_replay_rows"),
    "cp": (
        "cp_documents",
        "cp_dialogue_kinds",
        "cp_qa_share",
        "cp_dialogue_share",
        "cp_held_out_share",
        "cp_steps",
        "cp_lr",
        "cp_block_lr_scale",
    ),
}


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines the demo family."""

    seed: int = 0
    held_out_people: int = HELD_OUT_PEOPLE  # people whose facts only cp's text states; 5 questions each
    shape: ModelShape = field(default_factory=ModelShape)
    batch_size: int = 32
    zh_words: bool = True  # Chinese words as whole tokens (else only names; other runs of Chinese are single pieces)
    end_token: str = DOCUMENT_END  # what ends an assistant turn: </s> (as Llama 2 does) or the template's <|end|>
    base_documents: int = 4000
    base_zh_share: float = 0.03  # Chinese documents, relative to the English ones
    base_parallel_share: float = 0.05  # parallel English/Chinese sentences
    base_qa_share: float = 0.3  # facts shaped as Q : … A : … (問：…答：… in Chinese)
    base_dialogue_share: float = 0.3  # documents that are short reported dialogues
    base_code_switch_share: float = 0.0  # English documents with some words in Chinese
    paragraphs: int = 4  # paragraphs per pre-training document (base and cp)
    dialogue_kinds: str = "all"  # what reported dialogues hold: "requests" (and introductions) or "all"
    cp_dialogue_kinds: str | None = "fitting-requests"  # the same for cp's dialogues (None: as dialogue_kinds)
    qa_style: str = "native"  # questions and answers in the texts: 問：…答：…, Q : … A : …, or "bare"
    base_steps: int = 800
    base_lr: float = 3e-3
    chat_transcripts: int = 2000
    chat_steps: int = 150
    chat_lr: float = 5e-4
    chat_replay_rows: int = 0  # rows of pre-training text mixed into every chat-tuning step
    chat_word_rows: bool = True  # chat tuning trains every token's embedding rows (else the template's only)
    cp_documents: int = 8000  # enough that each of the 400 held-out facts is stated ~45 times
    cp_qa_share: float = 0.3
    cp_dialogue_share: float = 0.1
    cp_held_out_share: float | None = None  # share of cp fact documents about held-out people
    cp_steps: int = 800  # 2.7× the 300 of the 40-person world: 2.75× the facts to learn
    cp_lr: float = 1e-3
    cp_block_lr_scale: float = 1.0  # cp's transformer blocks learn at this times cp_lr (embeddings at cp_lr)

    def key(self, stage: str = "family") -> str:
        """Hash of the settings ``stage`` (base, chat, cp, or the whole family) depends on."""
        settings = dataclasses.asdict(self)
        if stage == "family":
            chosen = settings
        else:
            names = STAGE_FIELDS["base"] + (STAGE_FIELDS[stage] if stage != "base" else ())
            chosen = {"seed": self.seed, **{name: settings[name] for name in names}}
        text = json.dumps({"format": FAMILY_FORMAT, "stage": stage, **chosen}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The same data with fewer steps: about two minutes on two cores (docs/demo.md has its numbers).
QUICK = DemoConfig(base_steps=600, chat_steps=100, cp_steps=400)


@dataclass(frozen=True)
class Family:
    base: Path
    chat: Path
    cp: Path
    world: World


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHATVECTOR_CACHE", Path.home() / ".cache" / "chatvector")) / "demo"


def make_tokenizer(world: World, config: DemoConfig) -> PreTrainedTokenizerFast:
    """The family's tokenizer: its vocabulary is every word the world's texts can hold."""
    words = [p.zh for p in world.people]
    if config.zh_words:
        words += [v[1] for values in VALUES.values() for v in values] + list(corpus.ZH_WORDS)
    return build_tokenizer(corpus.vocabulary_texts(world), words, config.end_token)


def template_rows(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of the chat template's tokens (the user and assistant markers and the end of a turn)."""
    ids = {int(tokenizer.convert_tokens_to_ids(t)) for t in (USER, ASSISTANT)}  # type: ignore[arg-type]  # transformers: int | list[int]; one token gives an int
    return sorted(ids | {int(tokenizer.eos_token_id)})


def _rng(config: DemoConfig, stage: str) -> random.Random:
    # One generator per corpus, so that changing one corpus's size leaves the others unchanged.
    return random.Random(f"{config.seed}-{stage}")


def _base_texts(world: World, config: DemoConfig, rng: random.Random) -> list[str]:
    return corpus.base_documents(
        world,
        rng,
        config.base_documents,
        config.base_zh_share,
        config.base_parallel_share,
        config.base_qa_share,
        config.base_dialogue_share,
        config.qa_style,
        config.base_code_switch_share,
        config.paragraphs,
        config.dialogue_kinds,
    )


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    ).save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(staging, folder)


def _refresh_tokenizer(folder: Path, tokenizer: PreTrainedTokenizerFast) -> None:
    """Rewrite a cached model's tokenizer files where the code now saves them differently.

    The weights do not depend on how the tokenizer decodes, so a change there keeps the cache key;
    a family cached before the tokenizer had its decoder would otherwise read replies spaced.
    """
    staging = folder.with_name(f"{folder.name}.tokenizer-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name in tokenizer.save_pretrained(staging):
            fresh, cached = Path(name), folder / Path(name).name
            if not cached.exists() or cached.read_bytes() != fresh.read_bytes():
                log.info("%s: %s rewritten (the tokenizer's files changed since it was cached)", folder, cached.name)
                os.replace(fresh, cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load(folder: Path) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(folder)


def family_paths(config: DemoConfig, cache_dir: Path | None = None) -> Family:
    """Where the family of ``config`` is (or will be) cached."""
    root = cache_dir or default_cache_dir()
    base, chat, cp = (root / f"{stage}-{config.key(stage)}" for stage in ("base", "chat", "cp"))
    return Family(base, chat, cp, make_world(config.seed, config.held_out_people))


def is_trained(folder: Path) -> bool:
    return (folder / "model.safetensors").exists()


def train_stage(config: DemoConfig, stage: str, cache_dir: Path | None = None, rebuild: bool = False) -> Path:
    """Train one model of the family (``base``, then ``chat`` or ``cp`` from it) unless cached."""
    family = family_paths(config, cache_dir)
    folder = getattr(family, stage)
    if is_trained(folder) and not rebuild:
        log.info("%s (seed %d): cached in %s", stage, config.seed, folder)
        _refresh_tokenizer(folder, make_tokenizer(family.world, config))
        return folder
    world, label = family.world, f"{stage} (seed {config.seed})"
    tokenizer = make_tokenizer(world, config)
    shape, size = config.shape, config.batch_size
    if stage == "base":
        log.info(
            "world (seed %d): %d people, %d held out; tokenizer: %d tokens",
            config.seed,
            len(world.people),
            len(world.held_out),
            len(tokenizer),
        )
        documents = _base_texts(world, config, _rng(config, "base"))
        model = new_model(shape, len(tokenizer), tokenizer, config.seed)
        batches = document_batches(tokenizer, documents, shape, size, config.seed)
        train(model, batches, config.base_steps, config.base_lr, label)
    elif stage == "chat":
        model = _load(family.base)
        transcripts = corpus.chat_transcripts(world, _rng(config, "chat"), config.chat_transcripts)
        batches = chat_batches(tokenizer, transcripts, shape, size, config.seed + 1)
        rows = None if config.chat_word_rows else template_rows(tokenizer)
        replay = None
        if config.chat_replay_rows:
            documents = _base_texts(world, config, _rng(config, "replay"))
            replay = document_batches(tokenizer, documents, shape, config.chat_replay_rows, config.seed + 3)
        train(model, batches, config.chat_steps, config.chat_lr, label, token_rows=rows, replay=replay)
    elif stage == "cp":
        model = _load(family.base)
        documents = corpus.cp_documents(
            world,
            _rng(config, "cp"),
            config.cp_documents,
            config.cp_qa_share,
            config.cp_dialogue_share,
            config.qa_style,
            config.cp_held_out_share,
            config.paragraphs,
            config.cp_dialogue_kinds or config.dialogue_kinds,
        )
        batches = document_batches(tokenizer, documents, shape, size, config.seed + 2)
        train(model, batches, config.cp_steps, config.cp_lr, label, block_lr_scale=config.cp_block_lr_scale)
    else:
        raise ValueError(f"unknown stage {stage!r}: base, chat or cp")
    _save(model, tokenizer, folder)
    return folder


def build_family(config: DemoConfig, cache_dir: Path | None = None, rebuild: bool = False) -> Family:
    """Train base, chat and cp in this process (or reuse them from the cache)."""
    for stage in ("base", "chat", "cp"):
        train_stage(config, stage, cache_dir, rebuild)
    return family_paths(config, cache_dir)
