"""The naive merge many people write: load three whole models with transformers and add in bf16.

Usage: ``python naive.py BASE CHAT TARGET RATIO OUT_DIR``

Parameters are paired by name (not by position), updated in place in the model's own dtype
(bfloat16), and the model is saved with ``save_pretrained``. This holds all three models in
memory at once and rounds twice (the difference, then the sum), which the benchmark's error
columns show.
"""

from __future__ import annotations

import sys

import torch
from transformers import AutoModelForCausalLM


def load(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)


def main() -> None:
    base_dir, chat_dir, target_dir, ratio_text, out_dir = sys.argv[1:]
    torch.set_num_threads(1)
    ratio = float(ratio_text)
    base, chat, target = load(base_dir), load(chat_dir), load(target_dir)
    base_params, chat_params = dict(base.named_parameters()), dict(chat.named_parameters())
    with torch.no_grad():
        for name, param in target.named_parameters():
            param.add_(chat_params[name] - base_params[name], alpha=ratio)
    target.save_pretrained(out_dir, max_shard_size="1GB")


if __name__ == "__main__":
    main()
