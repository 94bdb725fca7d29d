"""``--format gguf``: the file holds the merged tensors, loads in llama.cpp, tokenizes and
generates as transformers does, and a failure leaves nothing.

Each tiny model family is merged twice, once to safetensors in float32 and once to GGUF; every
GGUF tensor must equal the safetensors tensor after the same conversion, done here
independently (llama.cpp's Q/K row order by reshape, the type with the ``gguf`` quantizers).
The llama.cpp checks need ``llama-cpp-python`` (the ``gguf`` extra) and are skipped without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'chatvector[gguf]')")

from gguf_models import SAMPLES, build_gguf_trio  # noqa: E402
from helpers import no_leftovers, run_cli, snapshot, trio_merge  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from chatvector.io.gguf import HASHES_KEY, RECIPE_KEY  # noqa: E402

EXE = Path(sys.executable).with_name("chatvector")
CASES = {  # name: (family, tokenizer, extended CP vocabulary)
    "llama2-spm-extended": ("llama", "spm", True),
    "llama3-bpe": ("llama", "llama3", False),
    "mistral-spm": ("mistral", "spm", False),
    "qwen2-tied-extended": ("qwen2_tied", "qwen2", True),
    "demo-family-tokenizer": ("llama", "demo", False),
}


@pytest.fixture(scope="module")
def gguf_trios(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-trios")
    return {
        name: build_gguf_trio(family, kind, root / name, extended=extended)
        for name, (family, kind, extended) in CASES.items()
    }


@pytest.fixture(scope="module")
def merged(gguf_trios, tmp_path_factory):
    """Per case: the float32 safetensors merge, and GGUF merges of it by type (made on demand)."""
    root = tmp_path_factory.mktemp("gguf-merged")
    made: dict[tuple[str, str], object] = {}

    def get(case: str, kind: str):
        if (case, kind) not in made:
            trio = gguf_trios[case]
            if kind == "safetensors":
                out = root / case / "st"
                args = trio_merge(trio, out, "--ratio", "0.5", "--dtype", "float32")
            else:
                out = root / case / f"model-{kind}.gguf"
                args = trio_merge(trio, out, "--ratio", "0.5", "--format", "gguf", "--gguf-type", kind)
            done = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            made[(case, kind)] = out
        return made[(case, kind)]

    return get


def llama_cpp_order(name: str, values: np.ndarray, config: dict) -> np.ndarray:
    """llama.cpp's row order of Llama's Q and K (rotary pairs interleaved), by reshape."""
    if config["model_type"] not in ("llama", "mistral"):
        return values
    if ".q_proj." in name:
        heads = config["num_attention_heads"]
    elif ".k_proj." in name:
        heads = config["num_key_value_heads"]
    else:
        return values
    shape = values.shape
    return values.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def expected_bytes(values: np.ndarray, kind: str) -> tuple[np.ndarray, object]:
    types = gguf.GGMLQuantizationType
    if values.ndim == 1 or kind == "f32":
        qtype = types.F32
    elif kind == "q8_0" and values.shape[-1] % 32:
        qtype = types.F16
    else:
        qtype = {"f16": types.F16, "bf16": types.BF16, "q8_0": types.Q8_0}[kind]
    return np.ascontiguousarray(gguf.quants.quantize(values, qtype)).view(np.uint8).reshape(-1), qtype


# every case in f32 and q8_0; f16 and bf16 (converted element by element) on one Llama and one Qwen2
TYPED_CASES = [(case, kind) for case in CASES for kind in ("f32", "q8_0")] + [
    (case, kind) for case in ("llama2-spm-extended", "qwen2-tied-extended") for kind in ("f16", "bf16")
]


@pytest.mark.parametrize(("case", "kind"), TYPED_CASES)
def test_every_tensor_equals_the_merge_after_the_same_conversion(case, kind, merged):
    folder = merged(case, "safetensors")
    config = json.loads((folder / "config.json").read_text())
    weights = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(path))
    arch = gguf.MODEL_ARCH.LLAMA if config["model_type"] in ("llama", "mistral") else gguf.MODEL_ARCH.QWEN2
    names = gguf.TensorNameMap(arch, config["num_hidden_layers"])
    reader = gguf.GGUFReader(merged(case, kind))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == len(weights)
    hashes = json.loads(bytes(reader.fields[HASHES_KEY].parts[-1]).decode())
    for name, values in weights.items():
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        want, qtype = expected_bytes(llama_cpp_order(name, values.astype(np.float32), config), kind)
        got = tensors[gguf_name]
        assert got.tensor_type == qtype, name
        assert list(got.shape) == list(reversed(values.shape)), name
        data = np.asarray(got.data).view(np.uint8).reshape(-1)
        assert np.array_equal(data, want), f"{case} {kind}: {name} differs"
        assert hashes[gguf_name] == xxhash.xxh3_128_hexdigest(data.tobytes()), name
    recipe = bytes(reader.fields[RECIPE_KEY].parts[-1]).decode()
    assert "ratio: 0.5" in recipe


def test_metadata_carries_the_merges_template_and_stop_ids(merged):
    reader = gguf.GGUFReader(merged("llama2-spm-extended", "f32"))
    folder = merged("llama2-spm-extended", "safetensors")

    def text(key: str) -> str:
        return bytes(reader.fields[key].parts[-1]).decode()

    def number(key: str) -> int:
        return int(reader.fields[key].parts[-1][0])

    assert text("tokenizer.chat_template") == (folder / "chat_template.jinja").read_text()
    generation = json.loads((folder / "generation_config.json").read_text())
    assert number("tokenizer.ggml.eos_token_id") == 3
    assert [number("tokenizer.ggml.eot_token_id"), 3] == generation["eos_token_id"]
    assert text("general.architecture") == "llama"


@pytest.fixture(scope="module")
def loaded(merged):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the gguf extra)")
    made = {}

    def get(case: str, kind: str = "f32"):
        if (case, kind) not in made:
            made[(case, kind)] = llama_cpp.Llama(
                model_path=str(merged(case, kind)), n_ctx=64, n_threads=1, verbose=False, vocab_only=False
            )
        return made[(case, kind)]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_llama_cpp_tokenizes_like_transformers(case, merged, loaded):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(merged(case, "safetensors"))
    model = loaded(case)
    assert model.n_vocab() == len(hf)
    for sample in SAMPLES:
        want = hf.encode(sample, add_special_tokens=False)
        assert model.tokenize(sample.encode(), add_bos=False, special=False) == want, sample


def test_llama_cpp_tokenizes_every_text_of_the_demo_world_like_transformers(merged, loaded):
    """The demo family's tokenizer through llama.cpp: every text its world writes, and a chat turn
    with the template's markers, give the same ids as transformers."""
    from transformers import AutoTokenizer

    from chatvector.demo import corpus
    from chatvector.demo.world import make_world

    hf = AutoTokenizer.from_pretrained(merged("demo-family-tokenizer", "safetensors"))
    model = loaded("demo-family-tokenizer")
    texts = corpus.vocabulary_texts(make_world(0))
    turn = [{"role": "user", "content": texts[0]}, {"role": "assistant", "content": texts[-1]}]
    chat = hf.apply_chat_template(turn, tokenize=False)
    assert len(texts) > 1000
    for text in texts:
        want = hf.encode(text, add_special_tokens=False)
        assert model.tokenize(text.encode(), add_bos=False, special=False) == want, text
    assert model.tokenize(chat.encode(), add_bos=False, special=True) == hf.encode(chat, add_special_tokens=False)


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_generation_matches_transformers_in_f32(case, merged, loaded):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = merged(case, "safetensors")
    hf = AutoTokenizer.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = loaded(case)
    for prompt in SAMPLES[:3]:
        ids = hf.encode(prompt, add_special_tokens=False)
        with torch.no_grad():
            out = reference.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=None)
        want = out[0, len(ids) :].tolist()
        model.reset()
        got = []
        for token in model.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
            got.append(token)
            if len(got) == len(want):
                break
        assert got == want, prompt


