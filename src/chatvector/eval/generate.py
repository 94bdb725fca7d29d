"""Getting replies: conversations played turn by turn, and the replies cache that keeps every
reply the moment it arrives.

- :func:`converse` plays every sample's user turns in order, all suites together, each turn a
  single ``generate`` call over every conversation still going (after the sample's given
  ``history``, if it has one); a reply found in the cache is reused, the others are generated and
  appended to the cache as they arrive. :func:`converse_finished` also returns why each reply
  ended (``stop``, ``length``, or None where the backend does not say).
- :class:`RepliesCache` is ``OUT/replies.jsonl``: one line per sample and turn, keyed by suite,
  sample id, turn and a hash of the conversation so far plus the settings that decide the reply
  (model, dtype, decoding), with the reply's finish. A rerun of the same evaluation reuses them
  and generates only what is missing; a run killed mid-line leaves at most one torn last line,
  which is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from chatvector.eval.backends import Backend, Conversation, Finish
from chatvector.eval.suites import Sample

__all__ = ["converse", "converse_finished", "RepliesCache", "Replies", "Finishes"]

Replies = dict[str, list[list[str]]]  # per suite, per sample, the replies in turn order
Finishes = dict[str, list[list[Finish | None]]]  # the same shape: why each reply ended

log = logging.getLogger(__name__)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RepliesCache:
    """Replies kept in a JSONL file as they arrive, found again by what produced them.

    Args:
        path: the file (created on the first reply); None keeps replies in memory only.
        context: what decides a reply besides the conversation (the backend's identity and the
            decoding settings); a reply made under another context is never reused.
    """

    def __init__(self, path: Path | None, context: dict[str, Any]) -> None:
        from chatvector.eval.schemas import AppendLog, ReplyRecord

        self.path = path
        self.context = _digest(context)
        self.replies: dict[tuple[str, str, int, str], str] = {}
        self.finishes: dict[tuple[str, str, int, str], Finish | None] = {}
        self.reused = 0
        self.generated = 0
        self._log = AppendLog(path) if path is not None else None
        if self._log is not None:
            # a torn line (a run killed mid-reply) or any other bad line is skipped with a
            # warning, and that reply is generated again
            for row in self._log.records(ReplyRecord):
                self.replies[(row.suite, row.id, row.turn, row.key)] = row.reply
                self.finishes[(row.suite, row.id, row.turn, row.key)] = row.finish

    def key(self, suite: str, sample_id: str, turn: int, history: Conversation) -> tuple[str, str, int, str]:
        return suite, sample_id, turn, _digest({"context": self.context, "history": history})

    def get(self, suite: str, sample_id: str, turn: int, history: Conversation) -> str | None:
        return self.replies.get(self.key(suite, sample_id, turn, history))

    def finish(self, suite: str, sample_id: str, turn: int, history: Conversation) -> Finish | None:
        """Why the kept reply ended (None: unknown, or no reply kept)."""
        return self.finishes.get(self.key(suite, sample_id, turn, history))

    def put(
        self, suite: str, sample_id: str, turn: int, history: Conversation, reply: str, finish: Finish | None = None
    ) -> None:
        """Keep ``reply`` and append it to the file at once (flushed, so a killed run keeps it)."""
        key = self.key(suite, sample_id, turn, history)
        self.replies[key] = reply
        self.finishes[key] = finish
        self.generated += 1
        if self._log is not None:
            record: dict[str, object] = {"suite": suite, "id": sample_id, "turn": turn, "key": key[3], "reply": reply}
            if finish is not None:
                record["finish"] = finish
            self._log.append(json.dumps(record, ensure_ascii=False))

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def converse(
    backend: Backend,
    suites: dict[str, list[Sample]],
    cache: RepliesCache | None = None,
) -> Replies:
    """Play every sample's user turns in order, the model answering each with the full history.

    Returns:
        per suite, per sample, the replies in turn order (see :func:`converse_finished`).
    """
    return converse_finished(backend, suites, cache)[0]


def converse_finished(
    backend: Backend,
    suites: dict[str, list[Sample]],
    cache: RepliesCache | None = None,
) -> tuple[Replies, Finishes]:
    """Play every sample's user turns in order, the model answering each with the full history.

    A sample's ``history`` (given earlier turns, assistant ones included) opens its conversation;
    only the replies to its own user turns are generated. All suites go to the backend together,
    turn by turn, so batches are packed across suites.

    Returns:
        per suite, per sample, the replies in turn order, and why each one ended.
    """
    cache = cache or RepliesCache(None, {})
    items = [(name, sample) for name, samples in suites.items() for sample in samples]
    histories: list[Conversation] = [[dict(m) for m in s.history] for _, s in items]
    replies: list[list[str]] = [[] for _ in items]
    finishes: list[list[Finish | None]] = [[] for _ in items]
    for turn in range(max((len(s.user_turns) for _, s in items), default=0)):
        active = [i for i, (_, s) in enumerate(items) if turn < len(s.user_turns)]
        for i in active:
            histories[i].append({"role": "user", "content": items[i][1].user_turns[turn]})
        missing = [i for i in active if cache.get(items[i][0], items[i][1].id, turn, histories[i]) is None]
        cache.reused += len(active) - len(missing)

        def keep(
            position: int, reply: str, finish: Finish | None = None, turn: int = turn, missing: list[int] = missing
        ) -> None:
            i = missing[position]
            cache.put(items[i][0], items[i][1].id, turn, histories[i], reply, finish)

        if missing:
            returned = backend.generate([list(histories[i]) for i in missing], on_reply=keep)
            for position, reply in enumerate(returned):  # a backend that did not report a reply as it came
                i = missing[position]
                if cache.get(items[i][0], items[i][1].id, turn, histories[i]) is None:
                    keep(position, reply)
        for i in active:
            answer = cache.get(items[i][0], items[i][1].id, turn, histories[i]) or ""
            finishes[i].append(cache.finish(items[i][0], items[i][1].id, turn, histories[i]))
            histories[i].append({"role": "assistant", "content": answer})
            replies[i].append(answer)
    grouped: Replies = {name: [] for name in suites}
    ended: Finishes = {name: [] for name in suites}
    for (name, _), reply_list, finish_list in zip(items, replies, finishes, strict=True):
        grouped[name].append(reply_list)
        ended[name].append(finish_list)
    return grouped, ended
