"""Scorer accuracy tables: the hard cases, and the language detectors on the labelled set.

The hard cases (``tests/eval/data/hard_*.jsonl``) are read by the tests too; the held-out cases
(``heldout_*.jsonl``) were written after the scorers were frozen and are only measured here, so
they show how the scorers do on cases they were not tuned on. This script runs both
through the scorers of the working tree ("after") and of a past commit ("before", default
3ddd659, the code before the scorers were reworked), and prints one Markdown table of cases
passed per scorer and language. ``--detectors`` compares language detectors on
``tests/eval/data/language_labelled.jsonl`` (accuracy per language with n and a 95% Wilson
interval, and the time per reply).

Usage, from the repository root:

    .venv/bin/python tests/eval/scorer_table.py [--before REF] [--after REF] [--cases-at REF] [--detectors]

The "before" modules are read with ``git show REF:src/chatvector/eval/<name>.py`` into a
temporary folder and imported under ``chatvector.eval.*`` for the time of loading (the old
``rules`` imports the old ``language``). The old code had no ``parse_yes_no``: its "before" is
the expression the runner used at that commit to read the judge's verdict.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("en", "zh-Hant", "zh-Hans", "ko", "ja")
MODULES = ("language", "rules", "refusal", "toxicity")
BEFORE = "3ddd659"


def load_cases(name: str, ref: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``tests/eval/data/<name>.jsonl``, as in the working tree or at git commit ``ref``."""
    if ref is None:
        text = (DATA / f"{name}.jsonl").read_text(encoding="utf-8")
    else:
        text = _git_show(ref, f"tests/eval/data/{name}.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _git_show(ref: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def case_id(case: dict[str, Any]) -> str:
    """A short readable test id."""
    text = case.get("text", case.get("reply", ""))
    rule = case.get("rule", {}).get("type", "")
    return f"{case['lang']}-{rule + '-' if rule else ''}{text[:24]!r}"


# ---------------------------------------------------------------- one check per scorer


def check_language(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    return scorers.language.detect_language(case["text"]).language == case["expect"]


def check_rules(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    from chatvector.errors import EvalError

    try:
        return scorers.rules.check_rule(case["reply"], case["rule"]) is case["expect"]
    except EvalError:
        return case["expect"] == "error"


def check_refusal(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    return scorers.refusal.is_refusal(case["reply"]) is case["expect"]


def check_yes_no(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    return scorers.parse_yes_no(case["text"]) is case["expect"]


def check_toxicity(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    # Toxic means above 0.5, the threshold of the runner's toxicity.over_0_5.
    return (scorers.toxicity.LexiconScorer().score_one(case["text"]) > 0.5) is case["toxic"]


# title -> (case file suffix, check); the files are hard_<suffix> (tests) and heldout_<suffix>.
CHECKS: dict[str, tuple[str, Callable[[SimpleNamespace, dict[str, Any]], bool]]] = {
    "language (detect_language)": ("language", check_language),
    "rules (check_rule)": ("rules", check_rules),
    "refusal (is_refusal)": ("refusal", check_refusal),
    "judge verdict (parse_yes_no)": ("yes_no", check_yes_no),
    "toxicity (lexicon > 0.5)": ("toxicity", check_toxicity),
}
SETS = {
    "hard": "Hard cases (the test tables, tests/eval/data/hard_*.jsonl)",
    "heldout": "Held-out cases (tests/eval/data/heldout_*.jsonl, written after the scorers were frozen, not tuned on)",
}


# ---------------------------------------------------------------- loading the scorers


def current_scorers() -> SimpleNamespace:
    from chatvector.eval import language, refusal, rules, toxicity

    return SimpleNamespace(
        language=language, rules=rules, refusal=refusal, toxicity=toxicity, parse_yes_no=refusal.parse_yes_no
    )


def scorers_at(ref: str, folder: Path) -> SimpleNamespace:
    """The scorer modules as they were at git commit ``ref``."""
    loaded: dict[str, ModuleType] = {}
    saved = {name: sys.modules.get(f"chatvector.eval.{name}") for name in MODULES}
    try:
        for name in MODULES:
            source = _git_show(ref, f"src/chatvector/eval/{name}.py")
            path = folder / f"{name}_at_{ref}.py"
            path.write_text(source, encoding="utf-8")
            spec = importlib.util.spec_from_file_location(f"chatvector.eval.{name}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[f"chatvector.eval.{name}"] = module  # so the old rules import the old language
            spec.loader.exec_module(module)
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(f"chatvector.eval.{name}", None)
            else:
                sys.modules[f"chatvector.eval.{name}"] = module

    def runner_verdict(text: str) -> bool:
        # What runner.py did with a judge's answer before parse_yes_no existed.
        return text.strip().lower().startswith(("yes", "是", "예"))

    parse_yes_no = getattr(loaded["refusal"], "parse_yes_no", runner_verdict)
    return SimpleNamespace(**loaded, parse_yes_no=parse_yes_no)


# ---------------------------------------------------------------- tables


def passed(
    scorers: SimpleNamespace, cases_name: str, check: Callable[..., bool], cases_ref: str | None = None
) -> dict[str, tuple[int, int]]:
    """(passed, total) per language."""
    counts = {lang: [0, 0] for lang in LANGUAGES}
    for case in load_cases(cases_name, cases_ref):
        try:
            ok = check(scorers, case)
        except Exception:  # noqa: BLE001 - an old scorer crashing on a case fails that case
            ok = False
        counts[case["lang"]][0] += ok
        counts[case["lang"]][1] += 1
    return {lang: (good, total) for lang, (good, total) in counts.items()}


def case_table(
    before: SimpleNamespace, after: SimpleNamespace, labels: tuple[str, str], which: str, cases_ref: str | None
) -> str:
    """Cases of set ``which`` (``hard`` or ``heldout``) passed per scorer and language, before → after."""
    header = "| scorer | " + " | ".join(LANGUAGES) + " | all |"
    source = f"; cases as at {cases_ref}" if cases_ref else ""
    lines = [
        f"{SETS[which]}{source}, passed before ({labels[0]}) → after ({labels[1]}) / n:",
        "",
        header,
        "|---" * (len(LANGUAGES) + 2) + "|",
    ]
    for title, (suffix, check) in CHECKS.items():
        name = f"{which}_{suffix}"
        old, new = passed(before, name, check, cases_ref), passed(after, name, check, cases_ref)
        cells = [f"{old[lang][0]} → {new[lang][0]} / {new[lang][1]}" for lang in LANGUAGES]
        total = sum(n for _, n in new.values())
        cells.append(f"{sum(g for g, _ in old.values())} → {sum(g for g, _ in new.values())} / {total}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wilson(good: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return 0.0, 0.0
    p = good / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def detector_table(before: SimpleNamespace, after: SimpleNamespace, ref: str) -> str:
    rows = load_cases("language_labelled")
    detectors: dict[str, Callable[[str, str], bool]] = {
        f"old ({ref})": lambda text, lang: before.language.detect_language(text).language == lang,
        "script (new default)": lambda text, lang: after.language.detect_language(text).matches(lang),
        "script, `zh` counted wrong": lambda text, lang: after.language.detect_language(text).language == lang,
        "lingua": lambda text, lang: after.language.detect_language(text, "lingua").matches(lang),
    }
    header = "| detector | " + " | ".join(LANGUAGES) + " | all | ms / reply | first pass, s |"
    lines = [
        f"Language detectors on {len(rows)} labelled replies (correct/n = accuracy [95% Wilson interval]):",
        "",
        header,
        "|---" * (len(LANGUAGES) + 4) + "|",
    ]
    for name, correct in detectors.items():
        start = time.perf_counter()
        for row in rows:  # the first pass loads models and fills caches
            correct(row["text"], row["lang"])
        first_pass = time.perf_counter() - start
        counts = {lang: [0, 0] for lang in LANGUAGES}
        start = time.perf_counter()
        for row in rows:
            counts[row["lang"]][0] += correct(row["text"], row["lang"])
            counts[row["lang"]][1] += 1
        per_reply_ms = 1000 * (time.perf_counter() - start) / len(rows)
        cells = []
        for good, total in [*counts.values(), [sum(c[0] for c in counts.values()), len(rows)]]:
            low, high = wilson(good, total)
            cells.append(f"{good}/{total} = {good / total:.1%} [{low:.0%}, {high:.0%}]")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_reply_ms:.2f} | {first_pass:.1f} |")
    undecided = sum(after.language.detect_language(r["text"]).language == "zh" for r in rows)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    lines += [
        "",
        f"The script detector left {undecided} of {len(rows)} replies as `zh` (Han text that fits both scripts; "
        f"a match for zh-Hant and zh-Hans targets). Peak memory of this process: {peak_mb} MB.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- the labelled set (issue 20)

# scorer -> (case files, check). The labelled files were written for the project before the lexicons
# were tuned on them; every third line per language is "heldout" (never looked at while tuning).
# language_labelled.jsonl (an earlier round, already tuned on) counts as "tuning" for the language scorer.
LABELLED: dict[str, tuple[tuple[str, ...], Callable[[SimpleNamespace, dict[str, Any]], bool]]] = {
    "refusal": (("labelled_refusal",), check_refusal),
    "toxicity": (("labelled_toxicity",), check_toxicity),
    "language": (("labelled_language", "language_labelled"), lambda s, c: _language_matches(s, c)),
}


def _language_matches(scorers: SimpleNamespace, case: dict[str, Any]) -> bool:
    guess = scorers.language.detect_language(case["text"])
    matches = getattr(guess, "matches", None)
    return matches(case["lang"]) if matches else guess.language == case["lang"]


def labelled_cases(scorer: str, ref: str | None = None) -> list[dict[str, Any]]:
    """The labelled cases of ``scorer``, each with its ``split`` (``tuning`` or ``heldout``)."""
    files, _ = LABELLED[scorer]
    return [{"split": "tuning", **case} for name in files for case in load_cases(name, ref)]


def labelled_counts(
    scorers: SimpleNamespace, scorer: str, split: str | None = None, ref: str | None = None
) -> dict[str, tuple[int, int]]:
    """(correct, n) per language on the labelled set of ``scorer`` (one split, or all)."""
    _, check = LABELLED[scorer]
    counts = {lang: [0, 0] for lang in LANGUAGES}
    for case in labelled_cases(scorer, ref):
        if split is not None and case["split"] != split:
            continue
        try:
            ok = check(scorers, case)
        except Exception:  # noqa: BLE001 - an old scorer crashing on a case fails that case
            ok = False
        counts[case["lang"]][0] += ok
        counts[case["lang"]][1] += 1
    return {lang: (good, total) for lang, (good, total) in counts.items()}


def _cell(good: int, total: int) -> str:
    low, high = wilson(good, total)
    return f"{good}/{total} = {good / total:.0%} [{low:.0%}, {high:.0%}]" if total else "–"


def labelled_table(before: SimpleNamespace, after: SimpleNamespace, labels: tuple[str, str]) -> str:
    """Accuracy per scorer, language and split on the labelled set, before and after."""
    header = "| scorer | split | code | " + " | ".join(LANGUAGES) + " | all |"
    lines = [
        "Labelled set (tests/eval/data/labelled_*.jsonl): correct/n = accuracy [95% Wilson interval]",
        "",
        header,
        "|---" * (len(LANGUAGES) + 4) + "|",
    ]
    for scorer in LABELLED:
        for split in ("tuning", "heldout"):
            for label, scorers in zip(labels, (before, after), strict=True):
                counts = labelled_counts(scorers, scorer, split)
                cells = [_cell(*counts[lang]) for lang in LANGUAGES]
                cells.append(_cell(sum(g for g, _ in counts.values()), sum(n for _, n in counts.values())))
                lines.append(f"| {scorer} | {split} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git commit of the 'before' scorers (default %(default)s)")
    parser.add_argument("--after", help="git commit of the 'after' scorers (default: the working tree)")
    parser.add_argument("--cases-at", help="read the case files as at this git commit (default: the working tree)")
    parser.add_argument("--detectors", action="store_true", help="also compare language detectors")
    parser.add_argument("--labelled", action="store_true", help="only the labelled set, per split, before and after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        before = scorers_at(args.before, Path(folder))
        after = scorers_at(args.after, Path(folder)) if args.after else current_scorers()
        labels = (args.before, args.after or "this branch")
        if args.labelled:
            print(labelled_table(before, after, labels))
            return
        print(case_table(before, after, labels, "hard", args.cases_at))
        print()
        print(case_table(before, after, labels, "heldout", args.cases_at))
        if args.detectors:
            print()
            print(detector_table(before, after, args.before))


if __name__ == "__main__":
    main()