def test_an_unsupported_architecture_is_refused_before_any_work(trios, tmp_path, monkeypatch, capsys):
    trio = trios["gpt2"]
    before = snapshot(trio.base, trio.chat, trio.cp)
    out = tmp_path / "model.gguf"
    code, message = run_cli(monkeypatch, capsys, *trio_merge(trio, out, "--ratio", "0.5", "--format", "gguf"))
    assert code != 0
    assert "GPT2LMHeadModel is not supported" in message, message
    assert no_leftovers(tmp_path, "model.gguf")
    assert snapshot(trio.base, trio.chat, trio.cp) == before


def test_a_tokenizer_llama_cpp_cannot_read_is_refused(trios, tmp_path, monkeypatch, capsys):
    trio = trios["mistral"]  # a word-level tokenizer
    code, message = run_cli(
        monkeypatch, capsys, *trio_merge(trio, tmp_path / "model.gguf", "--ratio", "0.5", "--format", "gguf")
    )
    assert code != 0
    assert "WordLevel" in message and "no llama.cpp form" in message, message
    assert no_leftovers(tmp_path, "model.gguf")


def test_a_byte_level_bpe_without_merges_is_refused_before_any_work(gguf_trios, tmp_path, monkeypatch, capsys):
    trio = gguf_trios["llama3-bpe"]
    cp = tmp_path / "cp"
    shutil.copytree(trio.cp, cp)
    data = json.loads((cp / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = []  # llama.cpp cannot load such a vocabulary
    (cp / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    args = trio_merge(trio, tmp_path / "out.gguf", "--ratio", "0.5", "--format", "gguf", target=cp)
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code != 0
    assert "has no merges" in message and "tokenizer.json" in message, message
    assert no_leftovers(tmp_path, "out.gguf")


FULL_DISK = """
import errno, os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
if sys.argv[2] == "mid-write":
    def refuse(*args):
        raise OSError(errno.EOPNOTSUPP, "not supported")
    os.posix_fallocate = refuse
from chatvector.cli import main
sys.argv = ["chatvector", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize("when", ["reserving", "mid-write"])
def test_a_full_disk_during_the_gguf_write_keeps_nothing(when, gguf_trios, tmp_path):
    """Every file capped at 100 kB: the tokenizer files and the GGUF header fit, the data does not."""
    trio = gguf_trios["llama2-spm-extended"]
    before = snapshot(trio.base, trio.chat, trio.cp)
    args = trio_merge(trio, tmp_path / "model.gguf", "--ratio", "0.5", "--format", "gguf", "--gguf-type", "f32")
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(100_000), when, *map(str, args)], capture_output=True, text=True
    )
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "no space left writing" in message and "Traceback" not in message, message
    assert no_leftovers(tmp_path, "model.gguf"), list(tmp_path.iterdir())
    assert snapshot(trio.base, trio.chat, trio.cp) == before


@pytest.mark.parametrize("case", ["llama3-bpe", "qwen2-tied-extended"])
def test_export_of_the_safetensors_merge_equals_the_gguf_merge(case, merged, tmp_path):
    out = tmp_path / "exported.gguf"
    done = subprocess.run(
        [str(EXE), "export", "gguf", str(merged(case, "safetensors")), "-o", str(out), "--gguf-type", "q8_0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    exported = {t.name: t for t in gguf.GGUFReader(out).tensors}
    direct = {t.name: t for t in gguf.GGUFReader(merged(case, "q8_0")).tensors}
    assert sorted(exported) == sorted(direct)
    for name, tensor in direct.items():
        assert tensor.tensor_type == exported[name].tensor_type, name
        assert np.array_equal(np.asarray(tensor.data), np.asarray(exported[name].data)), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported.gguf"]


def test_apply_with_format_gguf_equals_the_merge(gguf_trios, merged, tmp_path):
    """extract then apply --format gguf: the same file contents as merge --format gguf (float32 vector)."""
    trio = gguf_trios["qwen2-tied-extended"]
    vector, out = tmp_path / "vector", tmp_path / "applied.gguf"
    for args in (
        ["extract", "--base", trio.base, "--chat", trio.chat, "-o", vector],
        ["apply", "--target", trio.cp, "--vector", f"{vector}:0.5", "--format", "gguf", "--gguf-type", "f32"]
        + ["-o", out],
    ):
        done = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    applied = {t.name: t for t in gguf.GGUFReader(out).tensors}
    direct = {t.name: t for t in gguf.GGUFReader(merged("qwen2-tied-extended", "f32")).tensors}
    assert sorted(applied) == sorted(direct)
    for name, tensor in direct.items():
        assert np.array_equal(np.asarray(tensor.data), np.asarray(applied[name].data)), name


def test_extract_refuses_format_gguf(gguf_trios, tmp_path, monkeypatch, capsys):
    trio = gguf_trios["llama3-bpe"]
    args = ["extract", "--base", trio.base, "--chat", trio.chat, "--format", "gguf", "-o", tmp_path / "v"]
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and "writes a model, not a vector" in message, message
    assert not list(tmp_path.iterdir())


def test_a_merge_that_overflows_f16_is_refused_naming_the_wider_types(gguf_trios, tmp_path, monkeypatch, capsys):
    """The engine rounds to f16 itself, so a value beyond f16's range is found before it becomes Inf."""
    import shutil

    from safetensors.numpy import save_file

    trio = gguf_trios["llama2-spm-extended"]
    chat = tmp_path / "chat"
    shutil.copytree(trio.chat, chat)
    name = "model.layers.0.mlp.down_proj.weight"
    for path in chat.glob("*.safetensors"):
        weights = load_file(path)
        if name in weights:
            weights[name] = weights[name].copy()
            weights[name].flat[5] = 3e5
            save_file(weights, str(path), metadata={"format": "pt"})
    args = ["merge", "--base", trio.base, "--chat", chat, "--target", trio.cp, "--ratio", "1.0"]
    code, message = run_cli(
        monkeypatch, capsys, *args, "--format", "gguf", "--gguf-type", "f16", "-o", tmp_path / "m.gguf"
    )
    assert code != 0
    assert name in message and "overflow F16" in message and "--gguf-type bf16 or f32" in message, message
    assert no_leftovers(tmp_path, "m.gguf")
