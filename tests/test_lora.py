"""Chat vectors as PEFT LoRA adapters: the SVD against torch's, loading and merging with peft itself."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file
from test_hub_ids import hub_cache, record_downloads  # noqa: F401 (hub_cache: a fixture)
from test_merge_core import load_dir

import chatvector
from chatvector.errors import InputError, PreflightError
from chatvector.lora.extract import extract_lora
from chatvector.lora.scale import scale_adapter
from chatvector.lora.svd import low_rank


@pytest.fixture(scope="module")
def float_trio(extended):
    return extended[0]  # llama, float32, one file


@pytest.fixture(scope="module")
def vector(float_trio, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "cv"
    chatvector.extract(base=float_trio.base, chat=float_trio.chat, out=out)
    return out


def adapter_factors(folder):
    weights = load_file(folder / "adapter_model.safetensors")
    modules = sorted({k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in weights if ".lora_" in k})
    return {
        m: (weights[f"base_model.model.{m}.lora_B.weight"], weights[f"base_model.model.{m}.lora_A.weight"])
        for m in modules
    }


def test_low_rank_recovers_a_low_rank_matrix_and_reports_energy():
    rng = np.random.default_rng(0)
    exact = (rng.standard_normal((300, 8)) @ rng.standard_normal((8, 500))).astype(np.float32)
    factors = low_rank(exact, 8, "m")
    np.testing.assert_allclose(factors.b @ factors.a, exact, atol=2e-4 * np.abs(exact).max())
    assert factors.share == pytest.approx(1.0, abs=1e-6)
    noisy = exact + 0.3 * rng.standard_normal(exact.shape).astype(np.float32)
    sigma = torch.linalg.svdvals(torch.from_numpy(noisy).double())
    best = float((sigma[:8] ** 2).sum() / (sigma**2).sum())
    factors = low_rank(noisy, 8, "m")
    assert best * 0.995 <= factors.share <= best * (1 + 1e-6)
    approx = factors.b.astype(np.float64) @ factors.a
    assert float((approx**2).sum() / (noisy.astype(np.float64) ** 2).sum()) == pytest.approx(factors.share, 1e-4)


def test_adapter_holds_the_truncated_svd_of_every_linear_delta(vector, float_trio, tmp_path):
    report = extract_lora(tmp_path / "a", 4, vector=str(vector))
    chat, base = load_dir(float_trio.chat), load_dir(float_trio.base)
    factors = adapter_factors(tmp_path / "a")
    linear = sorted(n.removesuffix(".weight") for n, v in chat.items() if v.dim() == 2 and "embed" not in n)
    assert sorted(factors) == linear and "lm_head" in linear
    for module, (b, a) in factors.items():
        delta = (chat[f"{module}.weight"] - base[f"{module}.weight"]).double()
        sigma = torch.linalg.svdvals(delta)
        best = float((sigma[:4] ** 2).sum() / (sigma**2).sum())
        share = report.modules[f"{module}.weight"]["share"]
        assert 0.9 * best <= share <= best * (1 + 1e-5), module  # randomized SVD: close to the optimum
        product = b.double() @ a.double()
        assert float(product.square().sum() / delta.square().sum()) == pytest.approx(share, rel=1e-4)
        assert b.shape == (delta.shape[0], 4) and a.shape == (4, delta.shape[1])
    manifest = json.loads((tmp_path / "a" / "chatvector_lora.json").read_text())
    assert set(manifest["not_held"]) == {n for n, v in chat.items() if v.dim() == 1 or "embed" in n}
    assert manifest["by_layer"]["layer 0"] < 1.0
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4 and config["peft_type"] == "LORA"


def test_full_rank_adapter_reproduces_the_vector(vector, float_trio, tmp_path):
    report = extract_lora(tmp_path / "a", 64, vector=str(vector))  # ≥ every matrix's smaller side: exact SVD
    assert report.share == pytest.approx(1.0, abs=1e-6)
    chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "a", 1.0)], out=tmp_path / "lora")
    chatvector.apply(target=float_trio.cp, vectors=[(vector, 1.0)], out=tmp_path / "cv")
    lora, cv, cp = load_dir(tmp_path / "lora"), load_dir(tmp_path / "cv"), load_dir(float_trio.cp)
    for name, value in cv.items():
        if value.dim() == 2 and "embed" not in name:
            torch.testing.assert_close(lora[name], value, atol=1e-5, rtol=1e-5)
        else:  # not held by the adapter: the target's values, untouched
            assert torch.equal(lora[name], cp[name]), name


def peft_merged(target, adapter, ratio, dtype):
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(target, dtype=dtype), adapter)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.scaling["default"] *= ratio
    return {k: v.detach() for k, v in model.merge_and_unload().state_dict().items()}


@pytest.mark.parametrize("family", ["float32", "bfloat16"])
def test_apply_adapter_equals_peft_merge(family, vector, float_trio, trios, tmp_path):
    trio = float_trio if family == "float32" else trios["llama"]
    source = vector if family == "float32" else None
    if source is None:
        chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "cv")
        source = tmp_path / "cv"
    extract_lora(tmp_path / "a", 8, vector=str(source))
    chatvector.apply(target=trio.cp, vectors=[(tmp_path / "a", 0.7)], out=tmp_path / "o")
    ours = load_dir(tmp_path / "o")
    theirs = peft_merged(trio.cp, tmp_path / "a", 0.7, getattr(torch, family))
    assert sorted(ours) == sorted(k for k in theirs if k in ours) and len(ours) == len(theirs)
    target = load_dir(trio.cp)
    for name, value in ours.items():
        assert value.dtype == theirs[name].dtype
        if family == "float32":  # the same formula; only the matrix product's float32 summation order differs
            torch.testing.assert_close(value, theirs[name], atol=2e-7, rtol=2e-6)
        else:  # the float32 sums round to the same bfloat16 but for the odd element, one step apart
            steps = (value.view(torch.int16).int() - theirs[name].view(torch.int16).int()).abs()
            assert int(steps.max()) <= 1 and int((steps > 0).sum()) <= max(1, value.numel() // 1000), name
        if value.dim() == 2 and "embed" not in name:
            assert not torch.equal(value, target[name]), name


def test_peft_loads_the_adapter_and_generates(vector, float_trio, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extract_lora(tmp_path / "a", 8, vector=str(vector))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")  # the adapter carries the chat tokenizer
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(float_trio.cp), tmp_path / "a")
    inputs = tokenizer("hello world what is", return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 5
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(float_trio.cp)(**inputs).logits
        adapted = model(**inputs).logits
    assert not torch.allclose(plain, adapted)


def test_scaled_copy_is_one_command_and_exact(vector, float_trio, tmp_path, monkeypatch, capsys):
    code, message = run_cli(monkeypatch, capsys, "lora", vector, "--rank", "8", "-o", tmp_path / "a")
    assert code == 0 and "keeps" in message and "layer 1:" in message and "not in the adapter" in message
    code, message = run_cli(monkeypatch, capsys, "lora", tmp_path / "a", "--ratio", "0.5", "-o", tmp_path / "half")
    assert code == 0, message
    chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "half", 1.0)], out=tmp_path / "o1")
    chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "a", 0.5)], out=tmp_path / "o2")
    one, two = load_dir(tmp_path / "o1"), load_dir(tmp_path / "o2")
    assert all(torch.equal(one[n], two[n]) for n in one)  # 0.5 is exact in float32 either way
    assert json.loads((tmp_path / "half" / "chatvector_lora.json").read_text())["ratio"] == 0.5


def test_from_base_and_chat_equals_from_vector(vector, float_trio, tmp_path):
    extract_lora(tmp_path / "v", 4, vector=str(vector))
    extract_lora(tmp_path / "p", 4, base=str(float_trio.base), chat=str(float_trio.chat))
    assert (
        load_file(tmp_path / "v" / "adapter_model.safetensors").keys()
        == load_file(tmp_path / "p" / "adapter_model.safetensors").keys()
    )
    v, p = (load_file(tmp_path / x / "adapter_model.safetensors") for x in ("v", "p"))
    assert all(torch.equal(v[k], p[k]) for k in v)


def test_keep_whole_stores_modules_to_save(float_trio, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    extract_lora(tmp_path / "a", 4, base=str(float_trio.base), chat=str(float_trio.chat), keep_whole=True)
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert "model.norm" in config["modules_to_save"] and "model.embed_tokens" in config["modules_to_save"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(float_trio.cp), tmp_path / "a")
    merged = model.merge_and_unload().state_dict()
    chat = load_dir(float_trio.chat)
    assert torch.equal(merged["model.norm.weight"], chat["model.norm.weight"])  # replaced, as PEFT does
    with pytest.raises(InputError, match="whole modules"):
        chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "a", 1.0)], out=tmp_path / "o")


def test_bad_requests_are_clear(vector, trios, tmp_path, monkeypatch, capsys):
    code, message = run_cli(monkeypatch, capsys, "lora", vector, "-o", tmp_path / "a")
    assert code != 0 and "--rank" in message
    gpt2 = trios["gpt2"]
    with pytest.raises(InputError, match="Conv1D"):
        extract_lora(tmp_path / "g", 4, base=str(gpt2.base), chat=str(gpt2.chat))
    with pytest.raises(InputError, match="not a chat-vector directory"):
        extract_lora(tmp_path / "x", 4, vector=str(trios["llama"].cp))
    with pytest.raises(InputError, match="not both"):
        extract_lora(tmp_path / "x", 4, vector=str(vector), base=str(trios["llama"].base))
    assert not any(p.name.startswith(("a", "g", "x")) for p in tmp_path.iterdir())


def test_scale_refuses_what_is_not_an_adapter(vector, tmp_path):
    with pytest.raises(InputError, match="not a PEFT adapter"):
        scale_adapter(vector, 0.5, tmp_path / "o")


def test_adapter_reads_do_not_depend_on_chunking(vector, float_trio, tmp_path, monkeypatch):
    from chatvector.merge import engine

    extract_lora(tmp_path / "a", 8, vector=str(vector))
    chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "a", 0.7)], out=tmp_path / "whole")
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 100)  # chunks start mid-row
    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 33)
    chatvector.apply(target=float_trio.cp, vectors=[(tmp_path / "a", 0.7)], out=tmp_path / "chunked")
    whole, chunked = load_dir(tmp_path / "whole"), load_dir(tmp_path / "chunked")
    assert all(torch.equal(whole[n], chunked[n]) for n in whole)
    assert chatvector.verify(tmp_path / "chunked", recompute=True, full=True).ok


def auto_peft_merged(adapter):
    """What PEFT's own auto loading makes of an adapter: the model it names, with the adapter merged."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter)  # offline: conftest sets HF_HUB_OFFLINE
    return {k: v.detach() for k, v in model.merge_and_unload().state_dict().items()}


