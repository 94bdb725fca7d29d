"""Row alignment (``vocab.align_rows``, ``arithmetic.row_runs``) and the staged output directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from chatvector.errors import OutputError
from chatvector.io.output import StagedDirectory
from chatvector.merge.arithmetic import RowRun, row_runs
from chatvector.merge.vocab import Vocabulary, align_rows


def vocab(tokens: list[str]) -> Vocabulary:
    return Vocabulary(Path("."), {t: i for i, t in enumerate(tokens)})


def test_align_rows_matches_tokens_by_string_and_marks_the_rest():
    target = vocab(["<s>", "a", "b", "台", "c"])
    chat = vocab(["<s>", "c", "a", "b"])
    assert align_rows(target, chat, 6, 4).tolist() == [0, 2, 3, -1, 1, -1]  # row 5 is padding


def test_align_rows_ignores_ids_beyond_either_matrix():
    target = vocab(["a", "b", "c"])
    chat = vocab(["a", "b", "c"])
    assert align_rows(target, chat, 2, 3).tolist() == [0, 1]
    assert align_rows(target, chat, 3, 2).tolist() == [0, 1, -1]


def test_an_appended_vocabulary_is_one_run():
    plus = np.array([0, 1, 2, 3, -1, -1])
    assert row_runs(plus, plus.copy()) == [RowRun(0, 0, 0, 4)]


def test_runs_break_where_either_operand_jumps_or_is_missing():
    plus = np.array([0, 1, 5, 6, -1, 7])
    minus = np.array([0, 1, 2, -1, 3, 4])
    assert row_runs(plus, minus) == [RowRun(0, 0, 0, 2), RowRun(2, 5, 2, 1), RowRun(5, 7, 4, 1)]


def test_a_stored_vector_has_no_minus_operand():
    assert row_runs(np.array([3, 4, -1, 0]), None) == [RowRun(0, 3, None, 2), RowRun(3, 0, None, 1)]


def test_no_shared_rows_give_no_runs():
    assert row_runs(np.array([-1, -1]), np.array([0, 1])) == []


def test_staged_directory_appears_only_on_commit(tmp_path):
    out = tmp_path / "out"
    with StagedDirectory(out) as staging:
        (staging.path / "model.safetensors").write_bytes(b"x")
        assert not out.exists() and staging.path.parent == tmp_path
        staging.commit(force=False)
    assert (out / "model.safetensors").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, no staging left


def test_a_failure_leaves_neither_out_nor_staging(tmp_path):
    with pytest.raises(RuntimeError), StagedDirectory(tmp_path / "out") as staging:
        (staging.path / "part").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_the_lock(tmp_path):
    with StagedDirectory(tmp_path / "out"), pytest.raises(OutputError, match="another chatvector run"):
        with StagedDirectory(tmp_path / "out"):
            pass


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    lock = tmp_path / ".out.chatvector-lock"
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid that is certainly gone
    lock.write_text(str(child))
    with StagedDirectory(tmp_path / "out") as staging:
        staging.commit(force=False)
    assert (tmp_path / "out").is_dir() and not lock.exists()


def test_commit_replaces_an_existing_out_only_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(OutputError, match="--force"), StagedDirectory(out) as staging:
        staging.commit(force=False)
    with StagedDirectory(out) as staging:
        (staging.path / "new").write_text("new")
        staging.commit(force=True)
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
