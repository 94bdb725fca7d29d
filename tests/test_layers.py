"""The layering the package promises (docs/architecture.md), enforced on the source itself.

Every module of ``src/chatvector`` is read (its imports at module level *and* inside functions) and
placed on a floor; a module may import only its own floor and the floors below it:

- the top-level modules, the root package and each package have a floor (:data:`FLOORS`); the
  insides of ``eval``, ``sweep`` and ``lora`` have floors of their own (:data:`INSIDE`);
- ``io``, ``merge``, ``verify`` and ``analysis`` (the light core) import no torch, transformers,
  click or rich at module level, so a merge-only install works without them;
- only ``cli`` imports click and rich; nothing imports ``cli``;
- no circle anywhere in the import graph. Importing ``a.b.c`` also runs the packages ``a.b`` and
  ``a`` (their ``__init__``), so those count as imported too, unless they already enclose the
  importer. Imports under ``if TYPE_CHECKING:`` never run and are left out of the circle and floor
  checks (they still may not reach ``cli``).

A module the floors do not place fails :func:`test_every_module_has_a_floor`: a new module is
placed on purpose, not by accident.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "chatvector"
LIGHT = ("io", "merge", "verify", "analysis")
HEAVY = ("torch", "transformers", "click", "rich")

# Floors of the package, lowest first. A name is a top-level module or package of chatvector
# ("" is the root package, chatvector/__init__.py).
FLOORS: tuple[frozenset[str], ...] = tuple(
    frozenset(floor)
    for floor in (
        {"errors", "dtypes", "casts", "extras", "interrupts", "_version"},
        {"io"},
        {"merge", "options"},  # the merge and run options validate with merge's parsers (ratio rules, methods)
        {"verify"},
        {"analysis"},
        {"api"},
        {""},
        {"eval", "lora"},
        {"chat", "sweep"},
        {"demo", "search"},
        {"cli"},
    )
)

# Floors inside packages, lowest first: "name" is a module of the package or a package inside it.
INSIDE: dict[str, tuple[frozenset[str], ...]] = {
    "eval": tuple(
        frozenset(floor)
        for floor in (
            {"options", "stats", "language", "rules", "refusal", "toxicity", "batching", "serve", "serve_reload"},
            # the typed readers and strict writers of eval files; the llama.cpp preset (serve + io.gguf_export)
            {"schemas", "state_files", "provenance", "serve_llamacpp"},
            {"metrics", "result", "datasets", "judge_endpoint", "judgments"},
            {"backends"},
            {"report", "judge"},
            {"suites"},
            {"generate", "lmeval", "compare"},
            {"evaluation"},
            {"job"},
        )
    ),
    "sweep": tuple(
        frozenset(floor)
        for floor in (
            {"options", "state", "ram"},
            {"recommend"},
            {"report"},
            {"job"},  # one sweep's definition and one ratio's work, below every way of running ratios
            {"distributed", "inplace", "reload"},
            {"run"},
        )
    ),
    "lora": tuple(frozenset(floor) for floor in ({"svd", "options", "manifest"}, {"scale"}, {"extract"})),
}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # absolute, resolved to a module of the package where it names one
    line: int
    type_only: bool
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import in ``path``, at module level or in a function, with where it is."""
    found: list[Import] = []
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, type_only: bool, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(name, a.name, node.lineno, type_only, in_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node, is_package)
            for alias in node.names:  # `from pkg import module` imports pkg.module
                target = f"{base}.{alias.name}"
                found.append(Import(name, target if target in MODULES else base, node.lineno, type_only, in_function))
        for child in ast.iter_child_nodes(node):
            visit(
                child,
                type_only or (isinstance(node, ast.If) and _type_checking(node) and child in node.body),
                in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda),
            )

    visit(ast.parse(path.read_text(encoding="utf-8")), False, False)
    return found


IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def internal(module: str) -> str | None:
    """The package module ``module`` names (the nearest enclosing one), or None outside chatvector."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def floor_of(module: str, floors: tuple[frozenset[str], ...]) -> int | None:
    return next((i for i, floor in enumerate(floors) if module in floor), None)


def top_of(module: str) -> str:
    """``chatvector.eval.suites.base`` → ``eval``; the root package → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def inside_of(module: str) -> tuple[str, str] | None:
    """``chatvector.eval.suites.base`` → (``eval``, ``suites``) for packages with inner floors."""
    parts = module.split(".")
    return (parts[1], parts[2]) if len(parts) > 2 and parts[1] in INSIDE else None


