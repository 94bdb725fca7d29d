"""``OUT/judgments.jsonl``: every judge verdict kept as it arrives, so a rerun asks only what is missing.

A verdict is found again by its key: the SHA-256 of the judge model, the hash of the judge's
prompt templates and the exact messages sent (the template filled with the conversation, the
replies and the reference). Change any of them and the verdict is asked again; change nothing
and a rerun sends no judge request at all. Unparsed verdicts are kept too (the judge's text is
the record of why); delete the file to ask every judge again.

Each verdict is appended and flushed the moment it arrives, so a judge that stops answering, or a
killed run, keeps every verdict so far (a torn last line is ignored when read). When the run ends,
the file is rewritten whole through a temporary file and a rename, so it is never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chatvector.eval.judge_endpoint import Conversation, JudgeReply
from chatvector.eval.schemas import AppendLog, JudgmentRecord
from chatvector.eval.state_files import write_text

__all__ = ["JudgmentStore", "CachedEndpoint", "JUDGMENTS_FILE", "judgment_key"]

log = logging.getLogger(__name__)

JUDGMENTS_FILE = "judgments.jsonl"


def judgment_key(model: str, prompt_sha256: str, messages: Conversation) -> str:
    """What identifies a verdict: judge model, prompt templates and the exact messages sent."""
    text = json.dumps([model, prompt_sha256, messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgmentStore:
    """The verdicts of one eval directory, read at start and appended to as they arrive.

    Args:
        path: ``OUT/judgments.jsonl`` (created on the first verdict); None keeps them in memory.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[str, JudgmentRecord] = {}
        self.asked = 0
        self.reused = 0
        self._log = AppendLog(path) if path is not None else None
        if self._log is not None:
            self.records = {record.key: record for record in self._log.records(JudgmentRecord)}

    def get(self, key: str) -> JudgmentRecord | None:
        return self.records.get(key)

    def put(self, record: JudgmentRecord) -> None:
        """Keep ``record`` and append it to the file at once (flushed, so a killed run keeps it)."""
        self.records[record.key] = record
        self.asked += 1
        if self._log is not None:
            self._log.append(record.model_dump_json())

    def close(self) -> None:
        """Rewrite the file whole (temporary file, fsync, rename): no torn or repeated lines remain."""
        if self._log is not None:
            self._log.close()
        if self.path is None or not self.records:
            return
        write_text(self.path, "".join(record.model_dump_json() + "\n" for record in self.records.values()))


class CachedEndpoint:
    """A judge endpoint whose verdicts are looked up in a :class:`JudgmentStore` first.

    Args:
        endpoint: anything with ``ask(conversations, on_reply)`` and ``describe()``.
        store: where verdicts are found and kept.
        prompt_sha256: the hash of the judge's prompt templates (part of every key).
    """

    def __init__(self, endpoint: Any, store: JudgmentStore, prompt_sha256: str) -> None:
        self.endpoint = endpoint
        self.store = store
        self.prompt_sha256 = prompt_sha256
        self.reported: dict[str, set[str]] = {"reported_model": set(), "system_fingerprint": set()}

    @property
    def model(self) -> str:
        name: str = self.endpoint.model
        return name

    def describe(self) -> dict[str, Any]:
        """The endpoint's description; what the server reported covers cached verdicts too."""
        described: dict[str, Any] = self.endpoint.describe()
        return described | {key: sorted(values) for key, values in self.reported.items()}

    def _key(self, conversation: Conversation) -> str:
        return judgment_key(self.endpoint.model, self.prompt_sha256, conversation)

    def ask(
        self, conversations: Sequence[Conversation], on_reply: Callable[[int, JudgeReply], None] | None = None
    ) -> list[JudgeReply]:
        """Cached verdicts as they are; the missing ones asked (and kept as each arrives)."""
        keys = [self._key(c) for c in conversations]
        found: dict[int, JudgeReply] = {}
        for index, key in enumerate(keys):
            record = self.store.get(key)
            if record is not None:
                found[index] = _reply(record)
        self.store.reused += len(found)
        missing = [i for i in range(len(conversations)) if i not in found]

        def keep(position: int, reply: JudgeReply) -> None:
            index = missing[position]
            found[index] = reply
            self.store.put(_record(keys[index], reply))

        if missing:
            self.endpoint.ask([conversations[i] for i in missing], on_reply=keep)
        replies = [found[i] for i in range(len(conversations))]
        for reply in replies:
            self.reported["reported_model"].update([reply.model] if reply.model else [])
            self.reported["system_fingerprint"].update([reply.system_fingerprint] if reply.system_fingerprint else [])
        return replies


def _record(key: str, reply: JudgeReply) -> JudgmentRecord:
    unreadable = reply.text is None
    return JudgmentRecord(
        key=key,
        texts=[reply.raw if unreadable else reply.text or ""],
        unreadable=unreadable,
        model=reply.model,
        system_fingerprint=reply.system_fingerprint,
    )


def _reply(record: JudgmentRecord) -> JudgeReply:
    text = record.texts[-1] if record.texts else ""
    if record.unreadable:
        return JudgeReply(None, text, record.model, record.system_fingerprint)
    return JudgeReply(text, "", record.model, record.system_fingerprint)
