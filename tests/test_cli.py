"""The command line itself: help, lazy commands, option parsing."""

from __future__ import annotations

import importlib
import re
import resource
import statistics
import subprocess
import sys

import click
import pytest
from helpers import trio_merge

from chatvector.cli import COMMANDS
from chatvector.cli.common import parse_vector_spec
from chatvector.options import parse_size

# What `--help` must not load: each costs from 50 ms (yaml, rich.progress) to seconds (torch); ml_dtypes
# 0.7 alone took 0.7 s, most of a 1.2 s start-up, when every command imported chatvector.api.
HEAVY = (
    "numpy",
    "ml_dtypes",
    "yaml",
    "safetensors",
    "torch",
    "transformers",
    "huggingface_hub",
    "tokenizers",
    "httpx",
    "matplotlib",
    "rich.progress",
    "chatvector.api",
)
# export: its --gguf-type and --force come from RunOptions, whose module parses merge options (numpy)
MERGE_OPTION_COMMANDS = {"extract", "apply", "merge", "sweep", "lora", "export"}


def run_reporting_imports(*args: str, modules: tuple[str, ...] = ("torch", "transformers")) -> str:
    """Run the CLI in a fresh interpreter; its output ends with which of ``modules`` it imported."""
    code = (
        "import sys\nfrom chatvector.cli import main\n"
        f"sys.argv = ['chatvector', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('IMPORTED', sorted(m for m in {modules!r} if m in sys.modules))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_loads_no_heavy_module(command):
    """Start-up as a state, not a timer: `--help` of the tool and of each command imports none of HEAVY."""
    # --method's help lists the registered merge methods, whose classes are built on numpy (0.07 s):
    # the commands taking merge options load it, nothing heavier.
    heavy = tuple(m for m in HEAVY if not (m == "numpy" and command in MERGE_OPTION_COMMANDS))
    output = run_reporting_imports(*([command] if command else []), "--help", modules=heavy)
    assert "Usage: chatvector" in output
    assert output.strip().endswith("IMPORTED []"), output.strip().splitlines()[-1]


@pytest.mark.parametrize("first", ["functions", "subpackages"])
def test_the_lazy_package_keeps_merge_and_verify_the_functions(first):
    """chatvector.merge and chatvector.verify name both an API function and a subpackage; loading
    the subpackages (before or after the functions) must not replace the functions."""
    load = {
        "functions": "assert callable(chatvector.merge) and callable(chatvector.verify)",
        "subpackages": "import chatvector.merge.engine, chatvector.verify.check",
    }
    order = [load[first], *(v for k, v in load.items() if k != first)]
    code = "\n".join(
        ["import chatvector", *order, "print(type(chatvector.merge).__name__, type(chatvector.verify).__name__)"]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["function", "function"]


@pytest.mark.slow
def test_help_costs_well_under_a_second_of_cpu():
    """A generous bound on the heaviest command's help (about 0.25 s of CPU here; 0.45 s before the
    lazy imports, 2 s or more with torch). CPU time, not wall time: on a machine at load 12 the
    same run takes 2 s of wall clock. The state test above is the precise one."""
    code = "import sys\nfrom chatvector.cli import main\nsys.argv = ['chatvector', 'sweep', '--help']\nmain()"
    seconds = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    assert statistics.median(seconds) < 1.0, (
        f"sweep --help took {statistics.median(seconds):.2f} s of CPU (median of 3)"
    )


def test_quiet_merge_prints_no_progress(trios, tmp_path):
    """-q turns progress off (piped, progress is a line per quarter on stderr); results still print."""
    trio = trios["llama"]

    def merge(*flags, out):
        command = [sys.executable, "-c", "from chatvector.cli import main; main()", *flags]
        return subprocess.run(
            [*command, *map(str, trio_merge(trio, tmp_path / out))], capture_output=True, text=True, check=True
        )

    loud, quiet = merge(out="loud"), merge("-q", out="quiet")
    assert re.search(r"merging: \d+%", loud.stderr), loud.stderr
    assert "%" not in quiet.stderr and "merging" not in quiet.stderr, quiet.stderr
    assert quiet.stdout.strip() and (tmp_path / "quiet" / "config.json").exists()


def every_option():
    for name, (target, _) in COMMANDS.items():
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                yield name, parameter


# Words naming what some commands do, and the commands that do it: a help text on any other command
# that uses one was written for a different command (`chat --seed` "of the bootstrap intervals").
ACTIONS = {
    "evaluat": {"eval", "sweep"},
    "under test": {"eval", "sweep"},
    "bootstrap": {"eval", "sweep", "compare"},
    "the target": {"merge", "apply", "sweep", "lora"},
    "target's": {"merge", "apply", "sweep", "lora"},
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_help(command):
    missing = [p.opts[0] for name, p in every_option() if name == command and not (p.help or "").strip()]
    assert not missing, f"{command}: options without help: {missing}"


def test_no_help_text_speaks_of_another_commands_action():
    wrong = [
        f"{command} {option.opts[-1]}: {word!r}"
        for command, option in every_option()
        for word, owners in ACTIONS.items()
        if word in (option.help or "").lower() and command not in owners
    ]
    assert not wrong, wrong


def test_a_shared_option_is_worded_for_its_command():
    """One definition, per-command wording: extract's --dtype has a default of its own, no target."""
    helps = {(c, o.opts[-1]): o.help for c, o in every_option()}
    assert helps[("extract", "--dtype")] != helps[("merge", "--dtype")]
    assert helps[("chat", "--seed")] != helps[("eval", "--seed")] == helps[("sweep", "--seed")]


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
