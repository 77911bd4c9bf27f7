"""The shape of buildtools/: imports point down the layers, no cycle, one home per fact.

The import graph is read from the source (``ast``), function-local imports included; only
``if TYPE_CHECKING:`` blocks are left out (they never run). See docs/architecture.md.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "buildtools"

# Lower layers first; a module may import its own layer or the ones before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "model", "versions", "util"),
    ("cache", "detect", "cmake"),
    ("settings",),
    ("plan", "torchenv"),
    ("plugins",),
    ("session",),
    ("run", "checks"),
    ("backend", "cli", "__main__"),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str], name: str | None = None) -> set[str]:
    """The buildtools modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_down_the_layers() -> None:
    graph = _graph()
    unknown = sorted({_layer(m) for m in graph} - set(RANK) - {None})
    assert unknown == [], f"add these to LAYERS (and docs/architecture.md): {unknown}"
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in targets
              if _layer(m) and _layer(t) and RANK[_layer(t)] > RANK[_layer(m)]]
    assert upward == []


def test_import_graph_sees_function_local_imports(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from buildtools import session\n"
                   "def f():\n    from buildtools.run import build\n")
    seen = _imports(src, {"buildtools.session", "buildtools.run.build", "buildtools.run"}, "buildtools.checks.x")
    assert seen == {"buildtools.run", "buildtools.run.build"}


def test_commands_live_in_cli_only() -> None:
    assert [p for p in PKG.rglob("*_cmd.py")] == []


def test_no_module_over_the_size_limit() -> None:
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


# Variables that are overrides only (NVCC_THREADS, TORCH_CUDA_ARCH_LIST and CMAKE_BUILD_TYPE are also
# CMake cache variables, which the platforms and presets rightly name).
@pytest.mark.parametrize("name", ["MAX_JOBS", "KERNLOOP_RAM_BUDGET", "KERNLOOP_REMOTE_CACHE",
                                  "KERNLOOP_REMOTE_CACHE_MODE", "KERNLOOP_ENABLE_CUDA_NOT_A_SETTING"])
def test_each_override_variable_is_named_in_one_module(name: str) -> None:
    if name.endswith("_NOT_A_SETTING"):  # the check itself can fail
        assert not any(re.search(rf"\b{name}\b", p.read_text()) for p in PKG.rglob("*.py"))
        return
    homes = sorted(str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if re.search(rf"\b{name}\b", p.read_text()))
    assert homes == ["buildtools/settings/overrides.py"]


@pytest.mark.parametrize("pattern", [r"cmake-build-\{", r"4\.12\.3|4, 12, 3", r"3\.26|3, 26"])
def test_each_fact_is_written_once(pattern: str) -> None:
    homes = sorted(str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if re.search(pattern, p.read_text()))
    assert len(homes) == 1, homes


def _readme_rows(heading: str) -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|")]
    return rows[2:]  # past the header and its rule


def test_readme_override_table_is_the_settings_table() -> None:
    from buildtools.settings import OVERRIDES

    rows = _readme_rows("## Overrides")
    assert [r[0] for r in rows] == [s.what for s in OVERRIDES]
    for row, s in zip(rows, OVERRIDES):
        assert f"`{s.env}`" in row[2], (s.env, row)
        if s.commands:
            assert row[1].startswith(f"`{s.flag} ") and f"({', '.join(s.commands)})" in row[1], (s.flag, row)
        else:
            assert row[1] == "–", (s.flag, row)


def test_readme_config_table_is_the_pyproject_model() -> None:
    from buildtools.settings import CONFIG_KEYS

    keys = [k.strip("` ") for r in _readme_rows("## Configuration") for k in r[0].split(",")]
    assert sorted(keys) == sorted(CONFIG_KEYS)


def test_wheel_dependencies_are_what_kernloop_imports() -> None:
    import sys
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    third_party = set()
    for path in (ROOT / "kernloop").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            third_party |= {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"kernloop"}
    assert third_party == {"torch"}  # torch is deliberately undeclared: pip must not replace the build's torch
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert declared == []


def test_test_modules_have_unique_basenames() -> None:
    # pytest (rootdir conftest, no packages) imports test modules by basename: two of one name
    # in different folders stop the whole run at collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
