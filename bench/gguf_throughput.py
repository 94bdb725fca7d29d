"""Generation throughput through llama.cpp against the hf backend and plain transformers.

    .venv/bin/python bench/gguf_throughput.py [--prompts 16] [--max-new-tokens 32] [--rounds 3] [--threads 2]

The home of the llama.cpp rows of the throughput benchmarks (``bench/eval_throughput.py`` times the
hf backend against plain batching and ``transformers serve`` on a word-level model llama.cpp
cannot read). On a random Llama (``--size small``: 384 wide, 6 layers, about 10 M parameters;
``--size medium``: 768 wide, 12 layers, about 77 M) with a byte-level BPE tokenizer
trained on a few mixed-language sentences, greedy, the same prompts (random 8-60 words, rendered
with the model's chat template) and ``--max-new-tokens`` for every row:

- **plain transformers**: ``model.generate`` over batches sorted by length (longest first, as
  lm-evaluation-harness orders them), of 8 and of 16 prompts: the strongest plain batching in
  ``bench/eval_throughput.py``;
- **hf backend**: chatvector's ``HFBackend`` (sorted batches packed by ``--batch-tokens``);
- **llama.cpp f32 / f16 / q8_0**: ``--serve llama.cpp`` on the model exported to each GGUF type (served by
  llama-cpp-python's server, one request at a time) at concurrency 1 and 8;
- **llama-server f32 / f16 / q8_0**: ``--serve llama-server`` (llama.cpp's own server, with as many
  parallel slots as requests in flight) at concurrency 1 and 8, when ``llama-server`` is on PATH.

The model's output head has zero rows for its stop tokens and for every token that is not whole
UTF-8 text (a lone byte of a multi-byte character), so that each reply runs to exactly
``--max-new-tokens`` tokens in every engine: a trained model does not end a reply inside a
character, a random one does, and llama-cpp-python's server then generates past ``max_tokens``
until its context is full (see ``docs/gguf.md``). So every row generates prompts ×
``--max-new-tokens`` tokens; how many of its replies equal the hf backend's is reported beside
it (a random model's logits are close together, so rounding that differs between engines flips
some greedy choices).

Rounds run every approach once each (servers stay up between rounds), so that load from other
processes weighs on all alike; the median of the rounds is reported. Every approach gets
``--threads`` CPU threads. The report (with the load average before and after) is printed and
written to ``bench/results/gguf-throughput-<date>.md`` with the raw numbers in a ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
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
SIZES = {"small": (384, 1024, 6, 6, 2), "medium": (768, 2048, 12, 12, 4)}
TYPES = ("f32", "f16", "q8_0")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of every approach")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--types", default=",".join(TYPES), help="GGUF types to serve (comma-separated)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/chatvector-gguf-throughput"))
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    return parser.parse_args()


# --- the model --------------------------------------------------------------------------------------


def build_model(folder: Path, size: str) -> Path:
    """A random Llama whose replies never stop early and never end inside a character (built once)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return folder
    # Llama-3's form, which llama.cpp reproduces ("llama-bpe"): its split, then bytes with no prefix space
    core = Tokenizer(models.BPE(ignore_merges=True))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(CORPUS * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    tokenizer.chat_template = TEMPLATE
    hidden, intermediate, layers, heads, kv_heads = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.lm_head.weight[never_picked(tokenizer)] = 0.0  # logit 0: below the best of the others
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def never_picked(tokenizer: Any) -> list[int]:
    """Special tokens (the stop ids among them) and tokens that are not whole UTF-8 text (they
    decode to U+FFFD, which the corpus does not hold)."""
    return sorted(
        index
        for token, index in tokenizer.get_vocab().items()
        if token in SPECIALS or "\ufffd" in tokenizer.decode([index])
    )


def prompts(count: int) -> list[str]:
    words = " ".join(CORPUS).split()
    rng = random.Random(0)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) for _ in range(count)]


# --- the approaches ---------------------------------------------------------------------------------


