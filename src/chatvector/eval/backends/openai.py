"""The openai backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang,
llama.cpp server, ``transformers serve``) with concurrent requests, timeouts and retries with
backoff; the API key is read from an environment variable and never logged or stored. With
``--lm-eval`` the endpoint is reached through lm-eval's ``local-completions`` model.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError, InputError
from chatvector.eval.backends.base import (
    LENGTH,
    STOP,
    BackendKind,
    Capabilities,
    Conversation,
    Finish,
    OnReply,
    reply_callback,
)
from chatvector.eval.backends.context import ContextCap
from chatvector.eval.options import BackendOptions, GenerationOptions

__all__ = ["OpenAIBackend", "KIND", "reply_text", "server_reason"]

CAPABILITIES = Capabilities(streams=True, loads_weights=False, per_model_endpoint=False)


class OpenAIBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        health: called when a request fails, before any retry; raises when the endpoint cannot come
            back (the server chatvector started has exited), so the error comes at once with its
            reason instead of after every retry.
        identity: what names the served model in the replies cache (default: URL and model name).
        served: how chatvector started the server behind ``base_url``, for the record.
        capabilities: what the endpoint can do (a server started for the model loads its weights).
        context: the served model's context length, when known; with ``count_tokens`` (the prompt's
            length in the model's tokens) each request's ``max_tokens`` is capped to what the prompt
            leaves of it, as the hf backend does.
        extra_fields: engine-specific request fields sent with every request (a ``--serve`` preset
            knows its engine's names, e.g. llama.cpp's ``repeat_penalty``; an arbitrary endpoint may
            refuse fields the OpenAI API does not define, so none are sent by default).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        settings: GenerationOptions | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        health: Callable[[], None] | None = None,
        identity: dict[str, Any] | None = None,
        served: dict[str, Any] | None = None,
        capabilities: Capabilities = CAPABILITIES,
        context: int | None = None,
        count_tokens: Callable[[Conversation], int] | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.extra_fields = dict(extra_fields or {})
        self.count_tokens = count_tokens
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.settings = settings or GenerationOptions()
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.health = health
        self._identity = identity
        self.served = served
        self._stopping = threading.Event()
        self.cap = ContextCap(self.settings.max_new_tokens, context if count_tokens else None, f"{base_url} ({model})")

    def describe(self) -> dict[str, Any]:
        # The key itself is never recorded: only the name of the variable it came from.
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "settings": self.settings.model_dump(),
            **({"served": self.served} if self.served else {}),
            **({"extra_fields": self.extra_fields} if self.extra_fields else {}),
        }

    def identity(self) -> dict[str, Any]:
        identity = self._identity or {"backend": self.name, "base_url": self.base_url, "model": self.model}
        # the engine-specific fields change replies too: cached replies made without them do not count
        return {**identity, "extra_fields": self.extra_fields} if self.extra_fields else identity

    def lm_eval_model(self, model: str) -> tuple[Any, dict[str, Any]]:
        """lm-eval's ``local-completions`` model at this endpoint; ``model`` (a directory, when it is
        one) gives the tokenizer for log-likelihoods."""
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        tokenizer = model if Path(model, "config.json").exists() else self.model
        args = {
            "model": self.model,
            "base_url": f"{self.base_url}/completions",
            "tokenizer": tokenizer,
            "tokenizer_backend": "huggingface",
            "tokenized_requests": False,
            "num_concurrent": self.concurrency,
        }
        return LocalCompletionsAPI(**args), {"model": "local-completions", **args}

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _refused(self, response: Any) -> EvalError:
        """The server's refusal with its own reason (the body, on one line, the key masked)."""
        status = response.status_code
        hint = {
            401: f"; check the key in ${self.api_key_env}",
            403: f"; check the key in ${self.api_key_env}",
            404: f"; check the model name ({self.model!r}) and the URL",
        }.get(status, "")
        return EvalError(f"{self.base_url}: request refused (HTTP {status}): {self._reason(response)}{hint}")

    def _reason(self, response: Any) -> str:
        return server_reason(response.text, os.environ.get(self.api_key_env))

    def _payload(self, conversation: Conversation) -> dict[str, Any]:
        s = self.settings
        return {
            "model": self.model,
            "messages": conversation,
            "max_tokens": self.cap.new_tokens(self.count_tokens(conversation))
            if self.count_tokens is not None
            else s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "stream": False,
            **self.extra_fields,
        }

    def _one(self, client: Any, conversation: Conversation) -> tuple[str, Finish | None]:
        import httpx

        last = "no attempt"
        for attempt in range(self.retries + 1):
            if self._stopping.is_set():
                raise EvalError(f"{self.base_url}: stopped")
            try:
                response = client.post(
                    f"{self.base_url}/chat/completions",
                    json=self._payload(conversation),
                    headers=self._headers(),
                    timeout=self.timeout,
                )
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        raise self._refused(response)
                    body = response.json()
                    # stripped as the hf backend's are, so one model's replies read the same through both
                    return reply_text(body, self.base_url).strip(), reply_finish(body)
                last = f"HTTP {response.status_code}: {self._reason(response)}"
            except (httpx.TransportError, ValueError) as error:  # ValueError: a body that is not JSON
                last = type(error).__name__
            if self.health is not None:
                self.health()
            if attempt < self.retries:
                self._stopping.wait(self.backoff * 2**attempt)
        raise EvalError(f"{self.base_url}: no answer after {self.retries + 1} attempts ({last})")

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        """Up to ``concurrency`` requests at a time; on the first failure (or Ctrl-C) the requests
        not yet sent are dropped and the ones in flight give up instead of retrying."""
        on_reply = reply_callback(on_reply)
        import httpx

        replies: list[str] = [""] * len(conversations)
        self._stopping.clear()
        with httpx.Client() as client:
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="chatvector-request")
            try:
                pending: dict[Future[tuple[str, Finish | None]], int] = {
                    pool.submit(self._one, client, c): i for i, c in enumerate(conversations)
                }
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        replies[index], finish = future.result()
                        if on_reply is not None:
                            on_reply(index, replies[index], finish)
            finally:
                self._stopping.set()
                pool.shutdown(wait=False, cancel_futures=True)
        return replies

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Yield the reply's text as the server streams it (server-sent events, ``stream: true``)."""
        import httpx

        payload = {**self._payload(conversation), "stream": True}
        try:
            with (
                httpx.Client(timeout=self.timeout) as client,
                client.stream(
                    "POST", f"{self.base_url}/chat/completions", json=payload, headers=self._headers()
                ) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise self._refused(response)
                for line in response.iter_lines():
                    piece = _stream_piece(line)
                    if piece is None:
                        return
                    if piece:
                        yield piece
        except httpx.TransportError as error:
            if self.health is not None:
                self.health()
            raise EvalError(f"{self.base_url}: connection failed ({type(error).__name__})") from None


def _stream_piece(line: str) -> str | None:
    """The text in one server-sent-events line: "" for keep-alives and role-only deltas, None at the end."""
    if not line.startswith("data:"):
        return ""
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return None
    try:
        choices = json.loads(data).get("choices") or [{}]
        delta = choices[0].get("delta", {})
        content = delta.get("content")
    except (ValueError, AttributeError, IndexError):
        raise EvalError(f"unexpected streamed chunk from the server: {data[:200]!r}") from None
    return "" if content is None else _text(content, delta, "a streamed chunk")


_REASON_CHARS = 300


def server_reason(body: str, secret: str | None = None) -> str:
    """Why a server refused a request, from its response body: the JSON error's message (OpenAI's
    ``{"error": {"message": ...}}``, or ``detail``/``message``), else the body itself; on one line, at
    most 300 characters, with every word that holds a piece of ``secret`` (the API key, should a
    careless server echo it) masked.

    Example:
        >>> server_reason('{"error": {"message": "The prompt has 202 tokens, but the model takes at most 128"}}')
        'The prompt has 202 tokens, but the model takes at most 128'
    """
    try:
        text = _error_message(json.loads(body)) or body
    except ValueError:
        text = body
    words = [_masked(word, secret) for word in text.split()]
    reason = " ".join(words) or "no reason given"
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 1] + "…"


