"""Temperature scaling (issue 19): ECE and NLL before and after, on images the temperature never saw.

Every run is a real honed run (``honed.train``): EfficientNet-Lite0 with its pip-shipped ImageNet weights, a
probe (frozen features, logistic regression) and a short head run (frozen backbone, linear head trained a few
epochs), at 112 px. The run fits its temperature on its validation split at the end of training
(``calibration.json``); this script applies it to the run's saved test predictions and scores both.

    python benchmarks/bench_calibration.py                      # results_calibration.md
    python benchmarks/bench_calibration.py --only hymenoptera   # one set

Sets (benchmarks/photo_splits.py): hymenoptera (2 classes, ~90 train / 30 val per class, 153 test photos),
flowers (5 classes, 60 train / 30 val / 40 test per class), CIFAR-10 JPEGs (10 classes, 50 / 30 / 50 per
class, 32 px photos upsampled). CPU only; the load average is written beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_splits import SETS, build  # noqa: E402
from honed.combine.calibration import (apply_temperature, expected_calibration_error,  # noqa: E402
                                       negative_log_likelihood, table_outputs)
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig  # noqa: E402
from honed.training.fit import train  # noqa: E402

MODEL, SIZE, HEAD_EPOCHS = "tf_efficientnet_lite0", 112, 4


def run_one(data: Path, strategy: str, work: Path, name: str) -> dict:
    config = RunConfig(name=name, workspace=str(work / "runs"), data=DataConfig(source=str(data)),
                       model=ModelConfig(name=MODEL, pretrained=True, strategy=strategy),
                       preprocess=PreprocessConfig(image_size=SIZE),
                       train=TrainConfig(epochs=HEAD_EPOCHS if strategy == "head" else 1, batch_size=32, lr=1e-3,
                                         workers=0, seed=0))
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config)
    seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    facts = json.loads((result.run_dir / "calibration.json").read_text())
    classes = json.loads((result.run_dir / "labels.json").read_text())["classes"]
    probs, targets = table_outputs(pd.read_parquet(result.run_dir / "predictions_test.parquet"), classes)
    after = apply_temperature(probs, facts["temperature"])
    return {"temperature": facts["temperature"], "val_images": facts["images"], "test_images": len(targets),
            "val_ece": [facts["ece_before"], facts["ece_after"]], "val_nll": [facts["nll_before"], facts["nll_after"]],
            "test_ece": [expected_calibration_error(probs, targets), expected_calibration_error(after, targets)],
            "test_nll": [negative_log_likelihood(probs, targets), negative_log_likelihood(after, targets)],
            "test_accuracy": [float((probs.argmax(1) == targets).mean()), float((after.argmax(1) == targets).mean())],
            "seconds": seconds, "cpu_seconds": cpu_s, "load": os.getloadavg()[0]}


def report(results: dict, command: str) -> str:
    rows = ["| set | run | T | test acc raw -> calibrated | test ECE before -> after | test NLL before -> after | "
            "val ECE before -> after | val NLL before -> after | CPU s (load) |", "|" + "---|" * 9]
    for key, r in results.items():
        rows.append(f"| {key.split('/')[0]} | {key.split('/')[1]} | {r['temperature']:.2f} | "
                    f"{100 * r['test_accuracy'][0]:.1f} -> {100 * r['test_accuracy'][1]:.1f} | "
                    f"{r['test_ece'][0]:.3f} -> {r['test_ece'][1]:.3f} | {r['test_nll'][0]:.3f} -> {r['test_nll'][1]:.3f} | "
                    f"{r['val_ece'][0]:.3f} -> {r['val_ece'][1]:.3f} | {r['val_nll'][0]:.3f} -> {r['val_nll'][1]:.3f} | "
                    f"{r['cpu_seconds']:.0f} ({r['load']:.1f}) |")
    return "\n".join([
        "# Calibration: temperature scaling before and after (CPU)", "",
        f"`{command}`. {MODEL} with its pip-shipped ImageNet weights at {SIZE} px; `probe`: frozen features and "
        f"logistic regression; `head`: frozen backbone, linear head trained {HEAD_EPOCHS} epochs (AdamW, lr 1e-3). "
        "Each run fits its temperature T on its validation split (LBFGS on the NLL, honed.combine.calibration); "
        "the test columns apply it to the run's test predictions, which the fit never saw. ECE: 15 equal-width "
        "confidence bins. The accuracy columns are the same by construction (T > 0 keeps every row's argmax), "
        "measured anyway. CPU s: the run's process CPU time, with the 1-minute load average of the shared 2-core "
        "machine when it ended; one feature cache serves the whole benchmark, so a head run may reuse the features "
        "its probe extracted (its CPU seconds are then mostly the head's training).", "",
        *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/honed-bench-calibration"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_calibration.md"))
    parser.add_argument("--only", default="", help="comma-separated sets: " + ", ".join(SETS))
    parser.add_argument("--strategies", default="probe,head")
    args = parser.parse_args()
    store = args.work / "results.json"
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(store.read_text()) if store.exists() else {}
    for name in [n for n in SETS if not args.only or n in args.only.split(",")]:
        data = build(name, args.work / "data")
        for strategy in args.strategies.split(","):
            key = f"{name}/{strategy}"
            if key not in results:
                os.environ["HONED_CACHE"] = str(args.work / "cache")
                results[key] = run_one(data, strategy, args.work, f"{name}-{strategy}")
                store.write_text(json.dumps(results, indent=1))
                print(key, json.dumps(results[key]), flush=True)
    command = "python benchmarks/bench_calibration.py" + (f" --only {args.only}" if args.only else "")
    args.out.write_text(report(results, command))


if __name__ == "__main__":
    main()
