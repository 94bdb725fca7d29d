"""Preflight: pair every tensor by name, check everything checkable, decide each tensor's work.

Runs on headers, index files, configs and tokenizers only, so a mismatch is reported in seconds,
before any tensor is read. All problems are collected and raised together as one
:class:`PreflightError`, each naming the tensor or setting, both values and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from chatvector.dtypes import by_output_name
from chatvector.errors import PreflightError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.safetensors_header import TensorInfo
from chatvector.merge.arithmetic import RowRun, row_runs
from chatvector.merge.methods import MergeMethod, parse_method
from chatvector.merge.names import NameMap, find_name_map, given_name_map
from chatvector.merge.patterns import user_pattern
from chatvector.merge.ratios import Ratio, RatioResolver, layer_count, summarize_ratios
from chatvector.merge.vocab import Vocabulary, align_rows, is_vocab_tensor, overlap, same_vocabulary
from chatvector.options import MergeOptions

log = logging.getLogger(__name__)

# Config entries that must agree for weights to line up, across model families.
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
    "n_embd",
    "n_layer",
    "n_head",
)
MIN_VOCAB_OVERLAP = 0.5
# Tensors that hold exactly one row per token of config.json's vocab_size.
EMBEDDING_NAMES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "embed_in.weight",
    "lm_head.weight",
    "embed_out.weight",
)


@dataclass
class Operand:
    """One model taking part in a merge, with what preflight needs to know of it."""

    checkpoint: Checkpoint
    label: str  # e.g. "chat #1", used in messages
    vocab: Vocabulary | None
    excluded: frozenset[str] = frozenset()  # tensors a vector deliberately left out

    @property
    def where(self) -> str:
        return f"{self.label} ({self.checkpoint.ref.spec})"


@dataclass
class Term:
    ratio: Ratio  # a number, or rules / a layer schedule resolved per tensor at plan time
    plus: Operand
    minus: Operand | None


@dataclass(frozen=True)
class TermWork:
    """One term's contribution to one output tensor."""

    ratio: float
    plus: TensorInfo
    plus_source: int  # index into Plan.checkpoints
    minus: TensorInfo | None
    minus_source: int | None
    runs: tuple[RowRun, ...] | None  # None: whole tensor; else only these row runs
    term: int = 0  # the recipe term it comes from (keys DARE's random stream)


@dataclass(frozen=True)
class TensorWork:
    """Everything needed to produce one output tensor."""

    name: str
    shape: tuple[int, ...]
    out_dtype: str
    target: TensorInfo | None  # None when extracting (start from zero)
    target_source: int | None
    terms: tuple[TermWork, ...]
    policy: str  # "merge", "align", "skip", "copy" or "excluded"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)  # Python ints: exact, and far cheaper than numpy for a few


@dataclass
class Plan:
    """The preflight's verdict: one entry per output tensor, and notes for the provenance."""

    tensors: list[TensorWork]
    checkpoints: list[Checkpoint]
    embedding_policy: dict[str, str] = field(default_factory=dict)  # term label -> policy used
    notes: list[str] = field(default_factory=list)
    vocab_size: int | None = None  # the frame's vocabulary size (its config's, or its embedding rows)
    method: MergeMethod | None = None  # None: plain task arithmetic
    # for the provenance: resolved ratios per term, the tensor-name mapping, the lineage figures
    details: dict[str, Any] = field(default_factory=dict)
    # tensor -> the first term's pairing whatever its ratio resolved to (a rule's 0 drops the
    # term from the work, not from what the lineage check samples)
    first_pairs: dict[str, TermWork] = field(default_factory=dict)

    @property
    def input_bytes(self) -> int:
        total = 0
        for work in self.tensors:
            total += work.target.nbytes if work.target else 0
            total += sum(t.plus.nbytes + (t.minus.nbytes if t.minus else 0) for t in work.terms)
        return total


def compare_configs(frame_where: str, frame_config: dict, other_where: str, other_config: dict) -> list[str]:
    """Problems that make two configs' weights not line up (architecture, sizes, layers)."""
    problems = []
    for key in ARCHITECTURE_KEYS:
        if key in frame_config and key in other_config and frame_config[key] != other_config[key]:
            problems.append(
                f"config {key} is {other_config[key]!r} in {other_where} but {frame_config[key]!r} "
                f"in {frame_where}: the models are not of the same architecture, so their weights "
                "do not line up"
            )
    archs = ((other_config.get("architectures") or [None])[0], (frame_config.get("architectures") or [None])[0])
    if all(archs) and archs[0] != archs[1]:
        problems.append(f"architecture is {archs[0]} in {other_where} but {archs[1]} in {frame_where}")
    return problems


