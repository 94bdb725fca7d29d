"""Provenance: the recipe file, the model card and the safetensors metadata of every output.

Each records the inputs (hub id and revision, or local path, with each weight file's size and a
SHA-256 of its safetensors header, which changes with any tensor name, shape, dtype or offset),
the ratios, the policies and the tool version, so a merge can be reproduced and checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from chatvector._version import __version__
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.output import write_file
from chatvector.merge.ratios import describe_ratio
from chatvector.merge.recipe import RECIPE_FILENAME, Recipe, VectorTerm


def describe_inputs(checkpoints: list[Checkpoint]) -> list[dict[str, Any]]:
    """One entry per input model: role, reference, revision and file fingerprints."""
    described = []
    for checkpoint in checkpoints:
        ref = checkpoint.ref
        entry: dict[str, Any] = {"role": ref.role, "ref": ref.spec}
        if ref.hub_id:
            entry["hub_id"] = ref.hub_id
            entry["revision"] = ref.revision
        else:
            entry["path"] = str(ref.path)
        entry["files"] = checkpoint.fingerprints
        described.append(entry)
    return described


def provenance(
    recipe: Recipe,
    checkpoints: list[Checkpoint],
    policies: dict[str, str],
    notes: list[str],
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything an output records about how it was made.

    ``details`` adds what the plan resolved: ``resolved_ratios`` (per term with rules or a layer
    schedule, the ratio of every tensor group), ``name_map`` and ``lineage``.
    """
    return {
        "chatvector_version": __version__,
        "recipe": recipe.model_dump(mode="json", exclude_none=True),
        "inputs": describe_inputs(checkpoints),
        "embedding_policy": policies,
        "notes": notes,
        **(details or {}),
    }


# The safetensors metadata key binding an output's recipe file to its weights.
RECIPE_DIGEST_KEY = "chatvector_recipe_sha256"


def recipe_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of what an output's recipe file says was merged from what: its ``recipe`` (terms,
    ratios, options, the inputs' directories) and ``inputs`` (their file fingerprints).

    Written into every weights file's metadata at merge time and recomputed by ``verify`` from
    ``chatvector_recipe.yaml``, so a recipe file edited afterwards (another target, another ratio)
    fails verification instead of being recomputed from. Notes, policies and lineage figures are
    descriptions of the run and are not bound.
    """
    bound = {"recipe": record.get("recipe"), "inputs": record.get("inputs")}
    text = json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safetensors_metadata(record: dict[str, Any], recipe: Recipe) -> dict[str, str]:
    """Compact string metadata for every output shard: the recipe as the user wrote it (the
    absolute directories of local inputs stay in the recipe file, which ``verify`` reads) and the
    digest binding that file to these weights (:func:`recipe_digest`)."""
    return {
        "format": "pt",
        "chatvector_version": record["chatvector_version"],
        "chatvector_recipe": json.dumps(
            recipe.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
        ),
        RECIPE_DIGEST_KEY: recipe_digest(record),
    }


def write_recipe_file(folder: Path, record: dict[str, Any]) -> Path:
    path = folder / RECIPE_FILENAME
    write_file(
        path,
        "# Written by chatvector; `chatvector merge --recipe` on this file reproduces the output\n"
        "# and `chatvector verify` checks it.\n" + yaml.safe_dump(record, sort_keys=False, allow_unicode=True),
    )
    return path


def _term_line(term: Any) -> str:
    if isinstance(term, VectorTerm):
        return f"| vector `{term.vector}` | {describe_ratio(term.ratio)} |"
    return f"| `{term.chat}` − `{term.base}` | {describe_ratio(term.ratio)} |"


def _lineage_lines(lineage: dict[str, Any] | None) -> list[str]:
    if not lineage or lineage.get("target_rel") is None:
        return []
    return [
        f"- lineage: ‖target − base‖/‖base‖ = {lineage['target_rel']:.3g}, ‖chat − base‖/‖base‖ = "
        f"{lineage['chat_rel']:.3g}, cosine {lineage['cosine']:+.3f} ({lineage['verdict']})"
    ]


def write_model_card(folder: Path, record: dict[str, Any], recipe: Recipe) -> Path:
    """A README.md with Hugging Face front matter, the formula, inputs, policies and notes."""
    front = _front_matter(record, recipe)
    title = "Chat vector" if recipe.kind == "extract" else "Chat-vector merge"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {title}",
        "",
        "Made with [chatvector](https://arxiv.org/abs/2310.04799) "
        f"{record['chatvector_version']}: "
        + (
            "`chat − base`, tensor by tensor."
            if recipe.kind == "extract"
            else f"`{recipe.target}` + Σ rᵢ · (chatᵢ − baseᵢ)."
        ),
        "",
        "| term | ratio |",
        "|---|---|",
        *[_term_line(t) for t in recipe.terms],
        "",
        "## Policies",
        "",
        f"- embeddings: `{recipe.options.embeddings}` → {record['embedding_policy'] or 'n/a'}",
        f"- excluded tensors (kept from the target): {list(recipe.options.exclude) or 'none'}",
        f"- output dtype: {recipe.options.dtype or 'as in the target'}",
        *(
            [f"- ratio rules (before every term's own ratio): {list(recipe.options.ratio_rule)}"]
            if recipe.options.ratio_rule
            else []
        ),
        *([f"- sparsified: `{recipe.options.sparsify}`"] if recipe.options.sparsify else []),
        *([f"- merge method: `{recipe.options.method}`"] if recipe.options.method else []),
        *_lineage_lines(record.get("lineage")),
        "- config, tokenizer and vocabulary from the target; chat template from the (first) chat model",
        _stops_line(record),
        "",
        "## Notes",
        "",
        *([f"- {n}" for n in record["notes"]] or ["- none"]),
        "",
        f"The full recipe and input fingerprints are in `{RECIPE_FILENAME}`; "
        "`chatvector verify` re-checks this directory.",
        "",
    ]
    path = folder / "README.md"
    write_file(path, "\n".join(lines))
    return path


def _front_matter(record: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """Hugging Face card metadata. ``base_model`` lists hub ids only (a local path means nothing on
    the hub and would publish the merging machine's directory names); a vector directory is not a
    transformers model, so it claims no library."""
    hub_ids = list(dict.fromkeys(entry["hub_id"] for entry in record["inputs"] if entry.get("hub_id")))
    front: dict[str, Any] = {}
    if recipe.kind != "extract":
        front["library_name"] = "transformers"
    front["tags"] = (
        ["chatvector", "merge", "chat-vector"] if recipe.kind != "extract" else ["chatvector", "chat-vector"]
    )
    if hub_ids:
        front["base_model"] = hub_ids
        if recipe.kind != "extract":
            front["base_model_relation"] = "merge"
    return front


def _stops_line(record: dict[str, Any]) -> str:
    stops = record.get("stops")
    if not stops:
        return "- EOS and stop ids: those of the chat model"
    ids = stops["eos_token_id"]
    token = f"`{stops['eos_token']}`" if stops.get("eos_token") else "the target's EOS token"
    if stops["source"] == "chat":
        return f"- EOS and stop ids from the chat model, in the target's vocabulary: {token}, ids {ids}"
    return f"- EOS and stop ids: the target's own ({token}, ids {ids}), not the chat model's (the notes say why)"
