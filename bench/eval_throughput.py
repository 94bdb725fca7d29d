"""Evaluation throughput: chatvector's generation against plain transformers batching, the OpenAI
backend against a real server, and where a sweep's time goes.

    .venv/bin/python bench/eval_throughput.py            # about 6-9 minutes on 2 busy cores
    .venv/bin/python bench/eval_throughput.py --quick    # fewer prompts and rounds: about 2 minutes

Three measurements, on a random Llama (about 16 M parameters, built here; replies run to
``--max-new-tokens`` since a random model rarely says its stop token) and random prompts of 8-160
words, each rendered with the model's chat template:

1. **hf backend vs plain batching.** Generated tokens per second of ``HFBackend.generate`` (prompts
   sorted by length, packed by ``--batch-tokens``) against a plain loop of ``model.generate`` over
   fixed batches in the given order (sizes 8, 16, 32 and all prompts at once), on the same loaded
   model, greedy, with ``--threads`` torch threads (default 1). Run in rounds (each approach once per
   round) so that load from other processes weighs on all alike; each approach's median is
   reported, and the best plain batching is the bar: in file order (8, 16, 32, all) and sorted by
   length in batches of 16 and 22, as lm-evaluation-harness does. ``--budgets`` adds chatvector rows
   packed by other ``--batch-tokens`` budgets.
   Replies are compared too: batching must not change a greedy reply.
2. **OpenAI backend against ``transformers serve``** (started by chatvector's ``--serve`` lifecycle)
   at concurrency 1 and 8: generated tokens (counted with the model's tokenizer) per second.
3. **A sweep's time per ratio**, split into merge, load (or server start), generation, scoring and
   stop, from ``sweep.json`` (``rows[].seconds``), for the hf backend and for ``--serve transformers``.

The llama.cpp backends (``--serve llama.cpp`` / ``llama-server``, GGUF f32, f16 and q8_0) are timed
by ``bench/gguf_throughput.py``: llama.cpp cannot read this model's word-level tokenizer.

The report is printed and written to ``bench/results/eval-throughput-<date>.md`` with the raw
numbers in a ``.json`` beside it. It says which machine it ran on and the load average before and
after, since other processes share the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = [f"w{i}" for i in range(3000)]
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }} <|end|> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts and rounds")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every local approach (default 1: on a small machine shared with "
        "other processes, 2 threads made the timings swing tenfold; 0 = torch's default)",
    )
    parser.add_argument("--served-prompts", type=int, default=24)
    parser.add_argument(
        "--budgets",
        type=lambda text: [int(v) for v in text.split(",") if v],
        default=[],
        help="further --batch-tokens budgets to time beside the default (comma-separated)",
    )
    parser.add_argument("--local-only", action="store_true", help="only the hf backend against plain batching")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chatvector-eval-bench")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.rounds, args.served_prompts, args.max_new_tokens = 24, 2, 8, 24
    return args


# --- the model --------------------------------------------------------------------------------------


def build_model(folder: Path, seed: int, perturb: int | None = None) -> Path:
    """A random Llama with a word-level tokenizer and a chat template (built once, then reused)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return folder
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
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
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if perturb is not None:
        generator = torch.Generator().manual_seed(perturb)
        with torch.no_grad():
            for _, param in sorted(model.named_parameters()):
                param.add_(torch.randn(param.shape, generator=generator) * 0.01)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|end|>"), 3], bos_token_id=2, pad_token_id=1
    ).save_pretrained(folder)
    return folder


def prompts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 160))) for _ in range(count)]


# --- 1. hf backend against plain batching ---------------------------------------------------------------


