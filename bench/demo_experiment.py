"""One row of docs/demo.md's experiment table: the demo with some settings changed.

    .venv/bin/python bench/demo_experiment.py NAME '{"base_steps": 1600, "paragraphs": 1}' [--seeds 0,1]
                                              [--quick] [--ratios 0.5,...,2.0] [-o DIR]

Trains (or reuses, from DIR/cache) one family per seed with ``DemoConfig`` (or ``QUICK``) changed by
the JSON object's fields (``shape`` takes a nested object), merges and evaluates exactly as
``chatvector demo`` does, and appends one JSON line per seed to DIR/results.jsonl: the name, the
settings changed, every model's metrics and the training time. docs/demo.md's table is built
from such lines: the ratio with the best mean ``fact_clean`` over the seeds, and its metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from chatvector.demo import DEFAULT_RATIOS
from chatvector.demo.family import QUICK, DemoConfig
from chatvector.demo.seeds import run_demo


def configured(base: DemoConfig, changes: dict[str, object]) -> DemoConfig:
    """``base`` with ``changes`` applied; unknown fields are an error naming them."""
    known = {f.name for f in dataclasses.fields(DemoConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise SystemExit(f"unknown demo settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    shape = changes.get("shape")
    if isinstance(shape, dict):
        changes = {**changes, "shape": dataclasses.replace(base.shape, **shape)}
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # values come from JSON


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("changes", help="a JSON object of DemoConfig fields")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--quick", action="store_true", help="start from the quick family's settings")
    parser.add_argument("--ratios", default=",".join(f"{r:g}" for r in DEFAULT_RATIOS))
    parser.add_argument("-o", "--out", type=Path, default=Path("demo-experiments"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("chatvector.demo").setLevel(logging.INFO)
    changes = json.loads(args.changes)
    config = configured(QUICK if args.quick else DemoConfig(), changes)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    ratios = tuple(float(r) for r in args.ratios.split(","))
    summary = run_demo(
        config, args.out / args.name, seeds=seeds, ratios=ratios, cache_dir=args.out / "cache", jobs=None
    )
    with (args.out / "results.jsonl").open("a", encoding="utf-8") as results:
        for run in summary["runs"]:
            line = {
                "name": args.name,
                "seed": run["seed"],
                "quick": args.quick,
                "changes": changes,
                "seconds": {"training": run["seconds"].get("training"), "total": summary["seconds"]["total"]},
                "models": {model["name"]: model["metrics"] for model in run["models"]},
            }
            results.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"{args.name}: best {summary['best']}; {args.out / args.name / 'report.md'}")


if __name__ == "__main__":
    main()
