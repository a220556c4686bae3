"""The import contract: eventlake's layers point one way, and no import goes in a circle.

Every module of eventlake/ (and of flows/, installed as `eventlake.flows`) is parsed and each
import it makes of eventlake is counted: at module level, inside functions and under
`TYPE_CHECKING` alike, since a deferred import is still a dependency. The modules group into
these units (one unit per subpackage; every top-level module is a unit of its own):

    model      event schema and limits, the strict JSON codec,
               actions, view definitions, log layouts            pure, no I/O
    validate   event batch checks, payload screen                pure
    fold       reducer and aggregate folds                       pure
    store      Storage/Snapshot, Delta log readers and writer, data files, EventLog,
               ViewStore, storage options and failures, `LakeParts`
    engine     materialize (refresh, rebuild, state reads), relayout
    ops        doctor, verify, restore, maintenance
    query      SQL over a lake, the DuckDB shell's init file
    ingest     inbox file readers, landing files
    cli        the command line                                  flows  eventlake.flows

and the rules are:

1. No cycle between units (a unit may import itself: modules of one package).
2. Every unit imports only the units its row of `ALLOWED` names. Any unit may import the
   foundation: `errors` and `_version`. In short: `model` imports nothing else; `validate`
   only `model`; `fold` only `model` (a fold decodes payload text with the model's strict
   codec, as validation does); `store` only `model` and `_settings` (it writes the model's
   event schema and batch type, and never checks input); `engine` uses `store`, `fold` and
   `model` (it folds what was checked at append); `ops`, `query` and `ingest` may use
   `engine` and everything below it, not each other.
3. Nothing below the facade imports `lake` (nor the package root `eventlake`, whose lazy
   names reach everything): the layers take `store.parts.LakeParts`, a Protocol `Lake`
   satisfies. Only the facade modules (`__init__`, `repository`, `config`, `bench` with its
   part `_bench_scaling`), `cli` and `flows` import `lake`.
4. The public re-export modules (`eventlake.actions`, `.views`, `.layout`, `.jsoncodec`,
   `.files`, `.events`: names README and DESIGN use) import only the module they re-export,
   and re-export the very same objects.
5. Every subpackage of eventlake/ has a row in `ALLOWED`: a new package states its layer.
"""

from __future__ import annotations

import ast
import importlib
import itertools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS = ("model", "validate", "fold", "store", "engine", "ops", "query", "ingest")
FOUNDATION = {"errors", "_version"}
FACADE = {"__init__", "__main__", "lake", "repository", "config", "bench"}
# A private top-level module that belongs to a public one: `bench` runs the scaling cases and
# they use its timing helpers, one unit in two files (kept apart for length).
PART_OF = {"_bench_scaling": "bench"}
SHIMS = {"actions": "model.actions", "views": "model.views", "layout": "model.layout",
         "jsoncodec": "model.jsoncodec", "files": "ingest.files",
         "events": "validate.events"}

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "_settings": set(),
    # Lazy package names (`__getattr__` of `eventlake` and `eventlake.flows`).
    "_lazy": set(),
    "model": set(),
    "validate": {"model"},
    "fold": {"model"},
    "store": {"model", "_settings"},
    "engine": {"store", "fold", "model"},
    "ops": {"engine", "store", "fold", "validate", "model"},
    "query": {"engine", "store", "fold", "validate", "model"},
    "ingest": {"engine", "store", "fold", "validate", "model"},
    # The facade and the applications on top may use every layer.
    "lake": {*LAYERS, "_settings"},
    "repository": {*LAYERS, "lake"},
    "config": {*LAYERS, "_settings", "lake"},
    "bench": {*LAYERS, "__init__", "lake"},
    "__init__": {*LAYERS, "_lazy", "lake", "repository"},
    "__main__": {"cli"},
    "cli": {*LAYERS, "__init__", "_settings", "lake", "repository", "config", "bench"},
    "flows": {*LAYERS, "__init__", "_lazy", "_settings", "lake", "repository", "config"},
    **{shim: {target.split(".")[0]} for shim, target in SHIMS.items()},
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for eventlake/ and flows/ (as `eventlake.flows`)."""
    found: dict[str, Path] = {}
    for folder, package in ((REPO / "eventlake", "eventlake"), (REPO / "flows", "eventlake.flows")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def unit_of(module: str) -> str:
    """The unit a module belongs to: its subpackage, or itself for a top-level module."""
    parts = module.split(".")
    unit = "__init__" if parts == ["eventlake"] else parts[1]
    return PART_OF.get(unit, unit)


def imports_of(module: str, path: Path) -> set[str]:
    """The eventlake modules `module` imports anywhere in its file (functions and
    `TYPE_CHECKING` blocks included); `from package import name` counts the submodule
    `package.name` when there is one, else the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names
                      if alias.name.split(".")[0] == "eventlake"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "eventlake":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return found - {module}


