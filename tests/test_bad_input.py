"""Bad input: one clear message naming the problem, a non-zero exit, no partial output, inputs untouched."""

from __future__ import annotations

import shutil

import torch
from helpers import check_failure, merge_args, no_leftovers, run_cli, snapshot
from safetensors.torch import load_file, save_file


def test_missing_path(monkeypatch, capsys, fresh, tmp_path):
    args = merge_args(fresh, tmp_path / "out", chat=tmp_path / "nowhere")
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "InputError", "--chat", "no such directory")


def test_not_a_model_directory(monkeypatch, capsys, fresh, tmp_path):
    stray = tmp_path / "notes"
    stray.mkdir()
    (stray / "todo.txt").write_text("not a model")
    args = merge_args(fresh, tmp_path / "out", base=stray)
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "--base", "no config.json")


def test_truncated_safetensors(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["chat"] / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    args = merge_args(fresh, tmp_path / "out")
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "CheckpointError", "model.safetensors", "truncated")


def test_corrupt_header(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["cp"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"\xff\xfe garbage!!"
    weights.write_bytes(bytes(data))
    args = merge_args(fresh, tmp_path / "out")
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "CheckpointError", "not valid UTF-8 JSON")


def test_mismatched_architectures(monkeypatch, capsys, fresh, trios, tmp_path):
    args = merge_args(fresh, tmp_path / "out", chat=trios["gpt2"].chat)
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "PreflightError", "model_type")


def test_shape_mismatch_outside_embeddings(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["chat"] / "model.safetensors"
    tensors = load_file(weights)
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    save_file(tensors, weights, metadata={"format": "pt"})
    args = merge_args(fresh, tmp_path / "out")
    message = check_failure(monkeypatch, capsys, fresh, tmp_path, args, "PreflightError", name, "(65, 32)", "(64, 32)")
    assert "1 problem(s)" in message


def test_missing_tensor_and_all_problems_at_once(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["chat"] / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.layers.1.self_attn.q_proj.weight"]
    del tensors["model.norm.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    args = merge_args(fresh, tmp_path / "out")
    message = check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        args,
        "PreflightError",
        "model.layers.1.self_attn.q_proj.weight",
        "model.norm.weight",
        "--exclude",
    )
    assert "2 problem(s)" in message


def test_out_equal_to_an_input(monkeypatch, capsys, fresh, tmp_path):
    before = snapshot(*fresh.values())
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, fresh["cp"]), "--force")
    assert code != 0 and "OutputError" in message and "input" in message
    assert snapshot(*fresh.values()) == before


def test_existing_out_needs_force(monkeypatch, capsys, fresh, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out))
    assert code != 0 and "--force" in message
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    code, _ = run_cli(monkeypatch, capsys, *merge_args(fresh, out), "--force")
    assert code == 0 and (out / "model.safetensors").exists() and not (out / "keep.txt").exists()


def test_pickled_checkpoint_needs_opt_in(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["chat"] / "model.safetensors"
    torch.save(load_file(weights), fresh["chat"] / "pytorch_model.bin")
    weights.unlink()
    args = merge_args(fresh, tmp_path / "out")
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "CheckpointError", "pytorch_model.bin", "--allow-pickle")
    code, _ = run_cli(monkeypatch, capsys, *args, "--allow-pickle")
    assert code == 0
    # same result as merging the safetensors original
    reference = tmp_path / "reference"
    safetensors_chat = tmp_path / "chat-st"
    shutil.copytree(fresh["chat"], safetensors_chat)
    (safetensors_chat / "pytorch_model.bin").unlink()
    save_file(
        torch.load(fresh["chat"] / "pytorch_model.bin", weights_only=True),
        safetensors_chat / "model.safetensors",
        metadata={"format": "pt"},
    )
    assert run_cli(monkeypatch, capsys, *merge_args(fresh, reference, chat=safetensors_chat))[0] == 0
    merged = load_file(tmp_path / "out" / "model.safetensors")
    expected = load_file(reference / "model.safetensors")
    assert all(torch.equal(merged[n], expected[n]) for n in expected)


def test_vector_given_as_model_and_model_as_vector(monkeypatch, capsys, fresh, tmp_path):
    code, _ = run_cli(
        monkeypatch, capsys, "extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", tmp_path / "vec"
    )
    assert code == 0
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out", chat=tmp_path / "vec"))
    assert code != 0 and "chat-vector directory" in message
    code, message = run_cli(
        monkeypatch,
        capsys,
        "apply",
        "--target",
        fresh["cp"],
        "--vector",
        f"{fresh['chat']}:0.5",
        "-o",
        tmp_path / "out",
    )
    assert code != 0 and "not a chat-vector directory" in message
    assert no_leftovers(tmp_path)


def test_cli_merge_apply_round_trip(monkeypatch, capsys, fresh, tmp_path):
    assert run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "m"))[0] == 0
    assert (
        run_cli(
            monkeypatch,
            capsys,
            "extract",
            "--base",
            fresh["base"],
            "--chat",
            fresh["chat"],
            "-o",
            tmp_path / "v",
            "--dtype",
            "float32",
        )[0]
        == 0
    )
    code, message = run_cli(
        monkeypatch, capsys, "apply", "--target", fresh["cp"], "--vector", f"{tmp_path / 'v'}:0.5", "-o", tmp_path / "a"
    )
    assert code == 0 and "Wrote merge" in message
    merged = load_file(tmp_path / "m" / "model.safetensors")
    applied = load_file(tmp_path / "a" / "model.safetensors")
    assert all(torch.equal(merged[n], applied[n]) for n in merged)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "a", "--recompute", "--full")
    assert code == 0 and "OK" in message
