"""Open a recipe's models: resolve each name to a directory, read headers and tokenizers, close them.

:func:`open_inputs` is the one way in for everything that reads a recipe's inputs (merging,
extracting, verifying an output against its recipe). For hub inputs, :func:`precheck_remote`
compares configs and then safetensors headers before any weights are downloaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatvector.errors import InputError, PreflightError
from chatvector.io.adapter import is_adapter, open_adapter
from chatvector.io.checkpoint import Checkpoint, model_root, remote_headers
from chatvector.io.files import read_json
from chatvector.io.hub import ModelRef, resolve_model
from chatvector.io.schemas import ModelConfig
from chatvector.merge.lineage import check_plan as check_lineage
from chatvector.merge.plan import Operand, Plan, Term, build_plan, compare_configs
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm
from chatvector.merge.vector import VECTOR_MANIFEST, check_vector_tensors, read_manifest
from chatvector.merge.vocab import load_vocabulary

__all__ = ["Inputs", "open_inputs", "precheck_remote"]

log = logging.getLogger(__name__)

OpenCheckpoint = Callable[[ModelRef, bool], Checkpoint]


@dataclass(frozen=True)
class ResolvedTerm:
    """One recipe term with its models resolved: ``[chat, base]`` for a pair, ``[vector]`` else."""

    term: PairTerm | VectorTerm
    refs: tuple[ModelRef, ...]


@dataclass
class Inputs:
    """A recipe's models, opened: the frame (target, or the chat model when extracting) and terms."""

    recipe: Recipe
    target: ModelRef | None
    frame: Operand
    terms: list[Term]

    @property
    def frame_is_target(self) -> bool:
        return self.target is not None

    @property
    def checkpoints(self) -> list[Checkpoint]:
        found = [self.frame.checkpoint]
        for term in self.terms:
            found += [term.plus.checkpoint] + ([term.minus.checkpoint] if term.minus else [])
        return found

    @property
    def directories(self) -> list[Path]:
        """Every input's local directory (an output may not be, contain or lie inside one)."""
        return sorted({c.ref.path for c in self.checkpoints})

    def plan(self, *, lineage: bool = False) -> Plan:
        """Run the preflight on these inputs (raises PreflightError listing every problem).

        With ``lineage``, also check from a sample of tensors that the target descends from the
        base (:mod:`chatvector.merge.lineage`; reads a few MB).
        """
        plan = build_plan(
            self.frame, frame_is_target=self.frame_is_target, terms=self.terms, options=self.recipe.options
        )
        if lineage and self.frame_is_target:
            check_lineage(plan, self.recipe.options.strict_lineage)
        return plan

    def close(self) -> None:
        for checkpoint in self.checkpoints:
            checkpoint.close()


def _open_local(ref: ModelRef, allow_pickle: bool) -> Checkpoint:
    return Checkpoint.open(ref, allow_pickle=allow_pickle)


def _recorded_location(spec: str, recorded: str | None, role: str) -> str:
    """Where to find an input: the absolute directory recorded at merge time when there is one
    (warning when the spelling would mean another directory from here), else the spelling."""
    if recorded is None:
        return spec
    if not Path(recorded).is_dir():
        raise InputError(
            f"the recipe's {role} {spec!r} was {recorded} when the output was made, and that "
            f"directory is gone; put the model back there, or edit {role}_path in the recipe",
            file=recorded,
            option=f"{role}_path",
        )
    here = Path(spec).expanduser()
    if here.is_dir() and here.resolve() != Path(recorded).resolve():
        log.warning(
            "the recipe's %s %r would mean %s from this directory; using %s, recorded at merge time",
            role,
            spec,
            here.resolve(),
            recorded,
        )
    return recorded


