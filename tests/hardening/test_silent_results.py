"""Class 5: no silent or misleading results.

Options a recipe would override are refused beside --recipe; ratios are checked when parsed; a
NaN is blamed on the model that holds it; stop ids are never out of the vocabulary, empty or null,
and the four files naming the EOS agree; a config whose vocab_size disagrees with its embeddings
is refused; named chat templates are kept; ``--embeddings add`` refuses vocabularies that differ.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hardening_helpers import outcome
from helpers import merge_args, run_cli
from safetensors.torch import load_file, save_file


def merged(monkeypatch, capsys, args) -> None:
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code == 0, message


@pytest.fixture
def recipe(fresh, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"target: {fresh['cp']}\nterms: [{{base: {fresh['base']}, chat: {fresh['chat']}, ratio: 0.5}}]\n")
    return path


CLASHING = [
    ["--dtype", "bfloat16"],
    ["--ratio", "3"],
    ["--exclude", "lm_head"],
    ["--embeddings", "skip"],
    ["--base", "b"],
    ["--chat", "c"],
    ["--dtype", "float16", "--ratio", "3", "--exclude", "lm_head"],
]


@pytest.mark.parametrize("flags", CLASHING, ids=[" ".join(f) for f in CLASHING])
def test_options_a_recipe_would_override_are_refused(flags, monkeypatch, capsys, fresh, recipe, tmp_path):
    message = outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), recipe],
        tmp_path,
        ["merge", "--recipe", recipe, *flags, "-o", tmp_path / "out"],
        2,
        "InputError",
        "cannot be combined with --recipe",
        *flags[::2],
    )
    assert "merging" not in message


def test_target_may_override_a_recipe_and_run_options_are_fine(monkeypatch, capsys, fresh, recipe, tmp_path):
    merged(
        monkeypatch,
        capsys,
        [
            "merge",
            "--recipe",
            recipe,
            "--target",
            fresh["cp"],
            "--threads",
            "1",
            "--shard-size",
            "1MB",
            "-o",
            tmp_path / "out",
        ],
    )


BAD_RATIOS = {
    "nan": "not a finite number",
    "inf": "not a finite number",
    "-inf": "not a finite number",
    "1e-50": "rounds to 0",
    "-1e-46": "rounds to 0",
    "1e39": "does not fit in float32",
}


@pytest.mark.parametrize("ratio", sorted(BAD_RATIOS))
def test_unusable_ratios_are_refused_when_parsed(ratio, monkeypatch, capsys, fresh, tmp_path):
    args = [*merge_args(fresh, tmp_path / "out")[:-4], "--ratio", ratio, "-o", tmp_path / "out"]
    outcome(monkeypatch, capsys, fresh.values(), tmp_path, args, 2, "--ratio", BAD_RATIOS[ratio])


@pytest.mark.parametrize("ratio", ["nan", "1e-50", "1e39"])
def test_unusable_vector_ratios_are_refused(ratio, monkeypatch, capsys, fresh, tmp_path):
    merged(monkeypatch, capsys, ["extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", tmp_path / "v"])
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), tmp_path / "v"],
        tmp_path,
        ["apply", "--target", fresh["cp"], "--vector", f"{tmp_path / 'v'}:{ratio}", "-o", tmp_path / "out"],
        2,
        "--vector",
        BAD_RATIOS[ratio],
    )


def test_a_zero_ratio_is_allowed_and_gives_the_target(monkeypatch, capsys, fresh, tmp_path):
    args = [*merge_args(fresh, tmp_path / "out")[:-4], "--ratio", "0", "-o", tmp_path / "out"]
    merged(monkeypatch, capsys, args)
    out, cp = load_file(tmp_path / "out" / "model.safetensors"), load_file(fresh["cp"] / "model.safetensors")
    assert all(torch.equal(out[n], cp[n]) for n in cp)


@pytest.fixture
def extended_copies(extended, tmp_path):
    trio, cp_ext = extended
    sources = {"base": trio.base, "chat": trio.chat, "cp": cp_ext}
    return {role: shutil.copytree(source, tmp_path / role) for role, source in sources.items()}


@pytest.mark.parametrize(
    ("role", "name"),
    [("chat", "model.embed_tokens.weight"), ("base", "model.embed_tokens.weight"), ("chat", "lm_head.weight")],
)
def test_nan_in_a_row_aligned_embedding_names_its_model(role, name, monkeypatch, capsys, extended_copies, tmp_path):
    """The target's vocabulary is larger, so embedding rows are aligned by token; the NaN must be
    blamed on its model, not reported as an overflow of the result."""
    weights = extended_copies[role] / "model.safetensors"
    state = load_file(weights)
    state[name][9, 3] = float("nan")  # row 9 ("world"): a token both vocabularies have
    save_file(state, weights, metadata={"format": "pt"})
    message = outcome(
        monkeypatch,
        capsys,
        extended_copies.values(),
        tmp_path,
        merge_args(extended_copies, tmp_path / "out"),
        2,
        "NonFiniteError",
        name,
        f"in the {role} model",
        str(extended_copies[role]),
        "--allow-nonfinite",
    )
    assert "overflow" not in message


def rename_tokens(folder, renames: dict[str, str], eos: str | None = None) -> None:
    """Give a model's tokenizer other token strings at the same ids (a chat model with its own specials)."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    data["model"]["vocab"] = {renames.get(t, t): i for t, i in data["model"]["vocab"].items()}
    for token in data["added_tokens"]:
        token["content"] = renames.get(token["content"], token["content"])
    path.write_text(json.dumps(data))
    if eos is not None:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config["eos_token"] = eos
        (folder / "tokenizer_config.json").write_text(json.dumps(config))