def plain_sorted(model_dir: Path, texts: list[str], args: argparse.Namespace, size: int) -> Callable[[], list[str]]:
    """``model.generate`` over batches of ``size`` prompts, longest first; replies put back in order."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
        for t in texts
    ]
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])

    def run() -> list[str]:
        replies = [""] * len(texts)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            batch = tokenizer([rendered[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False)
            width = batch["input_ids"].shape[1]
            with torch.inference_mode():
                out = model.generate(
                    **batch, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            for i, row in zip(rows, out[:, width:], strict=True):
                replies[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
        return replies

    return run


def served(stack: contextlib.ExitStack, path: Path, preset: str, args: argparse.Namespace) -> Any:
    """``--serve PRESET`` on a GGUF file, kept open on ``stack``."""
    from chatvector.eval.backends import open_backend
    from chatvector.eval.options import BackendOptions, GenerationOptions

    options = BackendOptions(serve=preset, threads=args.threads, concurrency=8)
    generation = GenerationOptions(max_new_tokens=args.max_new_tokens)
    return stack.enter_context(open_backend(str(path), options, generation, log_dir=args.work / "logs" / preset))


def timed(run: Callable[[], list[str]]) -> tuple[float, list[str]]:
    began = time.perf_counter()
    replies = run()
    return time.perf_counter() - began, replies


def at(backend: Any, concurrency: int, conversations: list[Any]) -> Callable[[], list[str]]:
    def run() -> list[str]:
        backend.concurrency = concurrency
        return backend.generate(conversations)

    return run


# --- the report -------------------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    args, hf = data["args"], data["rows"]["hf backend"]
    tokens = args["prompts"] * args["max_new_tokens"]
    hf_rate = tokens / statistics.median(hf["seconds"])
    lines = [
        f"# Generation throughput through llama.cpp ({data['date']})",
        "",
        f"{data['cpu']}, {data['cores']} cores; {args['threads']} thread(s) per approach; load average "
        f"(1 min) {data['load_before'][0]:.1f} before, {data['load_after'][0]:.1f} after (other processes share "
        f"the cores). Random Llama `--size {args['size']}` ({data['parameters'] / 1e6:.1f} M parameters), "
        f"{args['prompts']} prompts × {args['max_new_tokens']} new tokens = {tokens} generated tokens per row, "
        f"greedy; median of {args['rounds']} rounds.",
        "",
        "| approach | concurrency | median s | generated tokens/s | × hf backend | same replies as hf |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in data["rows"].items():
        median = statistics.median(row["seconds"])
        lines.append(
            f"| {name} | {row['concurrency'] or '-'} | {median:.2f} | {tokens / median:.0f} | "
            f"{tokens / median / hf_rate:.2f} | {row['same']}/{args['prompts']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    from chatvector.eval.backends import HFBackend
    from chatvector.eval.options import BackendOptions, GenerationOptions
    from chatvector.io.gguf_export import export_gguf

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.work / f"model-{args.size}", args.size)
    texts = prompts(args.prompts)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        "",
    )
    data: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "args": {**vars(args), "work": str(args.work), "results": str(args.results)},
    }
    hf = HFBackend(
        model_dir,
        GenerationOptions(max_new_tokens=args.max_new_tokens),
        BackendOptions(device="cpu", dtype="float32", threads=args.threads),
    )
    data["parameters"] = sum(p.numel() for p in hf.model.parameters())
    approaches: dict[str, tuple[int | None, Callable[[], list[str]]]] = {
        "plain transformers, sorted batches of 8": (None, plain_sorted(model_dir, texts, args, 8)),
        "plain transformers, sorted batches of 16": (None, plain_sorted(model_dir, texts, args, 16)),
        "hf backend": (None, lambda: hf.generate(conversations)),
    }
    presets = ["llama.cpp"] + (["llama-server"] if shutil.which("llama-server") else [])
    if len(presets) == 1:
        print("llama-server is not on PATH: its rows are left out", flush=True)
    with contextlib.ExitStack() as stack:
        for kind in args.types.split(","):
            path = args.work / f"model-{args.size}-{kind}.gguf"
            if not path.exists():
                export_gguf(model_dir, path, gguf_type=kind)
            for preset in presets:
                print(f"starting {preset} {kind}", flush=True)
                backend = served(stack, path, preset, args)
                for concurrency in (1, 8):
                    approaches[f"{preset} {kind}, concurrency {concurrency}"] = (
                        concurrency,
                        at(backend, concurrency, conversations),
                    )
        seconds: dict[str, list[float]] = {name: [] for name in approaches}
        replies: dict[str, list[str]] = {}
        for number in range(args.rounds):
            for name, (_, run) in approaches.items():
                spent, replies[name] = timed(run)
                seconds[name].append(spent)
            print(f"round {number + 1}: " + ", ".join(f"{n} {s[-1]:.2f}" for n, s in seconds.items()), flush=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reference = [r.strip() for r in replies["hf backend"]]
    data["rows"] = {
        name: {
            "concurrency": concurrency,
            "seconds": seconds[name],
            "same": sum(r.strip() == ref for r, ref in zip(replies[name], reference, strict=True)),
            "retokenized_tokens": sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies[name]),
        }
        for name, (concurrency, _) in approaches.items()
    }
    data["load_after"] = os.getloadavg()
    text = report(data)
    print("\n" + text)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"gguf-throughput-{args.size}-{data['date']}"
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