def resolve_recipe(
    recipe: Recipe, *, allow_pickle: bool = False, weights: bool = True
) -> tuple[ModelRef | None, list[ResolvedTerm]]:
    """Resolve every model a recipe names (downloading hub ids; only metadata with ``weights=False``).

    Local inputs are found at the absolute directory the recipe recorded, if it did; each
    reference keeps the user's spelling for messages and fingerprints.
    """

    def get(spec: str, role: str, revision: str | None = None, recorded: str | None = None) -> ModelRef:
        ref = resolve_model(
            _recorded_location(spec, recorded, role),
            role,
            revision=revision,
            allow_pickle=allow_pickle,
            weights=weights,
        )
        return dataclasses.replace(ref, spec=spec)

    target = get(recipe.target, "target", recipe.target_revision, recipe.target_path) if recipe.target else None
    resolved = []
    for term in recipe.terms:
        if isinstance(term, VectorTerm):
            resolved.append(ResolvedTerm(term, (get(term.vector, "vector", recorded=term.vector_path),)))
        else:
            resolved.append(
                ResolvedTerm(
                    term,
                    (
                        get(term.chat, "chat", term.chat_revision, term.chat_path),
                        get(term.base, "base", term.base_revision, term.base_path),
                    ),
                )
            )
    return target, resolved


def _local_path(ref: ModelRef) -> str | None:
    return None if ref.hub_id else str(ref.path)


def locate(recipe: Recipe, inputs: Inputs) -> Recipe:
    """``recipe`` with the absolute directory of every local input recorded beside its spelling."""
    terms: list[PairTerm | VectorTerm] = []
    for term, opened in zip(recipe.terms, inputs.terms, strict=True):
        if isinstance(term, VectorTerm):
            terms.append(term.model_copy(update={"vector_path": _local_path(opened.plus.checkpoint.ref)}))
        else:
            assert opened.minus is not None
            terms.append(
                term.model_copy(
                    update={
                        "chat_path": _local_path(opened.plus.checkpoint.ref),
                        "base_path": _local_path(opened.minus.checkpoint.ref),
                    }
                )
            )
    target = _local_path(inputs.target) if inputs.target is not None else None
    return recipe.model_copy(update={"terms": tuple(terms), "target_path": target})


def _open_operand(
    ref: ModelRef, label: str, allow_pickle: bool, *, vector: bool, open_checkpoint: OpenCheckpoint
) -> Operand:
    if vector and is_adapter(ref.path):  # a PEFT LoRA adapter: its merge updates, computed on demand
        return Operand(open_adapter(ref), label, load_vocabulary(ref.path, model_root(ref)))
    manifest = read_manifest(ref.path, model_root(ref))
    if vector and manifest is None:
        raise InputError(
            f"--vector {ref.spec}: not a chat-vector directory (no {VECTOR_MANIFEST}); make one "
            "with `chatvector extract`, or use `chatvector merge` with --base/--chat",
            file=ref.path,
            option="--vector",
        )
    if not vector and manifest is not None:
        raise InputError(
            f"--{ref.role} {ref.spec} is a chat-vector directory, not a model; use it with `chatvector apply --vector`",
            file=ref.path,
            option=f"--{ref.role}",
        )
    if not vector and not os.path.lexists(ref.path / "config.json"):
        raise InputError(
            f"--{ref.role} {ref.spec}: no config.json; is it a Hugging Face model directory?",
            file=ref.path,
            option=f"--{ref.role}",
        )
    checkpoint = open_checkpoint(ref, allow_pickle)
    if manifest is not None:
        check_vector_tensors(ref.path, manifest, checkpoint.tensors)
    if (checkpoint.config or {}).get("auto_map"):
        log.warning("%s asks for remote code (auto_map); chatvector never runs it", ref.spec)
    excluded = frozenset(manifest.excluded) if manifest else frozenset()
    return Operand(checkpoint, label, load_vocabulary(ref.path, model_root(ref)), excluded)