def assert_base_plus_update(merged, base_dir, adapter):
    """Every module the adapter holds is base + B @ A (scaling 1); everything else is the base's."""
    base, factors = load_dir(base_dir), adapter_factors(adapter)
    assert sorted(merged) == sorted(base)
    for name, value in base.items():
        module = name.removesuffix(".weight")
        if module in factors:
            b, a = factors[module]
            torch.testing.assert_close(merged[name], value + b @ a, atol=2e-6, rtol=2e-6)
        else:
            assert torch.equal(merged[name], value), name


@pytest.mark.parametrize("source", ["vector", "pair"])
def test_the_adapter_names_the_base_it_is_meant_for_and_loads_onto_it(source, vector, float_trio, tmp_path):
    """Issue 23.5: base_model_name_or_path is the base (never the vector dir, never the chat model)."""
    if source == "vector":
        report = extract_lora(tmp_path / "a", 4, vector=str(vector))
    else:
        report = extract_lora(tmp_path / "a", 4, base=str(float_trio.base), chat=str(float_trio.chat))
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(float_trio.base.resolve()) == report.base_model
    merged = auto_peft_merged(tmp_path / "a")
    assert_base_plus_update(merged, float_trio.base, tmp_path / "a")
    chat = load_dir(float_trio.chat)
    assert not torch.equal(merged["model.norm.weight"], chat["model.norm.weight"])  # the base's, not the chat's


