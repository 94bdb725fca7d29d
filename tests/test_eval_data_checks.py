"""The built-in evaluation data pass their independent checkers (tests/data_checks/).

The checkers are standalone scripts (they reimplement the schema and rules of docs/eval-data.md
without chatvector's code, so that the data and the scorer are checked against the document, not
against each other); this runs them, so that a data edit that breaks the schema fails CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).parent / "data_checks"


@pytest.mark.parametrize(
    ("script", "arguments"),
    [
        ("check_data_a.py", ["--scorer", "en", "ko", "ja"]),
        ("check_data_b.py", ["zh-Hant", "zh-Hans"]),
        ("check_rules_stated.py", []),  # every verifiable rule is stated in its prompt
    ],
)
def test_built_in_data_pass_the_independent_checker(script, arguments):
    done = subprocess.run(
        [sys.executable, str(CHECKS / script), *arguments], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
