"""``chatvector verify OUT --against RECIPE``: prove a downloaded merge is what its card says."""

from __future__ import annotations

import shutil

import torch
from helpers import copy_model, run_cli
from safetensors.torch import load_file, save_file


def merged_copy(monkeypatch, capsys, trios, tmp_path):
    trio = trios["mistral"]
    models = {role: copy_model(getattr(trio, role), tmp_path / role) for role in ("base", "chat", "cp")}
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        models["base"],
        "--chat",
        models["chat"],
        "--target",
        models["cp"],
        "--ratio",
        "0.7",
        "-o",
        tmp_path / "out",
    )
    assert code == 0, message
    recipe = tmp_path / "as-published.yaml"
    shutil.copy(tmp_path / "out" / "chatvector_recipe.yaml", recipe)
    return models, recipe


def resave(path, change):
    tensors = load_file(path)
    metadata = {"format": "pt"}
    change(tensors, metadata)
    save_file(tensors, path, metadata=metadata)


def test_untouched_merge_verifies_against_its_recipe(monkeypatch, capsys, trios, tmp_path):
    _, recipe = merged_copy(monkeypatch, capsys, trios, tmp_path)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "out", "--against", recipe, "--full")
    assert code == 0, message
    assert "max error" in message.lower() or "max abs" in message.lower(), message


def test_tampered_output_is_caught(monkeypatch, capsys, trios, tmp_path):
    _, recipe = merged_copy(monkeypatch, capsys, trios, tmp_path)
    name = "model.layers.1.self_attn.o_proj.weight"

    def nudge(tensors, metadata):
        tensors[name] = tensors[name].clone()
        tensors[name][0, 0] += 0.01

    resave(tmp_path / "out" / "model.safetensors", nudge)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "out", "--against", recipe, "--full")
    assert code != 0 and name in message, message


def test_changed_input_is_caught_by_its_recorded_fingerprint(monkeypatch, capsys, trios, tmp_path):
    models, recipe = merged_copy(monkeypatch, capsys, trios, tmp_path)

    def swap_in_other_weights(tensors, metadata):
        metadata["republished"] = "yes"  # a different file: the header, and so its hash, changes

    resave(models["chat"] / "model.safetensors", swap_in_other_weights)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "out", "--against", recipe)
    assert code != 0 and "differs from the one recorded" in message and "chat" in message, message


def test_changed_input_values_are_caught_by_recomputation(monkeypatch, capsys, trios, tmp_path):
    """Same header, same size, other values: the fingerprint cannot see it, the full recomputation does."""
    models, recipe = merged_copy(monkeypatch, capsys, trios, tmp_path)
    name = "model.layers.0.mlp.down_proj.weight"

    def perturb(tensors, metadata):
        tensors[name] = tensors[name] + torch.full_like(tensors[name], 0.5)

    resave(models["cp"] / "model.safetensors", perturb)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "out", "--against", recipe, "--full")
    assert code != 0 and name in message, message
