"""Evaluation options, each defined once, grouped as the commands share them.

``eval``, ``sweep`` and ``chat`` generate their flags from these models (``chatvector.cli.options``),
so a default or help text cannot differ between commands, and every results.json records the
groups it ran with. Groups:

- :class:`BackendOptions`: where replies come from (a local model with transformers, an
  OpenAI-compatible endpoint, or a serving engine chatvector starts) and on what device.
- :class:`GenerationOptions`: how replies are decoded.
- :class:`JudgeOptions`: the LLM judges (instruction following, pairwise, safety).
- :class:`DataOptions`: language, suites, prompt data (built-in, files, hub datasets), scorers,
  lm-evaluation-harness tasks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BackendOptions", "GenerationOptions", "JudgeOptions", "DataOptions", "SERVE_PRESETS"]

# `--serve NAME` presets, written against each engine's documented command line. chatvector fills in
# {model} (the model directory), {port} (a free port on 127.0.0.1), {dtype} (--dtype) and {device}
# (--device); `python` is the interpreter chatvector runs in. vLLM and SGLang have no CPU wheels and
# were not run where chatvector is tested; `transformers serve` (extra `serve`) is. A preset whose
# engine documents a weight reload declares it in eval.serve_reload.RELOADS (today: sglang).
SERVE_PRESETS: dict[str, str] = {
    "vllm": "vllm serve {model} --host 127.0.0.1 --port {port} --dtype {dtype}",
    "sglang": "python -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port {port} --dtype {dtype}",
    # FORCE_MODEL (the positional argument) preloads the model and pins every request to it.
    "transformers": "transformers serve {model} --host 127.0.0.1 --port {port} --device {device} --dtype {dtype}",
    # {model} is the GGUF file chatvector writes first; eval.serve_llamacpp adds the context, slots
    # and threads. llama.cpp: llama-cpp-python's server (extra `gguf`), one request at a time;
    # llama-server: llama.cpp's own server (built separately), --concurrency parallel slots.
    "llama.cpp": "python -m llama_cpp.server --model {model} --host 127.0.0.1 --port {port}",
    "llama-server": "llama-server --model {model} --host 127.0.0.1 --port {port}",
}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendOptions(_Options):
    """Where replies come from, and on what hardware."""

    backend: Literal["hf", "openai"] = Field(
        "hf",
        description="hf: run the model directory locally with transformers; openai: send requests to an "
        "OpenAI-compatible endpoint (--base-url, or the server started by --serve).",
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for --backend openai (e.g. http://127.0.0.1:8000/v1)."
    )
    model_name: str | None = Field(None, description="Model name to request from the endpoint (default: MODEL).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's key.")
    concurrency: int = Field(8, ge=1, le=1024, description="Parallel requests to the endpoint.")
    serve: str | None = Field(
        None,
        description="Start a server for the model under test and evaluate through it: vllm, sglang, "
        "transformers, llama.cpp or llama-server (a GGUF written first), or a command with {model} and {port} "
        "placeholders. Stopped at the end.",
        json_schema_extra={
            "metavar": "PRESET|CMD",
            "help_for": {
                "chat": "Start a server for MODEL and chat through it: vllm, sglang, transformers, llama.cpp, "
                "llama-server, or a command with {model} and {port} placeholders. Stopped when the chat ends."
            },
        },
    )
    serve_arg: tuple[str, ...] = Field(
        (),
        description="Extra argument passed to the --serve command (repeatable, e.g. "
        "--serve-arg=--tensor-parallel-size --serve-arg=2).",
        json_schema_extra={"metavar": "ARG"},
    )
    serve_timeout: float = Field(600.0, gt=0, description="Seconds to wait for the server to answer GET /v1/models.")
    device: str = Field(
        "auto", description="Device for local models: auto (an accelerator when there is one), cpu, cuda, cuda:N, mps."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Dtype local models compute in (auto: the checkpoint's dtype on an accelerator, "
        "float32 on the CPU).",
    )
    device_map: Literal["auto"] | None = Field(
        None, description="Spread a local model over several GPUs (through accelerate)."
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for local models (default: all cores) and for --serve llama.cpp/llama-server "
        "(default: the engine's own).",
    )
    batch_tokens: int = Field(
        16384,
        ge=1,
        description="Token budget of one generation batch (prompt plus new tokens, times rows); "
        "prompts are sorted by length and packed up to it.",
    )
    batch_rows: int | None = Field(
        None,
        ge=1,
        description="Most prompts in one generation batch (default: 16 on the CPU, where padding costs "
        "as much as real tokens and sorted batches of 16 were fastest here; no limit but --batch-tokens "
        "on an accelerator).",
    )


class GenerationOptions(_Options):
    """How replies are decoded; recorded in every results file."""

    max_new_tokens: int = Field(256, ge=1, description="Most tokens generated per reply.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (with --temperature > 0).")
    repetition_penalty: float = Field(1.0, gt=0, description="Repetition penalty (1 = none).")
    seed: int = Field(
        0,
        description="Seed of sampling and of the bootstrap intervals.",
        json_schema_extra={"help_for": {"chat": "Seed of sampling (with --temperature > 0)."}},
    )


class JudgeOptions(_Options):
    """LLM judges, through any OpenAI-compatible endpoint."""

    judge_url: str | None = Field(
        None, description="Endpoint of the judge that grades open instructions 1-10 (MT-Bench style)."
    )
    judge_model: str | None = Field(None, description="Judge model name at --judge-url.")
    judge_key_env: str = Field("JUDGE_API_KEY", description="Environment variable holding the judge's key.")
    judge_against: str | None = Field(
        None,
        description="Pairwise judging (instead of 1-10 grading, with the --judge-url judge): compare each "
        "instruct reply with the same prompt's reply in this earlier eval directory, in both "
        "orders; a win needs both.",
        json_schema_extra={"metavar": "EVAL_DIR"},
    )
    safety_judge: str | None = Field(
        None,
        description="Endpoint of a judge or guard model that decides refusals and unsafe answers "
        "(structured yes/no), instead of the refusal lexicon; its key comes from --judge-key-env.",
        json_schema_extra={"metavar": "URL"},
    )
    safety_judge_model: str | None = Field(None, description="Model name at --safety-judge.")
    judge_timeout: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Seconds one judge request may take before it is retried (Ctrl-C and SIGTERM never wait for it).",
        json_schema_extra={"metavar": "SECONDS"},
    )


class DataOptions(_Options):
    """What is evaluated: language, suites, prompt data, scorers and harness tasks."""

    lang: str = Field("zh-Hant", description="Target language: en, zh-Hant, zh-Hans, ko, ja (or your data's tag).")
    suite: tuple[str, ...] = Field(
        (),
        description="Suites to run (repeatable; default: every suite that needs no judge).",
        json_schema_extra={"metavar": "SUITE"},
    )
    data: tuple[str, ...] = Field(
        (),
        description="Prompts for a suite instead of the built-in ones: SUITE=FILE.jsonl or "
        "SUITE=hf:NAME[:CONFIG]:SPLIT (a Hugging Face dataset, through `datasets`) or SUITE=disk:PATH[:SPLIT] "
        "(a folder written by save_to_disk). Repeatable.",
        json_schema_extra={"metavar": "SUITE=SOURCE"},
    )
    data_map: tuple[str, ...] = Field(
        (),
        description="Columns of a --data dataset: [SUITE:]field=COLUMN,... (fields: id, lang, prompt, turns, "
        "reference, category, harmful, rules, ideal); COLUMN.KEY reads inside a struct, "
        "COLUMN==VALUE makes a boolean (harmful=label==unsafe). Without SUITE: every dataset. "
        "Repeatable.",
        json_schema_extra={"metavar": "MAP"},
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Use at most this many samples per suite, spread evenly over its prompts (a quick look).",
    )
    toxicity: str = Field(
        "lexicon",
        description="Toxicity scorer: lexicon (offline smoke test), perspective, or hf:PATH (a local classifier).",
    )
    lm_eval: tuple[str, ...] = Field(
        (),
        description="lm-evaluation-harness tasks to run on the same model and backend (comma-separated or "
        "repeatable, e.g. tmmluplus,kmmlu,ifeval).",
        json_schema_extra={"metavar": "TASKS"},
    )
