"""Merge straight to GGUF against merge to safetensors, and against merge then conversion.

    .venv/bin/python bench/gguf_merge.py [--size 1.1b] [--runs 1] [--types f16,q8_0] [--work DIR]
                                   [--converter PATH/convert_hf_to_gguf.py]

Rows (each run in a fresh measuring process, bench/measure.py: wall time, peak memory):

- ``merge → safetensors``: ``chatvector merge`` (the baseline the goal is measured against), and
  with ``--dtype float16`` (the rounding a GGUF f16 file makes);
- ``merge → GGUF TYPE``: ``chatvector merge --format gguf --gguf-type TYPE`` (goal: within 1.2×);
- ``merge → safetensors → GGUF TYPE``: the merge, then a conversion of its output: with
  ``--converter``, llama.cpp's own ``convert_hf_to_gguf.py`` (never shipped with chatvector; run
  from where you put it), otherwise ``chatvector export gguf`` (goal: the direct merge is faster).

The synthetic bench checkpoints (bench/synth.py) carry no tokenizer; a byte-fallback tokenizer
(the 259 specials and byte tokens; the other embedding rows get placeholder tokens) is written
beside hard links of their weights, so the GGUF has a vocabulary llama.cpp can load. Bytes
written are the output's size on disk. The report goes to ``bench/results/gguf-<date>.md``.
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
        "decoder": {"type": "ByteFallback"},
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


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1.1b", choices=list(synth.SIZES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--work", type=Path, default=Path("/tmp/chatvector-bench"))
    parser.add_argument("--converter", type=Path, default=None, help="llama.cpp's convert_hf_to_gguf.py")
    args = parser.parse_args(argv)
    shape = {**synth.SIZES, **synth.SMOKE_SIZES}[args.size]
    shard = synth.SMOKE_SHARD_BYTES if args.size in synth.SMOKE_SIZES else synth.SHARD_BYTES
    models = with_tokenizer(
        synth.generate(args.work / "models", args.size, shape, shard_bytes=shard), args.work / args.size
    )
    scratch = args.work / "gguf-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    merge = [
        EXE,
        "merge",
        "--base",
        str(models["base"]),
        "--chat",
        str(models["chat"]),
        "--target",
        str(models["cp"]),
        "--ratio",
        "0.5",
    ]
    rows: list[dict] = []

    def row(name: str, commands: list[list[str]], output: Path) -> None:
        for run in range(args.runs):
            results = [measured(c, scratch, f"{len(rows)}-{run}-{i}") for i, c in enumerate(commands)]
            rows.append(
                {
                    "approach": name,
                    "run": run,
                    "seconds": sum(r["wall_s"] for r in results),
                    "peak_anon_mb": max(r.get("peak_anon_tree_bytes", 0) for r in results) / 1e6,
                    "bytes_written": size_of(output) + sum(size_of(p) for p in scratch.glob("mid-*")),
                }
            )
            print(rows[-1], flush=True)
            for path in [output, *scratch.glob("mid-*")]:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    st = scratch / "out-st"
    row("merge → safetensors", [[*merge, "-o", str(st)]], st)
    if "f16" in args.types.split(","):  # the same rounding as GGUF f16 (numpy's float16 cast is slow)
        row("merge → safetensors --dtype float16", [[*merge, "--dtype", "float16", "-o", str(st)]], st)
    for kind in args.types.split(","):
        out = scratch / f"out-{kind}.gguf"
        row(f"merge → GGUF {kind}", [[*merge, "--format", "gguf", "--gguf-type", kind, "-o", str(out)]], out)
        mid = scratch / "mid-st"
        if args.converter is not None:
            convert = [PYTHON, str(args.converter), str(mid), "--outtype", kind, "--outfile", str(out)]
            label = f"merge → safetensors → GGUF {kind} (llama.cpp convert_hf_to_gguf.py)"
        else:
            convert = [EXE, "export", "gguf", str(mid), "--gguf-type", kind, "-o", str(out)]
            label = f"merge → safetensors → GGUF {kind} (chatvector export gguf)"
        row(label, [[*merge, "-o", str(mid)], convert], out)
    report = BENCH / "results" / f"gguf-{datetime.date.today().isoformat()}.md"
    lines = [
        f"# Merge to GGUF, {args.size}, {args.runs} run(s), {os.cpu_count()} CPUs (shared machine)",
        "",
        "| approach | seconds | peak anon MB | bytes written |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['approach']} | {r['seconds']:.1f} | {r['peak_anon_mb']:.0f} | {r['bytes_written'] / 1e9:.2f} GB |"
        for r in rows
    ]
    report.write_text("\n".join(lines) + "\n")
    report.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
