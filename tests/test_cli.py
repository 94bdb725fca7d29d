"""The command line itself: help, lazy commands, option parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatvector.cli.common import parse_vector_spec
from chatvector.options import parse_size


def run_reporting_imports(*args: str) -> str:
    """Run the CLI in a fresh interpreter; its output ends with the heavy libraries it imported."""
    code = (
        "import sys\nfrom chatvector.cli import main\n"
        f"sys.argv = ['chatvector', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('IMPORTED', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_help_lists_every_command_without_importing_torch():
    output = run_reporting_imports("--help")
    for command in ("extract", "apply", "merge", "verify", "eval", "sweep", "chat", "inspect", "demo"):
        assert f"  {command} " in output
    assert output.strip().endswith("IMPORTED []")


def test_extract_apply_merge_do_not_import_torch(trios, tmp_path):
    """torch costs about a second of start-up here, a large share of a merge at disk speed."""
    trio = trios["llama"]
    runs = [
        ("extract", "--base", trio.base, "--chat", trio.chat, "-o", tmp_path / "vec"),
        ("apply", "--target", trio.cp, "--vector", f"{tmp_path / 'vec'}:0.5", "-o", tmp_path / "applied"),
        ("merge", "--base", trio.base, "--chat", trio.chat, "--target", trio.cp, "-o", tmp_path / "merged"),
    ]
    for args in runs:
        output = run_reporting_imports(*map(str, args))
        assert output.strip().endswith("IMPORTED []"), output
    assert (tmp_path / "applied" / "config.json").exists() and (tmp_path / "merged" / "config.json").exists()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("vec", ("vec", 1.0)),
        ("vec:0.5", ("vec", 0.5)),
        ("./a:b/vec:-0.25", ("./a:b/vec", -0.25)),
        ("org/name", ("org/name", 1.0)),
        ("dir:with:colons", ("dir:with:colons", 1.0)),
    ],
)
def test_vector_spec(spec, expected):
    assert parse_vector_spec(spec) == expected


def test_sizes():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1000") == 1000
    for bad in ("lots", "nan", "inf", "-5GB", "0", "5 XB", ""):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