def unit_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the `module -> module` imports behind that edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path in MODULES.items():
        unit = unit_of(module)
        edges = graph.setdefault(unit, {})
        for imported in sorted(imports_of(module, path)):
            target = unit_of(imported)
            if target != unit:
                edges.setdefault(target, []).append(f"{module} -> {imported}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the unit graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_every_layer_and_deferred_imports():
    # Guards the contract itself: a parser that missed function-level or TYPE_CHECKING
    # imports would pass every rule below vacuously.
    graph = unit_graph()
    assert set(LAYERS) <= set(graph)
    assert "lake" in graph["__init__"]            # TYPE_CHECKING and lazy imports
    assert "ops" in graph["lake"]                 # imports inside Lake's methods
    assert "store" in graph["engine"] and "fold" in graph["engine"]


def test_no_cycle_between_units():
    graph = unit_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} -> {b}: {graph[a][b][0]}" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle between units " + " -> ".join(cycle) + "\n  "
                    + "\n  ".join(steps))


def test_every_unit_imports_only_what_its_layer_allows():
    graph = unit_graph()
    unknown = sorted(set(graph) - set(ALLOWED))
    assert not unknown, f"give these units a row in ALLOWED (which layer are they?): {unknown}"
    wrong = [f"{unit} may not import {target}: {edge}"
             for unit, edges in sorted(graph.items())
             for target, found in sorted(edges.items())
             if target not in ALLOWED[unit] | FOUNDATION
             for edge in found]
    assert not wrong, "imports against the layers:\n  " + "\n  ".join(wrong)


def test_nothing_below_the_facade_imports_it():
    graph = unit_graph()
    upward = [edge for unit, edges in sorted(graph.items()) if unit in LAYERS
              for target in ("lake", "__init__", "repository", "config", "cli", "flows")
              for edge in edges.get(target, [])]
    assert not upward, "the layers take store.parts.LakeParts, not the facade:\n  " + (
        "\n  ".join(upward))
    importers = {unit for unit, edges in graph.items() if "lake" in edges}
    assert importers <= FACADE | {"cli", "flows"}, importers


def test_every_package_folder_has_a_layer():
    folders = {p.name for p in (REPO / "eventlake").iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - {"cli"} == set(LAYERS)


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_public_module_names_re_export_their_layer(shim):
    public = importlib.import_module(f"eventlake.{shim}")
    real = importlib.import_module(f"eventlake.{SHIMS[shim]}")
    assert set(public.__all__) == set(real.__all__)
    for name in public.__all__:
        assert getattr(public, name) is getattr(real, name), name
    assert imports_of(f"eventlake.{shim}", MODULES[f"eventlake.{shim}"]) == {
        f"eventlake.{SHIMS[shim]}"}


def test_the_former_codec_path_re_exports_the_model_codec():
    # `eventlake.validate.jsoncodec` was the codec's home before it moved to the model; the
    # callers still importing it get the very same functions, not a second codec.
    former = importlib.import_module("eventlake.validate.jsoncodec")
    codec = importlib.import_module("eventlake.model.jsoncodec")
    assert former.__all__ == codec.__all__
    for name in codec.__all__:
        assert getattr(former, name) is getattr(codec, name), name


def test_the_planted_violation_is_caught(tmp_path, monkeypatch):
    # The contract must be able to fail: a store module that takes `Lake` back (the cycle
    # this layout removed) is reported both as an upward import and as a cycle.
    planted = tmp_path / "planted.py"
    planted.write_text("from typing import TYPE_CHECKING\n"
                       "if TYPE_CHECKING:\n    from eventlake.lake import Lake\n")
    monkeypatch.setitem(MODULES, "eventlake.store.planted", planted)
    with pytest.raises(AssertionError, match=r"eventlake\.store\.planted -> eventlake\.lake"):
        test_nothing_below_the_facade_imports_it()
    with pytest.raises(pytest.fail.Exception, match="store"):
        test_no_cycle_between_units()


def test_the_tests_mirror_the_packages():
    # A layer's tests live in tests/<layer>/ (cli and flows likewise); the tests of the facade
    # and of what crosses every layer (exactness, hostile input, reliability, the README) stay
    # in tests/ itself. A test folder named for no package is a layout nobody can find.
    tests = REPO / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders - {"benchmarks"} == {*LAYERS, "cli", "flows"}
    for folder in folders:
        assert (tests / folder / "__init__.py").exists(), folder