def _error_message(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("error", "detail", "message"):
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value:  # FastAPI's validation details
            return json.dumps(value, ensure_ascii=False)
    return None


def _masked(word: str, secret: str | None) -> str:
    """``word``, or ``***`` when it holds six characters in a row of ``secret`` (or its last four
    beside a ``*``, as servers that star out the middle of a key write it)."""
    if not secret or len(secret) < 6:
        return word
    pieces = {secret[i : i + 6] for i in range(len(secret) - 5)}
    if any(piece in word for piece in pieces) or ("*" in word and secret[-4:] in word):
        return "***"
    return word


def reply_text(body: Any, where: str) -> str:
    """The assistant's text in a chat completion, as the OpenAI spec allows it: a string, a list of
    content parts (their text joined), or null beside a ``refusal`` string.

    Raises:
        EvalError: a body without ``choices[0].message``, or content of another kind (a number, an
            object, null without a refusal), with what the server sent.
    """
    try:
        message = body["choices"][0]["message"]
        content = message["content"] if "content" in message else None
    except (KeyError, IndexError, TypeError):
        raise EvalError(f"{where}: the reply has no choices[0].message: {_shown(body)}") from None
    return _text(content, message, "the reply")


def reply_finish(body: Any) -> Finish | None:
    """Why the reply ended, from the completion's ``finish_reason``: ``stop`` or ``length`` (cut off
    at ``max_tokens``); None for any other reason or none (a server that does not say)."""
    try:
        reason = body["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return {"stop": STOP, "length": LENGTH}.get(reason) if isinstance(reason, str) else None


def _text(content: Any, message: dict[str, Any], what: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type") in ("text", "output_text")]
        if all(isinstance(text, str) for text in texts):
            return "".join(t for t in texts if isinstance(t, str))
    if content is None and isinstance(message.get("refusal"), str):
        return message["refusal"]
    raise EvalError(
        f"{what}'s content is {_shown(content)}, not text (a string, or a list of text parts); "
        "the server does not answer as an OpenAI-compatible chat endpoint"
    )


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:199] + "…"


@contextmanager
def _open(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[OpenAIBackend]:
    check_options(options)
    yield OpenAIBackend(
        options.base_url or "",
        options.model_name or model,
        api_key_env=options.api_key_env,
        settings=generation,
        concurrency=options.concurrency,
    )


def check_options(options: BackendOptions) -> None:
    """Refuse ``--backend openai`` without an endpoint, before anything is created."""
    if not options.base_url:
        raise InputError("--backend openai needs --base-url (or --serve to start a server here)", option="--base-url")


KIND = BackendKind(
    "openai",
    "an OpenAI-compatible endpoint that is already running (--base-url)",
    CAPABILITIES,
    chosen=lambda options: options.backend == "openai",
    open=_open,
    check=check_options,
)
