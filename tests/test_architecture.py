"""The architecture as tests: the layers hold (import-linter), no two first-level packages import each other
even through imports inside functions, serving and prediction load no training code, modules stay small.

docs/architecture.md describes the layers these tests enforce; .importlinter states them.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import grimp

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT,  # reads .importlinter in the root
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _package_graph() -> dict[str, set[str]]:
    """First-level package -> the first-level packages it imports, counting every import in every function."""
    graph = grimp.build_graph("honed", cache_dir=None)
    packages = sorted(graph.find_children("honed"))
    edges: dict[str, set[str]] = {p: set() for p in packages}
    for importer in packages:
        for imported in packages:
            if importer != imported and graph.direct_import_exists(
                    importer=importer, imported=imported, as_packages=True):
                edges[importer].add(imported)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    def reach(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reachable = {p: reach(p) for p in edges}
    return sorted({tuple(sorted((a, b))) for a in edges for b in reachable[a] if a != b and a in reachable[b]})


def test_no_cycle_between_first_level_packages():
    edges = _package_graph()
    assert "honed.training" in edges and edges["honed.training"], "the graph must see honed's imports"
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_serving_and_prediction_load_no_training_code():
    # one fresh interpreter for all: if together they load nothing of the practice, none of them does alone
    code = ("import sys, honed.serve.app, honed.predict, honed.export, honed.artifacts.trained\n"
            "print(sorted(m for m in sys.modules if m.startswith(('honed.training', 'honed.advise', "
            "'honed.analyze', 'honed.ensemble', 'honed.search', 'honed.workflow'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"serving and prediction loaded {result.stdout.strip()}"


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "honed").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