def runtime_edges(imports: dict[str, list[Import]]) -> dict[str, set[str]]:
    """Module → the package modules importing it runs (its imports, and the packages above each
    imported module that do not already enclose the importer)."""
    graph: dict[str, set[str]] = {name: set() for name in imports}
    for name, found in imports.items():
        for imp in found:
            target = internal(imp.module)
            if imp.type_only or target is None:
                continue
            while target:
                if target != name and not name.startswith(target + "."):
                    graph[name].add(target)
                target = target.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def wrong_floor(imp: Import) -> str | None:
    """Why ``imp`` breaks the floors, or None when it does not."""
    target = internal(imp.module)
    if imp.type_only or target is None:
        return None
    source_top, target_top = top_of(imp.importer), top_of(target)
    if source_top != target_top:
        source_floor, target_floor = floor_of(source_top, FLOORS), floor_of(target_top, FLOORS)
        if source_floor is None or target_floor is None:
            return f"{imp.importer} or {target} has no floor"
        if target_floor > source_floor:
            return f"{imp.importer} ({source_top or 'chatvector'}) imports {target} ({target_top}), a floor above it"
        return None
    source_inside, target_inside = inside_of(imp.importer), inside_of(target)
    if source_inside is None or target_inside is None or source_inside[1] == target_inside[1]:
        return None
    floors = INSIDE[source_top]
    source_floor, target_floor = floor_of(source_inside[1], floors), floor_of(target_inside[1], floors)
    if source_floor is None or target_floor is None:
        return f"{imp.importer} or {target} has no floor inside {source_top}/"
    if target_floor > source_floor:
        return f"{imp.importer} imports {target}, a floor above it inside {source_top}/"
    return None


def where(imp: Import) -> str:
    return f"{MODULES[imp.importer].relative_to(PACKAGE)}:{imp.line}"


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_every_module_has_a_floor(name):
    top = top_of(name)
    assert floor_of(top, FLOORS) is not None, f"{name}: put {top!r} on a floor in FLOORS"
    inside = inside_of(name)
    if inside is not None:
        assert floor_of(inside[1], INSIDE[inside[0]]) is not None, f"{name}: put {inside[1]!r} on a floor in INSIDE"


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_modules_import_only_their_floor_and_below(name):
    wrong = [f"{where(imp)}: {why}" for imp in IMPORTS[name] if (why := wrong_floor(imp)) is not None]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_anywhere():
    """Counting imports inside functions, and the packages each import runs."""
    found = cycles(runtime_edges(IMPORTS))
    assert not found, "import circles: " + "; ".join(" ↔ ".join(c) for c in found)


@pytest.mark.parametrize("name", [n for n in sorted(MODULES) if top_of(n) in LIGHT], ids=str)
def test_light_core_imports_no_heavy_library_at_module_level(name):
    heavy = [
        f"{where(imp)}: {imp.module}"
        for imp in IMPORTS[name]
        if not imp.in_function and not imp.type_only and imp.module.split(".")[0] in HEAVY
    ]
    assert not heavy, heavy


@pytest.mark.parametrize("name", [n for n in sorted(MODULES) if top_of(n) != "cli"], ids=str)
def test_only_the_cli_imports_click_and_rich_or_the_cli(name):
    wrong = [
        f"{where(imp)}: {imp.module}"
        for imp in IMPORTS[name]
        if imp.module.split(".")[0] in ("click", "rich") or top_of(imp.module) == "cli"
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("name", [n for n, p in sorted(MODULES.items()) if p.name == "__init__.py"], ids=str)
def test_every_package_declares_its_public_names(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    declared = [
        node
        for node in tree.body
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets))
        or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__")
    ]
    assert declared, f"{name} has no __all__"


def test_the_checks_see_the_package_and_can_fail():
    """Guard against the checks above silently finding nothing, or never failing."""
    assert {"io", "merge", "verify", "analysis", "cli", "eval", "sweep", "demo", "lora", "api", ""} <= {
        top_of(n) for n in MODULES
    }
    assert any(imp.in_function for found in IMPORTS.values() for imp in found)
    assert any(imp.type_only for found in IMPORTS.values() for imp in found)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    # importing chatvector.eval.suites.base runs chatvector.eval.suites (its package) too
    fake = {
        "chatvector.eval.generate": [Import("chatvector.eval.generate", "chatvector.eval.suites.base", 1, False, True)]
    }
    assert "chatvector.eval.suites" in runtime_edges(fake)["chatvector.eval.generate"]
    upward = Import("chatvector.io.files", "chatvector.merge.plan", 1, False, True)
    assert wrong_floor(upward) is not None
    inner = Import("chatvector.eval.backends.hf", "chatvector.eval.generate", 1, False, True)
    assert wrong_floor(inner) is not None
    assert wrong_floor(Import("chatvector.eval.generate", "chatvector.eval.backends.hf", 1, False, False)) is None
