"""Generation backends: one method, ``generate(conversations) -> replies``.

- :class:`HFBackend` runs a local model directory with transformers on the device and in the dtype
  asked for (``--device``, ``--dtype``, ``--device-map``, ``--threads``): prompts sorted by length
  and packed into batches by a token budget (``--batch-tokens``), left-padded, the model's own chat
  template, greedy by default, stopping on the generation config's stop ids.
- :class:`OpenAIBackend` talks to any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp
  server, ``transformers serve``) with concurrent requests, timeouts and retries with backoff;
  the API key is read from an environment variable and never logged or stored.
- :class:`ScriptedBackend` replies from a function, for tests.

:func:`open_backend` builds the one the options ask for, including a server started by ``--serve``
(:mod:`chatvector.eval.serve`) that it stops again when the block ends.

Every backend reports each reply as it arrives (``on_reply(index, text)``), so the caller can keep
it (:mod:`chatvector.eval.generate` appends it to ``replies.jsonl``) before the rest is done.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from chatvector.errors import EvalError, InputError
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.extras import require

__all__ = [
    "Backend",
    "Conversation",
    "GenerationSettings",
    "HFBackend",
    "OpenAIBackend",
    "ScriptedBackend",
    "OnReply",
    "open_backend",
    "resolve_device",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
OnReply = Callable[[int, str], None]

# How replies are decoded. One model for the command line, results.json and the backends.
GenerationSettings = GenerationOptions


class Backend(Protocol):
    """Anything that turns conversations into assistant replies."""

    name: str

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        """Replies in the order of ``conversations``; ``on_reply(index, text)`` as each one is ready."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything about the backend worth recording in results.json (never a secret)."""
        ...

    def identity(self) -> dict[str, Any]:
        """What decides the replies (model, dtype, decoding), not how they are computed (device,
        port, batch size): a cached reply is reused only under the same identity."""
        ...


class ScriptedBackend:
    """Replies computed by ``reply(conversation)``; for tests and dry runs."""

    name = "scripted"

    def __init__(self, reply: Callable[[Conversation], str]) -> None:
        self._reply = reply

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        replies = []
        for index, conversation in enumerate(conversations):
            replies.append(self._reply(conversation))
            if on_reply is not None:
                on_reply(index, replies[-1])
        return replies

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "reply": getattr(self._reply, "__qualname__", repr(self._reply))}


# --- local models -----------------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """``auto`` → cuda, then mps, then cpu; other names are checked against what torch sees.

    Raises:
        InputError: a device this machine does not have, or a name torch does not know.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"--device {device!r}: write auto, cpu, cuda, cuda:N or mps", option="--device")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {device}: torch sees no CUDA device (torch {torch.__version__}); "
                "use --device cpu, or install a CUDA build of torch",
                option="--device",
            )
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})",
                option="--device",
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: torch sees no Apple GPU here; use --device cpu", option="--device")
    return device


def _check_device_map(options: BackendOptions) -> None:
    """``--device-map auto`` needs accelerate and decides the devices itself."""
    if options.device_map is None:
        return
    if options.device != "auto":
        raise InputError(
            f"--device-map auto places the model over every visible GPU itself; leave --device at "
            f"auto (it is {options.device}), or restrict the GPUs with CUDA_VISIBLE_DEVICES",
            option="--device-map",
        )
    require("--device-map", "accelerate")


