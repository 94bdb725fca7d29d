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


def assert_in_place_equals_merge(model, recipe: Recipe, out: Path, memory_limit: int | None = None):
    """Update ``model`` in place with ``recipe``; compare each tensor with ``merge``'s output.

    By default the inputs are held in memory (tiny models always fit); ``memory_limit=0`` reads
    them from the files. Returns the update's report."""
    from chatvector.eval.backends.inplace import update_in_place

    chatvector.merge(recipe=recipe, out=out)
    expected = written(out)
    report = update_in_place(model, recipe, memory_limit=memory_limit)
    assert report.resident is (memory_limit is None and report.tensors > 0)
    state = model.state_dict()
    for name, tensor in expected.items():
        got = state[name]
        # a model loaded in another dtype holds what from_pretrained's conversion of the file gives
        assert torch.equal(got, tensor.to(got.dtype)), name
    for name in set(state) - set(expected):  # only tied copies of a written tensor are left over
        assert any(state[name].data_ptr() == state[other].data_ptr() for other in expected), name
    return report


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


@pytest.mark.parametrize("case", ["bfloat16 into float32", "aligned rows", "ties"])
def test_reading_the_files_at_each_candidate_gives_the_same_bytes(trios, extended, tmp_path, case):
    """The fallback when the inputs do not fit in memory: the engine streams from the files."""
    trio, cp_ext = extended
    model, recipe = {
        "bfloat16 into float32": lambda: (load(trios["llama"].cp, torch.float32), recipe_for(trios["llama"], 1.3)),
        "aligned rows": lambda: (load(cp_ext), recipe_for(trio, 1.0, target=cp_ext, embeddings="align")),
        "ties": lambda: (load(trios["mistral"].cp), recipe_for(trios["mistral"], 0.9, sparsify="ties:density=0.4")),
    }[case]()
    assert_in_place_equals_merge(model, recipe, tmp_path / "m", memory_limit=0)
    other = recipe.model_copy(update={"terms": (recipe.terms[0].model_copy(update={"ratio": 0.4}),)})
    assert_in_place_equals_merge(model, other, tmp_path / "m2", memory_limit=0)  # a second candidate


def test_inputs_held_in_memory_only_within_the_limit(trios, tmp_path, caplog):
    """The inputs go to memory when they fit the limit; over it, each candidate reads the files
    (and says so), and the memory held is released."""
    import logging

    from chatvector.eval.backends.inplace import _STATES, update_in_place

    trio = trios["llama"]
    model = load(trio.cp, torch.float32)
    with caplog.at_level(logging.INFO, logger="chatvector"):
        held = update_in_place(model, recipe_for(trio, 0.5))
    store = _STATES[model][0].store
    assert held.resident and store.nbytes > 0 and "inputs held in memory" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chatvector"):
        streamed = update_in_place(model, recipe_for(trio, 0.8), memory_limit=store.nbytes - 1)
    assert not streamed.resident and store.nbytes == 0 and "read from the files" in caplog.text
    assert_in_place_equals_merge(model, recipe_for(trio, 1.1), tmp_path / "m", memory_limit=0)


def test_a_candidate_after_another_recomputes_only_the_changed_groups(trios, tmp_path):
    """As a search varies one group's ratio: the tensors of the other groups are left as they are
    (their work is the same), and the model still equals the merge of the new candidate."""
    from chatvector.eval.backends.inplace import update_in_place

    trio = trios["mistral"]
    model = load(trio.cp)
    first = update_in_place(model, recipe_for(trio, 1.0, ratio_rule=("mlp=0.3", "self_attn=1.2")))
    assert first.unchanged == 0
    again = assert_in_place_equals_merge(
        model, recipe_for(trio, 1.0, ratio_rule=("mlp=0.6", "self_attn=1.2")), tmp_path / "m"
    )
    mlp = [n for n in model.state_dict() if ".mlp." in n]
    assert again.tensors == len(mlp) and again.unchanged == first.tensors - len(mlp)
    # the same candidate again computes nothing; then another schedule rewrites all it changes
    same = update_in_place(model, recipe_for(trio, 1.0, ratio_rule=("mlp=0.6", "self_attn=1.2")))
    assert (same.tensors, same.unchanged) == (0, first.tensors)
    assert_in_place_equals_merge(model, recipe_for(trio, {"layers": [0.2, 1.4]}), tmp_path / "m2")
    assert_in_place_equals_merge(model, recipe_for(trio, 0.7, sparsify="dare:density=0.5,seed=3"), tmp_path / "m3")
    assert_in_place_equals_merge(model, recipe_for(trio, 0.7, sparsify="dare:density=0.5,seed=4"), tmp_path / "m4")


