"""Import rules of the package, read from its source with `ast` (no module is imported to check them).

Every import counts: at module level, inside functions (a function-local import is still a dependency, it
only runs later) and under `if TYPE_CHECKING:`. The rules:

- models are plain `nn.Module`s: they import no method code (`methods`, `method_table`, `core`, `funcs`);
- `export`, `report` and `viz` read what a run left on disk and import nothing from `train`;
- the package's parts (its subpackages and its top-level modules) import each other without a cycle, so each
  can be read, tested and changed with only the parts below it;
- `core` and the parts it is built from (`masking`) import neither `counting` nor `sync`: FLOPs tracking and the
  cross-rank mask check are observers attached from outside;
- no cycle even through type-only imports: the rule functions in `funcs` are typed against the small protocol in
  `masking.view`, not against `core.Masking`, so `core -> funcs` is never answered by `funcs -> core`;
- `masking` (the parts) sits below `funcs` and `core`: it imports neither.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sparselearning

PACKAGE = "sparselearning"
ROOT = Path(sparselearning.__file__).parent
METHOD_CODE = ("methods", "method_table", "core", "funcs")


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of the package."""

    importer: str  # dotted name of the importing module
    imported: str  # dotted name of the imported module (or package)
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`, never executed

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether a dotted name below the package is one of its modules or subpackages."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return False
    place = ROOT.joinpath(*parts[1:])
    return place.with_suffix(".py").is_file() or (place / "__init__.py").is_file()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The package modules an import statement loads (`from a import b` is `a.b` when `b` is a module)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if _is_module(submodule) else source


def _imports_of(path: Path) -> Iterator[Import]:
    module = _module_name(path)
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, module, is_package):
                    if target == PACKAGE or target.startswith(f"{PACKAGE}."):
                        yield Import(module, target, child.lineno, type_only)
            yield from visit(child, type_only or (isinstance(child, ast.If) and _is_type_checking(child)))

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)


def package_imports() -> list[Import]:
    """Every import of a package module by a package module."""
    return [item for path in sorted(ROOT.rglob("*.py")) for item in _imports_of(path)]


def part(module: str) -> str:
    """The subpackage or top-level module a module belongs to (`train` for `sparselearning.train.loop`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def in_part(module: str, *parts: str) -> bool:
    return part(module) in parts


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as its nodes in order, first node repeated at the end; None if acyclic."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" when fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def part_graph(imports: Iterable[Import]) -> tuple[dict[str, set[str]], dict[tuple[str, str], Import]]:
    """Edges between parts of the package, and one import that makes each edge (for messages)."""
    edges: dict[str, set[str]] = defaultdict(set)
    witness: dict[tuple[str, str], Import] = {}
    for item in imports:
        source, target = part(item.importer), part(item.imported)
        if source != target:
            edges[source].add(target)
            witness.setdefault((source, target), item)
    return edges, witness


def _describe(cycle: list[str], witness: dict[tuple[str, str], Import]) -> str:
    steps = [str(witness[(a, b)]) for a, b in itertools.pairwise(cycle)]
    return f"import cycle {' -> '.join(cycle)}: " + "; ".join(steps)


def _offending(imports: Iterable[Import], importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [str(item) for item in imports if in_part(item.importer, *importers) and in_part(item.imported, *forbidden)]


def test_the_reader_sees_every_kind_of_import() -> None:
    """The rules below are only as good as the reader: it finds function-local, relative and
    type-checking imports and resolves `from package import module` to the module."""
    found = package_imports()
    assert len({item.importer for item in found}) > 50
    assert any(item.type_only for item in found)
    # `from sparselearning import method_table` (module level) resolves to the module, not the package.
    assert any(item.importer == f"{PACKAGE}.methods" and item.imported == f"{PACKAGE}.method_table" for item in found)
    # `cli` imports the training application inside `main` only, so `report` never loads Hydra.
    assert any(item.importer == f"{PACKAGE}.cli" and item.imported == f"{PACKAGE}.train.app" for item in found)


def test_models_import_no_method_code() -> None:
    assert _offending(package_imports(), ("models",), METHOD_CODE) == []


def test_export_report_and_viz_import_nothing_from_train() -> None:
    assert _offending(package_imports(), ("export", "report", "viz"), ("train",)) == []


def test_the_parts_of_the_package_import_each_other_without_a_cycle() -> None:
    edges, witness = part_graph(item for item in package_imports() if not item.type_only)
    cycle = find_cycle(edges)
    assert cycle is None, _describe(cycle, witness)


def test_no_cycle_even_through_type_only_imports() -> None:
    edges, witness = part_graph(package_imports())
    cycle = find_cycle(edges)
    assert cycle is None, _describe(cycle, witness)


def test_core_and_its_parts_import_neither_counting_nor_sync() -> None:
    assert _offending(package_imports(), ("core", "masking"), ("counting", "sync")) == []


def test_the_parts_of_masking_sit_below_the_rules_and_the_controller() -> None:
    assert _offending(package_imports(), ("masking",), ("core", "funcs", "methods", "method_table")) == []


def test_find_cycle_names_the_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]
