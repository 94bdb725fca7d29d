"""Generation throughput through llama.cpp against the hf backend and plain transformers.

    .venv/bin/python bench/gguf_throughput.py [--prompts 16] [--max-new-tokens 32] [--threads 2]

On a random Llama of the shape bench/eval_throughput.py uses (about 16 M parameters: 384 wide,
6 layers; here with a byte-level BPE tokenizer trained on a few sentences, since llama.cpp cannot
read a word-level one), greedy, replies run to ``--max-new-tokens``:

- **plain transformers**: ``model.generate`` over batches of 8 prompts, in the given order;
- **hf backend**: chatvector's ``HFBackend`` (sorted, packed batches);
- **llama.cpp f32 / f16 / q8_0**: ``chatvector export gguf`` of the model, served by
  llama-cpp-python's OpenAI-compatible server (the ``--serve`` lifecycle, as ``--serve llama.cpp``
  does it) and evaluated through the openai backend at concurrency 1 and 8.

Generated tokens are counted with the model's tokenizer; every row uses ``--threads`` CPU threads.
The report is printed and written to ``bench/results/gguf-throughput-<date>.md`` (with ``.json``).
The machine is shared: the load average before and after is part of the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }} <|end|> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "hello world, the cat sat on the mat. what is your name? please tell me about the city.",
    "台北是台灣的首都，高雄在南部。你好，謝謝你的幫忙。我喜歡看書。",
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 좋네요. こんにちは、元気ですか。",
]
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build_model(folder: Path) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return folder
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"), pre_tokenizers.ByteLevel(use_regex=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(CORPUS * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompts(count: int) -> list[str]:
    words = " ".join(CORPUS).split()
    rng = random.Random(0)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) for _ in range(count)]


def count(tokenizer: Any, replies: list[str]) -> int:
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)


def plain(model_dir: Path, texts: list[str], args: argparse.Namespace) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    began, tokens = time.perf_counter(), 0
    for start in range(0, len(texts), 8):
        batch = [
            tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
            for t in texts[start : start + 8]
        ]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **encoded, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=False
            )
        tokens += int(out[:, encoded["input_ids"].shape[1] :].numel())
    return {"tokens": tokens, "seconds": time.perf_counter() - began}


def backend_rows(model: str, options: Any, texts: list[str], tokenizer: Any, args: argparse.Namespace) -> dict:
    from chatvector.eval.backends import open_backend
    from chatvector.eval.options import GenerationOptions

    conversations = [[{"role": "user", "content": t}] for t in texts]
    rows: dict[str, Any] = {}
    started = time.perf_counter()
    with open_backend(model, options, GenerationOptions(max_new_tokens=args.max_new_tokens)) as backend:
        rows["start_seconds"] = time.perf_counter() - started
        for concurrency in (1, 8) if options.serve else (None,):
            if concurrency is not None:
                backend.concurrency = concurrency  # type: ignore[attr-defined]
            began = time.perf_counter()
            replies = backend.generate(conversations)
            rows[f"concurrency {concurrency}" if concurrency else "run"] = {
                "tokens": count(tokenizer, replies),
                "seconds": time.perf_counter() - began,
            }
            print(f"  {options.serve or 'hf'} {concurrency}: {rows}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/chatvector-gguf-throughput"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    from chatvector.eval.options import BackendOptions
    from chatvector.io.gguf_export import export_gguf

    torch.set_num_threads(args.threads)
    model_dir = build_model(args.work / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = prompts(args.prompts)
    data: dict[str, Any] = {"date": dt.date.today().isoformat(), "load_before": os.getloadavg()}
    data["args"] = {**vars(args), "work": str(args.work)}
    print("plain transformers", flush=True)
    data["plain transformers"] = plain(model_dir, texts, args)
    print("hf backend", flush=True)
    hf = BackendOptions(device="cpu", dtype="float32", threads=args.threads)
    data["hf backend"] = backend_rows(str(model_dir), hf, texts, tokenizer, args)
    for kind in ("f32", "f16", "q8_0"):
        path = args.work / f"model-{kind}.gguf"
        if not path.exists():
            export_gguf(model_dir, path, gguf_type=kind)
        command = (
            f"{sys.executable} -m llama_cpp.server --model {{model}} --host 127.0.0.1 --port {{port}} "
            f"--n_threads {args.threads}"
        )
        options = BackendOptions(serve=command, serve_timeout=300)
        print(f"llama.cpp {kind}", flush=True)
        data[f"llama.cpp {kind}"] = backend_rows(str(path), options, texts, tokenizer, args)
    data["load_after"] = os.getloadavg()
    lines = [
        f"# Generation throughput, {args.prompts} prompts × {args.max_new_tokens} new tokens, {args.threads} threads",
        "",
        f"Shared 2-core machine; load average before {data['load_before'][0]:.1f}, after {data['load_after'][0]:.1f}.",
        "",
        "| approach | concurrency | tokens | seconds | tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in data.items():
        if not isinstance(entry, dict) or name == "args":
            continue
        runs = {k: v for k, v in entry.items() if isinstance(v, dict)} or {"batch 8": entry}
        for label, run in runs.items():
            lines.append(
                f"| {name} | {label.replace('concurrency ', '')} | {run['tokens']} | {run['seconds']:.1f} | "
                f"{run['tokens'] / run['seconds']:.1f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    stem = BENCH / "results" / f"gguf-throughput-{data['date']}"
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
