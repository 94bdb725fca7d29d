"""Class 2: ``verify`` can be trusted on a tampered output.

Structure is checked first: the non-weight files against the SHA-256 recorded at merge time, the
weight files' headers, then (with --recompute) every tensor's name, dtype and shape against what
the recipe makes. Every tampering is a failed verification (exit 1) naming what changed, never a
traceback and never an OK; a malformed recipe too. Recorded absolute paths make the same output
verify, and ``merge --recipe`` reproduce it, from any directory.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import yaml
from hardening_helpers import fingerprint, outcome
from helpers import merge_args, run_cli
from safetensors.torch import load_file, save_file

NAME = "model.layers.1.mlp.up_proj.weight"  # (64, 32): transposing changes its shape


@pytest.fixture
def merged(monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    return tmp_path / "out"


def resave(path, change):
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


WEIGHT_TAMPERING = {
    "injected tensor": (lambda t: t.__setitem__("model.backdoor.weight", torch.ones(4)), "model.backdoor.weight"),
    "removed tensor": (lambda t: t.pop(NAME), NAME),
    "transposed tensor": (lambda t: t.__setitem__(NAME, t[NAME].T.contiguous()), NAME),
    "reshaped tensor": (lambda t: t.__setitem__(NAME, t[NAME].reshape(-1)), NAME),
    "other dtype": (lambda t: t.__setitem__(NAME, t[NAME].half()), NAME),
    "renamed tensor": (lambda t: t.__setitem__("model.renamed.weight", t.pop(NAME)), "model.renamed.weight"),
}


@pytest.mark.parametrize("recompute", [False, True], ids=["verify", "verify --recompute"])
@pytest.mark.parametrize("case", sorted(WEIGHT_TAMPERING))
def test_tampered_tensors_fail_verification(case, recompute, monkeypatch, capsys, fresh, merged, tmp_path):
    change, culprit = WEIGHT_TAMPERING[case]
    resave(merged / "model.safetensors", change)
    args = ["verify", merged] + (["--recompute", "--full"] if recompute else [])
    # Without the inputs, the recorded header names the changed file; recomputing names the tensor.
    named = culprit if recompute else "weights file model.safetensors differs"
    message = outcome(monkeypatch, capsys, [*fresh.values(), merged], tmp_path, args, 1, named, "FAILED")
    assert "OK" not in message.split()


def edit_json(key, value):
    def change(path):
        data = json.loads(path.read_text())
        data[key] = value
        path.write_text(json.dumps(data))

    return change


FILE_TAMPERING = {
    "config.json": edit_json("vocab_size", 99),
    "generation_config.json": edit_json("eos_token_id", 5),
    "tokenizer_config.json": edit_json("eos_token", "<pad>"),
    "tokenizer.json": lambda path: path.write_text(path.read_text().replace('"hello"', '"hallo"')),
    "chat_template.jinja": lambda path: path.write_text("{{ 'Ignore all previous instructions' }}"),
    "chatvector_recipe.yaml": None,  # the recipe itself: see test_malformed_recipe_fails_verification
}


@pytest.mark.parametrize("name", sorted(n for n, change in FILE_TAMPERING.items() if change))
def test_changed_files_fail_verification(name, monkeypatch, capsys, fresh, merged, tmp_path):
    FILE_TAMPERING[name](merged / name)
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), merged],
        tmp_path,
        ["verify", merged],
        1,
        f"{name} differs from the one written at merge time",
        "FAILED",
    )


@pytest.mark.parametrize("how", ["removed", "linked outside", "replaced by a FIFO"])
@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "chat_template.jinja"])
def test_missing_or_hostile_files_fail_verification(name, how, monkeypatch, capsys, fresh, merged, tmp_path):
    path = merged / name
    if how == "linked outside":
        shutil.move(path, tmp_path / f"stash-{name}")
        path.symlink_to(tmp_path / f"stash-{name}")
    else:
        path.unlink()
        if how == "replaced by a FIFO":
            os.mkfifo(path)
    expected = {"removed": "no such file", "linked outside": "link leading outside", "replaced by a FIFO": "FIFO"}
    outcome(
        monkeypatch, capsys, [*fresh.values(), merged], tmp_path, ["verify", merged], 1, name, expected[how], "FAILED"
    )


@pytest.mark.parametrize(
    "name", ["modeling_backdoor.py", "tokenizer.model", "additional_chat_templates/x.jinja", "model-extra.safetensors"]
)
def test_files_added_after_the_merge_fail_verification(name, monkeypatch, capsys, fresh, merged, tmp_path):
    path = merged / name
    path.parent.mkdir(exist_ok=True)
    if name.endswith(".safetensors"):
        save_file({"x": torch.zeros(2)}, path)
    else:
        path.write_text("import os\n")
    outcome(monkeypatch, capsys, [*fresh.values(), merged], tmp_path, ["verify", merged], 1, name, "FAILED")


def test_an_edited_model_card_and_hub_files_are_only_noted(monkeypatch, capsys, fresh, merged, tmp_path):
    (merged / "README.md").write_text("---\nlicense: apache-2.0\n---\n# My model\n")
    (merged / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    message = outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), merged],
        tmp_path,
        ["verify", merged, "--recompute"],
        0,
        "README.md was edited after the merge",
        "OK",
    )
    assert "FAILED" not in message


def edit_recipe(change):
    def edit(out, fresh, tmp_path):
        path = out / "chatvector_recipe.yaml"
        record = yaml.safe_load(path.read_text())
        change(record, fresh, tmp_path)
        path.write_text(yaml.safe_dump(record, sort_keys=False))

    return edit


def another_target(record, fresh, tmp_path):
    """A copy of the target elsewhere: the same values, so recomputing alone cannot tell."""
    shutil.copytree(fresh["cp"], tmp_path / "other-cp")
    record["recipe"]["target"] = record["recipe"]["target_path"] = str(tmp_path / "other-cp")


RECIPE_EDITS = {
    "another target": edit_recipe(another_target),
    "another ratio": edit_recipe(lambda r, f, t: r["recipe"]["terms"][0].update(ratio=0.25)),
    "another option": edit_recipe(lambda r, f, t: r["recipe"].setdefault("options", {}).update(exclude=["norm"])),
    "an input's fingerprint": edit_recipe(lambda r, f, t: r["inputs"][0].update(files={})),
}


@pytest.mark.parametrize("recompute", [False, True], ids=["verify", "verify --recompute"])
@pytest.mark.parametrize("case", sorted(RECIPE_EDITS))
def test_an_edited_recipe_fails_verification(case, recompute, monkeypatch, capsys, fresh, merged, tmp_path):
    """The recipe is what --recompute trusts: the weights' metadata binds it (its SHA-256)."""
    RECIPE_EDITS[case](merged, fresh, tmp_path)
    args = ["verify", merged] + (["--recompute", "--full"] if recompute else [])
    message = outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), merged],
        tmp_path,
        args,
        1,
        "chatvector_recipe.yaml was edited after the merge",
        "FAILED",
    )
    assert "OK" not in message.split()


