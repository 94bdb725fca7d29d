"""mergekit as a baseline: its own virtual environment, a task_arithmetic config, the command.

mergekit lives in ``bench/.venv-mergekit`` (gitignored) so that its pins never touch the
project's environment. torch is installed first and pinned (``torch==2.13.0``, a CPU wheel on
these machines): an unpinned torch makes pip fetch a multi-GB CUDA build.

The config is what people write for a chat vector with mergekit: ``task_arithmetic`` with the
base as ``base_model``, the target (cp) at weight 1 and the chat model at weight r, i.e.
``base + 1·(cp − base) + r·(chat − base)``. Two variants are measured:

- ``mergekit``: ``dtype: bfloat16`` (the usual config): mergekit computes in bfloat16;
- ``mergekit-fp32``: ``dtype: float32`` and ``out_dtype: bfloat16``: computed in float32,
  stored in bfloat16, which is what an exact comparison with chatvector needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-mergekit"
TORCH_PIN = "torch==2.13.0"
INSTALL_TIMEOUT_S = 1800
DTYPES = {"mergekit": {"dtype": "bfloat16"}, "mergekit-fp32": {"dtype": "float32", "out_dtype": "bfloat16"}}
# mergekit 0.1.5 compares --out-shard-size with tensor bytes (despite its help text saying
# "parameters"); 1 GB shards match the inputs. The synthetic models have no tokenizer to copy.
OPTIONS = ["--out-shard-size", "1000000000", "--no-copy-tokenizer", "--lazy-unpickle", "--quiet"]


def executable(venv: Path = VENV) -> Path:
    return venv / "bin" / "mergekit-yaml"


def ensure_installed(venv: Path = VENV, log: Path | None = None) -> str | None:
    """Create the venv and install mergekit unless it is there; return None, or why it failed."""
    if executable(venv).exists():
        return None
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", TORCH_PIN],
        [str(venv / "bin" / "pip"), "install", "mergekit"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{' '.join(step[-2:])}: {error}"
        if log:
            with log.open("a") as handle:
                handle.write(f"$ {' '.join(step)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"`{' '.join(step[-2:])}` exited {done.returncode}: {last[0]}"
    if not executable(venv).exists():
        return f"installed, but {executable(venv)} is missing"
    return None


def versions(venv: Path = VENV) -> dict[str, str]:
    """Versions of mergekit and its torch/transformers/safetensors inside the venv."""
    code = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({p: m.version(p) for p in ('mergekit', 'torch', 'transformers', 'safetensors')}))"
    )
    try:
        done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return json.loads(done.stdout) if done.returncode == 0 else {}


def write_config(path: Path, variant: str, base: Path, chat: Path, target: Path, ratio: float) -> Path:
    """Write the task_arithmetic YAML of ``variant`` (a key of DTYPES) to ``path``."""
    lines = [
        "merge_method: task_arithmetic",
        f"base_model: {base}",
        "models:",
        f"  - model: {target}",
        "    parameters: {weight: 1.0}",
        f"  - model: {chat}",
        f"    parameters: {{weight: {ratio!r}}}",
        *(f"{key}: {value}" for key, value in DTYPES[variant].items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def command(config: Path, out: Path, venv: Path = VENV) -> list[str]:
    return [str(executable(venv)), str(config), str(out), *OPTIONS]


def write_sparse_config(path: Path, method: str, base: Path, chat: Path, ratio: float, density: float) -> Path:
    """``base + sparsified r·(chat − base)`` with mergekit's ``ties`` or ``dare_linear``, computed in float32.

    ``normalize: false``: with its default (true for ties) mergekit divides by the sum of the agreeing
    weights, which for a single model cancels the ratio r.
    """
    lines = [
        f"merge_method: {method}",
        f"base_model: {base}",
        "models:",
        f"  - model: {chat}",
        f"    parameters: {{weight: {ratio!r}, density: {density!r}}}",
        "parameters: {normalize: false}",
        "dtype: float32",
        "out_dtype: bfloat16",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def extract_lora_command(base: Path, chat: Path, out: Path, rank: int, venv: Path = VENV) -> list[str]:
    """``mergekit-extract-lora`` of ``chat − base`` at ``rank`` (its defaults otherwise)."""
    return [
        str(venv / "bin" / "mergekit-extract-lora"),
        "--model",
        str(chat),
        "--base-model",
        str(base),
        "--out-path",
        str(out),
        "--max-rank",
        str(rank),
    ]
