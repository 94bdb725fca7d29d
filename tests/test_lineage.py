"""The lineage check: preflight measures how far the target is from the base, warns or fails."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from helpers import no_leftovers, run_cli, trio_merge
from test_merge_core import load_dir
from tiny_models import build_model

import chatvector
from chatvector.merge.lineage import RELATIVE_LIMIT


@pytest.fixture(scope="module")
def foreign(trios, tmp_path_factory):
    """A model of the mistral trio's architecture, initialised from another seed: another family."""
    return build_model("mistral", tmp_path_factory.mktemp("foreign") / "cp", seed=7, perturb_seed=2)


def direct_figures(target_dir, chat_dir, base_dir):
    """The figures over every weight matrix outside the vocabulary (the tiny models have fewer than
    the sample size, so the preflight's sample is all of them), in float64 with torch."""
    target, chat, base = (load_dir(p) for p in (target_dir, chat_dir, base_dir))
    names = [n for n, v in base.items() if v.dim() >= 2 and "embed" not in n and "lm_head" not in n]
    b = torch.cat([base[n].double().flatten() for n in names])
    dt = torch.cat([target[n].double().flatten() for n in names]) - b
    dc = torch.cat([chat[n].double().flatten() for n in names]) - b
    return float(dt.norm() / b.norm()), float(dc.norm() / b.norm()), float(dt @ dc / (dt.norm() * dc.norm()))


def test_descendant_target_is_measured_and_recorded(trios, tmp_path):
    trio = trios["mistral"]
    report = chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "o")
    record = yaml.safe_load((tmp_path / "o" / "chatvector_recipe.yaml").read_text())["lineage"]
    target_rel, chat_rel, cosine = direct_figures(trio.cp, trio.chat, trio.base)
    assert record["target_rel"] == pytest.approx(target_rel, rel=1e-9)
    assert record["chat_rel"] == pytest.approx(chat_rel, rel=1e-9)
    assert record["cosine"] == pytest.approx(cosine, abs=1e-9)
    assert record["tensors"] == 14 and record["verdict"] == "looks like a descendant"
    assert not any("lineage" in note for note in report.notes)
    assert "lineage: ‖target − base‖/‖base‖ = " in (tmp_path / "o" / "README.md").read_text()


def test_foreign_target_warns_with_the_numbers(trios, foreign, tmp_path, caplog):
    trio = trios["mistral"]
    report = chatvector.merge(base=trio.base, chat=trio.chat, target=foreign, ratio=0.5, out=tmp_path / "o")
    target_rel, _, _ = direct_figures(foreign, trio.chat, trio.base)
    assert target_rel > RELATIVE_LIMIT
    warning = [n for n in report.notes if n.startswith("lineage warning")]
    assert len(warning) == 1 and f"{target_rel:.3g}" in warning[0] and "descendant" in warning[0]
    assert any("does not look like a descendant" in r.message for r in caplog.records if r.levelname == "WARNING")
    record = yaml.safe_load((tmp_path / "o" / "chatvector_recipe.yaml").read_text())["lineage"]
    assert record["verdict"] == "does NOT look like a descendant"


def test_strict_lineage_fails_before_writing(trios, foreign, tmp_path, monkeypatch, capsys):
    trio = trios["mistral"]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "out", "--strict-lineage", target=foreign),
    )
    assert code != 0 and "PreflightError" in message and "--strict-lineage" in message
    assert "‖target − base‖/‖base‖ = " in message
    assert no_leftovers(tmp_path)
    # and the same flag lets a real descendant through
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "out", "--strict-lineage"),
    )
    assert code == 0, message


def test_vectors_alone_have_no_lineage(trios, tmp_path):
    trio = trios["mistral"]
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "v")
    chatvector.apply(target=trio.cp, vectors=[(tmp_path / "v", 1.0)], out=tmp_path / "o")
    assert "lineage" not in yaml.safe_load((tmp_path / "o" / "chatvector_recipe.yaml").read_text())


@pytest.mark.parametrize("first", ["model", "vector"])
def test_inspect_shows_the_same_figures(first, trios, foreign, tmp_path, monkeypatch, capsys):
    trio = trios["mistral"]
    chat = trio.chat
    if first == "vector":
        chat = tmp_path / "v"
        chatvector.extract(base=trio.base, chat=trio.chat, out=chat)
    code, message = run_cli(monkeypatch, capsys, "inspect", chat, foreign, "--base", trio.base)
    assert code == 0, message
    target_rel, chat_rel, cosine = direct_figures(foreign, trio.chat, trio.base)
    assert f"= {target_rel:.3g}" in message and f"= {chat_rel:.3g}" in message
    assert f"{cosine:+.3f}" in message and "does NOT look like a descendant" in message
    assert math.isfinite(cosine)


@pytest.mark.parametrize("rule", ["layers=0", "mlp|self_attn=0.5"])
def test_strict_lineage_still_checks_with_a_ratio_rule(rule, trios, foreign, tmp_path, monkeypatch, capsys):
    """A rule that zeroes every sampled matrix (or changes their ratios) does not skip the check."""
    trio = trios["mistral"]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "out", "--strict-lineage", "--ratio-rule", rule, target=foreign),
    )
    assert code != 0 and "--strict-lineage" in message and "does not look like a descendant" in message, message
    assert no_leftovers(tmp_path)
