"""Every branch of the preflight (``merge.plan.build_plan``), on small fake checkpoints.

The fakes are headers only (names, dtypes, shapes) plus a config.json and, where a branch needs one,
a vocabulary: the preflight reads nothing else, and each case runs in milliseconds.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

from chatvector.errors import PreflightError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.hub import ModelRef
from chatvector.io.safetensors_header import TensorInfo
from chatvector.merge.plan import Operand, Plan, Term, build_plan
from chatvector.merge.vocab import Vocabulary
from chatvector.options import MergeOptions

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "vocab_size": 6,
}
WEIGHTS = {
    "model.embed_tokens.weight": ("BF16", (6, 8)),
    "model.layers.0.mlp.up_proj.weight": ("BF16", (16, 8)),
    "model.norm.weight": ("BF16", (8,)),
    "lm_head.weight": ("BF16", (6, 8)),
}
TOKENS = ["<s>", "</s>", "a", "b", "c", "d"]


def fake(
    tmp_path: Path,
    label: str,
    *,
    tensors: dict | None = None,
    config: dict | None = None,
    tokens: list[str] | None = TOKENS,
) -> Operand:
    """An operand whose checkpoint has only headers: enough for every preflight decision."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmp_path))
    (folder / "config.json").write_text(json.dumps(LLAMA if config is None else config))
    infos, offset = {}, 0
    for name, (dtype, shape) in sorted((WEIGHTS if tensors is None else tensors).items()):
        size = math.prod(shape) * (1 if dtype.startswith(("F8", "I8", "U8")) else 2 if "16" in dtype else 4)
        infos[name] = TensorInfo(name, dtype, shape, folder / "model.safetensors", offset, offset + size)
        offset += size
    checkpoint = Checkpoint(ModelRef(str(folder), folder, label), "safetensors", infos, {})
    vocab = None if tokens is None else Vocabulary(folder, {t: i for i, t in enumerate(tokens)})
    return Operand(checkpoint, label, vocab)


def plan(target: Operand, chat: Operand, base: Operand, **options) -> Plan:
    return build_plan(target, frame_is_target=True, terms=[Term(0.5, chat, base)], options=MergeOptions(**options))


def problems(target: Operand, chat: Operand, base: Operand, **options) -> list[str]:
    with pytest.raises(PreflightError) as failed:
        plan(target, chat, base, **options)
    return failed.value.problems


@pytest.fixture
def trio(tmp_path):
    def make(**changes) -> tuple[Operand, Operand, Operand]:
        roles = {role: changes.get(role, {}) for role in ("target", "chat", "base")}
        return tuple(fake(tmp_path, role, **kwargs) for role, kwargs in roles.items())

    return make


def test_identical_layouts_plan_every_tensor_as_a_merge(trio):
    result = plan(*trio())
    assert [w.name for w in result.tensors] == sorted(WEIGHTS)
    assert {w.policy for w in result.tensors} == {"merge"}
    assert result.embedding_policy == {"chat": "add"}
    assert all(len(w.terms) == 1 and w.terms[0].ratio == 0.5 for w in result.tensors)


def test_architecture_and_size_mismatches_are_each_reported(trio):
    other = dict(LLAMA, hidden_size=16, num_hidden_layers=2, model_type="mistral", architectures=["MistralForCausalLM"])
    found = problems(*trio(chat={"config": other}))
    assert any("hidden_size is 16" in p for p in found)
    assert any("num_hidden_layers is 2" in p for p in found)
    assert any("model_type is 'mistral'" in p for p in found)
    assert any("architecture is MistralForCausalLM" in p for p in found)


def test_a_tensor_missing_from_the_chat_model_names_the_exclude_fix(trio):
    partial = {k: v for k, v in WEIGHTS.items() if k != "model.norm.weight"}
    found = problems(*trio(chat={"tensors": partial}))
    assert len(found) == 1 and "model.norm.weight" in found[0] and "--exclude '^model\\.norm\\.weight$'" in found[0]


def test_extra_tensors_of_the_chat_model_would_be_dropped_and_are_reported(trio):
    extra = dict(WEIGHTS, **{f"model.layers.0.extra{i}.weight": ("BF16", (8,)) for i in range(7)})
    found = problems(*trio(chat={"tensors": extra}))
    assert any("7 tensor(s)" in p and "and 2 more" in p for p in found)


def test_extra_tensors_can_be_excluded(trio):
    extra = dict(WEIGHTS, **{"model.layers.0.extra.weight": ("BF16", (8,))})
    assert plan(*trio(chat={"tensors": extra}), exclude=("extra",))


def test_an_untied_chat_head_merges_into_a_tied_target_with_a_note(trio):
    tied = dict(LLAMA, tie_word_embeddings=True)
    without_head = {k: v for k, v in WEIGHTS.items() if k != "lm_head.weight"}
    result = plan(*trio(target={"config": tied, "tensors": without_head}, base={"tensors": without_head}))
    assert "lm_head.weight" not in {w.name for w in result.tensors}
    assert any("stays tied" in note for note in result.notes)


def test_a_hidden_size_mismatch_in_a_non_vocabulary_tensor_names_both_shapes(trio):
    wide = dict(WEIGHTS, **{"model.layers.0.mlp.up_proj.weight": ("BF16", (32, 8))})
    found = problems(*trio(chat={"tensors": wide}))
    assert any("model.layers.0.mlp.up_proj.weight has shape (32, 8)" in p and "(16, 8)" in p for p in found)


def test_an_embedding_hidden_size_mismatch_cannot_be_fixed_by_a_policy(trio):
    wide = dict(WEIGHTS, **{"model.embed_tokens.weight": ("BF16", (6, 16))})
    found = problems(*trio(chat={"tensors": wide}))
    assert any("hidden size differs, no embedding policy can fix that" in p for p in found)


