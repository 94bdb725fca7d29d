"""How close does cp + LoRA(chat vector) come to cp + chat vector on the demo family?

    .venv/bin/python bench/lora_demo.py [--seed 0] [--quick] [--ranks 4,16,64] [--ratios 1.0,1.25,1.5] [-o DIR]

Builds (or reuses from DIR/family) the demo family that ``chatvector demo`` trains, extracts its chat
vector, writes it as LoRA adapters of several ranks (``chatvector lora``) and evaluates, at each
ratio, on the demo's held-out Traditional Chinese prompts and rules:

- ``cp+cv@r``: the full chat vector (``chatvector merge``);
- ``cp+cv-emb@r``: the same without the embedding delta (``--exclude embed_tokens``), which is what a
  LoRA leaves out, so the two effects (no embeddings, truncated SVD) can be told apart;
- ``cp+lora<k>@r``: ``chatvector apply --vector ADAPTER:r`` with the rank-k adapter (exactly
  what PEFT's merge of the adapter scaled by r gives).

Writes ``DIR/lora_demo.json`` and ``DIR/lora_demo.md`` (sizes, energy kept, metrics).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import chatvector
from chatvector.demo import corpus
from chatvector.demo.evaluate import METRICS, generate, score
from chatvector.demo.family import QUICK, DemoConfig, build_family
from chatvector.lora.extract import extract_lora


def _size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the demo's --quick family")
    parser.add_argument("--ranks", default="4,16,64")
    parser.add_argument("--ratios", default="1.0,1.25,1.5")
    parser.add_argument("-o", "--out", type=Path, default=Path("/tmp/chatvector-lora-demo"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    config = DemoConfig(**{**(QUICK.__dict__ if args.quick else {}), "seed": args.seed})
    family = build_family(config, args.out / "family")  # trained by this checkout's demo code, not a shared cache
    items = corpus.eval_items(family.world)
    args.out.mkdir(parents=True, exist_ok=True)
    run = chatvector.RunOptions(force=True, threads=1)
    vector = args.out / "cv"
    chatvector.extract(base=family.base, chat=family.chat, out=vector, run=run)
    sizes = {"vector (float32)": _size(vector, "*.safetensors"), "model (cp)": _size(family.cp, "*.safetensors")}
    energy = {}
    ranks = [int(r) for r in args.ranks.split(",")]
    for rank in ranks:
        report = extract_lora(args.out / f"lora{rank}", rank, vector=str(vector), force=True)
        sizes[f"lora{rank}"] = report.bytes_written
        energy[f"lora{rank}"] = {"share": report.share, "by_layer": report.by_layer(), "not_held": report.not_held}
    rows = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        models = {f"cp+cv@{ratio:g}": ("merge", None), f"cp+cv-emb@{ratio:g}": ("merge", "embed_tokens")}
        models.update({f"cp+lora{k}@{ratio:g}": ("apply", k) for k in ranks})
        for name, (how, extra) in models.items():
            out = args.out / "models" / name
            if how == "merge":
                options = chatvector.MergeOptions(exclude=[extra] if extra else [])
                chatvector.merge(
                    base=family.base, chat=family.chat, target=family.cp, ratio=ratio, out=out, options=options, run=run
                )
            else:
                chatvector.apply(target=family.cp, vectors=[(args.out / f"lora{extra}", ratio)], out=out, run=run)
            rows.append({"model": name, "ratio": ratio, "metrics": score(generate(out, items))})
            print(name, json.dumps(rows[-1]["metrics"]), flush=True)
    cp_metrics = score(generate(family.cp, items))
    result = {
        "config": config.__dict__ | {"shape": str(config.shape)},
        "family": str(family.base.parent),
        "sizes_bytes": sizes,
        "energy": energy,
        "cp": cp_metrics,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "lora_demo.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (args.out / "lora_demo.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    names = list(METRICS)
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| cp | " + " | ".join(f"{result['cp'][n]:.0%}" for n in names) + " |")
    for row in result["rows"]:
        lines.append(f"| {row['model']} | " + " | ".join(f"{row['metrics'][n]:.0%}" for n in names) + " |")
    sizes = ", ".join(f"{k}: {v / 1e6:.2f} MB" for k, v in result["sizes_bytes"].items())
    kept = ", ".join(f"{k}: {v['share']:.1%}" for k, v in result["energy"].items())
    return "\n".join(lines) + f"\n\nSizes: {sizes}.\nEnergy of the linear layers' delta kept: {kept}.\n"


if __name__ == "__main__":
    main()
