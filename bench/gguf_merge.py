"""Merge straight to GGUF against merge to safetensors, and against merge then conversion.

    .venv/bin/python bench/gguf_merge.py [--size 1.1b] [--rounds 3] [--types f16,q8_0] [--work DIR]
                                   [--converter PATH/convert_hf_to_gguf.py]

Rows (each run in a fresh measuring process, bench/measure.py: wall time, CPU time, peak memory):

- ``merge → safetensors``: ``chatvector merge`` (the baseline the goal is measured against), and
  with ``--dtype float16`` (the rounding a GGUF f16 file makes);
- ``merge → GGUF TYPE``: ``chatvector merge --format gguf --gguf-type TYPE`` (goal: within 1.2×);
- ``merge → safetensors, then convert_hf_to_gguf.py TYPE``: the merge, then llama.cpp's own
  converter on its output (goal: the direct merge is faster). The converter is never shipped
  with chatvector: ``--converter`` (default ``$CHATVECTOR_LLAMACPP_CONVERTER``, which
  ``bench/llamacpp_converter.py`` fetches and prints); without it, ``chatvector export gguf``
  stands in.

The disk and the CPUs of a shared machine change speed between minutes, so each round runs every
row once, in turn, and the table gives the median over the rounds (and the range). Seconds
include ``sync`` after the command (the converter does not fsync; chatvector does), CPU seconds
are user + system of the whole process tree, and the load average (``/proc/loadavg``) is taken
before every run.

The synthetic bench checkpoints (bench/synth.py) carry no tokenizer; a byte-fallback tokenizer
(the 259 specials and byte tokens; the other embedding rows get placeholder tokens) is written
beside hard links of their weights, so the GGUF has a vocabulary llama.cpp can load. Bytes
written are the output's size on disk (for merge then conversion, the intermediate merge too).
The report goes to ``bench/results/gguf-<date>.md`` (``-2``, ``-3``… for a day's later runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import synth

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
EXE = str(Path(sys.executable).with_name("chatvector"))


def byte_tokenizer() -> dict:
    """A tokenizer.json in transformers' Llama-2 form holding only specials and the 256 byte tokens."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{i:02X}>": 3 + i for i in range(256)}}
    return {
        "version": "1.0",
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t, i in list(vocab.items())[:3]
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {  # transformers' Llama-2 decoder (llama.cpp's converter looks for this Sequence)
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def with_tokenizer(models: dict[str, Path], work: Path) -> dict[str, Path]:
    """Hard-linked copies of the synthetic models with a tokenizer beside the weights."""
    linked = {}
    for role, folder in models.items():
        target = work / "with-tokenizer" / role
        if not target.exists():
            target.mkdir(parents=True)
            for path in folder.iterdir():
                os.link(path, target / path.name)
        (target / "tokenizer.json").write_text(json.dumps(byte_tokenizer()))
        if not (target / "tokenizer_config.json").exists():
            (target / "tokenizer_config.json").write_text(
                json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
            )
        linked[role] = target
    return linked


def measured(command: list[str], scratch: Path, tag: str) -> dict:
    out = scratch / f"{tag}.json"
    done = subprocess.run([PYTHON, str(BENCH / "measure.py"), "--json", str(out), "--", *command], text=True)
    result = json.loads(out.read_text()) if out.exists() else {}
    if done.returncode != 0 or result.get("returncode") != 0:
        raise SystemExit(f"{tag} failed: {' '.join(command)}")
    return result


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _unused_report_path(path: Path) -> Path:
    """``path``, or ``…-2.md``, ``…-3.md`` when earlier runs of the day are there (kept, not overwritten)."""
    number = 1
    candidate = path
    while candidate.exists() or candidate.with_suffix(".json").exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1.1b", choices=[*synth.SIZES, *synth.SMOKE_SIZES])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--work", type=Path, default=Path("/tmp/chatvector-bench"))
    default_converter = os.environ.get("CHATVECTOR_LLAMACPP_CONVERTER")
    parser.add_argument(
        "--converter",
        type=Path,
        default=Path(default_converter) if default_converter else None,
        help="llama.cpp's convert_hf_to_gguf.py (default: $CHATVECTOR_LLAMACPP_CONVERTER)",
    )
    args = parser.parse_args(argv)
    shape = {**synth.SIZES, **synth.SMOKE_SIZES}[args.size]
    shard = synth.SMOKE_SHARD_BYTES if args.size in synth.SMOKE_SIZES else synth.SHARD_BYTES
    models = with_tokenizer(
        synth.generate(args.work / "models", args.size, shape, shard_bytes=shard), args.work / args.size
    )
    scratch = args.work / "gguf-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    merge = [EXE, "merge", "--base", str(models["base"]), "--chat", str(models["chat"])]
    merge += ["--target", str(models["cp"]), "--ratio", "0.5"]
    st, mid = scratch / "out-st", scratch / "mid-st"
    rows: list[tuple[str, list[list[str]], list[Path]]] = [
        ("merge → safetensors (bf16)", [[*merge, "-o", str(st)]], [st])
    ]
    if "f16" in args.types.split(","):  # the same rounding as GGUF f16
        rows.append(("merge → safetensors --dtype float16", [[*merge, "--dtype", "float16", "-o", str(st)]], [st]))
    for kind in args.types.split(","):
        out = scratch / f"out-{kind}.gguf"
        direct = [*merge, "--format", "gguf", "--gguf-type", kind, "-o", str(out)]
        rows.append((f"merge → GGUF {kind}", [direct], [out]))
    for kind in args.types.split(","):
        out = scratch / f"out-{kind}.gguf"
        if args.converter is not None:
            convert = [PYTHON, str(args.converter), str(mid), "--outtype", kind, "--outfile", str(out)]
            label = f"merge → safetensors, then convert_hf_to_gguf.py {kind}"
        else:
            convert = [EXE, "export", "gguf", str(mid), "--gguf-type", kind, "-o", str(out)]
            label = f"merge → safetensors, then chatvector export gguf {kind}"
        rows.append((label, [[*merge, "-o", str(mid)], convert], [out, mid]))

    runs: list[dict] = []
    for round_ in range(args.rounds):
        for index, (name, commands, outputs) in enumerate(rows):
            load = load_average()
            results = [measured(c, scratch, f"{index}-{round_}-{i}") for i, c in enumerate(commands)]
            runs.append(
                {
                    "approach": name,
                    "round": round_,
                    "load": load,
                    "seconds": sum(r["wall_s"] + r["sync_s"] for r in results),
                    "cpu_seconds": sum(r["user_s"] + r["sys_s"] for r in results),
                    "peak_anon_mb": max(r.get("peak_anon_tree_bytes", 0) for r in results) / 1e6,
                    "bytes_written": sum(size_of(p) for p in outputs),
                }
            )
            print(runs[-1], flush=True)
            for path in outputs:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    report = _unused_report_path(BENCH / "results" / f"gguf-{datetime.date.today().isoformat()}.md")
    lines = [
        f"# Merge to GGUF, {args.size}, median of {args.rounds} rounds, {os.cpu_count()} CPUs (shared machine)",
        "",
        "| approach | seconds (median, range) | CPU s | peak anon MB | bytes written | load average |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in rows:
        mine = [r for r in runs if r["approach"] == name]
        seconds = [r["seconds"] for r in mine]
        loads = [r["load"] for r in mine]
        lines.append(
            f"| {name} | {median(seconds):.1f} ({min(seconds):.1f}-{max(seconds):.1f}) "
            f"| {median([r['cpu_seconds'] for r in mine]):.1f} | {max(r['peak_anon_mb'] for r in mine):.0f} "
            f"| {mine[0]['bytes_written'] / 1e9:.2f} GB | {min(loads):.1f}-{max(loads):.1f} |"
        )
    report.write_text("\n".join(lines) + "\n")
    report.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
