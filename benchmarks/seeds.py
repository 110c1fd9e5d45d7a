"""Repeated cells of the transfer benchmarks: one result per training seed, shown as their mean and spread.

A cell's first seed (0) is stored under the strategy's name, as before seeds were repeated, so older
results files still read; seed k > 0 under ``"<strategy>@seed<k>"``. The data, its split and the test set
stay fixed: the seeds vary only the run (head initialization, batch order, augmentation).
"""

from __future__ import annotations

import statistics


def seed_key(cell: str, seed: int) -> str:
    return cell if seed == 0 else f"{cell}@seed{seed}"


def seed_runs(cells: dict, cell: str) -> list[dict]:
    """Every seed's result of one cell, seed 0 first."""
    return [cells[k] for k in sorted(cells, key=lambda k: (k != cell, k))
            if k == cell or k.startswith(f"{cell}@seed")]


def mean_accuracy(cells: dict, cell: str) -> float:
    return statistics.fmean(r["test_accuracy"] for r in seed_runs(cells, cell))


def accuracy_text(cells: dict, cell: str) -> str:
    """'71.8' for one seed; '71.8 ±1.2 (n=3)' (mean, sample standard deviation) for several, in %."""
    scores = [100 * r["test_accuracy"] for r in seed_runs(cells, cell)]
    if len(scores) == 1:
        return f"{scores[0]:.1f}"
    return f"{statistics.fmean(scores):.1f} ±{statistics.stdev(scores):.1f} (n={len(scores)})"
