"""Score a demo model on the held-out Traditional Chinese prompts, with rules that fit the world.

Per reply: did it use the chat format and stop (emit the end-of-turn token, non-empty), is it in
Traditional Chinese, is it English, and, by kind of prompt, is the fact right, was the harmful
request refused, was the word repeated exactly as asked, was the name from turn one recalled.
The rules are the eval suite ``demo``'s (:func:`chatvector.eval.suites.demo.reply_verdicts`), so
``chatvector eval --suite demo`` on the prompts :mod:`chatvector.demo.prompts` writes gives the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from chatvector.demo.corpus import EvalItem
from chatvector.eval.suites.demo import METRICS, reply_verdicts

__all__ = ["METRICS", "Reply", "generate", "score"]


@dataclass(frozen=True)
class Reply:
    item: EvalItem
    text: str
    stopped: bool


def generate(model_dir: Path, items: list[EvalItem], max_new_tokens: int = 24, batch_size: int = 32) -> list[Reply]:
    """Greedy replies to every item, batched with left padding, stopping at the end-of-turn."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    end_id = tokenizer.eos_token_id
    replies: list[Reply] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(list(i.messages), add_generation_prompt=True, tokenize=False) for i in chunk
        ]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=end_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        for item, row in zip(chunk, output[:, batch["input_ids"].shape[1] :], strict=True):
            ids = row.tolist()
            stopped = end_id in ids
            ids = ids[: ids.index(end_id)] if stopped else ids
            text = str(tokenizer.decode(ids, skip_special_tokens=True)).strip()
            replies.append(Reply(item, text, stopped))
    return replies


def score(replies: list[Reply]) -> dict[str, float]:
    """Share of replies meeting each criterion in :data:`METRICS` (each in [0, 1]), over the replies
    each criterion applies to (:func:`~chatvector.eval.suites.demo.reply_verdicts`)."""
    sums: dict[str, list[bool]] = {name: [] for name in METRICS}
    for reply in replies:
        for name, met in reply_verdicts(reply.item.kind, reply.item.expected, reply.text, reply.stopped).items():
            sums[name].append(met)
    return {name: (sum(v) / len(v) if v else 0.0) for name, v in sums.items()}
