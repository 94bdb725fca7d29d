"""The non-weight files of an output, and which model each comes from.

Config, tokenizer and vocabulary come from the target (it knows the new language). The chat
template, the end-of-turn / EOS token and the generation config's stop ids come from the chat
model (it knows how to stop). Token ids are translated by token string, because the target's
vocabulary may differ from the chat model's.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from chatvector.io.files import is_inside, read_json
from chatvector.io.hub import ModelRef
from chatvector.merge.vocab import Vocabulary, special_token_strings

log = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "vocab.txt",
)


def read_chat_template(model_dir: Path) -> str | None:
    """The chat template of a model directory, wherever transformers may have stored it."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    as_json = model_dir / "chat_template.json"
    if as_json.exists():
        template = read_json(as_json, "chat_template.json").get("chat_template")
        if isinstance(template, str):
            return template
    config_path = model_dir / "tokenizer_config.json"
    if config_path.exists():
        template = read_json(config_path, "tokenizer_config.json").get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _special_tokens(model_dir: Path) -> list[str]:
    """The special added tokens of a tokenizer.json (e.g. ``<|im_start|>``)."""
    path = model_dir / "tokenizer.json"
    if not path.exists():
        return []
    added = read_json(path, "tokenizer.json").get("added_tokens") or []
    return sorted(t["content"] for t in added if isinstance(t, dict) and t.get("special")
                  and isinstance(t.get("content"), str))


def copy_tokenizer_files(source: Path, out: Path) -> list[str]:
    """Copy the tokenizer files present in ``source``; return their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
            copied.append(name)
    return copied


def copy_model_code(ref: ModelRef, out: Path, notes: list[str]) -> list[str]:
    """Copy the Python files of a model that needs its own code (``auto_map``); return their names.

    Without them the output cannot be loaded with ``trust_remote_code``. They are copied as bytes
    and never imported or run here; a note in the model card lists them so that users review them
    as they would the target's. Links leading outside the model (or its hub cache entry) are
    skipped, as for weight files.
    """
    source = ref.path
    if not any(_has_auto_map(source / name) for name in ("config.json", "tokenizer_config.json")):
        return []
    root = ref.allowed_root or source.resolve()
    copied = []
    for path in sorted(source.glob("*.py")):
        if not path.is_file():
            continue
        if not is_inside(path, root):
            notes.append(f"{path.name} of the target is a link leading outside {root}; not copied")
            continue
        shutil.copyfile(path, out / path.name)
        copied.append(path.name)
    if copied:
        notes.append(f"the target needs its own code (auto_map); copied unexecuted: {', '.join(copied)}")
    return copied


def _has_auto_map(config_path: Path) -> bool:
    return config_path.exists() and bool(read_json(config_path, config_path.name).get("auto_map"))


def _translate_ids(ids: Any, chat_vocab: Vocabulary | None, target_vocab: Vocabulary | None,
                   notes: list[str]) -> Any:
    """Map token ids of the chat vocabulary to the target's, by token string."""
    if chat_vocab is None or target_vocab is None or chat_vocab.token_to_id == target_vocab.token_to_id:
        return ids
    by_id = {i: t for t, i in chat_vocab.token_to_id.items()}
    many = ids if isinstance(ids, list) else [ids]
    mapped = []
    for token_id in many:
        token = by_id.get(token_id)
        if token is not None and token in target_vocab.token_to_id:
            mapped.append(target_vocab.token_to_id[token])
        else:
            notes.append(f"stop token id {token_id} ({token!r}) of the chat model is not in the "
                         "target vocabulary")
    if not isinstance(ids, list):
        return mapped[0] if mapped else None
    return mapped


def write_generation_config(target_dir: Path, chat_dir: Path, out: Path,
                            chat_vocab: Vocabulary | None, target_vocab: Vocabulary | None,
                            notes: list[str]) -> dict[str, Any]:
    """generation_config.json: the chat model's, with its stop ids in the target's vocabulary."""
    config: dict[str, Any] = {}
    for source in (target_dir, chat_dir):  # chat last: its settings win
        path = source / "generation_config.json"
        if path.exists():
            config.update(read_json(path, "generation_config.json"))
    chat_tokens = special_token_strings(chat_dir)
    stop_ids = config.get("eos_token_id")
    if stop_ids is None and chat_vocab is not None and "eos_token" in chat_tokens:
        stop_ids = chat_vocab.token_to_id.get(chat_tokens["eos_token"])
    if stop_ids is not None:
        config["eos_token_id"] = _translate_ids(stop_ids, chat_vocab, target_vocab, notes)
    for key in ("pad_token_id", "bos_token_id"):
        if config.get(key) is not None:
            config[key] = _translate_ids(config[key], chat_vocab, target_vocab, notes)
    config.pop("transformers_version", None)
    (out / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def carry_chat_template(chat_dir: Path, out: Path, target_vocab: Vocabulary | None,
                        notes: list[str]) -> bool:
    """Put the chat model's template and EOS token into the output's tokenizer files."""
    template = read_chat_template(chat_dir)
    config_path = out / "tokenizer_config.json"
    tokenizer_config = read_json(config_path, "tokenizer_config.json") if config_path.exists() else {}
    if template is not None:
        (out / "chat_template.jinja").write_text(template, encoding="utf-8")
        tokenizer_config["chat_template"] = template
    else:
        notes.append(f"the chat model ({chat_dir}) has no chat template; none was carried over")
    if template is not None and target_vocab is not None:
        vocab = target_vocab.token_to_id
        missing = [t for t in _special_tokens(chat_dir) if t in template and t not in vocab]
        if missing:
            notes.append(f"the chat template uses special tokens the target vocabulary lacks "
                         f"({', '.join(missing)}); they will be split into ordinary tokens")
    eos = special_token_strings(chat_dir).get("eos_token")
    if eos is not None:
        if target_vocab is None or eos in target_vocab.token_to_id:
            tokenizer_config["eos_token"] = eos
        else:
            notes.append(f"the chat model's EOS token {eos!r} is not in the target vocabulary; "
                         "the target's EOS token was kept")
    if tokenizer_config:
        config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")
    return template is not None


def write_model_config(target_dir: Path, out: Path, out_dtype: str | None,
                       generation: dict[str, Any]) -> None:
    """config.json of the target, with the output dtype (a ``--dtype`` name, None: unchanged) and the chat
    model's EOS id."""
    config = read_json(target_dir / "config.json", "config.json")
    if out_dtype:
        config["torch_dtype"] = out_dtype
        if "dtype" in config:
            config["dtype"] = out_dtype
    if generation.get("eos_token_id") is not None:
        config["eos_token_id"] = generation["eos_token_id"]
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
