"""In-place merges: a loaded model's parameters, updated by the merge engine itself, equal bit for bit
what ``chatvector merge`` writes for the same recipe (docs/sweep.md, "In place")."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

import chatvector
from chatvector.errors import InputError
from chatvector.merge.recipe import PairTerm, Recipe
from chatvector.options import MergeOptions

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 256 elements, so every tiny tensor arrives in several writes at several offsets
    (row blocks for aligned embeddings), as a real model's do."""
    engine = importlib.import_module("chatvector.merge.engine")  # chatvector.merge is also the api function
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 256)


def load(folder: Path, dtype="auto"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()


def written(folder: Path) -> dict:
    """Every tensor of a merge output, as safetensors stores it."""
    from safetensors.torch import load_file

    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def recipe_for(trio, ratio=0.7, target=None, **options) -> Recipe:
    return Recipe(
        target=str(target or trio.cp),
        terms=(PairTerm(base=str(trio.base), chat=str(trio.chat), ratio=ratio),),
        options=MergeOptions(**options),
    )


def assert_in_place_equals_merge(model, recipe: Recipe, out: Path) -> None:
    """Update ``model`` in place with ``recipe``; compare each tensor with ``merge``'s output."""
    from chatvector.eval.backends.inplace import update_in_place

    chatvector.merge(recipe=recipe, out=out)
    expected = written(out)
    update_in_place(model, recipe)
    state = model.state_dict()
    for name, tensor in expected.items():
        got = state[name]
        # a model loaded in another dtype holds what from_pretrained's conversion of the file gives
        assert torch.equal(got, tensor.to(got.dtype)), name
    for name in set(state) - set(expected):  # only tied copies of a written tensor are left over
        assert any(state[name].data_ptr() == state[other].data_ptr() for other in expected), name


def differs_from_target(model, trio_cp: Path) -> bool:
    before = load(trio_cp, dtype=next(model.parameters()).dtype).state_dict()
    return any(not torch.equal(before[n], t) for n, t in model.state_dict().items())


def test_plain_ratio(trios, tmp_path):
    trio = trios["llama"]  # bfloat16, sharded
    model = load(trio.cp)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert_in_place_equals_merge(model, recipe_for(trio), tmp_path / "m")
    assert differs_from_target(model, trio.cp)  # the update did something


def test_float32_model_of_a_bfloat16_merge(trios, tmp_path):
    """The hf backend loads float32 on the CPU: chunks are widened as from_pretrained widens them."""
    trio = trios["llama"]
    model = load(trio.cp, dtype=torch.float32)
    assert_in_place_equals_merge(model, recipe_for(trio, 1.3), tmp_path / "m")


def test_ratio_rules(trios, tmp_path):
    trio = trios["mistral"]
    recipe = recipe_for(trio, 1.0, ratio_rule=("lm_head|embed_tokens=0", "mlp=0.3"))
    assert_in_place_equals_merge(load(trio.cp), recipe, tmp_path / "m")


def test_layer_schedule(trios, tmp_path):
    trio = trios["mistral"]
    assert_in_place_equals_merge(load(trio.cp), recipe_for(trio, {"layers": [0.2, 1.4]}), tmp_path / "m")


def test_two_vectors(trios, tmp_path):
    llama, mistral = trios["llama"], trios["mistral"]
    recipe = Recipe(
        target=str(llama.cp),
        terms=(
            PairTerm(base=str(llama.base), chat=str(llama.chat), ratio=0.6),
            PairTerm(base=str(llama.chat), chat=str(llama.cp), ratio=-0.4),
        ),
    )
    assert mistral  # the llama trio holds enough distinct models for two different vectors
    assert_in_place_equals_merge(load(llama.cp), recipe, tmp_path / "m")


def test_embeddings_align_on_an_extended_vocabulary(extended, tmp_path):
    trio, cp_ext = extended
    recipe = recipe_for(trio, 1.0, target=cp_ext, embeddings="align")
    model = load(cp_ext)
    assert_in_place_equals_merge(model, recipe, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert model.get_input_embeddings().weight.shape[0] == config["vocab_size"]


def test_tied_embeddings(trios, tmp_path):
    trio = trios["qwen2_tied"]
    model = load(trio.cp)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert_in_place_equals_merge(model, recipe_for(trio, 0.8), tmp_path / "m")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_gpt2_conv1d_layers_and_tied_head(trios, tmp_path):
    assert_in_place_equals_merge(load(trios["gpt2"].cp), recipe_for(trios["gpt2"], 0.6), tmp_path / "m")


@pytest.mark.parametrize("method", ["ties:density=0.4", "dare:density=0.5,seed=7"])
def test_sparsifying_methods(trios, tmp_path, method):
    trio = trios["mistral"]
    assert_in_place_equals_merge(load(trio.cp), recipe_for(trio, 0.9, sparsify=method), tmp_path / "m")


def _registered_examples() -> list[str]:
    from chatvector.merge.methods import method_class, registered

    return [method_class(name).example for name in registered()]


@pytest.mark.parametrize("method", _registered_examples())
def test_every_registered_merge_method(trios, tmp_path, method):
    """Each method's own example (docs/methods.md), run by the engine into the model."""
    trio = trios["mistral"]
    assert_in_place_equals_merge(load(trio.cp), recipe_for(trio, 0.9, method=method), tmp_path / "m")


def test_successive_candidates_leave_no_residue(trios, tmp_path):
    """Each candidate rewrites every tensor from the target's file: 1.0 then 0.5 equals 0.5 alone,
    and excluded tensors that 1.0 changed are back to the target's values."""
    from chatvector.eval.backends.inplace import update_in_place

    trio = trios["llama"]
    model = load(trio.cp)
    update_in_place(model, recipe_for(trio, 1.0))
    assert_in_place_equals_merge(model, recipe_for(trio, 0.5, exclude=("mlp",)), tmp_path / "m")


def test_a_merge_the_model_cannot_hold_is_refused_before_writing(extended):
    """The extended target's embeddings have more rows than the loaded model's: a one-line error."""
    from chatvector.eval.backends.inplace import update_in_place

    trio, cp_ext = extended
    model = load(trio.cp)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    refused = r"(embed_tokens|lm_head).weight is \[\d+, 32\] in the merge but .*--no-in-place"
    with pytest.raises(InputError, match=refused):
        update_in_place(model, recipe_for(trio, 1.0, target=cp_ext, embeddings="align"))
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())


def sweep_spec(trio, out: Path, **overrides):
    from chatvector.eval.options import DataOptions, GenerationOptions
    from chatvector.sweep.run import SweepSpec

    return SweepSpec(
        out=out,
        ratios=(0.5, 1.2),
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        data=DataOptions(lang="zh-Hant", suite=("verifiable", "safety"), limit=3),
        generation=GenerationOptions(max_new_tokens=8),
        **overrides,
    )


def replies_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "replies.jsonl").read_text(encoding="utf-8").splitlines()]


