"""The package's import graph has no cycle, and the CLI starts without torch.

The graph is read with `ast` from the source: every `import` and `from ... import` (absolute or
relative, at module level or inside a function) of a kcircuits module is an edge to the most
specific kcircuits module it names (`from .x import y`: module x.y if it exists, else x).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "kcircuits"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """'kcircuits.circuits.stage' -> its file; a package is its __init__.py."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The longest prefix of a dotted name that is a kcircuits module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """The kcircuits modules `module` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {_resolve(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found |= {_resolve(f"{base}.{alias.name}", modules) for alias in node.names}
    return found - {None, module}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] of the directed graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "d"}, "b": set(), "d": {"e"}, "e": {"d"}}) == ["d", "e", "d"]


def test_relative_imports_inside_functions_are_edges(tmp_path):
    pkg = tmp_path / "kcircuits"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "cli.py").write_text("from .sub import stage\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "stage.py").write_text("from .. import X\ndef f():\n    from ..cli import main\n")
    graph = import_graph(pkg)
    assert graph["kcircuits.cli"] == {"kcircuits.sub.stage"}
    assert graph["kcircuits.sub.stage"] == {"kcircuits", "kcircuits.cli"}
    assert find_cycle(graph) == ["kcircuits.cli", "kcircuits.sub.stage", "kcircuits.cli"]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "kcircuits.cli" in graph and graph["kcircuits.cli"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_nothing_imports_the_cli_but_the_entry_point():
    importers = {m for m, deps in import_graph().items() if "kcircuits.cli" in deps}
    assert importers <= {"kcircuits.__main__"}


def test_the_cli_starts_without_torch():
    code = "import sys; from kcircuits.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
