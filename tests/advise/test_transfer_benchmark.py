"""The transfer experiments at CI size, on the shipped CIFAR photos: benchmarks/bench_transfer.py (every
strategy with the real ImageNet EfficientNet-Lite0, the advisor's pick scored) and bench_pretrainer.py
(honed trains a source, exports its backbone, and every strategy transfers it to two targets)."""

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _bench(name: str = "bench_transfer"):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
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


def test_pretrainer_grid_trains_a_source_and_transfers_it_with_every_strategy(cifar_mini, tmp_path, monkeypatch,
                                                                              one_thread):
    bench = _bench("bench_pretrainer")
    for name, value in {"SIZES": (20,), "EPOCHS": {20: 2}, "SOURCE_VAL_PER_CLASS": 10, "VAL_PER_CLASS": 5,
                        "TEST_PER_CLASS": 20}.items():  # cifar_mini has 60 training and 20 test photos per class
        monkeypatch.setattr(bench, name, value)
    out, work = tmp_path / "results.md", tmp_path / "work"
    monkeypatch.setattr(sys, "argv", ["bench_pretrainer.py", "--cifar", str(cifar_mini), "--work", str(work),
                                      "--out", str(out), "--source-epochs", "1", "--source-per-class", "40",
                                      "--sizes", "20"])
    bench.main()

    results = json.loads((work / "results.json").read_text())
    backbone = Path(results["source"]["backbone"])  # written by honed's own `export --backbone-only`
    assert backbone.is_file() and results["source"]["train_per_class"] == 40
    for target in ("cifar5-9-20", "shapes-20"):
        cells = results[target]["cells"]
        assert {"advisor", *bench.STRATEGIES} <= set(cells), sorted(cells)
        assert cells["advisor"]["pretrained"] and cells["advisor"]["per_class_min"] == 20
        assert all(0.0 <= cells[s]["test_accuracy"] <= 1.0 for s in bench.STRATEGIES)
    assert {"head+source-head", "full+source-head"} <= set(results["cifar5-9-20"]["cells"])  # 5 -> 5 classes
    table = out.read_text()
    assert "| a: CIFAR dog..truck | 20 |" in table and "| b: drawn shapes | 20 |" in table
