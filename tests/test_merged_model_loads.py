"""A merged directory is a normal Hugging Face model: loads, chats with the chat template, stops."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import chatvector


@pytest.mark.parametrize("family", ["llama", "qwen2_tied", "gpt2"])
def test_merged_model_loads_and_generates_with_chat_template(family, trios, tmp_path):
    trio = trios[family]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=1.0, out=out)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    # the template comes from the chat model (the cp model has none)
    assert tokenizer.chat_template is not None
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello cat"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.startswith("<|user|> hello cat") and prompt.endswith("<|assistant|>")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids.shape[1]
    # stop ids come from the chat model's generation config
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    assert model.generation_config.eos_token_id == [end_id, 3]
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [end_id, 3]


@pytest.mark.parametrize("family", ["qwen2_tied", "gpt2"])
def test_tied_embeddings_stay_tied(family, trios, tmp_path):
    trio = trios[family]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        names = set(handle.keys())
    assert not any("lm_head" in n for n in names)  # still stored once
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    config = json.loads((out / "config.json").read_text())
    assert config.get("tie_word_embeddings", True) is True


def test_model_card_and_recipe_record_the_merge(trios, tmp_path):
    trio = trios["llama"]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    card = (out / "README.md").read_text()
    assert "chatvector" in card and "0.5" in card and str(trio.chat) in card
    recipe = (out / "chatvector_recipe.yaml").read_text()
    assert "ratio: 0.5" in recipe and "header_sha256" in recipe
    from safetensors import safe_open

    first = sorted(out.glob("*.safetensors"))[0]
    with safe_open(str(first), framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["chatvector_recipe"])["terms"][0]["ratio"] == 0.5


def test_verify_recomputes_and_detects_tampering(trios, tmp_path):
    trio = trios["mistral"]
    out = tmp_path / "merged"
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=out)
    report = chatvector.verify(out, recompute=True, full=True)
    assert report.ok and len(report.recomputed) == report.tensors
    # flip one stored value: the recomputation must notice
    from safetensors.torch import load_file, save_file

    path = out / "model.safetensors"
    tensors = load_file(path)
    name = sorted(tensors)[3]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, path, metadata={"format": "pt"})
    broken = chatvector.verify(out, recompute=True, full=True)
    assert not broken.ok and broken.beyond_rounding == [name]


@pytest.mark.slow
def test_console_script_end_to_end(trios, tmp_path):
    """The installed `chatvector` command, as a user runs it: extract, apply, verify, generate."""
    import subprocess
    import sys
    from pathlib import Path

    trio = trios["llama"]
    exe = Path(sys.executable).parent / "chatvector"  # the console script installed beside python
    run = lambda *args: subprocess.run([exe, *map(str, args)], capture_output=True, text=True)  # noqa: E731
    assert run("extract", "--base", trio.base, "--chat", trio.chat, "-o", tmp_path / "vec").returncode == 0
    done = run("apply", "--target", trio.cp, "--vector", f"{tmp_path / 'vec'}:0.8", "-o", tmp_path / "out")
    assert done.returncode == 0 and "Wrote merge" in done.stdout
    verified = run("verify", tmp_path / "out", "--recompute", "--full")
    assert verified.returncode == 0 and "OK" in verified.stdout
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "ids = t.apply_chat_template([{'role': 'user', 'content': 'hello'}], add_generation_prompt=True,"
        " return_tensors='pt', return_dict=True)['input_ids']\n"
        "print(m.generate(ids, max_new_tokens=4, do_sample=False).shape[1] - ids.shape[1])\n"
    )
    generated = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out")], capture_output=True, text=True, check=True
    )
    assert int(generated.stdout.strip().splitlines()[-1]) >= 1
