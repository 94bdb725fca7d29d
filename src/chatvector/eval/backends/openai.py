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
from chatvector.eval.backends.base import BackendKind, Capabilities, Conversation, OnReply
from chatvector.eval.options import BackendOptions, GenerationOptions

__all__ = ["OpenAIBackend", "KIND"]

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
    ) -> None:
        self.capabilities = capabilities
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.settings = settings or GenerationOptions()
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.health = health
        self._identity = identity
        self.served = served
        self._stopping = threading.Event()

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
        }

    def identity(self) -> dict[str, Any]:
        return self._identity or {"backend": self.name, "base_url": self.base_url, "model": self.model}

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

    def _refused(self, status: int) -> EvalError:
        # Never include the response body: a careless server may echo the key back.
        return EvalError(
            f"{self.base_url}: request refused (HTTP {status}); check the model name and the key in ${self.api_key_env}"
        )

    def _payload(self, conversation: Conversation) -> dict[str, Any]:
        s = self.settings
        return {
            "model": self.model,
            "messages": conversation,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "stream": False,
        }

    def _one(self, client: Any, conversation: Conversation) -> str:
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
                    response.raise_for_status()
                    return response.json()["choices"][0]["message"]["content"] or ""
                last = f"HTTP {response.status_code}"
            except httpx.HTTPStatusError as error:
                raise self._refused(error.response.status_code) from None
            except (httpx.TransportError, KeyError, IndexError, TypeError, ValueError) as error:
                last = type(error).__name__
            if self.health is not None:
                self.health()
            if attempt < self.retries:
                self._stopping.wait(self.backoff * 2**attempt)
        raise EvalError(f"{self.base_url}: no answer after {self.retries + 1} attempts ({last})")

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        """Up to ``concurrency`` requests at a time; on the first failure (or Ctrl-C) the requests
        not yet sent are dropped and the ones in flight give up instead of retrying."""
        import httpx

        replies: list[str] = [""] * len(conversations)
        self._stopping.clear()
        with httpx.Client() as client:
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="chatvector-request")
            try:
                pending: dict[Future[str], int] = {
                    pool.submit(self._one, client, c): i for i, c in enumerate(conversations)
                }
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        replies[index] = future.result()
                        if on_reply is not None:
                            on_reply(index, replies[index])
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
                    raise self._refused(response.status_code)
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
        return choices[0].get("delta", {}).get("content") or ""
    except (ValueError, AttributeError, IndexError):
        raise EvalError(f"unexpected streamed chunk from the server: {data[:200]!r}") from None


@contextmanager
def _open(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[OpenAIBackend]:
    if not options.base_url:
        raise InputError("--backend openai needs --base-url (or --serve to start a server here)", option="--base-url")
    yield OpenAIBackend(
        options.base_url,
        options.model_name or model,
        api_key_env=options.api_key_env,
        settings=generation,
        concurrency=options.concurrency,
    )


KIND = BackendKind(
    "openai",
    "an OpenAI-compatible endpoint that is already running (--base-url)",
    CAPABILITIES,
    chosen=lambda options: options.backend == "openai",
    open=_open,
)