def test_a_changed_input_file_is_read_again(trios, tmp_path):
    """The work of a tensor includes its files' size and modification time: a chat model rewritten
    between two candidates of the same recipe is read again, into memory and into the model."""
    from helpers import copy_model
    from safetensors.torch import load_file, save_file

    from chatvector.eval.backends.inplace import update_in_place

    trio = trios["mistral"]
    chat = copy_model(trio.chat, tmp_path / "chat")
    recipe = Recipe(target=str(trio.cp), terms=(PairTerm(base=str(trio.base), chat=str(chat), ratio=0.8),))
    model = load(trio.cp)
    update_in_place(model, recipe)
    (weights,) = chat.glob("*.safetensors")
    tensors = load_file(weights)
    save_file({n: t * 1.5 for n, t in tensors.items()}, weights, metadata={"format": "pt"})
    again = assert_in_place_equals_merge(model, recipe, tmp_path / "m")
    assert again.unchanged == 0


def test_a_failed_candidate_leaves_nothing_assumed(trios, tmp_path):
    """An overflow stops a candidate part-way, with merge's message; the tensors it wrote are then
    computed again, so the candidate before it is not taken to be still in place. (float16
    output, written into a float32 model: torch's conversion in the sink.)"""
    from chatvector.errors import NonFiniteError
    from chatvector.eval.backends.inplace import update_in_place

    trio = trios["mistral"]
    model = load(trio.cp)
    update_in_place(model, recipe_for(trio, 0.5, dtype="float16"))
    with pytest.raises(NonFiniteError) as raised:
        update_in_place(model, recipe_for(trio, 1e7, dtype="float16"))
    with pytest.raises(NonFiniteError) as from_merge:
        chatvector.merge(recipe=recipe_for(trio, 1e7, dtype="float16"), out=tmp_path / "bad")

    def cause(error):  # the message without the tensor's name (workers may meet another one first)
        return str(error.value).split(": ", 1)[1]

    assert "overflow" in cause(raised) and cause(raised) == cause(from_merge)
    assert_in_place_equals_merge(model, recipe_for(trio, 0.5, dtype="float16"), tmp_path / "m")


def test_a_model_whose_tensors_moved_is_written_whole(trios, tmp_path):
    """Another storage for a parameter (as moving the model gives) makes the next update write
    every tensor, not only those whose work changed."""
    from chatvector.eval.backends.inplace import update_in_place

    trio = trios["mistral"]
    model = load(trio.cp)
    update_in_place(model, recipe_for(trio, 0.5))
    weight = model.get_input_embeddings().weight
    weight.data = torch.zeros_like(weight.data)
    again = assert_in_place_equals_merge(model, recipe_for(trio, 0.5), tmp_path / "m")
    assert again.unchanged == 0


def test_numpy_widens_bfloat16_exactly_as_torch(tmp_path):
    """The sink widens bfloat16 chunks into float32 parameters with numpy: the same bits as
    torch's conversion for all 65536 bfloat16 values, NaN payloads included."""
    import ml_dtypes
    import numpy as np

    bits = np.arange(1 << 16, dtype=np.uint16)
    by_torch = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).to(torch.float32).numpy()
    by_numpy = np.empty(bits.size, dtype=np.float32)
    np.copyto(by_numpy, bits.view(ml_dtypes.bfloat16), casting="unsafe")
    assert np.array_equal(by_numpy.view(np.uint32), by_torch.view(np.uint32))


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