def plain_loop(backend: Any, texts: list[str], size: int, *, by_length: bool = False) -> list[str]:
    """What one would write with transformers alone: fixed batches of ``size`` in the given order, or
    (``by_length``) longest prompt first as lm-evaluation-harness orders them, replies put back."""
    import torch

    tokenizer, model = backend.tokenizer, backend.model
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
        for t in texts
    ]
    order = list(range(len(rendered)))
    if by_length:
        lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered]
        order.sort(key=lambda i: -lengths[i])
    replies = [""] * len(rendered)
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        batch = tokenizer([rendered[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False)
        width = batch["input_ids"].shape[1]
        with torch.inference_mode():
            output = model.generate(**batch, **backend._generate_kwargs(width))
        for i, row in zip(rows, output[:, width:], strict=True):
            replies[i] = backend._decode(row.tolist())
    return replies


def generated_tokens(backend: Any, replies: list[str]) -> int:
    return sum(len(backend.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)


def local_rounds(model_dir: Path, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from chatvector.eval.backends import HFBackend
    from chatvector.eval.batching import plan_batches
    from chatvector.eval.options import BackendOptions, GenerationOptions

    threads = BackendOptions(threads=args.threads or None)
    backend = HFBackend(model_dir, GenerationOptions(max_new_tokens=args.max_new_tokens), threads)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    approaches = {f"plain batches of {n}": (lambda n=n: plain_loop(backend, texts, n)) for n in (8, 16, 32)}
    approaches[f"plain, all {len(texts)} at once"] = lambda: plain_loop(backend, texts, len(texts))
    for n in (16, 22):
        approaches[f"plain, sorted by length, batches of {n}"] = lambda n=n: plain_loop(
            backend, texts, n, by_length=True
        )
    approaches["chatvector hf backend"] = lambda: backend.generate(conversations)
    unlimited = HFBackend(
        model_dir,
        GenerationOptions(max_new_tokens=args.max_new_tokens),
        threads.model_copy(update={"batch_rows": 10**6}),
    )
    approaches["chatvector hf backend, no row limit (the default before)"] = lambda: unlimited.generate(conversations)
    for budget in args.budgets:
        other = HFBackend(
            model_dir,
            GenerationOptions(max_new_tokens=args.max_new_tokens),
            threads.model_copy(update={"batch_tokens": budget}),
        )
        approaches[f"chatvector hf backend, batch_tokens {budget}"] = lambda other=other: other.generate(conversations)
    seconds: dict[str, list[float]] = {name: [] for name in approaches}
    cpu: dict[str, list[float]] = {name: [] for name in approaches}
    replies: dict[str, list[str]] = {}
    for number in range(args.rounds):
        for name, run in approaches.items():
            started, used = time.perf_counter(), time.process_time()
            replies[name] = run()
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - used)  # this process's CPU: less swayed by others' load
        print(f"  round {number + 1}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()), flush=True)
    tokens = generated_tokens(backend, replies["chatvector hf backend"])
    same = {name: replies[name] == replies["chatvector hf backend"] for name in approaches}
    batches = {
        name: len(
            plan_batches(
                [len(b.prompt_ids(c)) for c in conversations], args.max_new_tokens, b.batch_tokens, b.batch_rows
            )
        )
        for name, b in (("default", backend),)
    }
    return {
        "tokens": tokens,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "same_replies": same,
        "parameters": sum(p.numel() for p in backend.model.parameters()),
        "threads": backend.describe()["threads"],
        "batch_tokens": backend.batch_tokens,
        "batch_rows": backend.batch_rows,
        "batches": batches,
    }


# --- 2. the OpenAI backend against transformers serve ------------------------------------------------


def served(model_dir: Path, texts: list[str], args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from chatvector.eval.backends import open_backend
    from chatvector.eval.options import BackendOptions, GenerationOptions

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    results: dict[str, Any] = {}
    started = time.perf_counter()
    options = BackendOptions(serve="transformers", device="cpu", dtype="float32")
    with open_backend(
        str(model_dir), options, GenerationOptions(max_new_tokens=args.max_new_tokens), log_dir=log_dir
    ) as backend:
        results["start_seconds"] = time.perf_counter() - started
        for concurrency in (1, 8):
            backend.concurrency = concurrency  # type: ignore[attr-defined]
            began = time.perf_counter()
            replies = backend.generate(conversations)
            spent = time.perf_counter() - began
            tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)
            results[f"concurrency {concurrency}"] = {"tokens": tokens, "seconds": spent}
            print(f"  served, concurrency {concurrency}: {tokens} tokens in {spent:.1f} s", flush=True)
    return results


# --- 3. a sweep's time per ratio ---------------------------------------------------------------------


def sweep_split(trio: dict[str, Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions
    from chatvector.sweep.run import SweepSpec, run_sweep

    data = DataOptions(lang="en", suite=("verifiable", "safety", "multiturn"), limit=8 if args.quick else 16)
    splits = {}
    for label, backend in (
        ("hf", BackendOptions()),
        ("serve transformers", BackendOptions(serve="transformers", dtype="float32")),
    ):
        out = work / f"sweep-{label.replace(' ', '-')}"
        spec = SweepSpec(
            out=out,
            ratios=(0.5, 1.0),
            base=str(trio["base"]),
            chat=str(trio["chat"]),
            target=str(trio["cp"]),
            data=data,
            backend=backend,
            generation=GenerationOptions(max_new_tokens=args.max_new_tokens),
            threshold=0.0,
        )
        began = time.perf_counter()
        summary = run_sweep(spec)
        splits[label] = {
            "total": time.perf_counter() - began,
            "rows": {f"{r['ratio']:g}": r["seconds"] for r in summary["rows"]},
        }
        print(f"  sweep with {label}: {splits[label]['total']:.1f} s", flush=True)
    return splits


# --- the report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def _local_lines(data: dict[str, Any]) -> list[str]:
    local = data["local"]
    median = {name: statistics.median(s) for name, s in local["seconds"].items()}
    rate = {name: local["tokens"] / s for name, s in median.items()}
    best_plain = max((r, n) for n, r in rate.items() if n.startswith("plain"))
    ours = rate["chatvector hf backend"]
    m = data["machine"]
    rounds = len(local["seconds"]["chatvector hf backend"])
    lines = [
        f"# Evaluation throughput ({data['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({local['threads']} thread(s)), "
        f"transformers {m['transformers']}; load average {m['load_average'][0]:.2f} before and "
        f"{data['load_after'][0]:.2f} after (other processes share these cores). Model: random Llama, "
        f"{local['parameters'] / 1e6:.1f} M parameters, float32 on the CPU; {data['prompts']} prompts of 8-160 "
        f"words; {data['max_new_tokens']} new tokens each, greedy; median of {rounds} rounds.",
        "",
        "## hf backend against plain `model.generate` batching",
        "",
        "| approach | median s | generated tokens/s | × best plain | median CPU s | × best plain (CPU) "
        "| same replies |",
        "|---|---|---|---|---|---|---|",
    ]
    cpu = {name: statistics.median(s) for name, s in local.get("cpu_seconds", local["seconds"]).items()}
    best_cpu = min(c for n, c in cpu.items() if n.startswith("plain"))
    for name in local["seconds"]:
        lines.append(
            f"| {name} | {median[name]:.2f} | {rate[name]:.0f} | {rate[name] / best_plain[0]:.2f} | "
            f"{cpu[name]:.2f} | {best_cpu / cpu[name]:.2f} | {'yes' if local['same_replies'][name] else 'NO'} |"
        )
    lines += [
        "",
        f"chatvector's backend (batch_tokens {local['batch_tokens']}, batch_rows {local.get('batch_rows')}: "
        f"{local['batches']['default']} batch(es), sorted by length) makes {ours / best_plain[0]:.2f}× the "
        f"tokens/s of the best plain batching ({best_plain[1]}); goal ≥ 1.0.",
        "",
    ]
    return lines


def report_local(data: dict[str, Any]) -> str:
    return "\n".join(_local_lines(data)) + "\n"


def report(data: dict[str, Any]) -> str:
    lines = _local_lines(data)
    if "served" in data:
        served_data = data["served"]
        lines += [
            "## OpenAI backend against `transformers serve` (started by `--serve transformers`)",
            "",
            f"Server start until `GET /v1/models` answered: {served_data['start_seconds']:.1f} s; "
            f"{data['served_prompts']} prompts.",
            "",
            "| concurrency | generated tokens | seconds | tokens/s |",
            "|---|---|---|---|",
        ]
        for concurrency in (1, 8):
            entry = served_data[f"concurrency {concurrency}"]
            lines.append(
                f"| {concurrency} | {entry['tokens']} | {entry['seconds']:.1f} | "
                f"{entry['tokens'] / entry['seconds']:.0f} |"
            )
        lines.append("")
    if "sweep" in data:
        lines += [
            "## A sweep's time per ratio (seconds)",
            "",
            "| backend | ratio | merge | load / server start | generation | scoring | stop |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, split in data["sweep"].items():
            for ratio, s in split["rows"].items():
                lines.append(
                    f"| {label} | {ratio} | {s['merge']:.2f} | {s['load']:.2f} | {s['generation']:.2f} | "
                    f"{s['scoring']:.2f} | {s['stop']:.2f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    args = parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    args.work.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "served_prompts": args.served_prompts,
    }
    started = time.perf_counter()
    print("building the models", flush=True)
    trio = {
        "base": build_model(args.work / "base", 0),
        "chat": build_model(args.work / "chat", 0, perturb=1),
        "cp": build_model(args.work / "cp", 0, perturb=2),
    }
    texts = prompts(args.prompts)
    print("1. hf backend against plain batching", flush=True)
    data["local"] = local_rounds(trio["chat"], texts, args)
    if args.local_only:
        data["load_after"] = os.getloadavg()
        print("\n" + report_local(data))
        return
    print("2. OpenAI backend against transformers serve", flush=True)
    data["served"] = served(trio["chat"], texts[: args.served_prompts], args, args.work / "serve")
    print("3. a sweep's time per ratio", flush=True)
    data["sweep"] = sweep_split(trio, args.work / f"sweeps-{time.time_ns()}", args)
    data["load_after"] = os.getloadavg()
    data["total_seconds"] = time.perf_counter() - started
    text = report(data) + f"\nWhole benchmark: {data['total_seconds'] / 60:.1f} minutes.\n"
    print("\n" + text)
    if not args.quick:
        args.results.mkdir(parents=True, exist_ok=True)
        stem = args.results / f"eval-throughput-{data['date']}"
        stem.with_suffix(".md").write_text(text, encoding="utf-8")
        stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    sys.exit(main())
