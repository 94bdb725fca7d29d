"""The command line itself: help, lazy commands, option parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatvector.cli_core import parse_size, parse_vector_spec
from chatvector.errors import InputError


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys\nfrom chatvector.cli import main\nsys.argv=['chatvector','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for command in ("extract", "apply", "merge", "verify", "eval", "sweep", "chat", "inspect", "demo"):
        assert f"  {command} " in output
    assert output.strip().endswith("NO-TORCH")


@pytest.mark.parametrize(("spec", "expected"), [
    ("vec", ("vec", 1.0)),
    ("vec:0.5", ("vec", 0.5)),
    ("./a:b/vec:-0.25", ("./a:b/vec", -0.25)),
    ("org/name", ("org/name", 1.0)),
    ("dir:with:colons", ("dir:with:colons", 1.0)),
])
def test_vector_spec(spec, expected):
    assert parse_vector_spec(spec) == expected


def test_sizes():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("1000") == 1000
    with pytest.raises(InputError, match="--shard-size"):
        parse_size("lots")
