"""The judge's endpoint: OpenAI-compatible requests that tell a bad answer from no answer.

A judge request ends in one of three ways, and each is handled differently:

- **an answer**: text, with the model and ``system_fingerprint`` the server reported (recorded);
- **an unreadable answer** (a body that is not JSON, ``content`` that is a number or a list):
  asked again up to ``retries`` times, then returned as unreadable with the raw body, so the
  verdict is counted as unparsed and the run goes on;
- **no answer** (connection refused, time-outs, HTTP 5xx or 429 after every retry): raises
  :class:`JudgeUnreachable`; the verdicts received so far are already in the judgments cache.

Requests run on daemon threads and the caller waits on them in short slices, so Ctrl-C or
SIGTERM ends the run at once instead of waiting out a request (``--judge-timeout``, default
120 s, bounds each request).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.schemas import ChatCompletion, check, loads

__all__ = ["JudgeReply", "JudgeEndpoint", "JudgeUnreachable", "Conversation", "UNREADABLE"]

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
RAW_LIMIT = 4000  # characters of an unreadable body kept as the judge's text
UNREADABLE = "(unreadable reply)"  # how the text of a reply that could not be read begins
RETRIES = 3  # further attempts after a failed or unreadable reply
BACKOFF = 1.0  # seconds before the first retry, doubled for each next one
# After a request fails for good, how long the answers other requests already hold (or are about
# to) are waited for, so that they are kept rather than abandoned with the failed one.
DRAIN_GRACE = 5.0


class JudgeUnreachable(EvalError):
    """The judge gave no answer at all after every retry (the run cannot go on)."""


@dataclass(frozen=True)
class JudgeReply:
    """One answer of the judge: ``text`` (None when the reply could not be read) and ``raw``, the
    body as received when it could not."""

    text: str | None
    raw: str = ""
    model: str | None = None
    system_fingerprint: str | None = None

    @property
    def shown(self) -> str:
        """What results.json keeps as the judge's text."""
        return self.text if self.text is not None else f"{UNREADABLE} {self.raw}"


