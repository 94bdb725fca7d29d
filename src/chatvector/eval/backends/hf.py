"""The hf backend: a local model directory run with transformers on the device and in the dtype
asked for (``--device``, ``--dtype``, ``--device-map``, ``--threads``): prompts sorted by length and
packed into batches by a token budget (``--batch-tokens``), left-padded, the model's own chat
template, greedy by default, stopping on the generation config's stop ids. With ``--lm-eval`` the
loaded model is handed to lm-eval's ``hf`` model as it is.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatvector.errors import EvalError, InputError, clashing_options
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
from chatvector.eval.backends.context import ContextCap, context_of_config
from chatvector.eval.batching import plan_batches
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.extras import require

if TYPE_CHECKING:
    from chatvector.merge.recipe import Recipe
    from chatvector.options import RunOptions

__all__ = ["HFBackend", "KIND", "resolve_device", "resolve_dtype", "checkpoint_dtype"]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(streams=True, loads_weights=True, per_model_endpoint=False, updates_in_place=True)
CPU_BATCH_ROWS = 16


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
    capabilities = CAPABILITIES

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
        self._batch_rows = options.batch_rows
        if not (self.model_dir / "config.json").exists():
            raise EvalError(f"{self.model_dir}: not a model directory (no config.json)", file=self.model_dir)
        self.device = "auto" if options.device_map else resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device, self.model_dir)
        self.device_map = options.device_map
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model()
        self.cap = ContextCap(self.settings.max_new_tokens, context_of_config(self.model.config), str(self.model_dir))
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

    def merge_in_place(self, recipe: Recipe, run: RunOptions | None = None, *, model_id: str | None = None) -> Any:
        """Replace the loaded weights by the merge of ``recipe``, computed by the merge engine into
        the parameters (:mod:`chatvector.eval.backends.inplace`): they then equal, bit for bit,
        the loaded output of ``chatvector merge`` for it. ``model_id`` names the new weights in
        the replies cache. The tokenizer, chat template and stop ids stay those loaded.

        Returns:
            the :class:`~chatvector.merge.inplace.InPlaceReport`.
        """
        from chatvector.eval.backends.inplace import update_in_place

        report = update_in_place(self.model, recipe, run)
        self.model_id = model_id or f"in place: {report.recipe}"
        return report

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
            "batch_rows": self.batch_rows,
            "torch": self._torch.__version__,
            "transformers": transformers.__version__,
            "stop_ids": self.stop_ids,
            "settings": self.settings.model_dump(),
        }

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "dtype": self.dtype}

    @property
    def batch_rows(self) -> int | None:
        """Most prompts in a batch: ``--batch-rows``, else 16 on the CPU (padding costs as much as a
        real token there; sorted batches of 16, as lm-evaluation-harness makes them, were the fastest
        plain batching in bench/eval_throughput.py), else none but the token budget (an accelerator's
        step costs about the same for 1 or 64 rows)."""
        if self._batch_rows is not None:
            return self._batch_rows
        return CPU_BATCH_ROWS if self.model.device.type == "cpu" else None

    def lm_eval_model(self, model: str) -> tuple[Any, dict[str, Any]]:
        """lm-eval's ``hf`` model around the instance already loaded (same device, dtype and device
        map; not loaded a second time)."""
        from lm_eval.models.huggingface import HFLM

        batch: int | str = "auto" if self.model.device.type == "cuda" else 8
        lm = HFLM(pretrained=self.model, tokenizer=self.tokenizer, batch_size=batch)
        return lm, {
            "model": "hf",
            "pretrained": str(self.model_dir),
            "device": str(self.model.device),
            "dtype": self.dtype,
            "batch_size": batch,
        }

    def _prompt(self, conversation: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The token ids the model sees for ``conversation``, ending with the assistant's turn."""
        return self.tokenizer(self._prompt(conversation), add_special_tokens=False)["input_ids"]

    def _generate_kwargs(self, prompt_tokens: int) -> dict[str, Any]:
        """``generate``'s arguments for prompts of up to ``prompt_tokens`` tokens (new tokens capped
        to what they leave of the model's context)."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.cap.new_tokens(prompt_tokens),
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
        ``batch_tokens`` (rows × (longest prompt + max_new_tokens)) and ``batch_rows`` rows. Each is
        reported with its finish: ``stop`` when a stop id ended it, else ``length``."""
        on_reply = reply_callback(on_reply)
        self._torch.manual_seed(self.settings.seed)
        prompts = [self.prompt_ids(c) for c in conversations]
        replies: list[str] = [""] * len(prompts)
        batches = plan_batches(
            [len(p) for p in prompts], self.settings.max_new_tokens, self.batch_tokens, self.batch_rows
        )
        for number, rows in enumerate(batches, 1):
            log.info(
                "batch %d/%d: %d prompts of up to %d tokens", number, len(batches), len(rows), len(prompts[rows[0]])
            )
            for row, (text, finish) in zip(rows, self.generate_finished([prompts[i] for i in rows]), strict=True):
                replies[row] = text
                if on_reply is not None:
                    on_reply(row, text, finish)
        return replies

    def generate_ids(self, prompts: list[list[int]]) -> list[str]:
        """One ``model.generate`` call over left-padded ``prompts``; the decoded replies."""
        return [text for text, _ in self.generate_finished(prompts)]

    def generate_finished(self, prompts: list[list[int]]) -> list[tuple[str, Finish]]:
        """One ``model.generate`` call over left-padded ``prompts``; each decoded reply and its finish."""
        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.model.device)
        with self._torch.inference_mode():
            output = self.model.generate(**batch, **self._generate_kwargs(batch["input_ids"].shape[1]))
        return [self._decode(row.tolist()) for row in output[:, batch["input_ids"].shape[1] :]]

    def _decode(self, ids: list[int]) -> tuple[str, Finish]:
        finish = LENGTH
        for position, token in enumerate(ids):
            if token in self.stop_ids:
                ids, finish = ids[:position], STOP
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip(), finish

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        from transformers import TextIteratorStreamer

        batch = self.tokenizer([self._prompt(conversation)], return_tensors="pt", add_special_tokens=False).to(
            self.model.device
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(
            target=self.model.generate,
            kwargs={**batch, **self._generate_kwargs(batch["input_ids"].shape[1]), "streamer": streamer},
        )
        worker.start()
        yield from streamer
        worker.join()


@contextmanager
def _open(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[HFBackend]:
    yield HFBackend(model, generation, options, model_id=model_id)


def check_options(options: BackendOptions) -> None:
    """Refuse what the hf backend cannot run with before anything is created: ``--base-url``, a
    device this machine does not have, ``--device-map`` beside a device."""
    if options.base_url:
        raise clashing_options(
            ["--base-url"], "the hf backend", "it is for --backend openai; the hf backend runs MODEL here"
        )
    require("running a local model (the hf backend)", "torch", "transformers")
    _check_device_map(options)
    if options.device_map is None:
        resolve_device(options.device)


KIND = BackendKind(
    "hf",
    "a local model directory, run here with transformers",
    CAPABILITIES,
    chosen=lambda options: options.backend == "hf",
    open=_open,
    check=check_options,
)
