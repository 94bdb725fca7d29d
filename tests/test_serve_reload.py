"""`--serve sglang` in a sweep and a search: the server is started once and told to load each
ratio's weights (SGLang's documented ``POST /update_weights_from_disk``); engines without a
documented reload are restarted per ratio.

The engine is a stand-in run by the real preset command (``python -m sglang.launch_server``,
found first on PYTHONPATH): it fingerprints the weights it loaded, at start and on each reload,
and starts every reply with that fingerprint, so each reply says which weights answered it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path

import pytest

import chatvector
from chatvector.errors import EvalError, InputError
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions
from chatvector.sweep.run import SweepSpec, run_sweep

ENGINES = Path(__file__).with_name("fake_engines")
SUITES = ("verifiable", "multiturn")


def _fake_sglang():
    spec = importlib.util.spec_from_file_location("fake_sglang", ENGINES / "sglang" / "launch_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE = _fake_sglang()


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    from tiny_models import build_trio

    return build_trio("llama", tmp_path_factory.mktemp("reload-trio"))


@pytest.fixture
def engine(monkeypatch, tmp_path) -> Path:
    """The stand-in SGLang first on the servers' PYTHONPATH; returns the file its starts are written to."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ENGINES), os.environ.get("PYTHONPATH", "")]))
    starts = tmp_path / "starts.txt"
    monkeypatch.setenv("FAKE_SGLANG_STARTS", str(starts))
    return starts


def sweep_spec(trio, out: Path, **fields) -> SweepSpec:
    backend = BackendOptions(**{"serve": "sglang", "serve_timeout": 120, "concurrency": 2, **fields.pop("backend", {})})
    return SweepSpec(
        out=out,
        ratios=(0.5, 1.0),
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        data=DataOptions(lang="zh-Hant", suite=SUITES, limit=3),
        generation=GenerationOptions(max_new_tokens=4),
        backend=backend,
        **fields,
    )


def started(starts: Path) -> int:
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def replies_of(results: dict) -> list[str]:
    return [reply for suite in SUITES for sample in results["suites"][suite]["samples"] for reply in sample["replies"]]


def fingerprint_at(spec: SweepSpec, ratio: float, root: Path) -> str:
    """The fingerprint of ``chatvector merge``'s output at ``ratio``, merged here on its own."""
    out = Path(tempfile.mkdtemp(prefix=f"merged-{ratio:g}-", dir=root)) / "model"
    chatvector.merge(recipe=spec.recipe_at(ratio), out=out)
    return FAKE.read_weights(str(out))[0]


def server_pids(log: Path) -> list[int]:
    return [int(pid) for pid in re.findall(r"server PID (\d+)", log.read_text())]


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(")")[-1].split()[0] != "Z"


def leftovers(out: Path) -> list[Path]:
    """Merged models left behind: in OUT/models, or in this process's RAM folder under /dev/shm."""
    models = list((out / "models").glob("*")) if (out / "models").exists() else []
    return models + list(Path("/dev/shm").glob(f"chatvector-sweep-{os.getpid()}-*"))


def test_a_served_sweep_starts_sglang_once_and_each_ratio_answers_with_its_own_weights(trio, engine, tmp_path):
    spec = sweep_spec(trio, tmp_path / "reloaded", in_memory_limit=0)  # on disk: what is left stays visible
    summary = run_sweep(spec)
    assert started(engine) == 1  # one process for three ratios
    assert summary["serve_reload"] is True and json.loads((spec.out / "sweep.json").read_text())["serve_reload"]
    expected = {ratio: fingerprint_at(spec, ratio, tmp_path) for ratio in spec.evaluated}
    assert len(set(expected.values())) == 3  # the three ratios' weights differ
    for ratio, fingerprint in expected.items():
        results = json.loads((spec.out / "ratios" / f"r={ratio:g}" / "results.json").read_text())
        replies = replies_of(results)
        assert replies and all(reply.startswith(f"[{fingerprint}]") for reply in replies), (ratio, replies[:2])
        assert results["recipe"]["terms"][0]["ratio"] == ratio
    log = spec.out / "server.log"
    assert "reload 2:" in log.read_text() and "reload 3:" not in log.read_text()
    [pid] = server_pids(log)
    assert not alive(pid)  # stopped at the end
    assert leftovers(spec.out) == []  # every merged model removed