class JudgeEndpoint:
    """A judge model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the judge model name sent with every request.
        api_key_env: environment variable holding the key (never recorded).
        timeout: seconds one request may take (``--judge-timeout``).
        retries: further attempts after a failed or unreadable one.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "JUDGE_API_KEY",
        max_tokens: int = 2048,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int | None = None,
        backoff: float | None = None,
    ) -> None:
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.max_tokens, self.concurrency = max_tokens, concurrency
        self.timeout = timeout
        self.retries = RETRIES if retries is None else retries
        self.backoff = BACKOFF if backoff is None else backoff
        self.reported: dict[str, set[str]] = {"model": set(), "system_fingerprint": set()}
        self._stop = threading.Event()

    def describe(self) -> dict[str, Any]:
        """Settings and what the server reported about itself (the key is never recorded)."""
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "settings": {"max_new_tokens": self.max_tokens, "temperature": 0.0},
            "reported_model": sorted(self.reported["model"]),
            "system_fingerprint": sorted(self.reported["system_fingerprint"]),
        }

    def generate(self, conversations: list[Conversation]) -> list[str]:
        """Texts only (an unreadable reply as its raw body), for callers that need no more."""
        return [reply.shown for reply in self.ask(conversations)]

    def ask(
        self, conversations: Sequence[Conversation], on_reply: Callable[[int, JudgeReply], None] | None = None
    ) -> list[JudgeReply]:
        """One reply per conversation, in order; ``on_reply(index, reply)`` as each arrives.

        Raises:
            JudgeUnreachable: a request got no answer after every retry; the others are abandoned.
        """
        import httpx

        done: queue.Queue[tuple[int, JudgeReply | BaseException]] = queue.Queue()
        todo: queue.Queue[int] = queue.Queue()
        for index in range(len(conversations)):
            todo.put(index)
        self._stop.clear()
        client = httpx.Client()

        def work() -> None:
            while not self._stop.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((index, self._one(client, conversations[index])))
                except BaseException as error:  # handed to the caller's thread
                    done.put((index, error))

        threads = [
            # daemon threads: a stop request ends the process without waiting for them
            threading.Thread(target=work, daemon=True, name="chatvector-judge")
            for _ in range(min(self.concurrency, len(conversations)))
        ]
        for thread in threads:
            thread.start()
        replies: list[JudgeReply | None] = [None] * len(conversations)
        try:
            for _ in range(len(conversations)):
                index, outcome = self._next(done)
                if isinstance(outcome, BaseException):
                    self._stop.set()
                    self._keep_arrived(done, threads, replies, on_reply)
                    raise outcome
                replies[index] = outcome
                if on_reply is not None:
                    on_reply(index, outcome)
        finally:
            self._stop.set()
        client.close()  # every request has ended (on a failure, threads still in flight keep it open)
        return [r for r in replies if r is not None]

    @staticmethod
    def _keep_arrived(
        done: queue.Queue[tuple[int, JudgeReply | BaseException]],
        threads: list[threading.Thread],
        replies: list[JudgeReply | None],
        on_reply: Callable[[int, JudgeReply], None] | None,
    ) -> None:
        """After a request failed for good: keep the answers the other threads hold or receive
        within :data:`DRAIN_GRACE` seconds (they end after their current request), so a judge that
        dies mid-run loses no verdict it gave."""
        deadline = time.monotonic() + DRAIN_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        while True:
            try:
                index, outcome = done.get_nowait()
            except queue.Empty:
                return
            if not isinstance(outcome, BaseException):
                replies[index] = outcome
                if on_reply is not None:
                    on_reply(index, outcome)

    @staticmethod
    def _next(done: queue.Queue[tuple[int, JudgeReply | BaseException]]) -> tuple[int, JudgeReply | BaseException]:
        while True:  # short waits keep the main thread responsive to signals
            try:
                return done.get(timeout=0.2)
            except queue.Empty:
                continue

    def _refused(self, status: int, body: str) -> EvalError:
        """The server's refusal with its reason (the key, should a careless server echo it, masked)."""
        key = os.environ.get(self.api_key_env)
        said = body[:300].replace(key, "***") if key else body[:300]
        return EvalError(
            f"judge {self.base_url}: request refused (HTTP {status}); the server said {said!r}; check "
            f"--judge-model and ${self.api_key_env}",
            option="--judge-url",
        )

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _payload(self, conversation: Conversation) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": conversation,
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "stream": False,
        }

    def _one(self, client: Any, conversation: Conversation) -> JudgeReply:
        import httpx

        last, unreadable = "no attempt", None
        for attempt in range(self.retries + 1):
            if self._stop.is_set():
                raise JudgeUnreachable(f"judge {self.base_url}: stopped")
            try:
                response = client.post(
                    f"{self.base_url}/chat/completions",
                    json=self._payload(conversation),
                    headers=self._headers(),
                    timeout=self.timeout,
                )
            except httpx.TransportError as error:
                last = f"{type(error).__name__}"
            else:
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    raise self._refused(response.status_code, response.text)
                if response.status_code < 400:
                    reply = self._read(response.content)
                    if reply.text is not None:
                        return reply
                    unreadable, last = reply, "an unreadable reply"
                else:
                    last = f"HTTP {response.status_code}"
            if attempt < self.retries:
                self._stop.wait(self.backoff * 2**attempt)
        if unreadable is not None:
            log.warning("judge %s: unreadable reply after %d attempts; counted as unparsed", self.base_url, attempt + 1)
            return unreadable
        raise JudgeUnreachable(
            f"judge {self.base_url}: no answer after {self.retries + 1} attempts ({last}); the verdicts so far "
            "are kept in OUT/judgments.jsonl, rerun to resume",
            option="--judge-url",
        )

    def _read(self, body: bytes) -> JudgeReply:
        raw = body.decode("utf-8", errors="replace")[:RAW_LIMIT]
        try:
            completion = check(ChatCompletion, loads(body, "judge reply"), "judge reply")
        except EvalError as problem:
            log.debug("unreadable judge reply: %s", problem)
            return JudgeReply(None, raw)
        for key, value in (("model", completion.model), ("system_fingerprint", completion.system_fingerprint)):
            if value:
                self.reported[key].add(value)
        content = completion.choices[0].message.content
        return JudgeReply(content or "", "", completion.model, completion.system_fingerprint)