def _operands(
    target: ModelRef | None,
    resolved: list[ResolvedTerm],
    allow_pickle: bool,
    open_checkpoint: OpenCheckpoint,
    opened: list[Operand],
) -> tuple[Operand, list[Term]]:
    """Open every operand, appending each to ``opened`` at once so a failure can close the others.

    A model that several terms name in the same role is opened once and shared (its checkpoint,
    vocabulary and manifest): a recipe of thousands of terms over a few models costs a few opens,
    not one per term (and as few file descriptors).
    """
    seen: dict[tuple[object, ...], Operand] = {}

    def operand(ref: ModelRef, label: str, *, vector: bool) -> Operand:
        key = (ref.spec, str(ref.path), ref.role, ref.hub_id, ref.revision, vector)
        if key in seen:
            first = seen[key]
            opened.append(Operand(first.checkpoint, label, first.vocab, first.excluded))
        else:
            opened.append(_open_operand(ref, label, allow_pickle, vector=vector, open_checkpoint=open_checkpoint))
            seen[key] = opened[-1]
        return opened[-1]

    frame = operand(target, "target", vector=False) if target is not None else None
    terms: list[Term] = []
    for number, item in enumerate(resolved, start=1):
        suffix = f" #{number}" if len(resolved) > 1 else ""
        if isinstance(item.term, VectorTerm):
            plus = operand(item.refs[0], f"vector{suffix}", vector=True)
            if plus.checkpoint.format == "lora" and frame is not None:  # the rest keeps the target's values
                plus.excluded = frozenset(frame.checkpoint.tensors) - frozenset(plus.checkpoint.tensors)
            terms.append(Term(item.term.ratio, plus, None))
        else:
            plus = operand(item.refs[0], f"chat{suffix}", vector=False)
            terms.append(Term(item.term.ratio, plus, operand(item.refs[1], f"base{suffix}", vector=False)))
    return frame or terms[0].plus, terms


@contextmanager
def open_inputs(
    recipe: Recipe, *, allow_pickle: bool = False, open_checkpoint: OpenCheckpoint = _open_local
) -> Iterator[Inputs]:
    """Resolve and open every model of ``recipe``; close them all on the way out.

    Example:
        >>> with open_inputs(recipe) as inputs:  # doctest: +SKIP
        ...     plan = inputs.plan()
    """
    target, resolved = resolve_recipe(recipe, allow_pickle=allow_pickle)
    opened: list[Operand] = []
    try:
        frame, terms = _operands(target, resolved, allow_pickle, open_checkpoint, opened)
        yield Inputs(recipe, target, frame, terms)
    finally:
        for operand in opened:
            operand.checkpoint.close()


class _NoRemoteHeaders(Exception):
    """A hub input's headers could not be read before the download."""


def _headers_only(ref: ModelRef, allow_pickle: bool) -> Checkpoint:
    if ref.hub_id is None:
        return _open_local(ref, allow_pickle)
    checkpoint = remote_headers(ref)
    if checkpoint is None:
        raise _NoRemoteHeaders(ref.spec)
    return checkpoint


def _is_local(spec: str | None) -> bool:
    return spec is None or Path(spec).expanduser().exists()


def precheck_remote(recipe: Recipe, *, allow_pickle: bool = False) -> None:
    """For hub inputs, compare configs, then plan from safetensors headers, before any weights download.

    A wrong pairing of models is then reported after a few kB of downloads, not after the gigabytes
    of weights (a common failure of merge tools). Offline, or without headers on the hub, the full
    check after the download covers it.
    """
    specs = [recipe.target] + [
        spec for t in recipe.terms for spec in ((t.vector,) if isinstance(t, VectorTerm) else (t.chat, t.base))
    ]
    if all(_is_local(spec) for spec in specs):
        return
    target, resolved = resolve_recipe(recipe, allow_pickle=allow_pickle, weights=False)
    refs = ([target] if target else []) + [r for item in resolved for r in item.refs]
    loaded = {
        ref: read_json(ref.path / "config.json", "config.json", schema=ModelConfig, root=model_root(ref))
        for ref in refs
        if os.path.lexists(ref.path / "config.json")
    }
    frame = refs[0]
    problems = [
        p
        for ref in refs[1:]
        if ref in loaded and frame in loaded
        for p in compare_configs(frame.describe(), loaded[frame], ref.describe(), loaded[ref])
    ]
    if problems:
        raise PreflightError(problems)
    opened: list[Operand] = []
    try:
        frame_operand, terms = _operands(target, resolved, allow_pickle, _headers_only, opened)
        build_plan(frame_operand, frame_is_target=target is not None, terms=terms, options=recipe.options)
    except _NoRemoteHeaders as missing:
        log.info("tensors of %s are compared after the download", missing)
    finally:
        for operand in opened:
            operand.checkpoint.close()
