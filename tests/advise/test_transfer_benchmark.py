"""The transfer experiment (benchmarks/bench_transfer.py) at CI size: every strategy on 20 shipped CIFAR photos
per class with the real ImageNet EfficientNet-Lite0, the table written, the advisor's pick scored."""

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_transfer.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_transfer", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_strategy_runs_and_pretraining_beats_scratch(cifar_mini, tmp_path, monkeypatch, one_thread):
    bench = _bench()
    monkeypatch.setattr(bench, "DATASETS", {"cifar-20": ("cifar", 20, 64, 2)})
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results.md"
    monkeypatch.setattr(sys, "argv", ["bench_transfer.py", "--cifar", str(cifar_mini), "--work",
                                      str(tmp_path / "work"), "--out", str(out)])
    bench.main()

    cells = json.loads((tmp_path / "work" / "results.json").read_text())["cifar-20"]
    assert set(cells) == {"advisor", *bench.STRATEGIES}
    accuracy = {s: cells[s]["test_accuracy"] for s in bench.STRATEGIES}
    # ImageNet features on photos: the frozen-feature probe is far above chance (0.1) and above a network
    # trained from random weights on the same 200 images (measured: probe ~0.5, scratch ~0.1)
    assert accuracy["probe"] > accuracy["scratch"] + 0.15, accuracy
    assert cells["advisor"]["gain"] > 0.15 and cells["advisor"]["per_class_min"] == 20
    table = out.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| cifar-20 |"))
    assert f"{100 * accuracy['probe']:.1f}" in row and "| probe |" in row  # the advisor picks the probe at 20