def test_target_names_the_model_and_the_adapter_is_planned_against_it(
    vector, float_trio, tmp_path, monkeypatch, capsys
):
    code, message = run_cli(
        monkeypatch, capsys, "lora", vector, "--rank", "4", "--target", float_trio.cp, "-o", tmp_path / "a"
    )
    assert code == 0, message
    assert f"meant for {float_trio.cp.resolve()}" in message
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(float_trio.cp.resolve())
    assert_base_plus_update(auto_peft_merged(tmp_path / "a"), float_trio.cp, tmp_path / "a")
    # the same factors as without a target: the target only decides the frame and the name
    extract_lora(tmp_path / "plain", 4, vector=str(vector))
    ours, plain = (load_file(tmp_path / x / "adapter_model.safetensors") for x in ("a", "plain"))
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)


def test_a_vector_of_a_hub_base_names_the_hub_id(vector, tmp_path):
    copy = tmp_path / "cv"
    shutil.copytree(vector, copy)
    manifest = json.loads((copy / "chatvector.json").read_text())
    manifest["base"] = {"role": "base", "ref": "someone/base-7b", "hub_id": "someone/base-7b", "revision": "0" * 40}
    (copy / "chatvector.json").write_text(json.dumps(manifest))
    extract_lora(tmp_path / "a", 2, vector=str(copy))
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "someone/base-7b"


