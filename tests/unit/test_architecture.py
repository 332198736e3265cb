"""Import directions inside ``cogumi/``: layers, no cycles, the CLI tree and the routing contract.

The import graph is read from the source with ``ast`` (nothing is imported). Each module
belongs to a *unit*: its sub-package (``cogumi/route/...`` -> ``route``) or, for a top-level
module, its own name — except that every phase's ``commands.py`` belongs to ``cli`` (it is
the CLI adapter of its phase) and every phase's ``config.py`` to ``config`` (the sections
of the root config). Units are layered, lowest first:

    core (errors, config_base, schema, jsonl, raycluster) < artifacts < config < models < endpoints
    < phases (curate, train, evaluate, compress, modifiers, route, serve) < pipeline
    < command helpers (doctor, generate, submit) < cli < __main__

A module may import from its own unit or a lower layer. Phases are one layer: a phase
importing another phase's code is allowed only where :data:`PHASE_TO_PHASE` lists it
(what is left to move into a shared layer; the test fails when one disappears, so the
list only shrinks). Imports under ``if TYPE_CHECKING:`` are ignored; imports inside
functions count (they are still dependencies).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cogumi"

LAYERS: list[set[str]] = [
    {"errors", "config_base", "schema", "jsonl", "raycluster"},
    {"artifacts"},
    {"config"},
    {"models"},
    {"endpoints"},
    {"curate", "train", "evaluate", "compress", "modifiers", "route", "serve"},
    {"pipeline"},
    {"doctor", "generate", "submit"},
    {"cli"},
    {"__main__"},
]
PHASES = LAYERS[5]

# Phase -> phase imports: serve -> route by design (route owns the routing contract, the
# built-in router and the loader); the others remain to be moved into a shared layer (issue 15).
PHASE_TO_PHASE = {
    ("serve", "route"),         # the routing contract, one way
    ("evaluate", "compress"),   # heldout: perplexity and checkpoint loading from compress
    ("modifiers", "compress"),  # adapters: LoRA -> GGUF conversion
    ("modifiers", "evaluate"),  # gate/verify: held-out scoring, answer checks, the sandbox
    ("modifiers", "route"),     # clustering: the embedding model
    ("modifiers", "train"),     # adapters: SFT on Ray Train
}


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for n in ast.walk(node))
    return ids


@cache
def imports(module: str, top_level_only: bool = False) -> tuple[tuple[str, int], ...]:
    """The ``cogumi`` modules that ``module`` imports, with line numbers.

    Args:
        module: dotted name of a module in :func:`modules`.
        top_level_only: only imports that run when the module is imported (not inside functions).
    """
    mods = modules()
    path = mods[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    if top_level_only:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                skip.update(id(n) for n in ast.walk(node))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[:len(package) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in mods else base, node.lineno))
    return tuple((name, line) for name, line in found if name == "cogumi" or name.startswith("cogumi."))


def unit(module: str) -> str:
    """The unit a module belongs to (see the module docstring)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "cogumi"
    if len(parts) == 3 and parts[2] == "commands":
        return "cli"
    if module == "cogumi.config" or (len(parts) == 3 and parts[2] == "config"):
        return "config"
    return parts[1]


def layer(name: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if name in units)


def cross_unit_imports() -> list[tuple[str, str, str, str, int]]:
    """(from unit, to unit, from module, imported module, line) for every import between units."""
    rows = []
    for module in modules():
        for target, line in imports(module):
            a, b = unit(module), unit(target)
            if a != b and b != "cogumi":
                rows.append((a, b, module, target, line))
    return rows


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer():
    missing = {unit(m) for m in modules()} - set().union(*LAYERS) - {"cogumi"}
    assert not missing, f"add {sorted(missing)} to LAYERS in this test (and to docs of the layering)"


def test_no_import_goes_up_a_layer_or_sideways_between_phases():
    bad, seen_pairs = [], set()
    for a, b, module, target, line in cross_unit_imports():
        if layer(a) < layer(b):
            bad.append(f"{module}:{line} imports {target} ({a} is below {b})")
        elif a in PHASES and b in PHASES:
            seen_pairs.add((a, b))
            if (a, b) not in PHASE_TO_PHASE:
                bad.append(f"{module}:{line} imports {target} (phase {a} -> phase {b} is not allowed)")
    assert not bad, "\n".join(bad)
    stale = PHASE_TO_PHASE - seen_pairs
    assert not stale, f"no import left for {sorted(stale)}: remove them from PHASE_TO_PHASE"


def test_no_import_cycles_between_units_or_modules():
    units: dict[str, set[str]] = defaultdict(set)
    for a, b, *_ in cross_unit_imports():
        units[a].add(b)
    assert cycles(units) == []
    # Modules, counting only the imports that run at import time (plus each module's parent
    # packages, whose __init__ runs first): a cycle here depends on import order.
    graph: dict[str, set[str]] = defaultdict(set)
    for module in modules():
        for target, _ in imports(module, top_level_only=True):
            parts = target.split(".")
            graph[module].update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    graph = {m: {t for t in ts if t != m} for m, ts in graph.items()}
    assert cycles(graph) == []


def test_only_the_cli_tree_imports_the_cli_and_phase_commands_use_only_its_leaf():
    bad = []
    for module in modules():
        for target, line in imports(module):
            if target != "cogumi.cli" and not target.startswith("cogumi.cli."):
                continue
            if module.startswith("cogumi.cli"):
                continue
            if module == "cogumi.__main__" and target == "cogumi.cli.application":
                continue
            if module.endswith(".commands") and target == "cogumi.cli.options":
                continue
            bad.append(f"{module}:{line} imports {target}")
    assert not bad, "\n".join(bad)
    assert "cogumi.cli.options" in {t for t, _ in imports("cogumi.curate.commands")}
    assert {unit(t) for t, _ in imports("cogumi.cli.options")} <= {"config", "errors"}, "options must stay a leaf"


def test_route_owns_the_routing_contract_and_never_imports_serve():
    into_serve = [(m, t, line) for m in modules() if m.startswith("cogumi.route")
                  for t, line in imports(m) if t.startswith("cogumi.serve")]
    assert into_serve == []
    assert "cogumi.serve.routing" not in modules()
    assert "cogumi.route.contract" in {t for t, _ in imports("cogumi.serve.service")}


def test_no_project_module_is_imported_by_name_at_run_time():
    bad = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "__import__")
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("cogumi")):
                bad.append(f"{module}:{node.lineno}")
    assert not bad, bad