class _Preflight:
    def __init__(self, frame: Operand, frame_is_target: bool, terms: list[Term], options: MergeOptions) -> None:
        self.frame, self.frame_is_target, self.terms, self.options = frame, frame_is_target, terms, options
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.exclude = [user_pattern(p) for p in options.exclude]
        self.checkpoints: list[Checkpoint] = []
        self.source_of: dict[int, int] = {}  # id(checkpoint) -> index in self.checkpoints
        self.term_policy: dict[int, str] = {}
        self.runs_cache: dict[tuple[int, int, int], tuple[RowRun, ...]] = {}
        self.name_maps = [self.name_map(term) for term in terms]
        self.map_of = {id(o): m for t, m in zip(terms, self.name_maps, strict=True) for o in (t.plus, t.minus) if o}
        self.mapped = any(not m.identity for m in self.name_maps)
        self.resolvers = [
            RatioResolver.build(t.ratio, options.ratio_rule, layer_count(t.plus.checkpoint.tensors)) for t in terms
        ]
        self.resolved: list[list[tuple[str, float]]] = [[] for _ in terms]
        self.first_pairs: dict[str, TermWork] = {}  # see Plan.first_pairs

    # -- names and ratios ----------------------------------------------------------------------
    def name_map(self, term: Term) -> NameMap:
        """How the term's tensor names map onto the frame's (identity unless they differ, or --map)."""
        operand, frame = term.plus.checkpoint.tensors, self.frame.checkpoint.tensors
        if self.options.map:
            return given_name_map(self.options.map, operand, frame)
        return find_name_map(operand, frame)

    def operand_name(self, operand: Operand, name: str) -> str:
        names = self.map_of.get(id(operand))
        return name if names is None else names.operand_name(name)

    def outside_mapping(self, name: str) -> bool:
        """A frame tensor no term's chat side has under a mapped name (vision tower, projector)."""
        return self.mapped and not any(m.covers(name) for m in self.name_maps)

    def resolve_ratio(self, index: int, name: str, work: TermWork) -> TermWork | None:
        """The term's ratio for this tensor; None when rules give it 0 (nothing to read or add)."""
        resolver = self.resolvers[index]
        if index:
            work = dataclasses.replace(work, term=index)
        if resolver.is_plain:
            return work
        ratio = resolver.resolve(name)
        self.resolved[index].append((name, ratio))
        return dataclasses.replace(work, ratio=ratio) if ratio != 0 else None

    def ratio_details(self) -> dict[str, dict[str, float]]:
        """Per term with rules or a schedule: the resolved ratio of every tensor group."""
        return {
            self.terms[i].plus.label: summarize_ratios(pairs)
            for i, pairs in enumerate(self.resolved)
            if not self.resolvers[i].is_plain
        }

    def mapping_notes(self) -> None:
        shown: set[str] = set()
        for names in self.name_maps:
            if not names.identity and names.describe() not in shown:
                shown.add(names.describe())
                self.notes.append(names.describe())
        for index, resolver in enumerate(self.resolvers):
            for pattern in resolver.unused_rules(self.frame.checkpoint.tensors):
                self.notes.append(f"{self.terms[index].plus.label}: ratio rule {pattern!r} matches no tensor")

    def source_index(self, checkpoint: Checkpoint) -> int:
        # A dictionary, not a scan: this runs once per tensor and term (a scan made preflight
        # quadratic in the number of terms: 28 s for 3,000).
        index = self.source_of.get(id(checkpoint))
        if index is None:
            index = self.source_of[id(checkpoint)] = len(self.checkpoints)
            self.checkpoints.append(checkpoint)
        return index

    # -- configs -----------------------------------------------------------------------------
    def check_configs(self) -> None:
        frame_config = self.frame.checkpoint.config or {}
        if any(not m.identity for m in self.name_maps) and isinstance(frame_config.get("text_config"), dict):
            frame_config = frame_config["text_config"]  # a multimodal target: compare its language tower
        for operand in self.operands():
            self.problems += compare_configs(
                self.frame.where, frame_config, operand.where, operand.checkpoint.config or {}
            )

    def check_vocab_sizes(self) -> None:
        """A config's vocab_size must equal its embedding rows: transformers cannot load a model
        whose config disagrees with its weights, and the output takes the target's config."""
        for operand in [self.frame, *self.operands()]:
            size = (operand.checkpoint.config or {}).get("vocab_size")
            if not isinstance(size, int):
                continue
            for name, info in operand.checkpoint.tensors.items():
                if name.endswith(EMBEDDING_NAMES) and len(info.shape) == 2 and info.shape[0] != size:
                    self.problems.append(
                        f"config.json of {operand.where} says vocab_size {size} but its tensor {name} has "
                        f"{info.shape[0]} rows; transformers cannot load such a model (nor a merge of it): fix "
                        "vocab_size in that config.json"
                    )
                    break

    def operands(self) -> list[Operand]:
        found = []
        for term in self.terms:
            found += [term.plus] + ([term.minus] if term.minus else [])
        return [o for o in found if o is not self.frame]

    # -- vocabularies ------------------------------------------------------------------------
    def vocab_rows(self) -> set[int]:
        rows = set()
        for operand in [self.frame, *self.operands()]:
            config = operand.checkpoint.config or {}
            for section in (config, config.get("text_config")):
                if isinstance(section, dict) and isinstance(section.get("vocab_size"), int):
                    rows.add(section["vocab_size"])
            if operand.vocab is not None:
                rows.add(len(operand.vocab))
        return rows

    def policy_for(self, index: int, term: Term, shapes_equal: bool) -> str | None:
        """Decide (once per term) how embedding rows combine; None when it cannot be done."""
        if index in self.term_policy:
            return self.term_policy[index]
        wanted = self.options.embeddings
        members = [term.plus] + ([term.minus] if term.minus else [])
        identical = all(same_vocabulary(self.frame.vocab, m.vocab) for m in members)
        unknown = self.frame.vocab is None or any(m.vocab is None for m in members)
        policy: str | None = wanted
        if wanted == "auto":
            if identical and shapes_equal:
                policy = "add"
            elif not unknown:
                worst = min(overlap(self.frame.vocab, m.vocab) for m in members)  # type: ignore[arg-type]  # none is None: `unknown` is false
                policy = "align" if worst >= MIN_VOCAB_OVERLAP else None
                if policy is None:
                    self.problems.append(
                        f"vocabularies barely overlap ({worst:.0%} of tokens shared) between "
                        f"{self.frame.where} and {term.plus.where}; these models are probably not "
                        "of the same family. Use --embeddings skip to leave embeddings alone"
                    )
            elif shapes_equal:
                policy = "add"
                self.notes.append(
                    f"no tokenizer found for {term.plus.label}: embeddings added row by row because "
                    "the shapes match (the vocabularies could not be compared)"
                )
            else:
                policy = None
                self.problems.append(
                    f"embedding shapes differ between {self.frame.where} and {term.plus.where} and "
                    "no tokenizer is available to align rows; add tokenizer files or use "
                    "--embeddings skip"
                )
        elif wanted == "add" and not identical and not unknown:
            differ = self.differing_tokens(members)
            self.problems.append(
                f"--embeddings add adds embedding rows by position, but the vocabularies of {self.frame.where} "
                f"and {term.plus.where} differ ({differ}), so rows of different tokens would be mixed; use "
                "--embeddings align (match rows by token string) or --embeddings skip"
            )
            policy = None
        elif wanted == "align" and unknown:
            self.problems.append(f"--embeddings align needs tokenizers, but {term.plus.where} or its partner has none")
            policy = None
        self.term_policy[index] = policy or "failed"
        return policy

    def differing_tokens(self, members: list[Operand]) -> str:
        """How two vocabularies differ, in a few words (for messages)."""
        frame = self.frame.vocab.token_to_id if self.frame.vocab else {}
        other = next(m.vocab.token_to_id for m in members if m.vocab and m.vocab.token_to_id != frame)
        moved = sum(1 for token, i in other.items() if frame.get(token, i) != i)
        missing = sum(1 for token in other if token not in frame)
        return f"{missing} token(s) missing from the target, {moved} at other ids"

    def aligned_runs(
        self, index: int, term: Term, out_rows: int, plus: TensorInfo, minus: TensorInfo | None
    ) -> tuple[RowRun, ...]:
        key = (index, out_rows, plus.shape[0])
        if key not in self.runs_cache:
            assert self.frame.vocab is not None and term.plus.vocab is not None  # checked by policy_for
            plus_rows = align_rows(self.frame.vocab, term.plus.vocab, out_rows, plus.shape[0])
            minus_rows = None
            if term.minus is not None and minus is not None:
                assert term.minus.vocab is not None
                minus_rows = align_rows(self.frame.vocab, term.minus.vocab, out_rows, minus.shape[0])
            runs = tuple(row_runs(plus_rows, minus_rows))
            shared = sum(r.length for r in runs)
            self.notes.append(
                f"{term.plus.label}: embedding rows aligned by token string: {shared} of "
                f"{out_rows} rows receive the delta, {out_rows - shared} (tokens the chat side "
                "lacks, or padding) keep the target's values"
            )
            self.runs_cache[key] = runs
        return self.runs_cache[key]

    # -- tensors -----------------------------------------------------------------------------
    def plan_tensor(self, name: str, info: TensorInfo, vocab_rows: set[int]) -> TensorWork:
        target_source = self.source_index(self.frame.checkpoint) if self.frame_is_target else None
        target = info if self.frame_is_target else None
        wanted = self.options.dtype
        out_dtype = by_output_name(wanted).safetensors if wanted and info.is_float else info.dtype
        if info.dtype.startswith("F8") and not any(p.search(name) for p in self.exclude):
            self.problems.append(
                f"tensor {name} is {info.dtype} (quantized) in {self.frame.where}; chat vectors "
                "need unquantized weights: use the bf16/fp16 release of the model"
            )
        if not info.is_float or any(p.search(name) for p in self.exclude) or self.outside_mapping(name):
            policy = "copy" if not info.is_float else "excluded" if self.exclude_match(name) else "untouched"
            return TensorWork(
                name, info.shape, info.dtype if target is None else out_dtype, target, target_source, (), policy
            )
        vocab_tensor = is_vocab_tensor(name, info.shape, vocab_rows)
        works: list[TermWork] = []
        policy = "merge"
        for index, term in enumerate(self.terms):
            work, term_policy = self.plan_term(index, term, name, info, vocab_tensor)
            if work is not None and index == 0:
                self.first_pairs[name] = work
            if work is not None:
                work = self.resolve_ratio(index, name, work)
            if work is not None:
                works.append(work)
            if term_policy in {"align", "skip"}:
                policy = term_policy
        return TensorWork(name, info.shape, out_dtype, target, target_source, tuple(works), policy)

    def exclude_match(self, name: str) -> bool:
        return any(p.search(name) for p in self.exclude)

    def find(self, operand: Operand, name: str, info: TensorInfo) -> TensorInfo | None:
        found = operand.checkpoint.tensors.get(self.operand_name(operand, name))
        if found is None and name not in operand.excluded:
            self.problems.append(
                f"tensor {name} is in {self.frame.where} but missing from {operand.where}; "
                f"if that is expected, leave it as in the target with --exclude '^{re.escape(name)}$'"
            )
        elif found is not None and not found.is_float:
            self.problems.append(
                f"tensor {name} is {found.dtype} in {operand.where} but {info.dtype} in {self.frame.where}"
            )
            return None
        return found

    def plan_term(
        self, index: int, term: Term, name: str, info: TensorInfo, vocab_tensor: bool
    ) -> tuple[TermWork | None, str]:
        plus = self.find(term.plus, name, info)
        minus = self.find(term.minus, name, info) if term.minus else None
        if plus is None or (term.minus is not None and minus is None):
            return None, "missing"
        shapes = [plus.shape] + ([minus.shape] if minus else [])
        shapes_equal = all(s == info.shape for s in shapes)
        if not vocab_tensor:
            if not shapes_equal:
                for operand, found in ((term.plus, plus), (term.minus, minus)):
                    if operand is not None and found is not None and found.shape != info.shape:
                        self.problems.append(
                            f"tensor {name} has shape {found.shape} in {operand.where} but "
                            f"{info.shape} in {self.frame.where}"
                        )
                return None, "mismatch"
            return self.term_work(term, plus, minus, None), "merge"
        if any(s[1:] != info.shape[1:] for s in shapes):
            self.problems.append(
                f"tensor {name} has shape {plus.shape} in {term.plus.where} but {info.shape} in "
                f"{self.frame.where}: the hidden size differs, no embedding policy can fix that"
            )
            return None, "mismatch"
        policy = self.policy_for(index, term, shapes_equal)
        if policy == "skip":
            return None, "skip"
        if policy == "add":
            if not shapes_equal:
                self.problems.append(
                    f"tensor {name} has shape {plus.shape} in {term.plus.where} but {info.shape} in "
                    f"{self.frame.where}; the vocabularies differ: use --embeddings align (match "
                    "rows by token string) or --embeddings skip (keep the target's embeddings)"
                )
                return None, "mismatch"
            return self.term_work(term, plus, minus, None), "merge"
        if policy == "align":
            runs = self.aligned_runs(index, term, info.shape[0], plus, minus)
            return self.term_work(term, plus, minus, runs), "align"
        return None, "failed"

    def term_work(
        self, term: Term, plus: TensorInfo, minus: TensorInfo | None, runs: tuple[RowRun, ...] | None
    ) -> TermWork:
        ratio = float(term.ratio) if isinstance(term.ratio, (int, float)) else 1.0  # rules: see resolve_ratio
        return TermWork(
            ratio,
            plus,
            self.source_index(term.plus.checkpoint),
            minus,
            self.source_index(term.minus.checkpoint) if term.minus else None,
            runs,
        )

    def check_extra_tensors(self) -> None:
        frame_names = set(self.frame.checkpoint.tensors)
        tied = bool((self.frame.checkpoint.config or {}).get("tie_word_embeddings"))
        for operand in self.operands():
            known = {self.operand_name(operand, n) for n in frame_names}
            extra = sorted(set(operand.checkpoint.tensors) - known)
            if tied:
                heads = [n for n in extra if "lm_head" in n]
                if heads:
                    self.notes.append(
                        f"{operand.label} has an untied {heads[0]} but {self.frame.label} ties its "
                        "embeddings: the merged output head stays tied to the merged embeddings"
                    )
                extra = [n for n in extra if n not in heads]
            extra = [n for n in extra if not any(p.search(n) for p in self.exclude)]
            if extra:
                shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
                self.problems.append(
                    f"{operand.where} has {len(extra)} tensor(s) that {self.frame.where} lacks: "
                    f"{shown}; they would be dropped. Check that the models are of the same family, "
                    "or --exclude them"
                )


