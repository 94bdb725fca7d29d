"""Build (or reuse from a cache) the demo's base, chat and cp models.

The cache key is a hash of the whole configuration and the seed, so a changed setting never
reuses a stale family. A family is written to a staging directory and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerFast

from chatvector.demo import corpus
from chatvector.demo.tokenizer import END, build_tokenizer
from chatvector.demo.train import ModelShape, chat_batches, document_batches, new_model, train
from chatvector.demo.world import World, make_world

log = logging.getLogger(__name__)

FAMILY_FORMAT = 2  # bump when training code changes in a way that changes the models


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines the demo family. Defaults: the full demo (~5 min to train)."""

    seed: int = 0
    shape: ModelShape = field(default_factory=ModelShape)
    batch_size: int = 32
    base_documents: int = 4000
    base_zh_share: float = 0.03  # a trace of Chinese in pre-training
    base_parallel_share: float = 0.05  # parallel English/Chinese sentences
    cp_documents: int = 3000
    cp_qa_share: float = 0.3  # cp documents shaped as 問：…答：…
    chat_transcripts: int = 2000
    base_steps: int = 800
    base_lr: float = 3e-3
    chat_steps: int = 200
    chat_lr: float = 5e-4
    cp_steps: int = 400
    cp_lr: float = 1e-3

    def key(self) -> str:
        text = json.dumps({"format": FAMILY_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


QUICK = DemoConfig(
    base_documents=2000, cp_documents=1500, chat_transcripts=1000, base_steps=250, chat_steps=80, cp_steps=150
)


@dataclass(frozen=True)
class Family:
    root: Path
    base: Path
    chat: Path
    cp: Path
    world: World


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHATVECTOR_CACHE", Path.home() / ".cache" / "chatvector")) / "demo"


def _texts(world: World, rng: random.Random, config: DemoConfig) -> dict[str, object]:
    return {
        "base": corpus.base_documents(
            world, rng, config.base_documents, config.base_zh_share, config.base_parallel_share
        ),
        "cp": corpus.chinese_documents(world, rng, config.cp_documents, config.cp_qa_share),
        "chat": corpus.chat_transcripts(world, rng, config.chat_transcripts),
    }


def _tokenizer(world: World, texts: dict[str, object]) -> PreTrainedTokenizerFast:
    every = list(texts["base"]) + list(texts["cp"])  # type: ignore[arg-type]
    every += [m["content"] for t in texts["chat"] for m in t]  # type: ignore[attr-defined]
    every += [m["content"] for i in corpus.eval_items(world) for m in i.messages]
    every += [e for pair in corpus.parallel_pairs(world) for e in pair]
    return build_tokenizer(every, [p.zh for p in world.people])


def _save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    end = tokenizer.convert_tokens_to_ids(END)
    GenerationConfig(
        eos_token_id=end, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    ).save_pretrained(folder)


def build_family(
    config: DemoConfig,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    report: Callable[[str, int, int, float], None] | None = None,
) -> Family:
    """Train base, chat and cp (or load them from the cache) and return their directories."""
    world = make_world(config.seed)
    root = (cache_dir or default_cache_dir()) / config.key()
    family = Family(root, root / "base", root / "chat", root / "cp", world)
    if root.exists() and not rebuild and (root / "complete").exists():
        log.info("reusing the demo family cached in %s", root)
        return family
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    texts = _texts(world, rng, config)
    tokenizer = _tokenizer(world, texts)
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shape, size = config.shape, config.batch_size
    base = new_model(shape, len(tokenizer), tokenizer, config.seed)
    train(
        base,
        document_batches(tokenizer, texts["base"], shape, size, config.seed),  # type: ignore[arg-type]
        config.base_steps,
        config.base_lr,
        "base",
        report,
    )
    _save(base, tokenizer, staging / "base")
    chat = new_model(shape, len(tokenizer), tokenizer, config.seed)
    chat.load_state_dict(base.state_dict())
    train(
        chat,
        chat_batches(tokenizer, texts["chat"], shape, size, config.seed + 1),  # type: ignore[arg-type]
        config.chat_steps,
        config.chat_lr,
        "chat",
        report,
    )
    _save(chat, tokenizer, staging / "chat")
    cp = base  # continue pre-training the base weights in place; base is saved already
    train(
        cp,
        document_batches(tokenizer, texts["cp"], shape, size, config.seed + 2),  # type: ignore[arg-type]
        config.cp_steps,
        config.cp_lr,
        "cp",
        report,
    )
    _save(cp, tokenizer, staging / "cp")
    (staging / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    (staging / "complete").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    os.rename(staging, root)
    return family
