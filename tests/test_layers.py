"""fairser's import graph (grimp, the graph import-linter reads) runs one way: no cycle, nothing
imports the console, the engine knows no task, and every import points down the layers of
pyproject.toml's import-linter contract (which `lint-imports` also checks in CI)."""

import graphlib
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    """module -> the fairser modules it imports directly (anywhere in its file, lazily too)."""
    graph = grimp.build_graph("fairser", cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def contract_layers() -> list[list[str]]:
    """pyproject.toml's layers contract, top first: each layer's modules, full names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    (container,) = contract["containers"]
    return [[f"{container}.{name.strip()}" for name in layer.split("|")] for layer in contract["layers"]]


def cycle(imports: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    try:
        tuple(graphlib.TopologicalSorter(imports).static_order())
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_no_module_imports_the_console(imports):
    assert sorted(m for m, deps in imports.items() if "fairser.cli" in deps) == []


def test_the_engine_imports_no_task_module_even_indirectly(imports):
    reach, todo = set(), ["fairser.engine"]
    while todo:
        for dep in imports[todo.pop()] - reach:
            reach.add(dep)
            todo.append(dep)
    assert reach == {"fairser.errors"}


def test_the_import_graph_has_no_cycle(imports):
    assert cycle(imports) is None


def test_the_contract_names_every_module(imports):
    named = {m for layer in contract_layers() for m in layer}
    assert len(named) == sum(len(layer) for layer in contract_layers())  # each in one layer only
    unplaced = [m for m in imports if m != "fairser" and not any(
        m == n or m.startswith(n + ".") for n in named)]
    assert unplaced == []


def test_every_import_points_down_the_contract_layers(imports):
    place = {}
    for depth, layer in enumerate(contract_layers()):
        for name in layer:
            place[name] = depth

    def where(module):
        while module not in place:
            module = module.rpartition(".")[0]
        return place[module], module

    def bad(graph):
        out = []
        for m, deps in graph.items():
            if m == "fairser":
                continue
            (d, name) = where(m)
            for dep in deps:
                d_dep, dep_name = where(dep)
                if d_dep < d or (d_dep == d and dep_name != name):  # upward, or across a `|`
                    out.append(f"{m} -> {dep}")
        return sorted(out)

    assert bad(imports) == []
