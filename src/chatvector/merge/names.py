"""Which tensor of the target each tensor of a chat vector belongs to, when their names differ.

A vision-language model whose language tower was trained from a text model stores that tower
under another prefix: LLaVA checkpoints of transformers 4.x hold ``language_model.model.layers.N…``
and ``language_model.lm_head.weight``, those of transformers 5.x ``model.language_model.layers.N…``
and ``lm_head.weight``, where the text model has ``model.layers.N…``. The mapping is found from
the checkpoints themselves: every chat-side tensor is paired with the target tensor of the same
shape that shares the longest dotted suffix with it, each pairing votes for a prefix rewrite
(``model.`` → ``model.language_model.``), and the rewrites with the most votes are applied first.
``--map FROM=TO`` gives the rewrites instead. Target tensors outside the mapped prefixes (vision
tower, projector) are left as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from chatvector.io.safetensors_header import TensorInfo

__all__ = ["NameMap", "find_name_map", "given_name_map", "parse_map"]

MIN_SUFFIX_PARTS = 2  # "norm.weight": shorter shared suffixes say nothing about structure


@dataclass(frozen=True)
class NameMap:
    """Target tensor name → chat-side tensor name, and how it was found."""

    to_operand: dict[str, str]
    rules: tuple[tuple[str, str, int], ...] = ()  # (chat prefix, target prefix, tensors)
    source: str = "identity"  # "identity", "found" (from the checkpoints) or "given" (--map)
    unmapped_target: tuple[str, ...] = field(default=())  # target tensors left as they are

    @property
    def identity(self) -> bool:
        return self.source == "identity"

    def operand_name(self, target_name: str) -> str:
        return self.to_operand.get(target_name, target_name)

    def covers(self, target_name: str) -> bool:
        """Whether the chat side has a tensor for this target tensor (always, for the identity)."""
        return self.identity or target_name in self.to_operand

    def describe(self) -> str:
        """One line for preflight notes and the model card."""
        rules = ", ".join(f"{a or '(start)'}… → {b or '(start)'}… ({n} tensors)" for a, b, n in self.rules)
        kept = _prefixes(self.unmapped_target)
        how = "found from the checkpoints" if self.source == "found" else "given with --map"
        text = f"tensor names mapped chat side → target ({how}): {rules}"
        if kept:
            text += f"; left as in the target: {kept}"
        return text


def parse_map(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """``FROM=TO`` strings as (chat prefix, target prefix) pairs."""
    return [(a, b) for a, _, b in (p.partition("=") for p in pairs)]


def _prefixes(names: Iterable[str], depth: int = 2) -> str:
    """``model.vision_tower (12 tensors), model.multi_modal_projector (4)``."""
    counts = Counter(".".join(n.split(".")[:depth]) for n in names)
    return ", ".join(f"{p} ({c} tensor{'s' if c > 1 else ''})" for p, c in sorted(counts.items()))


def _fits(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same shape, or matrices of the same width (embeddings and output heads of vocabularies that
    differ by a few tokens, such as a multimodal model's image token: the preflight aligns their rows)."""
    return a == b or (len(a) == len(b) == 2 and a[1] == b[1])


def _shared_suffix(a: list[str], b: list[str]) -> int:
    shared = 0
    while shared < min(len(a), len(b)) and a[-1 - shared] == b[-1 - shared]:
        shared += 1
    return shared


def _candidates(operand: Mapping[str, TensorInfo], target: Mapping[str, TensorInfo]) -> Counter[tuple[str, str]]:
    """Votes for prefix rewrites: each chat-side tensor votes for the target tensors of its shape that
    share the longest suffix (of at least MIN_SUFFIX_PARTS dotted parts) with it."""
    by_tail: dict[tuple[str, ...], list[str]] = {}
    for name in target:
        by_tail.setdefault(tuple(name.split(".")[-MIN_SUFFIX_PARTS:]), []).append(name)
    votes: Counter[tuple[str, str]] = Counter()
    for name, info in operand.items():
        parts = name.split(".")
        scored = [
            (_shared_suffix(parts, t.split(".")), t)
            for t in by_tail.get(tuple(parts[-MIN_SUFFIX_PARTS:]), [])
            if _fits(target[t].shape, info.shape)
        ]
        if not scored:
            continue
        best = max(score for score, _ in scored)
        for score, other in scored:
            if score == best:
                cut = len(".".join(parts[-best:]))
                votes[(name[: len(name) - cut], other[: len(other) - cut])] += 1
    return votes


def _apply(
    rules: list[tuple[str, str]], operand: Mapping[str, TensorInfo], target: Mapping[str, TensorInfo]
) -> tuple[dict[str, str], Counter[tuple[str, str]]]:
    """Map every chat-side tensor with the first rule that leads to a free target tensor of its shape."""
    mapping: dict[str, str] = {}
    used: Counter[tuple[str, str]] = Counter()
    for name, info in operand.items():
        for source, dest in rules:
            if not name.startswith(source):
                continue
            other = dest + name[len(source) :]
            if other in target and other not in mapping and _fits(target[other].shape, info.shape):
                mapping[other] = name
                used[(source, dest)] += 1
                break
    return mapping, used


def _result(
    mapping: dict[str, str], used: Counter[tuple[str, str]], target: Mapping[str, TensorInfo], source: str
) -> NameMap:
    if all(t == o for t, o in mapping.items()) and len(mapping) == len(target):
        return NameMap({})
    rules = tuple(sorted(((a, b, n) for (a, b), n in used.items()), key=lambda r: (-r[2], r[0], r[1])))
    unmapped = tuple(sorted(set(target) - set(mapping)))
    return NameMap(mapping, rules, source, unmapped)


def find_name_map(operand: Mapping[str, TensorInfo], target: Mapping[str, TensorInfo]) -> NameMap:
    """The mapping from the checkpoints: the identity when every chat-side tensor is in the target
    under its own name, else the prefix rewrites the shapes and suffixes vote for."""
    if all(name in target for name in operand):
        return NameMap({})
    votes = _candidates(operand, target)
    rules = [rule for rule, _ in sorted(votes.items(), key=lambda item: (-item[1], item[0]))]
    mapping, used = _apply(rules, operand, target)
    return _result(mapping, used, target, "found")


def given_name_map(
    pairs: Iterable[str], operand: Mapping[str, TensorInfo], target: Mapping[str, TensorInfo]
) -> NameMap:
    """The mapping from ``--map FROM=TO`` prefixes (tensors no prefix matches keep their names)."""
    rules = parse_map(pairs) + [("", "")]
    mapping, used = _apply(rules, operand, target)
    return _result(mapping, used, target, "given")
