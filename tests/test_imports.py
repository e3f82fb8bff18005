"""The package's import graph has no cycle, and the CLI starts without torch.

The graph is read with `ast` from the source: every `import` and `from ... import` (absolute or
relative, at module level or inside a function) of a kcircuits module is an edge to the most
specific kcircuits module it names (`from .x import y`: module x.y if it exists, else x).
"""
from __future__ import annotations

import ast
import re
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
    assert importers <= {"kcircuits.__main__", "kcircuits.worker"}  # the entry point, and the worker running its jobs


def test_the_cli_starts_without_torch():
    code = "import sys; from kcircuits.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- studies are plugins: the core never reaches them, and no study reaches another ------------------
def study_of(module: str) -> str | None:
    """'kcircuits.studies.memory.train' -> 'memory'; None for the core (and for the registry itself)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "studies" else None


def study_crossings(graph: dict[str, set[str]]) -> list[str]:
    """Every import edge from the core into a study, or from one study into another."""
    found = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            target, source = study_of(dep), study_of(module)
            if target is not None and source != target:
                found.append(f"{module} imports {dep}")
    return found


def test_study_crossings_on_a_hand_made_package(tmp_path):
    pkg = tmp_path / "kcircuits"
    for folder in ("studies/a", "studies/b", "core"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "studies" / "__init__.py").write_text("")
    (pkg / "core" / "x.py").write_text("def f():\n    from ..studies.a import y\n")  # inside a function
    (pkg / "studies" / "a" / "y.py").write_text("from ...core import x\nfrom . import z\n")
    (pkg / "studies" / "a" / "z.py").write_text("")
    (pkg / "studies" / "b" / "w.py").write_text("from ..a import y\n")
    assert study_crossings(import_graph(pkg)) == ["kcircuits.core.x imports kcircuits.studies.a.y",
                                                  "kcircuits.studies.b.w imports kcircuits.studies.a.y"]


def test_the_core_never_imports_a_study_and_no_study_imports_another():
    graph = import_graph()
    assert any(study_of(m) for m in graph)  # the studies were read
    assert study_crossings(graph) == []


def core_naming(root: Path, names: list[str]) -> list[str]:
    """Files of the core (package outside studies/, rules/, the Snakefile) that name a study's module or
    folder (studies.NAME, studies/NAME): the core reaches a study only through the registry."""
    package = root / "workflow" / "kcircuits"
    core = [p for p in package.rglob("*.py") if "studies" not in p.relative_to(package).parts]
    core += [*sorted((root / "rules").glob("*.smk")), root / "Snakefile"]
    pattern = re.compile(r"studies[./](" + "|".join(map(re.escape, names)) + r")\b")
    return [str(p.relative_to(root)) for p in core if p.is_file() and pattern.search(p.read_text(encoding="utf-8"))]


def test_core_naming_is_caught(tmp_path):
    (tmp_path / "workflow" / "kcircuits" / "studies" / "toy").mkdir(parents=True)
    (tmp_path / "rules").mkdir()
    (tmp_path / "workflow" / "kcircuits" / "studies" / "toy" / "x.py").write_text("import kcircuits.studies.toy\n")
    (tmp_path / "workflow" / "kcircuits" / "cli.py").write_text("from .studies import STUDIES\n")
    (tmp_path / "rules" / "a.smk").write_text('include: "../workflow/kcircuits/studies/toy/rules.smk"\n')
    (tmp_path / "Snakefile").write_text("")
    assert core_naming(tmp_path, ["toy"]) == ["rules/a.smk"]


def test_the_core_names_no_study():
    from kcircuits.studies import STUDIES

    assert STUDIES and core_naming(PACKAGE.parents[1], list(STUDIES)) == []