def build_plan(frame: Operand, *, frame_is_target: bool, terms: list[Term], options: MergeOptions) -> Plan:
    """Check everything that can be checked without reading tensors and plan the merge.

    Args:
        frame: the model whose tensor names, shapes and files the output follows (the target
            of a merge, or the chat model when extracting).
        frame_is_target: whether the frame's values are added to (merge) or only its layout
            is used (extract: the output starts from zero).
        terms: the ``ratio · (plus − minus)`` terms.
        options: embedding policy, excludes and output dtype.

    Raises:
        PreflightError: listing every problem found.
    """
    check = _Preflight(frame, frame_is_target, terms, options)
    check.mapping_notes()
    check.check_configs()
    check.check_vocab_sizes()
    check.check_extra_tensors()
    vocab_rows = check.vocab_rows()
    if frame_is_target:
        check.source_index(frame.checkpoint)
    works = [check.plan_tensor(n, i, vocab_rows) for n, i in frame.checkpoint.tensors.items()]
    if check.problems:
        raise PreflightError(check.problems)
    policies = {terms[i].plus.label: p for i, p in sorted(check.term_policy.items())}
    for note in check.notes:
        log.info("%s", note)
    details: dict[str, Any] = {}
    if check.ratio_details():
        details["resolved_ratios"] = check.ratio_details()
    if any(not m.identity for m in check.name_maps):
        details["name_map"] = [{"from": a, "to": b, "tensors": n} for m in check.name_maps for a, b, n in m.rules]
    chosen = options.method or options.sparsify
    method = parse_method(chosen) if chosen else None
    plan = Plan(works, check.checkpoints, policies, check.notes, _vocab_size(frame), method, details)
    plan.first_pairs = check.first_pairs
    return plan


def _vocab_size(frame: Operand) -> int | None:
    size = (frame.checkpoint.config or {}).get("vocab_size")
    if isinstance(size, int):
        return size
    rows = [i.shape[0] for n, i in frame.checkpoint.tensors.items() if n.endswith(EMBEDDING_NAMES) and i.shape]
    return rows[0] if rows else None
