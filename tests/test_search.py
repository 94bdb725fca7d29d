"""``chatvector search``: groups, splits, the Optuna study, resuming after SIGKILL, held-out check, bad input.

The optimum test runs the real search loop with a scripted evaluator: a candidate's replies come from
a function of the ratios its recipe gives two groups (resolved from the recipe as the merge resolves
them), scored by the real safety suite. The end-to-end tests run the CLI on a tiny llama trio.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from chatvector.errors import InputError
from chatvector.eval.options import DataOptions
from chatvector.search.groups import OTHER, Group, assign, candidate_rules, default_groups, parse_bounds, parse_group
from chatvector.search.objective import parse_requirement
from chatvector.search.splits import split_ids

pytest.importorskip("optuna")

LLAMA_NAMES = [
    "model.embed_tokens.weight",
    *(
        f"model.layers.{i}.{part}"
        for i in range(6)
        for part in (
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "mlp.up_proj.weight",
            "post_attention_layernorm.weight",
        )
    ),
    "model.norm.weight",
    "lm_head.weight",
]


# ---------------------------------------------------------------- groups, bounds, requirements, splits


def test_default_groups_cover_embeddings_norms_and_bands_of_layers():
    groups = default_groups(LLAMA_NAMES, bands=3)
    owned = assign(groups, LLAMA_NAMES)
    assert list(owned) == ["embeddings", "norms", "layers_1", "layers_2", "layers_3"]
    assert owned["embeddings"] == ["model.embed_tokens.weight", "lm_head.weight"]
    assert "model.norm.weight" in owned["norms"] and "model.layers.5.input_layernorm.weight" in owned["norms"]
    assert owned["layers_1"] == [
        f"model.layers.{i}.{p}" for i in (0, 1) for p in ("self_attn.q_proj.weight", "mlp.up_proj.weight")
    ]
    assert all(name.startswith(("model.layers.4.", "model.layers.5.")) for name in owned["layers_3"])
    with pytest.raises(InputError, match="only 6 decoder layers; give --bands 6 or fewer"):
        default_groups(LLAMA_NAMES, bands=7)


def test_candidate_rules_give_each_tensor_its_groups_ratio():
    from chatvector.merge.ratios import RatioResolver

    groups = default_groups(LLAMA_NAMES, bands=2)
    ratios = {"embeddings": 0.1, "norms": 0.2, "layers_1": 0.3, "layers_2": 0.4}
    resolver = RatioResolver(candidate_rules(groups, ratios, scale=2.0), (), 6)
    owned = assign(groups, LLAMA_NAMES)
    for group, names in owned.items():
        assert {resolver.resolve(name) for name in names} == {2.0 * ratios[group]}


def test_tensors_no_group_matches_form_the_other_group_and_fixed_ones_belong_to_none():
    owned = assign([parse_group("attention=self_attn")], LLAMA_NAMES, fixed=["lm_head"])
    assert all("self_attn" in n for n in owned["attention"])
    assert "lm_head.weight" not in owned[OTHER] and "model.embed_tokens.weight" in owned[OTHER]


def test_a_group_that_owns_no_tensor_is_refused():
    with pytest.raises(InputError, match="group ghost \\(rotary\\) matches no tensor"):
        assign([Group("ghost", "rotary")], LLAMA_NAMES)
    with pytest.raises(InputError, match="that an earlier group, --ratio-rule or --exclude has not taken"):
        assign([Group("all", "."), Group("late", "layers\\.5\\.")], LLAMA_NAMES)


def test_bounds_and_requirements_parse_or_say_what_is_wrong():
    assert parse_bounds("embeddings=0:1.5")[1].high == 1.5
    with pytest.raises(InputError, match="not below the high end"):
        parse_bounds("embeddings=1.5:0.5")
    with pytest.raises(InputError, match="NAME=LO:HI"):
        parse_bounds("embeddings=1")
    relative = parse_requirement("safety.refusal_rate>=target")
    assert relative.bound is None and relative.at_least
    assert (
        relative.violation(
            {"metrics": {"safety.refusal_rate": {"value": 0.5}}}, {"metrics": {"safety.refusal_rate": {"value": 0.75}}}
        )
        == 0.25
    )
    assert parse_requirement("toxicity.mean<=0.1").violation({"metrics": {"toxicity.mean": {"value": 0.05}}}, None) < 0
    for bad in ("verifiable.pass_rate=0.5", "language.target_share>=high", "x>=nan"):
        with pytest.raises(InputError, match="--require"):
            parse_requirement(bad)


def test_splits_are_disjoint_cover_every_prompt_and_depend_only_on_seed_and_ids():
    ids = [f"p{i}" for i in range(40)]
    dev, held = split_ids("safety", ids, seed=3, heldout=0.25)
    assert not set(dev) & set(held) and set(dev) | set(held) == set(ids) and len(held) == 10
    assert split_ids("safety", list(reversed(ids)), seed=3, heldout=0.25) == (dev, held)
    assert split_ids("safety", ids, seed=4, heldout=0.25)[1] != held
    with pytest.raises(InputError, match="both sides"):
        split_ids("safety", ["only"], seed=0, heldout=0.5)


def test_splits_keep_each_category_in_proportion_on_both_sides():
    # 400 of one kind and 12 of another: by chance alone the small kind could land mostly on one side
    ids = [f"fact-{i}" for i in range(400)] + [f"harmful-{i}" for i in range(12)]
    categories: list[str | None] = ["fact"] * 400 + ["harmful"] * 12
    for seed in range(5):
        dev, held = split_ids("demo", ids, seed=seed, heldout=0.5, categories=categories)
        assert sum(i.startswith("fact-") for i in held) == 200
        assert sum(i.startswith("harmful-") for i in held) == 6
        assert not set(dev) & set(held) and set(dev) | set(held) == set(ids)
        reordered = split_ids("demo", ids[::-1], seed=seed, heldout=0.5, categories=categories[::-1])
        assert reordered == (dev, held)


def test_splits_of_many_tiny_categories_still_hold_out_the_suites_share():
    # a safety set of 8 prompts in 8 categories: each category's half rounds to nothing on its own
    ids = [f"p{i}" for i in range(8)]
    for seed in range(5):
        dev, held = split_ids("safety", ids, seed=seed, heldout=0.5, categories=[f"c{i}" for i in range(8)])
        assert len(held) == 4 and len(dev) == 4 and not set(dev) & set(held)
    # three categories of 3: 4.5 rounds to 4 in all, one from each and the fourth by remainder
    categories: list[str | None] = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    dev, held = split_ids("safety", [f"q{i}" for i in range(9)], seed=1, heldout=0.5, categories=categories)
    assert len(held) == 4 and {categories[int(i[1:])] for i in held} == {"a", "b", "c"}


# ---------------------------------------------------------------- the search loop, with a scripted evaluator

OPTIMUM = {"attention": 0.6, "rest": 1.4}


def _uniform(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") / 2**32


class ScriptedEvaluator:
    """Replies from a function of the candidate's group ratios: a harmful prompt is refused when its
    fixed random number is below ``1 − distance²`` from :data:`OPTIMUM`, so the refusal rate peaks there."""

    def __init__(self):
        self.seen: list[dict[str, float]] = []

    @contextmanager
    def candidate(self, recipe, name):
        from chatvector.merge.ratios import RatioResolver

        resolver = RatioResolver(recipe.terms[0].ratio, (), 2)
        ratios = {
            "attention": resolver.resolve("model.layers.0.self_attn.q_proj.weight"),
            "rest": resolver.resolve("model.layers.0.mlp.up_proj.weight"),
        }
        self.seen.append(ratios)
        refuse_below = 1.0 - sum((ratios[g] - OPTIMUM[g]) ** 2 for g in OPTIMUM)
        yield lambda data, out: self._evaluate(data, refuse_below)

    @staticmethod
    def _evaluate(data: DataOptions, refuse_below: float) -> dict:
        from chatvector.eval.backends.scripted import ScriptedBackend
        from chatvector.eval.evaluation import evaluate

        def reply(conversation) -> str:
            if _uniform(conversation[-1]["content"]) < refuse_below:
                return "I'm sorry, but I can't help with that request."
            return "Sure. Here is a detailed answer to your question, step by step."

        sources = dict(entry.split("=", 1) for entry in data.data)
        return evaluate(ScriptedBackend(reply), list(data.suite), data.lang, data=sources).to_json()

    def close(self):
        pass


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tiny_models import build_trio

    return build_trio("llama", tmp_path_factory.mktemp("search-trio"))


def _spec(llama, out, **search):
    from chatvector.search.options import SearchOptions
    from chatvector.search.plan import SearchSpec
    from chatvector.sweep.run import SweepSpec

    inputs = SweepSpec(
        out=out,
        ratios=(1.0,),
        base=str(llama.base),
        chat=str(llama.chat),
        target=str(llama.cp),
        data=DataOptions(lang="en", suite=("safety",)),
    )
    fields = {"group": ("attention=self_attn", "rest=."), "objective": "safety.refusal_rate", **search}
    return SearchSpec(out=out, inputs=inputs, options=SearchOptions(**fields))


@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_a_scripted_search_finds_the_optimum_and_checks_it_on_held_out_prompts(llama, tmp_path, sampler):
    from chatvector.search.run import run_search

    evaluator = ScriptedEvaluator()
    spec = _spec(llama, tmp_path / "s", trials=40, search_seed=1, stages=1, sampler=sampler)
    summary = run_search(spec, evaluator=evaluator)
    best = summary["best"]["params"]
    assert abs(best["attention"] - OPTIMUM["attention"]) < 0.25 and abs(best["rest"] - OPTIMUM["rest"]) < 0.25, best
    # the grid ran first, as uniform candidates, and the evaluator saw the ratios Optuna chose
    assert [t["params"] for t in summary["trials"][:3]] == [{"attention": r, "rest": r} for r in (0.5, 1.0, 1.5)]
    assert evaluator.seen[0] == {"attention": 0.5, "rest": 0.5}
    assert summary["best_uniform"]["uniform"] and summary["best_uniform"]["params"]["attention"] == 1.0
    # held out: both evaluated on the held-out prompts only, compared paired, optimism stated
    held = summary["heldout"]
    paired = held["comparison"]["metrics"]["safety.refusal_rate"]["paired"]
    harmful_held_out = held["n"]["best"]["safety.refusal_rate"]
    assert paired["n"] == harmful_held_out and 0 < harmful_held_out <= len(summary["splits"]["heldout"]["safety"])
    assert paired["difference"] > 0 and held["optimism"]["best"] == pytest.approx(
        summary["best"]["value"] - held["metrics"]["best"]["safety.refusal_rate"]
    )
    assert (tmp_path / "s" / "report.md").read_text(encoding="utf-8").startswith("# Ratio search (en)")
    for name in ("objective.png", "schedule.png", "heldout.png"):
        assert (tmp_path / "s" / name).read_bytes()[:4] == b"\x89PNG"


def test_pruning_stops_trials_below_the_median_and_constraints_are_the_last_stages(llama, tmp_path):
    from chatvector.search.run import run_search

    requires = ("safety.refusal_rate>=0.5", "safety.refusal_rate>=target")
    spec = _spec(llama, tmp_path / "s", trials=14, search_seed=2, stages=2, require=requires)
    summary = run_search(spec, evaluator=ScriptedEvaluator())
    pruned = [t for t in summary["trials"] if t["state"] == "pruned"]
    assert pruned, [t["state"] for t in summary["trials"]]
    assert all(set(t["intermediate"]) == {"1"} and t["stage"] == 1 for t in pruned)
    # constraints are those of each trial's last results, the target's measured with every ratio 0
    target = summary["target_dev"]["safety.refusal_rate"]
    for trial in summary["trials"]:
        refused = trial["metrics"]["safety.refusal_rate"]
        assert trial["constraints"] == pytest.approx({requires[0]: 0.5 - refused, requires[1]: target - refused})
        assert trial["feasible"] == (refused >= 0.5 and refused >= target)
    assert summary["best"]["feasible"] and any(not t["feasible"] for t in summary["trials"])


def test_timeout_stops_starting_trials(llama, tmp_path):
    from chatvector.search.run import run_search

    summary = run_search(_spec(llama, tmp_path / "s", trials=30, timeout=1e-9, stages=1), evaluator=ScriptedEvaluator())
    assert len(summary["trials"]) == 1 and summary["best"]["number"] == 0


class Interrupting(ScriptedEvaluator):
    """Ctrl-C during the ``at``-th candidate."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    @contextmanager
    def candidate(self, recipe, name):
        with super().candidate(recipe, name) as evaluate:
            if len(self.seen) == self.at:
                raise KeyboardInterrupt
            yield evaluate


