"""Train the tiny model family on the CPU with plain torch loops.

``base`` is pre-trained from scratch; ``chat`` fine-tunes ``base`` on chat transcripts (loss on
the assistant's tokens only); ``cp`` continues pre-training ``base`` on Chinese documents. Both
start from the same base weights, which is what makes ``chat − base`` meaningful for ``cp``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from chatvector.demo.corpus import Message
from chatvector.demo.tokenizer import ASSISTANT, DOCUMENT_END

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class ModelShape:
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    ffn: int = 336
    seq_len: int = 64


CONTEXT = 512


def new_model(shape: ModelShape, vocab_size: int, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        # RoPE has no position weights, so a longer context costs nothing; it leaves room for
        # eval's built-in prompts, which the demo's vocabulary spells mostly in bytes
        max_position_embeddings=max(CONTEXT, shape.seq_len * 2),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def document_batches(
    tokenizer: PreTrainedTokenizerFast, documents: list[str], shape: ModelShape, batch_size: int, seed: int
) -> Callable[[], dict[str, torch.Tensor]]:
    """Random windows of ``seq_len`` tokens from all documents joined by ``</s>``."""
    stream: list[int] = []
    separator = tokenizer.convert_tokens_to_ids(DOCUMENT_END)
    for document in documents:
        stream += tokenizer(document, add_special_tokens=False).input_ids + [separator]
    tokens = torch.tensor(stream)
    rng = random.Random(seed)

    def batch() -> dict[str, torch.Tensor]:
        starts = [rng.randrange(0, len(tokens) - shape.seq_len) for _ in range(batch_size)]
        ids = torch.stack([tokens[s : s + shape.seq_len] for s in starts])
        return {"input_ids": ids, "labels": ids.clone()}

    return batch


def encode_chat(
    tokenizer: PreTrainedTokenizerFast, messages: list[Message], seq_len: int
) -> tuple[list[int], list[int]]:
    """Token ids of a transcript and labels that train only the assistant's replies."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids[:seq_len]
    assistant, end = tokenizer.convert_tokens_to_ids(ASSISTANT), tokenizer.eos_token_id
    labels, inside = [], False
    for token in ids:
        labels.append(token if inside else IGNORE)
        if token == assistant:
            inside = True
        elif token == end:
            inside = False
    return ids, labels


def chat_batches(
    tokenizer: PreTrainedTokenizerFast,
    transcripts: list[list[Message]],
    shape: ModelShape,
    batch_size: int,
    seed: int,
) -> Callable[[], dict[str, torch.Tensor]]:
    encoded = [encode_chat(tokenizer, t, shape.seq_len) for t in transcripts]
    rng = random.Random(seed)
    pad = tokenizer.pad_token_id

    def batch() -> dict[str, torch.Tensor]:
        chosen = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        width = max(len(ids) for ids, _ in chosen)
        ids = torch.full((batch_size, width), pad)
        labels = torch.full((batch_size, width), IGNORE)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, (tokens, target) in enumerate(chosen):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            labels[row, : len(target)] = torch.tensor(target)
            mask[row, : len(tokens)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return batch


def train(
    model: LlamaForCausalLM,
    next_batch: Callable[[], dict[str, torch.Tensor]],
    steps: int,
    lr: float,
    label: str,
    log_every: int = 100,
    token_rows: list[int] | None = None,
    replay: Callable[[], dict[str, torch.Tensor]] | None = None,
    block_lr_scale: float = 1.0,
) -> float:
    """AdamW with linear warm-up and cosine decay; returns the final smoothed loss.

    With ``token_rows``, only those rows of the input embeddings and output head are trained
    (the other words' rows stay as they were; the transformer blocks train in full). With
    ``replay``, each step also takes the language-model loss on one of its batches. The
    transformer blocks learn at ``block_lr_scale`` times the embeddings' rate.
    """
    rows = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    blocks = [p for p in model.parameters() if all(p is not q for q in rows)]
    if token_rows is not None:
        mask = torch.zeros(model.config.vocab_size, 1)
        mask[token_rows] = 1.0
        for weight in rows:
            weight.register_hook(lambda grad: grad * mask)
    groups = [
        # Untrained rows must not decay either, so the embedding tables skip weight decay when masked.
        {"params": rows, "weight_decay": 0.0 if token_rows is not None else 0.01, "lr": lr},
        {"params": blocks, "weight_decay": 0.01, "lr": lr * block_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    smoothed, started = float("nan"), time.perf_counter()
    for step in range(steps):
        batch = next_batch()
        loss = model(**batch).loss
        if replay is not None:
            # Pre-training text mixed into fine-tuning, so the fine-tune keeps what base knew.
            loss = loss + model(**replay()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        smoothed = value if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * value
        if (step + 1) % log_every == 0 and step + 1 < steps:
            log.info(
                "%s: step %d/%d, loss %.3f, %.0f s", label, step + 1, steps, smoothed, time.perf_counter() - started
            )
    model.eval()
    log.info("%s: %d steps in %.0f s, loss %.3f", label, steps, time.perf_counter() - started, smoothed)
    return smoothed
