"""The import structure of ``otp`` and ``exesdb``: no cycles, and no upward imports.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` and ``from
... import`` of a module counts, at module level or inside a function (a delayed import
that dodges a cycle is still a cycle), except those under ``if TYPE_CHECKING:``. An
import of a package's submodule is an edge to that submodule; the package's own
``__init__`` runs first at run time, but is not counted, as import linters do.

The layers are those stated in ``exesdb/__init__.py``'s docstring.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("otp", "exesdb")

EXESDB_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("values", ("exesdb.constants", "exesdb.errors", "exesdb.events", "exesdb.options",
                "exesdb.naming", "exesdb.validation", "exesdb.payload",
                "exesdb.subscriptions")),
    ("storage", ("exesdb.storage",)),
    ("systems", ("exesdb.systems",)),
    ("API", ("exesdb.gateway",)),
    ("front ends", ("exesdb.grpc", "exesdb.http", "exesdb.stores", "exesdb.application",
                    "exesdb.cli", "exesdb.__main__", "exesdb.devcluster", "exesdb.pgserver",
                    "exesdb.logins",
                    "exesdb.oplog")),
]


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (generated protobuf code excluded)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "protos" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, descending into functions, skipping TYPE_CHECKING blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The modules (of ``modules``, or outside them) that ``name`` imports."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            out.add(sub if sub in known else source)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``otp`` and ``exesdb`` it imports."""
    files = module_files()
    return {name: {m for m in imports_of(name, path, files) if m in files}
            for name, path in files.items()}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        path = [start]
        iters = [iter(sorted(graph[start]))]
        colour[start] = GREY
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iters.pop()
                continue
            if colour.get(nxt, BLACK) == GREY:
                return [*path[path.index(nxt):], nxt]
            if colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def layer_of(module: str) -> int | None:
    """The index of ``module``'s exesdb layer; None for the package ``exesdb`` itself,
    which re-exports from every layer, and for modules outside exesdb."""
    for index, (_, prefixes) in enumerate(EXESDB_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every import of a higher layer by a lower one (the package ``exesdb`` itself counts
    as the top: nothing inside it may import it)."""
    bad = []
    top = len(EXESDB_LAYERS)
    for module, targets in sorted(graph.items()):
        mine = layer_of(module)
        if mine is None:
            continue
        for target in sorted(targets):
            theirs = top if target == "exesdb" else layer_of(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} ({EXESDB_LAYERS[mine][0]}) imports {target}")
    return bad


# -- the rules ---------------------------------------------------------------------------


def test_every_exesdb_module_has_a_layer():
    unplaced = [m for m in module_files() if m.startswith("exesdb.") and layer_of(m) is None]
    assert unplaced == []


def test_otp_and_exesdb_import_no_cycle():
    assert find_cycle(import_graph()) is None


def test_no_exesdb_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_otp_never_imports_exesdb():
    files = module_files()
    offenders = sorted(
        name for name, path in files.items() if name.split(".")[0] == "otp"
        and any(m.split(".")[0] == "exesdb" for m in imports_of(name, path, files)))
    assert offenders == []


def test_exesdb_imports_no_private_otp_module():
    files = module_files()
    offenders = sorted(
        f"{name} imports {m}" for name, path in files.items() if name.startswith("exesdb")
        for m in imports_of(name, path, files)
        if m.startswith("otp.") and any(part.startswith("_") for part in m.split(".")))
    assert offenders == []


def test_the_layers_are_those_the_package_docstring_states():
    import exesdb

    doc = exesdb.__doc__ or ""
    positions = [doc.index(f"**{layer}**") for layer, _ in EXESDB_LAYERS]
    assert positions == sorted(positions)


# -- the checker itself ------------------------------------------------------------------


@pytest.mark.parametrize("graph", [
    {"a": {"b"}, "b": {"a"}},
    {"a": {"b"}, "b": {"c"}, "c": {"a"}},
    {"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": set()},
])
def test_the_cycle_check_finds_a_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert all(b in graph[a] for a, b in itertools.pairwise(cycle))


def test_the_cycle_check_passes_a_graph_without_cycle():
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_an_import_from_a_higher_layer_is_reported():
    graph = {"exesdb.events": {"exesdb.gateway"}, "exesdb.gateway": {"exesdb.events"}}
    assert upward_imports(graph) == ["exesdb.events (values) imports exesdb.gateway"]


def test_importing_the_package_itself_from_inside_is_reported():
    assert upward_imports({"exesdb.grpc.convert": {"exesdb"}}) == [
        "exesdb.grpc.convert (front ends) imports exesdb"]


def test_a_delayed_import_counts(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from .other import x\n")
    assert imports_of("pkg.mod", source, ["pkg.other"]) == {"pkg.other"}


def test_an_import_for_type_checking_only_does_not_count(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from .other import x\n")
    assert imports_of("pkg.mod", source, ["pkg.other"]) == {"typing"}