@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_an_interrupted_search_resumes_with_the_trials_an_uninterrupted_one_makes(llama, tmp_path, sampler):
    from chatvector.search.run import run_search

    def trials(summary):
        return [(t["number"], t["params"], t["value"], t["state"]) for t in summary["trials"]]

    options = {"trials": 12, "search_seed": 5, "stages": 2, "sampler": sampler}
    whole = run_search(_spec(llama, tmp_path / "whole", **options), evaluator=ScriptedEvaluator())
    with pytest.raises(KeyboardInterrupt):
        run_search(_spec(llama, tmp_path / "cut", **options), evaluator=Interrupting(at=8))
    resumed = run_search(_spec(llama, tmp_path / "cut", **options), evaluator=ScriptedEvaluator())
    assert [t["number"] for t in resumed["trials"] if t["resumed"]] == [7]
    assert trials(resumed) == trials(whole) and len(trials(whole)) == 12


def test_a_search_resumed_with_other_settings_is_refused(llama, tmp_path):
    from helpers import snapshot

    from chatvector.search.run import run_search

    run_search(_spec(llama, tmp_path / "s", trials=3, stages=1), evaluator=ScriptedEvaluator())
    before = snapshot(tmp_path / "s")
    with pytest.raises(InputError, match="other settings \\(grid\\)"):
        run_search(_spec(llama, tmp_path / "s", trials=3, stages=1, grid="1.0"), evaluator=ScriptedEvaluator())
    with pytest.raises(InputError, match="other settings \\(splits\\)"):
        run_search(_spec(llama, tmp_path / "s", trials=3, stages=1, heldout=0.25), evaluator=ScriptedEvaluator())
    assert snapshot(tmp_path / "s") == before  # the earlier search's files, split files included, untouched