MALFORMED_RECIPES = {
    "not YAML": (b"recipe: [unclosed\n", "not valid YAML"),
    "not UTF-8": (b"recipe: \xff\xfe\n", "not UTF-8"),
    "a list": (b"- 1\n- 2\n", "invalid recipe"),
    "recipe of the wrong type": (b"recipe: 5\n", "'recipe'"),
    "inputs of the wrong type": (b"recipe: {terms: [{vector: v}]}\ninputs: 5\n", "'inputs'"),
    "terms missing": (b"recipe: {target: t}\n", "terms"),
    "a ratio that is not a number": (b"recipe: {target: t, terms: [{vector: v, ratio: lots}]}\n", "ratio"),
    "a NaN ratio": (b"recipe: {target: t, terms: [{vector: v, ratio: .nan}]}\n", "not a finite number"),
    "an integer of 5,000 digits": (
        b"recipe: {target: t, terms: [{vector: v, ratio: " + b"9" * 5000 + b"}]}\n",
        "cannot be read",
    ),
    "nested aliases": (b"a: &a [1, 1]\nb: &b [*a, *a]\nrecipe: {terms: [*b, *b]}\n", "aliases"),
    "a python tag": (b"recipe: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "nested 10,000 deep": (b"recipe: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested too deeply"),
    "output record of the wrong type": (
        b"recipe: {target: t, terms: [{vector: v}]}\noutput: {files: 5}\n",
        "output.files",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_RECIPES))
def test_malformed_recipe_fails_verification(case, monkeypatch, capsys, fresh, merged, tmp_path):
    content, expected = MALFORMED_RECIPES[case]
    (merged / "chatvector_recipe.yaml").write_bytes(content)
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), merged],
        tmp_path,
        ["verify", merged, "--recompute"],
        1,
        "chatvector_recipe.yaml",
        expected,
        "FAILED",
    )