def checkpoint_dtype(model_dir: Path) -> str | None:
    """The dtype ``config.json`` says the weights were saved in (``dtype``, or ``torch_dtype`` before
    transformers 4.56), if it says one."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return value if isinstance(value, str) else None


def resolve_dtype(dtype: str, device: str, model_dir: Path) -> str:
    """``auto`` → the checkpoint's dtype on an accelerator, float32 on the CPU (where half precision
    is slow and bfloat16 matmuls are emulated on many CPUs); an explicit dtype is kept."""
    if dtype != "auto":
        return dtype
    if device == "cpu":
        return "float32"
    saved = checkpoint_dtype(model_dir)
    return saved if saved in ("bfloat16", "float16", "float32") else "float32"


class HFBackend:
    """A local transformers model directory.

    Args:
        model_dir: a directory with ``config.json``, weights and a tokenizer with a chat template.
        settings: how replies are decoded.
        options: device, dtype, device map, threads and the batch token budget (the defaults of
            :class:`~chatvector.eval.options.BackendOptions` when omitted).
        model_id: what names this model in the replies cache (default: the directory), e.g. the
            recipe of a merged model that lives in a temporary directory.
    """

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        settings: GenerationOptions | None = None,
        options: BackendOptions | None = None,
        *,
        model_id: str | None = None,
    ) -> None:
        require("running a local model (the hf backend)", "torch", "transformers")
        options = options or BackendOptions()
        _check_device_map(options)
        import torch

        self._torch = torch
        self.model_dir = Path(model_dir)
        self.model_id = model_id or str(self.model_dir)
        self.settings = settings or GenerationOptions()
        self.batch_tokens = options.batch_tokens
        if not (self.model_dir / "config.json").exists():
            raise EvalError(f"{self.model_dir}: not a model directory (no config.json)", file=self.model_dir)
        self.device = "auto" if options.device_map else resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device, self.model_dir)
        self.device_map = options.device_map
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model()
        stops = self.model.generation_config.eos_token_id
        self.stop_ids = [stops] if isinstance(stops, int) else list(stops or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in self.stop_ids:
            self.stop_ids.append(self.tokenizer.eos_token_id)
        log.info(
            "loaded %s on %s in %s (torch threads: %d)",
            self.model_dir,
            self.model.device,
            self.dtype,
            torch.get_num_threads(),
        )

    def _load_tokenizer(self) -> Any:
        """The model's tokenizer, left-padding (generation continues every row at the same column)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        if tokenizer.chat_template is None:
            raise EvalError(
                f"{self.model_dir}: the tokenizer has no chat template; evaluation needs one", file=self.model_dir
            )
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _load_model(self) -> Any:
        """The weights in ``self.dtype``, on ``self.device`` or spread by the device map."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=getattr(self._torch, self.dtype), device_map=self.device_map
        )
        if self.device_map is None:
            model.to(self._torch.device(self.device))  # type: ignore[arg-type]  # transformers types `to` oddly
        return model.eval()

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "backend": self.name,
            "model": str(self.model_dir),
            "device": str(self.model.device),
            "dtype": self.dtype,
            "device_map": self.device_map,
            "threads": self._torch.get_num_threads(),
            "batch_tokens": self.batch_tokens,
            "torch": self._torch.__version__,
            "transformers": transformers.__version__,
            "stop_ids": self.stop_ids,
            "settings": self.settings.model_dump(),
        }

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "dtype": self.dtype}

    def _prompt(self, conversation: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The token ids the model sees for ``conversation``, ending with the assistant's turn."""
        return self.tokenizer(self._prompt(conversation), add_special_tokens=False)["input_ids"]

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
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        """Replies in the order given; computed longest prompt first, in batches of at most
        ``batch_tokens`` (rows × (longest prompt + max_new_tokens))."""
        from chatvector.eval.generate import plan_batches

        self._torch.manual_seed(self.settings.seed)
        prompts = [self.prompt_ids(c) for c in conversations]
        replies: list[str] = [""] * len(prompts)
        batches = plan_batches([len(p) for p in prompts], self.settings.max_new_tokens, self.batch_tokens)
        for number, rows in enumerate(batches, 1):
            log.info(
                "batch %d/%d: %d prompts of up to %d tokens", number, len(batches), len(rows), len(prompts[rows[0]])
            )
            for row, text in zip(rows, self.generate_ids([prompts[i] for i in rows]), strict=True):
                replies[row] = text
                if on_reply is not None:
                    on_reply(row, text)
        return replies

    def generate_ids(self, prompts: list[list[int]]) -> list[str]:
        """One ``model.generate`` call over left-padded ``prompts``; the decoded replies."""
        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.model.device)
        with self._torch.inference_mode():
            output = self.model.generate(**batch, **self._generate_kwargs())
        return [self._decode(row.tolist()) for row in output[:, batch["input_ids"].shape[1] :]]

    def _decode(self, ids: list[int]) -> str:
        for position, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:position]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        from transformers import TextIteratorStreamer

        batch = self.tokenizer([self._prompt(conversation)], return_tensors="pt", add_special_tokens=False).to(
            self.model.device
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(
            target=self.model.generate, kwargs={**batch, **self._generate_kwargs(), "streamer": streamer}
        )
        worker.start()
        yield from streamer
        worker.join()


# --- OpenAI-compatible endpoints --------------------------------------------------------------------


class OpenAIBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        health: called when a request fails, before any retry; raises when the endpoint cannot come
            back (the server chatvector started has exited), so the error comes at once with its
            reason instead of after every retry.
        identity: what names the served model in the replies cache (default: URL and model name).
        served: how chatvector started the server behind ``base_url``, for the record.
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
    ) -> None:
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


# --- choosing one -----------------------------------------------------------------------------------


@contextmanager
def open_backend(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[Backend]:
    """The backend ``options`` ask for, for ``model`` (a directory, or a model name at ``--base-url``).

    With ``--serve``, the server is started here for ``model`` (its log in ``log_dir``), evaluated
    through, and stopped when the block ends, however it ends.

    Raises:
        InputError: options that do not fit together (``--backend openai`` without a URL or server).
    """
    if options.serve is not None:
        from chatvector.eval.serve import ServedModel

        if options.base_url:
            raise InputError(
                "--serve starts a server and evaluates through it; --base-url would point elsewhere: give one of them",
                option="--base-url",
            )

        with ServedModel(model, options, log_dir=log_dir) as served:
            yield OpenAIBackend(
                served.base_url,
                options.model_name or served.model_name,
                api_key_env=options.api_key_env,
                settings=generation,
                concurrency=options.concurrency,
                health=served.check,
                identity={"backend": "openai", "served": served.identity(), "model": model_id or model},
                served=served.describe(),
            )
        return
    if options.backend == "openai":
        if not options.base_url:
            raise InputError(
                "--backend openai needs --base-url (or --serve to start a server here)", option="--base-url"
            )
        yield OpenAIBackend(
            options.base_url,
            options.model_name or model,
            api_key_env=options.api_key_env,
            settings=generation,
            concurrency=options.concurrency,
        )
        return
    if options.base_url:
        raise InputError("--base-url is for --backend openai; the hf backend runs MODEL here", option="--base-url")
    yield HFBackend(model, generation, options, model_id=model_id)