def texts(folder: Path) -> list[tuple]:
    return [(r["suite"], r["id"], r["turn"], r["reply"]) for r in replies_of(folder)]


def test_in_place_sweep_gives_the_replies_and_metrics_of_a_sweep_on_disk(trios, tmp_path):
    from chatvector.sweep.run import run_sweep

    trio = trios["llama"]
    on_disk = run_sweep(sweep_spec(trio, tmp_path / "disk", in_place=False))
    in_place = run_sweep(sweep_spec(trio, tmp_path / "inplace", keep=True))  # in place by default
    assert (on_disk["in_place"], in_place["in_place"]) == (False, True)
    assert [r["metrics"] for r in in_place["rows"]] == [r["metrics"] for r in on_disk["rows"]]
    for name in ("r=0.5", "r=1.2"):
        disk, here = tmp_path / "disk" / "ratios" / name, tmp_path / "inplace" / "ratios" / name
        assert replies_of(here) == replies_of(disk) and len(replies_of(here)) == 6
        recorded = [json.loads((d / "results.json").read_text())["recipe"] for d in (disk, here)]
        assert recorded[0] == recorded[1] and recorded[0]["terms"][0]["ratio"] == float(name[2:])
    # --keep still writes each ratio's model; nothing else is left behind
    assert sorted(p.name for p in (tmp_path / "inplace" / "models").iterdir()) == ["r=0", "r=0.5", "r=1.2"]
    # a sweep interrupted in place resumes in place: only the missing ratio is evaluated
    shutil.rmtree(tmp_path / "inplace" / "ratios" / "r=1.2")
    resumed = run_sweep(sweep_spec(trio, tmp_path / "inplace"))
    assert [r["metrics"] for r in resumed["rows"]] == [r["metrics"] for r in on_disk["rows"]]
    # (without --keep no weight files exist to key the replies by: the recipe in the model id does)
    assert texts(tmp_path / "inplace" / "ratios" / "r=1.2") == texts(tmp_path / "disk" / "ratios" / "r=1.2")
    # the two ratios answer differently, so equal replies say each ratio's weights were in place
    low, high = ([r["reply"] for r in replies_of(tmp_path / "inplace" / "ratios" / n)] for n in ("r=0.5", "r=1.2"))
    assert low != high


def test_in_place_is_refused_where_it_cannot_work(trios, tmp_path):
    from chatvector.sweep.run import run_sweep

    with pytest.raises(InputError, match="--in-place: ratios evaluated in several processes"):
        run_sweep(sweep_spec(trios["llama"], tmp_path / "o", in_place=True, workers=2))
    assert not (tmp_path / "o").exists()


def test_the_cli_flag_reaches_the_sweep(trios, tmp_path, monkeypatch, capsys):
    """``--in-place`` is parsed (a --x/--no-x flag of SweepOptions) and refused with --workers 2."""
    from helpers import run_cli

    trio = trios["llama"]
    common = ["sweep", "--base", trio.base, "--chat", trio.chat, "--target", trio.cp, "--workers", "2"]
    code, message = run_cli(monkeypatch, capsys, *common, "--in-place", "-o", tmp_path / "o")
    assert code == 2 and "--in-place: ratios evaluated in several processes" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_benchmark_smoke_mode_runs_and_finds_identical_replies(tmp_path):
    """bench/sweep_inplace.py --smoke: both paths on a tiny model; exit 0 only if the replies agree."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "sweep_inplace.py"
    report = tmp_path / "smoke.md"
    done = subprocess.run(
        [sys.executable, str(bench), "--smoke", "--out", str(report)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in report.read_text().splitlines() if line.startswith("| smoke"))
    assert row.endswith("| yes (6 replies) |")
    assert json.loads(report.with_suffix(".json").read_text())[0]["mismatches"] == []