def test_a_target_of_another_architecture_is_refused_by_the_shared_preflight(vector, trios, tmp_path):
    with pytest.raises(PreflightError, match="not of the same architecture"):
        extract_lora(tmp_path / "a", 4, vector=str(vector), target=str(trios["qwen2_tied"].cp))
    assert not (tmp_path / "a").exists()


def test_a_target_with_a_larger_vocabulary_gets_an_output_head_aligned_by_token(vector, extended, tmp_path):
    """The vocabulary policy of the merge's preflight, for free: rows are matched by token string."""
    trio, cp_ext = extended
    extract_lora(tmp_path / "a", 4, vector=str(vector), target=str(cp_ext))
    b, a = adapter_factors(tmp_path / "a")["lm_head"]
    rows = load_dir(cp_ext)["lm_head.weight"].shape[0]
    assert b.shape[0] == rows > load_dir(trio.chat)["lm_head.weight"].shape[0]
    update = b @ a
    new_rows = update[load_dir(trio.chat)["lm_head.weight"].shape[0] :]
    assert float(new_rows.abs().max()) < 1e-6 < float(update.abs().max())  # tokens the chat model lacks get nothing
    assert_base_plus_update(auto_peft_merged(tmp_path / "a"), cp_ext, tmp_path / "a")


@pytest.mark.usefixtures("hub_cache")
def test_hub_ids_are_compared_before_weights_download_and_named_in_the_adapter(tmp_path, monkeypatch):
    """The merge's hub prechecks, for free: a wrong pairing is found from configs, before any weights."""
    fetched = record_downloads(monkeypatch)
    with pytest.raises(PreflightError, match="model_type"):
        extract_lora(tmp_path / "o", 4, base="tiny/base", chat="tiny/gpt2-chat")
    assert fetched and not any(with_weights for _, with_weights in fetched)
    assert not (tmp_path / "o").exists()
    extract_lora(tmp_path / "a", 4, base="tiny/base", chat="tiny/chat")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny/base"


def test_an_adapter_refactored_to_a_lower_rank_keeps_its_base_and_its_best_directions(vector, float_trio, tmp_path):
    extract_lora(tmp_path / "a8", 8, vector=str(vector))
    extract_lora(tmp_path / "a2", 2, vector=str(tmp_path / "a8"))  # the adapter read as a vector term
    configs = [json.loads((tmp_path / x / "adapter_config.json").read_text()) for x in ("a8", "a2")]
    assert (
        configs[0]["base_model_name_or_path"] == configs[1]["base_model_name_or_path"] == str(float_trio.base.resolve())
    )
    for module, (b, a) in adapter_factors(tmp_path / "a2").items():
        b8, a8 = adapter_factors(tmp_path / "a8")[module]
        sigma = torch.linalg.svdvals((b8 @ a8).double())
        best = (b8 @ a8).double() - (b @ a).double()
        assert float(best.square().sum()) == pytest.approx(float((sigma[2:] ** 2).sum()), rel=1e-3, abs=1e-9)


@pytest.mark.parametrize(
    ("flags", "left_out"),
    [
        (["--exclude", "lm_head", "--exclude", r"layers\.1\."], lambda m: m == "lm_head" or ".layers.1." in m),
        (["--embeddings", "skip"], lambda m: m == "lm_head"),
    ],
)
def test_the_merge_policies_decide_what_the_adapter_leaves_out(flags, left_out, vector, tmp_path, monkeypatch, capsys):
    code, message = run_cli(monkeypatch, capsys, "lora", vector, "--rank", "2", *flags, "-o", tmp_path / "a")
    assert code == 0, message
    extract_lora(tmp_path / "all", 2, vector=str(vector))
    every, held = adapter_factors(tmp_path / "all"), adapter_factors(tmp_path / "a")
    assert sorted(held) == sorted(m for m in every if not left_out(m)) and len(held) < len(every)
    assert all(torch.equal(held[m][0], every[m][0]) for m in held)  # the others unchanged
    not_held = json.loads((tmp_path / "a" / "chatvector_lora.json").read_text())["not_held"]
    assert {f"{m}.weight" for m in every if left_out(m)} <= set(not_held)