def test_quantized_tensors_are_refused_unless_excluded(trio):
    quantized = dict(WEIGHTS, **{"model.layers.0.mlp.up_proj.weight": ("F8_E4M3", (16, 8))})
    found = problems(*trio(target={"tensors": quantized}))
    assert any("F8_E4M3 (quantized)" in p for p in found)
    kept = plan(*trio(target={"tensors": quantized}), exclude=("up_proj",))
    work = {w.name: w for w in kept.tensors}["model.layers.0.mlp.up_proj.weight"]
    assert not work.terms and work.out_dtype == "F8_E4M3"  # kept byte for byte from the target


def test_integer_tensors_are_copied_and_a_float_one_paired_with_an_integer_is_refused(trio):
    with_ints = dict(WEIGHTS, **{"model.position_ids": ("I64", (1, 4))})
    copied = plan(*trio(target={"tensors": with_ints}, chat={"tensors": with_ints}, base={"tensors": with_ints}))
    assert {w.name: w.policy for w in copied.tensors}["model.position_ids"] == "copy"
    int_in_chat = dict(WEIGHTS, **{"model.norm.weight": ("I32", (8,))})
    assert any("model.norm.weight is I32" in p for p in problems(*trio(chat={"tensors": int_in_chat})))


def test_output_dtype_applies_to_float_tensors_only(trio):
    with_ints = dict(WEIGHTS, **{"model.position_ids": ("I64", (1, 4))})
    result = plan(
        *trio(target={"tensors": with_ints}, chat={"tensors": with_ints}, base={"tensors": with_ints}), dtype="float32"
    )
    dtypes = {w.name: w.out_dtype for w in result.tensors}
    assert dtypes["model.position_ids"] == "I64" and dtypes["model.norm.weight"] == "F32"


def extended_vocab_trio(trio, **target_changes):
    """A target whose vocabulary appends two tokens (8 rows) to the chat/base vocabulary (6 rows)."""
    rows8 = dict(WEIGHTS, **{"model.embed_tokens.weight": ("BF16", (8, 8)), "lm_head.weight": ("BF16", (8, 8))})
    config = dict(LLAMA, vocab_size=8)
    return trio(target={"tensors": rows8, "config": config, "tokens": TOKENS + ["台", "北"], **target_changes})


def test_an_extended_vocabulary_is_aligned_by_token_string(trio):
    result = plan(*extended_vocab_trio(trio))
    works = {w.name: w for w in result.tensors}
    assert works["model.embed_tokens.weight"].policy == "align"
    runs = works["model.embed_tokens.weight"].terms[0].runs
    assert runs is not None and [(r.out_start, r.plus_start, r.length) for r in runs] == [(0, 0, 6)]
    assert result.embedding_policy == {"chat": "align"}
    assert any("6 of 8 rows receive the delta" in note for note in result.notes)


def test_skip_keeps_the_target_embeddings_and_add_refuses_different_shapes(trio):
    skipped = plan(*extended_vocab_trio(trio), embeddings="skip")
    works = {w.name: w for w in skipped.tensors}
    assert works["model.embed_tokens.weight"].policy == "skip" and not works["model.embed_tokens.weight"].terms
    found = problems(*extended_vocab_trio(trio), embeddings="add")
    assert any("use --embeddings align" in p for p in found)


def test_vocabularies_that_barely_overlap_are_not_aligned(trio):
    strangers = ["x", "y", "z", "w", "v", "u", "t", "s"]
    rows8 = dict(WEIGHTS, **{"model.embed_tokens.weight": ("BF16", (8, 8)), "lm_head.weight": ("BF16", (8, 8))})
    found = problems(*trio(target={"tensors": rows8, "config": dict(LLAMA, vocab_size=8), "tokens": strangers}))
    assert any("barely overlap (0% of tokens shared)" in p and "--embeddings skip" in p for p in found)


def test_without_tokenizers_equal_shapes_are_added_with_a_note(trio):
    result = plan(*trio(target={"tokens": None}, chat={"tokens": None}, base={"tokens": None}))
    assert result.embedding_policy == {"chat": "add"}
    assert any("no tokenizer found" in note for note in result.notes)


def test_without_tokenizers_different_shapes_cannot_be_aligned(trio):
    rows8 = dict(WEIGHTS, **{"model.embed_tokens.weight": ("BF16", (8, 8)), "lm_head.weight": ("BF16", (8, 8))})
    found = problems(
        *trio(
            target={"tensors": rows8, "config": dict(LLAMA, vocab_size=8), "tokens": None},
            chat={"tokens": None},
            base={"tokens": None},
        )
    )
    assert any("no tokenizer is available to align rows" in p for p in found)
    aligned = problems(*trio(chat={"tokens": None}), embeddings="align")
    assert any("--embeddings align needs tokenizers" in p for p in aligned)


def test_every_problem_is_reported_at_once(trio):
    broken = {k: v for k, v in WEIGHTS.items() if k != "model.norm.weight"}
    broken["model.layers.0.mlp.up_proj.weight"] = ("BF16", (4, 8))
    found = problems(*trio(chat={"tensors": broken}, base={"config": dict(LLAMA, hidden_size=4)}))
    assert len(found) >= 3


def test_extracting_plans_from_zero_with_the_chat_model_as_frame(tmp_path):
    chat, base = fake(tmp_path, "chat"), fake(tmp_path, "base")
    result = build_plan(chat, frame_is_target=False, terms=[Term(1.0, chat, base)], options=MergeOptions())
    assert all(w.target is None and w.target_source is None for w in result.tensors)
    assert result.input_bytes == 2 * sum(w.terms[0].plus.nbytes for w in result.tensors)
