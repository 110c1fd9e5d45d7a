"""The training package sits below the advisor, the ensembles and the analyses: it imports none of them,
not even inside a function (``strategy: auto`` is resolved by ``honed.advise.auto`` before training)."""

from __future__ import annotations

import ast
from pathlib import Path

import honed.training

ABOVE = ("honed.advise", "honed.ensemble", "honed.analyze")


def test_training_imports_nothing_above_it():
    found = []
    for path in Path(honed.training.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [f"{path.name}: {n}" for n in names if n.startswith(ABOVE)]
    assert not found