def test_no_serve_reload_restarts_per_ratio_with_the_same_replies(trio, engine, tmp_path):
    reloaded = run_sweep(sweep_spec(trio, tmp_path / "reloaded"))
    assert started(engine) == 1
    spec = sweep_spec(trio, tmp_path / "restarted", serve_reload=False)
    restarted = run_sweep(spec)
    assert started(engine) == 1 + 3  # a server per ratio
    assert restarted["serve_reload"] is False
    for ratio in spec.evaluated:
        name = f"r={ratio:g}"
        mine = json.loads((spec.out / "ratios" / name / "results.json").read_text())
        theirs = json.loads((tmp_path / "reloaded" / "ratios" / name / "results.json").read_text())
        assert replies_of(mine) == replies_of(theirs)
        assert mine["metrics"] == theirs["metrics"] and mine["recipe"] == theirs["recipe"]
        [pid] = server_pids(spec.out / "ratios" / name / "server.log")
        assert not alive(pid)
    assert [r["metrics"] for r in restarted["rows"]] == [r["metrics"] for r in reloaded["rows"]]


def test_a_failed_reload_is_one_line_naming_sglang_and_stops_the_server(trio, engine, tmp_path, monkeypatch):
    spec = sweep_spec(trio, tmp_path / "failed", in_memory_limit=0)
    monkeypatch.setenv("FAKE_SGLANG_FAIL_RELOAD_AT", "1")
    with pytest.raises(EvalError) as caught:
        run_sweep(spec)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("SGLang did not load the weights in ") and "r=0.5" in message
    assert "CUDA out of memory (simulated)" in message and "/update_weights_from_disk" in message
    assert started(engine) == 1
    [pid] = server_pids(spec.out / "server.log")
    assert not alive(pid)
    assert leftovers(spec.out) == []  # neither the model the server ran nor the one it refused
    assert (spec.out / "ratios" / "r=0" / "results.json").exists()  # the ratio evaluated before stays
    assert not (spec.out / "ratios" / "r=0.5" / "results.json").exists()
    assert not (spec.out / "sweep.json").exists()
    # the same command again, the engine healthy: r=0 is kept, a server starts on r=0.5 and reloads r=1
    kept = (spec.out / "ratios" / "r=0" / "results.json").read_bytes()
    monkeypatch.delenv("FAKE_SGLANG_FAIL_RELOAD_AT")
    summary = run_sweep(spec)
    assert started(engine) == 2 and [row["ratio"] for row in summary["rows"]] == [0.0, 0.5, 1.0]
    assert (spec.out / "ratios" / "r=0" / "results.json").read_bytes() == kept
    assert leftovers(spec.out) == []


def test_serve_reload_is_refused_where_the_engine_cannot_reload(trio, tmp_path):
    for backend, why in (
        (BackendOptions(serve="vllm"), "--serve vllm has no documented weight reload"),
        (BackendOptions(serve="transformers"), "--serve transformers has no documented weight reload"),
        (BackendOptions(), "no --serve is given"),
        (BackendOptions(serve="my-server {model} {port}"), "has no documented weight reload"),
    ):
        spec = SweepSpec(**{**sweep_spec(trio, tmp_path / "refused", serve_reload=True).__dict__, "backend": backend})
        with pytest.raises(InputError, match=f"--serve-reload: .*{re.escape(why)}.*use --no-serve-reload"):
            run_sweep(spec)
        assert not spec.out.exists()  # refused before anything was written
    parallel = sweep_spec(trio, tmp_path / "parallel", serve_reload=True, workers=2)
    with pytest.raises(InputError, match="each start their own server"):
        run_sweep(parallel)


def test_keep_keeps_every_ratios_model_beside_one_server(trio, engine, tmp_path):
    spec = sweep_spec(trio, tmp_path / "kept", keep=True)
    run_sweep(spec)
    assert started(engine) == 1
    for ratio in spec.evaluated:
        kept = spec.out / "models" / f"r={ratio:g}"
        assert FAKE.read_weights(str(kept))[0] == fingerprint_at(spec, ratio, tmp_path)  # whole, the ratio's own


def test_a_search_starts_sglang_once_and_reloads_each_candidate(trio, engine, tmp_path):
    from chatvector.search.candidates import ReloadingEvaluator, default_evaluator

    spec = sweep_spec(trio, tmp_path / "search", in_memory_limit=0)
    evaluator = default_evaluator(spec)
    assert isinstance(evaluator, ReloadingEvaluator)
    seen = {}
    try:
        for ratio in (1.0, 0.5, 1.0):  # back to the first weights: reloaded, not assumed
            name = f"candidate-{len(seen)}"
            with evaluator.candidate(spec.recipe_at(ratio), name) as evaluate:
                results = evaluate(spec.data, spec.out / name)
            seen[name] = (ratio, replies_of(results))
    finally:
        evaluator.close()
    assert started(engine) == 1
    for ratio, replies in seen.values():
        fingerprint = fingerprint_at(spec, ratio, tmp_path)
        assert replies and all(reply.startswith(f"[{fingerprint}]") for reply in replies)
    assert not alive(server_pids(spec.out / "server.log")[0])
    assert leftovers(spec.out) == []