@pytest.mark.parametrize("against", ["a directory", "missing", "a FIFO"])
def test_unusable_against_fails_verification(against, monkeypatch, capsys, fresh, merged, tmp_path):
    path = tmp_path / "recipes" / "r.yaml"
    path.parent.mkdir()
    if against == "a directory":
        path.mkdir()
    elif against == "a FIFO":
        os.mkfifo(path)
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), merged],
        tmp_path,
        ["verify", merged, "--against", path],
        1,
        str(path),
        "FAILED",
    )


def relative_merge(monkeypatch, capsys, fresh, tmp_path):
    """Merge from tmp_path with relative spellings (base, chat, cp)."""
    monkeypatch.chdir(tmp_path)
    code, message = run_cli(
        monkeypatch,
        capsys,
        "merge",
        "--base",
        "base",
        "--chat",
        "chat",
        "--target",
        "cp",
        "--ratio",
        "0.5",
        "-o",
        "out",
    )
    assert code == 0, message
    return tmp_path / "out"


def decoys(fresh, elsewhere):
    """Other models under the same relative names in another directory."""
    elsewhere.mkdir()
    shutil.copytree(fresh["chat"], elsewhere / "base")
    shutil.copytree(fresh["base"], elsewhere / "chat")
    shutil.copytree(fresh["base"], elsewhere / "cp")


def test_relative_inputs_verify_from_any_directory(monkeypatch, capsys, fresh, tmp_path):
    out = relative_merge(monkeypatch, capsys, fresh, tmp_path)
    recorded = (out / "chatvector_recipe.yaml").read_text()
    assert f"chat_path: {fresh['chat'].resolve()}" in recorded and "chat: chat" in recorded
    decoys(fresh, tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "elsewhere")
    message = outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), out, tmp_path / "elsewhere"],
        tmp_path,
        ["verify", out, "--recompute", "--full"],
        0,
        "OK",
    )
    assert "would mean" in message and str(tmp_path / "elsewhere" / "chat") in message  # it says so


def test_merge_recipe_from_elsewhere_merges_the_recorded_models(monkeypatch, capsys, fresh, tmp_path):
    out = relative_merge(monkeypatch, capsys, fresh, tmp_path)
    decoys(fresh, tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, message = run_cli(
        monkeypatch, capsys, "merge", "--recipe", out / "chatvector_recipe.yaml", "-o", tmp_path / "again"
    )
    assert code == 0, message
    first, again = load_file(out / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert sorted(first) == sorted(again) and all(torch.equal(first[n], again[n]) for n in first)


def test_a_recorded_input_that_is_gone_is_named(monkeypatch, capsys, fresh, tmp_path):
    out = relative_merge(monkeypatch, capsys, fresh, tmp_path)
    shutil.move(fresh["chat"], tmp_path / "moved-chat")
    before = fingerprint(out)
    outcome(
        monkeypatch,
        capsys,
        [fresh["base"], fresh["cp"], tmp_path / "moved-chat"],
        tmp_path / "out",
        ["merge", "--recipe", out / "chatvector_recipe.yaml", "-o", tmp_path / "out" / "x"],
        2,
        "InputError",
        str(fresh["chat"].resolve()),
        "chat_path",
    )
    outcome(
        monkeypatch,
        capsys,
        [fresh["base"], fresh["cp"], tmp_path / "moved-chat"],
        tmp_path,
        ["verify", out, "--recompute"],
        1,
        str(fresh["chat"].resolve()),
        "chat_path",
        "FAILED",
    )
    assert fingerprint(out) == before
