"""``--dry-run`` on merge, apply and extract: the preflight runs, the plan is printed, nothing is
written; the plan's output files and byte counts are what the real run then writes."""

from __future__ import annotations

import os

import pytest
from helpers import merge_args, run_cli
from safetensors import safe_open

import chatvector


def listing(folder):
    return sorted(os.listdir(folder))


def test_merge_dry_run_prints_the_plan_and_writes_nothing(monkeypatch, capsys, fresh, tmp_path):
    before = listing(tmp_path)
    args = [*merge_args(fresh, tmp_path / "out"), "--method", "ties:density=0.3", "--shard-size", "20kB"]
    code, message = run_cli(monkeypatch, capsys, *args, "--dry-run")
    assert code == 0, message
    assert listing(tmp_path) == before  # no OUT, no staging directory, no lock
    assert "nothing was written" in message and "method ties:density=0.3" in message
    code, real = run_cli(monkeypatch, capsys, *args)
    assert code == 0, real
    files = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert len(files) > 1 and all(f"{name}:" in message for name in files)
    for path in (tmp_path / "out").glob("*.safetensors"):
        with safe_open(path, "np") as handle:
            names = list(handle.keys())
        assert f"{path.name}: {len(names)} tensors" in message
        assert all(name in message for name in names)


def test_the_plan_matches_what_the_run_writes(fresh, tmp_path):
    kwargs = {"base": fresh["base"], "chat": fresh["chat"], "target": fresh["cp"], "ratio": 0.5}
    planned = chatvector.merge(**kwargs, out=tmp_path / "out", run=chatvector.RunOptions(dry_run=True))
    assert planned.plan is not None and not (tmp_path / "out").exists()
    done = chatvector.merge(**kwargs, out=tmp_path / "out")
    shards = list((tmp_path / "out").glob("*.safetensors"))
    assert planned.plan.bytes_written == sum(os.path.getsize(p) - _header_bytes(p) for p in shards)
    assert planned.plan.bytes_read == done.bytes_read
    assert {t.policy for t in planned.plan.tensors} == {"merge"}
    assert all(t.ratios == (0.5,) for t in planned.plan.tensors)


def _header_bytes(path) -> int:
    with open(path, "rb") as handle:
        return 8 + int.from_bytes(handle.read(8), "little")


@pytest.mark.parametrize("command", ["extract", "apply"])
def test_extract_and_apply_dry_runs_write_nothing(command, monkeypatch, capsys, fresh, tmp_path):
    vector = tmp_path / "v"
    if command == "apply":
        chatvector.extract(base=fresh["base"], chat=fresh["chat"], out=vector)
        args = ["apply", "--target", fresh["cp"], "--vector", f"{vector}:0.7", "-o", tmp_path / "out"]
    else:
        args = ["extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", tmp_path / "out"]
    before = listing(tmp_path)
    code, message = run_cli(monkeypatch, capsys, *args, "--dry-run")
    assert code == 0, message
    assert listing(tmp_path) == before
    assert ("vector.safetensors" if command == "extract" else "model.safetensors") in message
    assert "ratios 0.7" in message if command == "apply" else "ratios 1" in message


def test_a_dry_run_still_refuses_what_the_preflight_refuses(monkeypatch, capsys, trios, fresh, tmp_path):
    other = trios["qwen2_tied"].cp  # another architecture: the preflight lists the mismatches
    args = [*merge_args(fresh, tmp_path / "out"), "--dry-run"]
    args[args.index("--target") + 1] = other
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and "PreflightError" in message and not (tmp_path / "out").exists()
