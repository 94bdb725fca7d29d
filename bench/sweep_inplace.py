"""A sweep's overhead per ratio: merge and load (today's path) against an in-place update.

    .venv/bin/python bench/sweep_inplace.py              # both models, 8 ratios, 3 runs
    .venv/bin/python bench/sweep_inplace.py --smoke      # a tiny model, 2 ratios, 1 run (seconds)

For each model, each of the 8 ratios (0.25 to 2.0) is evaluated the two ways a sweep can:

- **disk** (``sweep --no-in-place``): ``chatvector.merge`` of the ratio into RAM (``/dev/shm``, as
  a sweep of a small model does), then a fresh :class:`HFBackend` load of it;
- **in place** (``sweep --in-place``): ``HFBackend.merge_in_place`` on one backend loaded once
  (that one merge and load is reported apart, as the set-up). Its first update also reads the
  inputs into memory where they fit (:mod:`chatvector.merge.resident`); it is reported apart too,
  and counted in its ratio's runs like any other.

The overhead of a ratio is everything except generation: the merge and the load, or the in-place
update. A few greedy replies are then generated on each path and must be identical (they are not
timed). The 8 ratios are run 3 times in one go (disk and in place alternating per ratio, so load
from other processes weighs on both alike); each ratio's median of the 3 is reported, with the
median over ratios and the ratio of the two. The models:

- ``0.5b``: a random Llama of about 0.48 B parameters (hidden 1024, 32 layers, FFN 2816, vocabulary
  32000), base, chat and cp stored in bfloat16 (chat and cp are the base plus small random
  deltas), with the demo's tokenizer and chat template (ids past its vocabulary are never made);
- ``demo``: the demo family's shape (4 layers, hidden 128, float32) and tokenizer, untrained
  (training the real family takes minutes; the merge and load do not depend on the values).

Models are built once under ``bench/data/sweep_inplace/``. The report is written to
``bench/results/<date>-sweep-inplace.md`` with the raw numbers beside it in ``.json``; it records
the machine and its load average before and after, since other processes share the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "sweep_inplace"
RATIOS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
PROMPTS = ["Who is Anna?", "Tell me about the river.", "What is the colour of the sky?"]
MODELS: dict[str, dict[str, Any]] = {
    "0.5b": {"hidden": 1024, "layers": 32, "heads": 16, "ffn": 2816, "vocab": 32000, "dtype": "bfloat16"},
    "demo": {"hidden": 128, "layers": 4, "heads": 4, "ffn": 336, "vocab": None, "dtype": "float32"},
    "smoke": {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128, "vocab": None, "dtype": "bfloat16"},
}
DELTA_STD = {"chat": 0.002, "cp": 0.004}


def build(name: str) -> dict[str, Path]:
    """base, chat and cp of model ``name`` (cached while its spec is unchanged)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from chatvector.demo.family import QUICK, make_tokenizer
    from chatvector.demo.world import make_world

    spec = MODELS[name]
    folder = DATA / name
    paths = {role: folder / role for role in ("base", "chat", "cp")}
    marker = folder / "spec.json"
    if marker.exists() and json.loads(marker.read_text()) == spec and all(p.exists() for p in paths.values()):
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    tokenizer = make_tokenizer(make_world(0), QUICK)
    config = LlamaConfig(
        vocab_size=spec["vocab"] or len(tokenizer),
        hidden_size=spec["hidden"],
        intermediate_size=spec["ffn"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(getattr(torch, spec["dtype"]))
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    for seed, role in enumerate(("base", "chat", "cp")):
        if role != "base":
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for key, param in sorted(model.state_dict().items()):
                    noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * DELTA_STD[role]
                    param.copy_((base_state[key].float() + noise).to(param.dtype))
        model.save_pretrained(paths[role])
        tokenizer.save_pretrained(paths[role])
        GenerationConfig(
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        ).save_pretrained(paths[role])
    marker.write_text(json.dumps(spec))
    return paths


def recipe(paths: dict[str, Path], ratio: float) -> Any:
    from chatvector.merge.recipe import PairTerm, Recipe

    return Recipe(
        target=str(paths["cp"]), terms=(PairTerm(base=str(paths["base"]), chat=str(paths["chat"]), ratio=ratio),)
    )


def backend_options(dtype: str) -> Any:
    from chatvector.eval.options import BackendOptions

    return BackendOptions(device="cpu", dtype=dtype)


def conversations() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": text}] for text in PROMPTS]


def disk_ratio(paths: dict[str, Path], ratio: float, scratch: Path, dtype: str, tokens: int) -> tuple[float, list[str]]:
    """Today's path: merge into RAM, load; the seconds of both, and the replies."""
    import chatvector
    from chatvector.eval.backends import HFBackend
    from chatvector.eval.options import GenerationOptions
    from chatvector.options import RunOptions

    out = scratch / f"r={ratio:g}"
    started = time.perf_counter()
    chatvector.merge(recipe=recipe(paths, ratio), out=out, run=RunOptions(force=True))
    backend = HFBackend(out, GenerationOptions(max_new_tokens=tokens), backend_options(dtype))
    seconds = time.perf_counter() - started
    replies = backend.generate(conversations())
    del backend
    shutil.rmtree(out, ignore_errors=True)
    return seconds, replies


def in_place_ratio(backend: Any, paths: dict[str, Path], ratio: float) -> tuple[float, list[str], bool]:
    """The in-place update's seconds, the replies, and whether it read its inputs from memory."""
    started = time.perf_counter()
    report = backend.merge_in_place(recipe(paths, ratio))
    seconds = time.perf_counter() - started
    return seconds, backend.generate(conversations()), report.resident


def measure(name: str, ratios: tuple[float, ...], runs: int, dtype: str, tokens: int) -> dict[str, Any]:
    import chatvector
    from chatvector.eval.backends import HFBackend
    from chatvector.eval.options import GenerationOptions
    from chatvector.options import RunOptions

    paths = build(name)
    scratch = Path("/dev/shm") / f"chatvector-bench-sweep-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        first = scratch / "loaded"
        chatvector.merge(recipe=recipe(paths, ratios[0]), out=first, run=RunOptions(force=True))
        backend = HFBackend(first, GenerationOptions(max_new_tokens=tokens), backend_options(dtype))
        shutil.rmtree(first)
        setup = time.perf_counter() - started
        disk: dict[float, list[float]] = {r: [] for r in ratios}
        here: dict[float, list[float]] = {r: [] for r in ratios}
        mismatches, resident = [], []
        for run in range(runs):
            for ratio in ratios:
                seconds, on_disk = disk_ratio(paths, ratio, scratch, dtype, tokens)
                disk[ratio].append(seconds)
                seconds, in_place, from_memory = in_place_ratio(backend, paths, ratio)
                here[ratio].append(seconds)
                resident.append(from_memory)
                if on_disk != in_place:
                    mismatches.append({"run": run, "ratio": ratio, "disk": on_disk, "in_place": in_place})
                last = f"disk {disk[ratio][-1]:.2f} s, in place {here[ratio][-1]:.2f} s"
                print(f"  {name} run {run + 1} r={ratio:g}: {last}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    parameters = sum(p.numel() for p in backend.model.parameters())
    disk_median = {r: statistics.median(v) for r, v in disk.items()}
    here_median = {r: statistics.median(v) for r, v in here.items()}
    return {
        "model": name,
        "parameters": parameters,
        "stored_dtype": MODELS[name]["dtype"],
        "loaded_dtype": dtype,
        "setup_seconds": setup,
        # the first update reads the inputs into memory (once per sweep); later ones compute from RAM
        "first_update_seconds": here[ratios[0]][0],
        "resident": all(resident[1:]) if len(resident) > 1 else resident[0],
        "disk": {f"{r:g}": v for r, v in disk.items()},
        "in_place": {f"{r:g}": v for r, v in here.items()},
        "disk_median": statistics.median(disk_median.values()),
        "in_place_median": statistics.median(here_median.values()),
        "per_ratio": {f"{r:g}": (disk_median[r], here_median[r]) for r in ratios},
        "replies_identical": not mismatches,
        "mismatches": mismatches,
        "replies_compared": len(PROMPTS) * len(ratios) * runs,
    }


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(rows: list[dict[str, Any]], before: str, after: str, args: argparse.Namespace) -> str:
    lines = [
        f"# Sweep overhead per ratio: in place against merge + load ({dt.date.today()})",
        "",
        f"`python bench/sweep_inplace.py{' --smoke' if args.smoke else ''}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average before "
        f"{before}, after {after} (the machine is shared: other processes ran throughout, so "
        "absolute seconds are noisy; disk and in place alternate per ratio so both bear it alike).",
        "",
        f"{len(rows[0]['disk'])} ratios, {args.runs} runs each; overhead = everything but generation "
        "(disk: `merge` into /dev/shm + `HFBackend` load; in place: `merge_in_place`). Median per "
        "ratio over the runs, then the median over ratios. The first in-place update also reads the "
        "inputs into memory (target values and the float32 difference chat − base, once per sweep; "
        f"later updates {'read them from memory' if all(r['resident'] for r in rows) else 'read the files'}); "
        "it is shown apart and counted in its ratio's runs.",
        "",
        "| model | parameters | stored → loaded | one-time load (in place) | first update | disk per ratio | "
        "in place per ratio | less overhead | replies identical |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['parameters'] / 1e6:.1f} M | {row['stored_dtype']} → {row['loaded_dtype']} "
            f"| {row['setup_seconds']:.2f} s | {row['first_update_seconds']:.2f} s "
            f"| {row['disk_median']:.2f} s | {row['in_place_median']:.2f} s "
            f"| {row['disk_median'] / row['in_place_median']:.1f}× "
            f"| {'yes' if row['replies_identical'] else 'NO'} ({row['replies_compared']} replies) |"
        )
    lines += ["", "Per ratio (median of the runs, seconds: disk / in place):", ""]
    for row in rows:
        cells = ", ".join(f"r={r}: {d:.2f} / {h:.2f}" for r, (d, h) in row["per_ratio"].items())
        lines.append(f"- {row['model']}: {cells}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="0.5b,demo", help="comma-separated: 0.5b, demo")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="the dtype the hf backend loads (its CPU default: float32)")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, 2 ratios, 1 run")
    parser.add_argument(
        "--out", type=Path, default=None, help="report path (default bench/results/<date>-sweep-inplace.md)"
    )
    args = parser.parse_args()
    models, ratios = args.models.split(","), RATIOS
    if args.smoke:
        models, ratios, args.runs = ["smoke"], RATIOS[:2], 1
    before = load_average()
    rows = [measure(name, ratios, args.runs, args.dtype, args.max_new_tokens) for name in models]
    text = report(rows, before, load_average(), args)
    print(text)
    if not args.smoke or args.out:
        out = args.out or ROOT / "results" / f"{dt.date.today()}-sweep-inplace.md"
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0 if all(row["replies_identical"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