def eos_everywhere(out) -> dict[str, object]:
    read = lambda name: json.loads((out / name).read_text())  # noqa: E731
    found = {
        "generation_config": read("generation_config.json").get("eos_token_id", "absent"),
        "config": read("config.json").get("eos_token_id", "absent"),
        "tokenizer_config": read("tokenizer_config.json").get("eos_token"),
    }
    if (out / "special_tokens_map.json").exists():
        found["special_tokens_map"] = read("special_tokens_map.json").get("eos_token")
    return found


def test_a_chat_eos_missing_from_the_target_keeps_the_targets_eos_everywhere(monkeypatch, capsys, fresh, tmp_path):
    rename_tokens(fresh["chat"], {"</s>": "<|im_end|>", "<|end|>": "<|eot|>"}, eos="<|im_end|>")
    (fresh["cp"] / "special_tokens_map.json").write_text(json.dumps({"eos_token": "</s>", "bos_token": "<s>"}))
    merged(monkeypatch, capsys, merge_args(fresh, tmp_path / "out"))
    out = tmp_path / "out"
    assert eos_everywhere(out) == {
        "generation_config": 3,
        "config": 3,
        "tokenizer_config": "</s>",
        "special_tokens_map": "</s>",
    }
    card = (out / "README.md").read_text()
    assert "the target's own EOS ('</s>', id 3) was kept" in card and "<|eot|>" in card
    from transformers import AutoTokenizer, GenerationConfig

    assert GenerationConfig.from_pretrained(out).eos_token_id == 3
    assert AutoTokenizer.from_pretrained(out).eos_token_id == 3


def test_a_chat_eos_at_another_id_is_translated_in_all_four_files(monkeypatch, capsys, fresh, tmp_path):
    """The chat model's end-of-turn token has other ids in the target: every file names the target's."""
    rename_tokens(fresh["chat"], {"</s>": "<|end|>", "<|end|>": "</s>"}, eos="<|end|>")
    (fresh["cp"] / "special_tokens_map.json").write_text(json.dumps({"eos_token": "</s>"}))
    merged(
        monkeypatch,
        capsys,
        merge_args(
            fresh,
            tmp_path / "out",
        )
        + ["--embeddings", "align"],
    )
    found = eos_everywhere(tmp_path / "out")
    assert found == {
        "generation_config": [3, 6],
        "config": [3, 6],
        "tokenizer_config": "<|end|>",
        "special_tokens_map": "<|end|>",
    }