def test_the_engines_own_refusal_is_the_message_and_the_server_keeps_its_weights(trio, engine, tmp_path):
    from tiny_models import WORDS, build_model

    from chatvector.eval.serve import ServedModel

    other = build_model("llama", tmp_path / "other", seed=0, words=WORDS[:-8])  # a smaller vocabulary
    empty = tmp_path / "empty"
    empty.mkdir()
    options = BackendOptions(serve="sglang", serve_timeout=60)
    with ServedModel(str(trio.cp), options, log_dir=tmp_path / "log") as served:
        with pytest.raises(EvalError, match=r"SGLang did not load the weights in .*empty .*weights iterator"):
            served.reload(str(empty))
        with pytest.raises(EvalError, match="architecture or parameter size differs"):
            served.reload(str(other))
        served.reload(str(trio.chat))  # the same architecture: loaded
        assert served.describe()["weights_reloaded_from"] == str(trio.chat)
    with pytest.raises(EvalError, match="--serve transformers: no documented weight reload"):
        ServedModel("m", BackendOptions(serve="transformers")).reload(str(trio.chat))  # refused before any request


@pytest.mark.parametrize("command", ["sweep", "search"])
def test_the_cli_flags_reach_the_sweep_and_the_search(command, trio, tmp_path, monkeypatch, capsys):
    """``--serve-reload`` (a --x/--no-x flag of SweepOptions, on both commands) is refused without
    --serve; ``--no-serve-reload`` is accepted beside --serve and reaches the spec."""
    from helpers import run_cli

    import chatvector.sweep.run as sweep_run

    common = [command, "--base", trio.base, "--chat", trio.chat, "--target", trio.cp, "--suite", "verifiable"]
    if command == "search":
        common += ["--objective", "verifiable.pass_rate", "--trials", "1", "--bands", "2"]
    code, message = run_cli(monkeypatch, capsys, *common, "--serve-reload", "-o", tmp_path / "o")
    assert code == 2 and "--serve-reload: it reloads the weights of a server started by --serve" in message
    assert not (tmp_path / "o").exists()
    if command == "sweep":
        seen = []
        monkeypatch.setattr(sweep_run, "run_sweep", lambda spec, **_: seen.append(spec) or {})
        monkeypatch.setattr("chatvector.cli.sweep._print", lambda *_: None)
        run_cli(monkeypatch, capsys, *common, "--serve", "sglang", "--no-serve-reload", "-o", tmp_path / "o2")
        assert [spec.serve_reload for spec in seen] == [False]


def test_a_search_whose_server_fails_to_start_leaves_no_model(trio, engine, tmp_path):
    from chatvector.search.candidates import ReloadingEvaluator

    spec = sweep_spec(trio, tmp_path / "nostart", in_memory_limit=0, backend={"serve_arg": ("--fail-start",)})
    evaluator = ReloadingEvaluator(spec)
    try:
        for name in ("first", "second"):  # each tries to start a server: none is left running, no model kept
            with pytest.raises(EvalError, match="exit code 3"), evaluator.candidate(spec.recipe_at(1.0), name):
                pass
    finally:
        evaluator.close()
    assert started(engine) == 2
    assert leftovers(spec.out) == []


def test_an_engine_without_a_declared_reload_is_restarted_per_ratio_by_default(trio, engine, tmp_path):
    """The same stand-in run by a custom command: no preset declares its reload, so the default is a
    server per ratio, each answering with its ratio's weights."""
    import shlex
    import sys

    command = shlex.join([sys.executable, "-m", "sglang.launch_server", "--port", "{port}", "--model-path", "{model}"])
    spec = sweep_spec(trio, tmp_path / "custom", backend={"serve": command})
    summary = run_sweep(spec)
    assert started(engine) == 3 and summary["serve_reload"] is False
    for ratio in spec.evaluated:
        results = json.loads((spec.out / "ratios" / f"r={ratio:g}" / "results.json").read_text())
        fingerprint = fingerprint_at(spec, ratio, tmp_path)
        assert all(reply.startswith(f"[{fingerprint}]") for reply in replies_of(results))