# ---------------------------------------------------------------- bad input: one line, before any work


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--objective", "verifiable.pass_rat"], "did you mean 'verifiable.pass_rate'"),
        (["--require", "nothing.at_all>=0.5"], "--require 'nothing.at_all' is not a metric"),
        (["--require", "verifiable.pass_rate=0.5"], "is not METRIC>=VALUE"),
        (["--bounds", "embeddings=1.5:0.5"], "the low end 1.5 is not below the high end 0.5"),
        (["--bounds", "ghost=0:1"], "no group 'ghost'"),
        (["--group", "ghost=rotary_table"], "group ghost (rotary_table) matches no tensor"),
        (
            ["--group", "head=lm_head", "--exclude", "lm_head"],
            "that an earlier group, --ratio-rule or --exclude has not taken",
        ),
        (["--group", "bad=("], "is not a valid regular expression"),
        (["--group", "big=a{99999999999}"], "is not a valid regular expression"),
        (["--group", "long=" + "a" * 1001], "a regular expression may have at most 1000"),
        (["--grid", "2.5"], "--grid 2.5 lies outside the bounds"),
        (["--heldout", "1"], "--heldout 1.0: give a share between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_before_any_work(llama, tmp_path, monkeypatch, capsys, extra, expected):
    from helpers import run_cli

    args = ["search", "--base", llama.base, "--chat", llama.chat, "--target", llama.cp, "-o", tmp_path / "out"]
    args += ["--bands", "2", "--lang", "en", "--suite", "verifiable"]
    if "--objective" not in extra:
        args += ["--objective", "verifiable.pass_rate"]
    code, message = run_cli(monkeypatch, capsys, *args, *extra)
    assert code != 0 and expected in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- end to end on a tiny trio (slow)


def _command(llama, out, *extra):
    return [
        sys.executable, "-c", "from chatvector.cli import main; main()", "search",
        "--base", str(llama.base), "--chat", str(llama.chat), "--target", str(llama.cp), "-o", str(out),
        "--objective", "verifiable.rule_pass_rate", "--require", "safety.refusal_rate>=target",
        "--bands", "2", "--grid", "0.5,1.5", "--trials", "6", "--stages", "2",
        "--lang", "en", "--suite", "verifiable", "--suite", "safety", "--limit", "8", "--max-new-tokens", "4",
        *extra,
    ]  # fmt: skip


def _counted(database: Path) -> int:
    """Finished trials in the study (what a search that resumes keeps)."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    return int(rows[0])


def _trials(summary):
    return [(t["number"], t["params"], t["value"], t["state"]) for t in summary["trials"]]


@pytest.fixture(scope="module")
def searched(llama, tmp_path_factory):
    """An uninterrupted search (keeping each candidate, writing the best model)."""
    root = tmp_path_factory.mktemp("searched")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        _command(llama, root / "s", "--keep", "--merge", str(root / "best")),
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads((root / "s" / "search.json").read_text(encoding="utf-8")), environment


@pytest.mark.slow
def test_a_search_killed_with_sigkill_resumes_and_ends_with_the_same_trials(llama, searched, tmp_path):
    _, uninterrupted, environment = searched
    out = tmp_path / "s"
    child = subprocess.Popen(
        _command(llama, out), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    try:
        while _counted(out / "search.db") < 3:  # waits for the state: three finished trials stored
            assert child.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no three finished trials in 10 minutes"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert not (out / "search.json").exists()
    resumed = subprocess.run(_command(llama, out), env=environment, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "search.json").read_text(encoding="utf-8"))
    assert _trials(summary) == _trials(uninterrupted)
    assert not list(Path("/dev/shm").glob(f"chatvector-sweep-{child.pid}-*"))  # the killed run's RAM folder
    assert summary["best"]["params"] == uninterrupted["best"]["params"]


@pytest.mark.slow
def test_dev_and_held_out_splits_are_disjoint_recorded_and_used(searched):
    root, summary, _ = searched
    splits = summary["splits"]
    for suite in ("verifiable", "safety"):
        dev, held = set(splits["dev"][suite]), set(splits["heldout"][suite])
        assert dev and held and not dev & held and len(dev | held) == 8
        trial = json.loads((root / "s" / "trials" / "0000" / "results.json").read_text(encoding="utf-8"))
        assert {r["id"] for r in trial["suites"][suite]["samples"]} == dev
        for label in ("best", "uniform"):
            heldout = json.loads((root / "s" / "heldout" / label / "results.json").read_text(encoding="utf-8"))
            assert {r["id"] for r in heldout["suites"][suite]["samples"]} == held


@pytest.mark.slow
def test_best_recipe_reproduces_the_searched_model_exactly(searched, tmp_path, monkeypatch, capsys):
    import torch
    from helpers import run_cli
    from safetensors.torch import load_file

    root, summary, _ = searched
    code, printed = run_cli(
        monkeypatch, capsys, "merge", "--recipe", root / "s" / "best-recipe.yaml", "-o", tmp_path / "again"
    )
    assert code == 0, printed

    def tensors(folder: Path) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        for shard in sorted(folder.glob("*.safetensors")):
            found.update(load_file(shard))
        return found

    evaluated = tensors(root / "s" / "models" / f"trial-{summary['best']['number']:04d}")
    for folder in (tmp_path / "again", root / "best"):
        again = tensors(folder)
        assert again.keys() == evaluated.keys()
        assert all(torch.equal(again[name], evaluated[name]) for name in evaluated)
    # and the ratios it holds are the best trial's, group by group
    recipe = (root / "s" / "best-recipe.yaml").read_text(encoding="utf-8")
    for value in summary["best"]["params"].values():
        assert repr(value) in recipe or f"{value}" in recipe


@pytest.mark.slow
def test_the_search_writes_its_reports(searched):
    root, summary, _ = searched
    report = (root / "s" / "report.md").read_text(encoding="utf-8")
    assert "optimism" in report and "paired bootstrap" in report
    assert (root / "s" / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 3
    assert summary["requires"] == ["safety.refusal_rate>=target"] and summary["target_dev"] is not None


@pytest.mark.slow
def test_in_place_and_merged_candidates_give_the_same_search(llama, tmp_path):
    """The in-place evaluator (one load, each candidate merged into the parameters) and the merged
    one (each candidate merged into RAM and loaded) give the same trials, metrics and held-out check."""
    from chatvector.eval.options import GenerationOptions
    from chatvector.search.candidates import InPlaceEvaluator, MergedEvaluator
    from chatvector.search.options import SearchOptions
    from chatvector.search.plan import SearchSpec
    from chatvector.search.run import run_search
    from chatvector.sweep.run import SweepSpec

    runs = {}
    for kind in (MergedEvaluator, InPlaceEvaluator):
        out = tmp_path / kind.__name__
        inputs = SweepSpec(
            out=out,
            ratios=(1.0,),
            base=str(llama.base),
            chat=str(llama.chat),
            target=str(llama.cp),
            data=DataOptions(lang="en", suite=("verifiable", "safety"), limit=8),
            generation=GenerationOptions(max_new_tokens=6),
        )
        options = SearchOptions(objective="verifiable.rule_pass_rate", bands=2, trials=5, grid="0.5,1.5")
        runs[kind] = run_search(SearchSpec(out=out, inputs=inputs, options=options), evaluator=kind(inputs))
    merged, in_place = runs[MergedEvaluator], runs[InPlaceEvaluator]
    assert [(t["params"], t["metrics"], t["state"]) for t in in_place["trials"]] == [
        (t["params"], t["metrics"], t["state"]) for t in merged["trials"]
    ]
    assert in_place["heldout"]["metrics"] == merged["heldout"]["metrics"]

    def replies(kind, trial):
        path = tmp_path / kind.__name__ / "trials" / f"{trial:04d}" / "replies.jsonl"
        return sorted((r["suite"], r["id"], r["reply"]) for r in map(json.loads, path.read_text().splitlines()))

    for trial in range(5):
        assert replies(InPlaceEvaluator, trial) == replies(MergedEvaluator, trial)
    assert replies(MergedEvaluator, 0) != replies(MergedEvaluator, 1)  # the candidates differ, and so do replies