@pytest.mark.parametrize("ids", [[6, 99999], [99999], [2**31 - 1]])
def test_stop_ids_outside_the_vocabulary_are_not_copied(ids, monkeypatch, capsys, fresh, tmp_path):
    generation = json.loads((fresh["chat"] / "generation_config.json").read_text())
    generation["eos_token_id"] = ids
    (fresh["chat"] / "generation_config.json").write_text(json.dumps(generation))
    merged(monkeypatch, capsys, merge_args(fresh, tmp_path / "out"))
    found = eos_everywhere(tmp_path / "out")
    stops = found["generation_config"] if isinstance(found["generation_config"], list) else [found["generation_config"]]
    assert stops and all(0 <= i < 40 for i in stops) and 3 in stops and found["config"] == found["generation_config"]
    assert f"stop token id {max(ids)}" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("role", ["cp", "chat", "base"])
def test_a_config_vocab_size_that_disagrees_with_the_embeddings_is_refused(role, monkeypatch, capsys, fresh, tmp_path):
    config = json.loads((fresh[role] / "config.json").read_text())
    config["vocab_size"] = 99
    (fresh[role] / "config.json").write_text(json.dumps(config))
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "PreflightError",
        "vocab_size 99",
        "has 40 rows",
        str(fresh[role]),
    )


TOOL_TEMPLATE = "{% for m in messages %}[tool] {{ m['content'] }}{% endfor %}"


@pytest.mark.parametrize("stored", ["tokenizer_config list", "chat_template.json list", "additional_chat_templates"])
def test_named_chat_templates_are_kept(stored, monkeypatch, capsys, fresh, tmp_path):
    chat = fresh["chat"]
    default = (chat / "chat_template.jinja").read_text()
    entries = [{"name": "default", "template": default}, {"name": "tool_use", "template": TOOL_TEMPLATE}]
    if stored == "additional_chat_templates":
        (chat / "additional_chat_templates").mkdir()
        (chat / "additional_chat_templates" / "tool_use.jinja").write_text(TOOL_TEMPLATE)
    else:
        (chat / "chat_template.jinja").unlink()
        name = "tokenizer_config.json" if stored.startswith("tokenizer_config") else "chat_template.json"
        data = json.loads((chat / name).read_text()) if (chat / name).exists() else {}
        data["chat_template"] = entries
        (chat / name).write_text(json.dumps(data))
    merged(monkeypatch, capsys, merge_args(fresh, tmp_path / "out"))
    out = tmp_path / "out"
    assert (out / "chat_template.jinja").read_text() == default
    assert (out / "additional_chat_templates" / "tool_use.jinja").read_text() == TOOL_TEMPLATE
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == entries
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == {"default": default, "tool_use": TOOL_TEMPLATE}


def test_a_template_name_that_is_a_path_is_not_written(monkeypatch, capsys, fresh, tmp_path):
    chat = fresh["chat"]
    (chat / "chat_template.jinja").unlink()
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": "x"}, {"name": "../../escape", "template": "y"}]
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    merged(monkeypatch, capsys, merge_args(fresh, tmp_path / "out"))
    assert not list(tmp_path.rglob("escape*"))
    assert "'../../escape' was not carried over" in (tmp_path / "out" / "README.md").read_text()


def test_embeddings_add_refuses_vocabularies_that_differ(monkeypatch, capsys, fresh, tmp_path):
    rename_tokens(fresh["chat"], {"cat": "dog", "dog": "cat"})  # same size, two tokens at each other's ids
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        [*merge_args(fresh, tmp_path / "out"), "--embeddings", "add"],
        2,
        "PreflightError",
        "--embeddings add",
        "2 at other ids",
        "--embeddings align",
    )
    merged(monkeypatch, capsys, [*merge_args(fresh, tmp_path / "aligned"), "--embeddings", "align"])


def test_embeddings_add_is_fine_when_vocabularies_are_identical_or_unknown(monkeypatch, capsys, fresh, tmp_path):
    merged(monkeypatch, capsys, [*merge_args(fresh, tmp_path / "same"), "--embeddings", "add"])
    for folder in fresh.values():
        (folder / "tokenizer.json").unlink()
    merged(monkeypatch, capsys, [*merge_args(fresh, tmp_path / "unknown"), "--embeddings", "add"])
