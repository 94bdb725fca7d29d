"""Generation backends: one method, ``generate(conversations) -> replies``.

- :class:`HFBackend` runs a local model directory with transformers: batched, left-padded,
  the model's own chat template, greedy by default, stopping on the generation config's stop ids.
- :class:`OpenAIBackend` talks to any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp
  server, ``transformers serve``) with concurrent requests, timeouts and retries with backoff;
  the API key is read from an environment variable and never logged or stored.
- :class:`ScriptedBackend` replies from a function, for tests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from chatvector.errors import EvalError
from chatvector.extras import require

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class GenerationSettings:
    """How replies are sampled; recorded in every results file."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    batch_size: int = 8

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(Protocol):
    """Anything that turns conversations into assistant replies."""

    name: str

    def generate(self, conversations: list[Conversation]) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...


class ScriptedBackend:
    """Replies computed by ``reply(conversation)``; for tests and dry runs."""

    name = "scripted"

    def __init__(self, reply: Callable[[Conversation], str]) -> None:
        self._reply = reply

    def generate(self, conversations: list[Conversation]) -> list[str]:
        return [self._reply(c) for c in conversations]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


class HFBackend:
    """A local transformers model directory."""

    name = "hf"

    def __init__(self, model_dir: str | Path, settings: GenerationSettings | None = None) -> None:
        require("running a local model (the hf backend)", "torch", "transformers")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.settings = settings or GenerationSettings()
        if not (self.model_dir / "config.json").exists():
            raise EvalError(f"{self.model_dir}: not a model directory (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        if self.tokenizer.chat_template is None:
            raise EvalError(f"{self.model_dir}: the tokenizer has no chat template; evaluation needs one")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir)
        self.model.eval()
        self._torch = torch
        stops = self.model.generation_config.eos_token_id
        self.stop_ids = [stops] if isinstance(stops, int) else list(stops or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in self.stop_ids:
            self.stop_ids.append(self.tokenizer.eos_token_id)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": str(self.model_dir),
            "stop_ids": self.stop_ids,
            "settings": self.settings.as_dict(),
        }

    def _prompt(self, conversation: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def _generate_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "repetition_penalty": s.repetition_penalty,
        }
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False)
        return kwargs

    def generate(self, conversations: list[Conversation]) -> list[str]:
        self._torch.manual_seed(self.settings.seed)
        replies: list[str] = []
        size = max(1, self.settings.batch_size)
        for start in range(0, len(conversations), size):
            prompts = [self._prompt(c) for c in conversations[start : start + size]]
            batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with self._torch.no_grad():
                output = self.model.generate(**batch, **self._generate_kwargs())
            for row in output[:, batch["input_ids"].shape[1] :]:
                replies.append(self._decode(row.tolist()))
        return replies

    def _decode(self, ids: list[int]) -> str:
        for position, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:position]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        from transformers import TextIteratorStreamer

        batch = self.tokenizer([self._prompt(conversation)], return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(
            target=self.model.generate, kwargs={**batch, **self._generate_kwargs(), "streamer": streamer}
        )
        worker.start()
        yield from streamer
        worker.join()


class OpenAIBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        settings: GenerationSettings | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.settings = settings or GenerationSettings()
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff

    def describe(self) -> dict[str, Any]:
        # The key itself is never recorded: only the name of the variable it came from.
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "settings": self.settings.as_dict(),
        }

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _refused(self, status: int) -> EvalError:
        # Never include the response body: a careless server may echo the key back.
        return EvalError(f"{self.base_url}: request refused (HTTP {status}); "
                         f"check the model name and the key in ${self.api_key_env}")

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
            except (httpx.TransportError, KeyError, ValueError) as error:
                last = type(error).__name__
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise EvalError(f"{self.base_url}: no answer after {self.retries + 1} attempts ({last})")

    def generate(self, conversations: list[Conversation]) -> list[str]:
        import httpx

        with httpx.Client() as client, ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(client, c), conversations))

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Yield the reply's text as the server streams it (server-sent events, ``stream: true``)."""
        import httpx

        payload = {**self._payload(conversation), "stream": True}
        try:
            with httpx.Client(timeout=self.timeout) as client, client.stream(
                "POST", f"{self.base_url}/chat/completions", json=payload, headers=self._headers()
            ) as response:
                if response.status_code != 200:
                    raise self._refused(response.status_code)
                for line in response.iter_lines():
                    piece = _stream_piece(line)
                    if piece is None:
                        return
                    if piece:
                        yield piece
        except httpx.TransportError as error:
            raise EvalError(f"{self.base_url}: connection failed ({type(error).__name__})") from None


def _stream_piece(line: str) -> str | None:
    """The text in one server-sent-events line: "" for keep-alives and role-only deltas, None at the end."""
    if not line.startswith("data:"):
        return ""
    data = line[len("data:"):].strip()
    if data == "[DONE]":
        return None
    try:
        choices = json.loads(data).get("choices") or [{}]
        return choices[0].get("delta", {}).get("content") or ""
    except (ValueError, AttributeError, IndexError):
        raise EvalError(f"unexpected streamed chunk from the server: {data[:200]!r}") from None
