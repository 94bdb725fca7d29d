"""The light install: a wheel built from this tree, installed without extras into a fresh venv,
merges and verifies real checkpoints, and neither ``import chatvector`` nor a merge imports torch
or transformers (the venv does not even have them)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_without_extras_merges_and_verifies(trios, tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = next(dist.glob("chatvector-*.whl"))
    env = tmp_path / "light"
    venv.create(env, with_pip=True)
    python, cli = env / "bin" / "python", env / "bin" / "chatvector"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True, text=True)
    absent = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert absent.strip() == "[]", "the light install pulled in torch or transformers"

    trio = trios["llama"]
    out = tmp_path / "merged"
    merged = subprocess.run(
        [cli, "merge", "--base", trio.base, "--chat", trio.chat, "--target", trio.cp, "--ratio", "0.5", "-o", out],
        capture_output=True,
        text=True,
    )
    assert merged.returncode == 0, merged.stderr
    verified = subprocess.run([cli, "verify", out, "--recompute", "--full"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith("OK")

    code = (
        "import sys, chatvector\n"
        f"chatvector.merge(base={str(trio.base)!r}, chat={str(trio.chat)!r}, target={str(trio.cp)!r}, "
        f"ratio=0.25, out={str(tmp_path / 'again')!r})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'click', 'rich') if m in sys.modules))"
    )
    imported = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"

    missing = subprocess.run([cli, "eval", str(out), "-o", str(tmp_path / "ev")], capture_output=True, text=True)
    assert missing.returncode != 0
    assert "pip install 'chatvector[eval]'" in missing.stderr and "Traceback" not in missing.stderr
