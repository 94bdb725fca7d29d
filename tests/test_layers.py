"""The layering the package promises (docs/architecture.md), enforced on the source itself.

- ``io``, ``merge``, ``verify`` and ``analysis`` (the light core) import no torch, transformers, click
  or rich at module level, so a merge-only install works without them;
- only ``cli`` imports click and rich;
- nothing imports ``cli``;
- lower layers do not import higher ones (io < merge < verify < api; features above).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "chatvector"
LIGHT = ("io", "merge", "verify", "analysis")
HEAVY = ("torch", "transformers", "click", "rich")
# a layer may import only the layers listed for it (top-level modules count as the "core" layer)
ALLOWED = {
    "io": {"io", "core"},
    "merge": {"io", "merge", "core"},
    "verify": {"io", "merge", "verify", "core"},
    "analysis": {"io", "merge", "verify", "analysis", "core"},
}
CORE_MODULES = {"errors", "dtypes", "options", "interrupts", "extras", "_version"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else "core:" + relative.stem


def imports(path: Path, *, top_level_only: bool) -> list[str]:
    """Absolute module names imported by ``path`` (only at module level when asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def chatvector_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "chatvector" or len(parts) == 1:
        return None
    return "core" if parts[1] in CORE_MODULES else parts[1]


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) in LIGHT], ids=str)
def test_light_core_imports_no_heavy_library_at_module_level(path):
    heavy = [m for m in imports(path, top_level_only=True) if m.split(".")[0] in HEAVY]
    assert not heavy, f"{path.relative_to(PACKAGE)} imports {heavy} at module level"


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) != "cli"], ids=str)
def test_only_the_cli_imports_click_and_rich_or_the_cli(path):
    found = imports(path, top_level_only=False)
    assert not [m for m in found if m.split(".")[0] in ("click", "rich")], path
    assert not [m for m in found if m == "chatvector.cli" or m.startswith("chatvector.cli.")], path


@pytest.mark.parametrize("path", [p for p in modules() if layer_of(p) in ALLOWED], ids=str)
def test_layers_import_only_layers_below(path):
    allowed = ALLOWED[layer_of(path)]
    wrong = sorted(
        {
            m
            for m in imports(path, top_level_only=False)
            if (layer := chatvector_layer(m)) is not None and layer not in allowed
        }
    )
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer_of(path)}) imports {wrong}"


def test_the_checks_see_the_package():
    """Guard against the parametrisations above silently finding nothing."""
    layers = {layer_of(p) for p in modules()}
    assert {"io", "merge", "verify", "analysis", "cli", "eval", "sweep", "demo"} <= layers
