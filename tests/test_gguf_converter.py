"""Our GGUF files against llama.cpp's own converter (``convert_hf_to_gguf.py``).

For tiny random models of each supported architecture (Llama-2 with a SentencePiece vocabulary
and an extended Chinese one, Llama-3's byte-level BPE, Mistral, Qwen2 with tied embeddings and
an extended vocabulary), the float32 safetensors merge is converted by llama.cpp's converter,
and compared with ``merge --format gguf`` and ``export gguf`` of the same merge: the same tensor
names, shapes, GGML types and bytes, and the same metadata, but for these deliberate
differences (each checked, not skipped):

- keys only we write: ``chatvector.*`` (recipe, version, source, tensor hashes); the EOT id
  (the chat model's stop id besides EOS, from generation_config.json); BOS/EOS flags
  set to false where the tokenizer adds neither (the converter leaves them out, and llama.cpp's
  default for a SentencePiece vocabulary is to add BOS, unlike transformers here);
  ``add_space_prefix`` and Qwen2's ``rope.dimension_count``/``vocab_size`` at the values
  llama.cpp would assume anyway;
- keys only the converter writes: ``general.size_label``, ``general.type`` and ``general.tags``
  (descriptive, the tags from the model card);
- ``general.name``: ours is the output's name, the converter's the directory's, title-cased;
- a SentencePiece vocabulary read from tokenizer.json (no tokenizer.model): our scores rank the
  merges so that llama.cpp merges in transformers' order, the converter gives every token -1000
  (a placeholder in its ``LlamaHfVocab``); it types the unknown token CONTROL (ours UNKNOWN, as
  SentencePiece does) and added tokens that are also in the BPE vocabulary NORMAL (ours
  USER_DEFINED, matched whole as transformers matches added tokens).

The converter identifies a byte-level pre-tokenizer by hashing how a known tokenizer splits a
fixed text; a tokenizer trained here matches no known hash, so it is run with that one lookup
answering the name of the case (``llama-bpe``, ``qwen2``), which our writer must choose itself.

The converter is not shipped with chatvector: ``bench/llamacpp_converter.py`` fetches it from the
llama-cpp-python sdist of the locked version, and ``CHATVECTOR_LLAMACPP_CONVERTER`` names its
``convert_hf_to_gguf.py`` (``.ci/run`` always sets it). Without the variable these tests are
skipped with that reason; with a variable naming no file they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'chatvector[gguf]')")

from gguf_models import build_gguf_trio  # noqa: E402
from helpers import trio_merge  # noqa: E402

pytestmark = pytest.mark.slow

CONVERTER_VARIABLE = "CHATVECTOR_LLAMACPP_CONVERTER"
EXE = Path(sys.executable).with_name("chatvector")
CASES = {  # name: (family, tokenizer, extended CP vocabulary, llama.cpp's pre-tokenizer name)
    "llama2-spm-extended": ("llama", "spm", True, ""),
    "llama3-bpe": ("llama", "llama3", False, "llama-bpe"),
    "mistral-spm": ("mistral", "spm", False, ""),
    "qwen2-tied-extended": ("qwen2_tied", "qwen2", True, "qwen2"),
}
# every case in f32 and q8_0; f16 and bf16 on one Llama and one Qwen2
TYPED = [(case, kind) for case in CASES for kind in ("f32", "q8_0")] + [
    (case, kind) for case in ("llama2-spm-extended", "qwen2-tied-extended") for kind in ("f16", "bf16")
]
RUN_CONVERTER = """
import runpy, sys
from pathlib import Path
converter, pre = Path(sys.argv[1]), sys.argv[2]
sys.path[:0] = [str(converter.parent / "gguf-py"), str(converter.parent)]
if pre:  # a tokenizer trained here has no known hash: answer the case's pre-tokenizer name
    from conversion import base
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [str(converter), *sys.argv[3:]]
runpy.run_path(str(converter), run_name="__main__")
"""
OURS_ONLY = {
    "chatvector.recipe",
    "chatvector.version",
    "chatvector.source",
    "chatvector.tensor_xxh3_128",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.eot_token_id",
    "qwen2.rope.dimension_count",
    "qwen2.vocab_size",
}
THEIRS_ONLY = {"general.size_label", "general.type", "general.tags"}


@pytest.fixture(scope="module")
def converter() -> Path:
    value = os.environ.get(CONVERTER_VARIABLE)
    if not value:
        pytest.skip(
            f"{CONVERTER_VARIABLE} is not set: `python bench/llamacpp_converter.py` fetches llama.cpp's "
            "converter and prints the path to set it to (.ci/run does)"
        )
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{CONVERTER_VARIABLE}={value} names no file; rerun bench/llamacpp_converter.py")
    return path


@pytest.fixture(scope="module")
def files(converter, tmp_path_factory):
    """``get(case, kind, source)``: the GGUF file of ``source`` (``converter``: llama.cpp's
    conversion of the float32 safetensors merge; ``merge``: merge --format gguf; ``export``:
    export gguf of that safetensors merge), made on first use."""
    root = tmp_path_factory.mktemp("gguf-converter")
    trios: dict[str, object] = {}
    made: dict[tuple[str, str, str], Path] = {}

    def run(args: list[object]) -> None:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    def safetensors(case: str) -> Path:
        out = root / case / "st"
        if not out.exists():
            if case not in trios:
                family, tokenizer, extended, _ = CASES[case]
                trios[case] = build_gguf_trio(family, tokenizer, root / case / "trio", extended=extended)
            run([EXE, *trio_merge(trios[case], out, "--ratio", "0.5", "--dtype", "float32")])
        return out

    def get(case: str, kind: str, source: str) -> Path:
        key = (case, kind, source)
        if key not in made:
            folder = safetensors(case)
            out = root / case / f"{source}-{kind}.gguf"
            if source == "converter":
                pre = CASES[case][3]
                run([sys.executable, "-c", RUN_CONVERTER, converter, pre, folder, "--outtype", kind, "--outfile", out])
            elif source == "merge":
                trio = trios[case]
                run([EXE, *trio_merge(trio, out, "--ratio", "0.5", "--format", "gguf", "--gguf-type", kind)])
            else:
                run([EXE, "export", "gguf", folder, "--gguf-type", kind, "-o", out])
            made[key] = out
        return made[key]

    get.safetensors = safetensors  # type: ignore[attr-defined]
    return get


def field_values(reader) -> dict[str, object]:
    """Every metadata key of a GGUF file with its value as plain Python (strings as bytes)."""
    types = gguf.GGUFValueType
    values: dict[str, object] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == types.ARRAY:
            if field.types[-1] == types.STRING:
                values[key] = [bytes(field.parts[i]) for i in field.data]
            else:
                values[key] = [field.parts[i].tolist()[0] for i in field.data]
        elif field.types[0] == types.STRING:
            values[key] = bytes(field.parts[-1])
        else:
            values[key] = field.parts[-1].tolist()[0]
    return values


@pytest.mark.parametrize("source", ["merge", "export"])
@pytest.mark.parametrize(("case", "kind"), TYPED)
def test_every_tensor_equals_the_converters(case, kind, source, files):
    ours = {t.name: t for t in gguf.GGUFReader(files(case, kind, source)).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(files(case, kind, "converter")).tensors}
    assert sorted(ours) == sorted(theirs)
    for name, tensor in theirs.items():
        mine = ours[name]
        assert mine.tensor_type == tensor.tensor_type, name
        assert list(mine.shape) == list(tensor.shape), name
        assert np.array_equal(np.asarray(mine.data).view(np.uint8), np.asarray(tensor.data).view(np.uint8)), name


@pytest.mark.parametrize("source", ["merge", "export"])
@pytest.mark.parametrize("case", list(CASES))
def test_metadata_equals_the_converters_but_for_the_listed_differences(case, source, files):
    ours = field_values(gguf.GGUFReader(files(case, "f32", source)))
    theirs = field_values(gguf.GGUFReader(files(case, "f32", "converter")))
    assert set(theirs) - set(ours) <= THEIRS_ONLY, sorted(set(theirs) - set(ours))
    assert set(ours) - set(theirs) <= OURS_ONLY, sorted(set(ours) - set(theirs))
    for key in set(ours) - set(theirs) - {k for k in OURS_ONLY if k.startswith("chatvector.")}:
        assert ours[key] == expected_value(key, ours, files.safetensors(case)), key
    spm_from_json = CASES[case][1] == "spm"
    for key in sorted(set(ours) & set(theirs) - {"general.name"}):
        if spm_from_json and key == "tokenizer.ggml.scores":
            assert set(theirs[key]) == {-1000.0}, "the converter now scores tokenizer.json vocabularies"
            continue
        if spm_from_json and key == "tokenizer.ggml.token_type":
            check_spm_token_types(ours, theirs, files.safetensors(case))
            continue
        assert ours[key] == theirs[key], key
    assert "tokenizer.chat_template" in theirs and "tokenizer.ggml.eos_token_id" in theirs  # compared above


def expected_value(key: str, fields: dict[str, object], folder: Path) -> object:
    """A key only we write: the stop id the merge carries, or what llama.cpp assumes anyway."""
    arch = fields["general.architecture"].decode()  # type: ignore[union-attr]
    if key == "tokenizer.ggml.eot_token_id":  # the chat model's stop id besides EOS
        stops = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
        return next(i for i in stops if i != fields["tokenizer.ggml.eos_token_id"])
    if key in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"):
        return False  # we write them only where the tokenizer adds neither
    if key == "tokenizer.ggml.add_space_prefix":
        return True  # llama.cpp's default for a SentencePiece vocabulary
    if key == f"{arch}.rope.dimension_count":
        return fields[f"{arch}.embedding_length"] // fields[f"{arch}.attention.head_count"]  # type: ignore[operator]
    if key == f"{arch}.vocab_size":
        return len(fields["tokenizer.ggml.tokens"])  # type: ignore[arg-type]
    raise AssertionError(f"no default known for {key}")


def check_spm_token_types(ours: dict, theirs: dict, folder: Path) -> None:
    """The token types differ only where the module docstring says: the unknown token, and
    added non-special tokens that are also in the BPE vocabulary."""
    types = gguf.TokenType
    data = json.loads((folder / "tokenizer.json").read_text())
    unk = data["model"]["vocab"][data["model"]["unk_token"]]
    added = {t["id"] for t in data["added_tokens"] if not t["special"]}
    expected = {unk: (types.UNKNOWN, types.CONTROL), **{i: (types.USER_DEFINED, types.NORMAL) for i in added}}
    differing = {
        i: (ours_type, their_type)
        for i, (ours_type, their_type) in enumerate(
            zip(ours["tokenizer.ggml.token_type"], theirs["tokenizer.ggml.token_type"], strict=True)
        )
        if ours_type != their_type
    }
    assert differing == {i: expected[i] for i in differing if i in expected}, differing
    assert unk in differing
