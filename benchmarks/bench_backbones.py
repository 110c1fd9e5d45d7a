"""EfficientNet-Lite0/1/2 with their pip-shipped ImageNet weights (issue 19): what a probe and a partial
fine-tune reach on real photos, at what CPU cost, and what ``honed advise --compare-models`` picks.

    python benchmarks/bench_backbones.py                        # results_backbones.md

Sets (benchmarks/photo_splits.py): hymenoptera (2 classes, ~90 train / 30 val per class, 153 test photos) and
a flowers subset (5 classes, 60 train / 30 val / 40 test per class). Every model at one input size (112 px, so
the comparison is of the features, not of resolution), batch 32, seed 0; ``partial``: the last stages and the
head trained 2 epochs (AdamW, lr 1e-3), on both sets. The comparison (a 3-fold CV linear probe on 200 training images,
priced in measured ms/image) runs on the training split only; test accuracy is on the held-out folder.
CPU seconds are the process's CPU time; the machine is shared, so the 1-minute load average is beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_splits import build  # noqa: E402
from honed.advise.compare import BackboneScore, choose, compare_backbones  # noqa: E402
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig  # noqa: E402
from honed.data.prepare import prepare_data  # noqa: E402
from honed.training.fit import train  # noqa: E402

MODELS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
SETS, SIZE, EPOCHS = ("hymenoptera", "flowers"), 112, 2
PARTIAL_SETS = SETS  # partial fine-tuning on both (flowers added in a second run, when the machine was quieter)


def timed(run, cache: Path) -> dict:
    """Run one cell with its own empty feature cache, so no cell reuses another's features."""
    os.environ["HONED_CACHE"] = str(cache)
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return {**out, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "load": os.getloadavg()[0]}


def run_cell(data: Path, model: str, strategy: str, work: Path, name: str) -> dict:
    workspace = work / "runs" / f"{name}-{os.getpid()}"  # its own: a rerun never meets a killed run's folder
    config = RunConfig(name=name, workspace=str(workspace), data=DataConfig(source=str(data)),
                       model=ModelConfig(name=model, pretrained=True, strategy=strategy),
                       preprocess=PreprocessConfig(image_size=SIZE),
                       train=TrainConfig(epochs=1 if strategy == "probe" else EPOCHS, batch_size=32, lr=1e-3,
                                         workers=0, seed=0))
    result = train(config)
    return {"test_accuracy": result.metrics["test_accuracy"], "val_accuracy": result.metrics["accuracy"]}


def report(results: dict) -> str:
    lines = ["# EfficientNet-Lite0/1/2 (pip-shipped ImageNet weights) on real photos (CPU)", "",
             f"`python benchmarks/bench_backbones.py`: {SIZE} px, seed 0, probe (frozen features, logistic "
             f"regression) and partial fine-tuning ({EPOCHS} epochs); test accuracy on the held-out folder; CPU "
             "seconds of the run (feature extraction included) with the 1-minute load average of the shared "
             "2-core machine. `compare`: `honed advise DATA --compare-models` on the training split (linear probe "
             "score, measured ms/image at this size) and its choice.", "",
             "| set | model | probe test acc | probe CPU s (load) | partial test acc | partial CPU s (load) | "
             "compare: probe score | ms/image |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for data in SETS:
        compare = results.get(f"{data}/compare", {})
        scores = {s["model"]: s for s in compare.get("scores", [])}
        for model in MODELS:
            cells = [results.get(f"{data}/{model}/{s}") for s in ("probe", "partial")]
            text = [f"{100 * c['test_accuracy']:.1f} | {c['cpu_seconds']:.0f} ({c['load']:.0f})" if c else "- | -"
                    for c in cells]
            s = scores.get(model)
            lines.append(f"| {data} | {model} | {text[0]} | {text[1]} | "
                         + (f"{s['probe']:.3f} | {s['ms_per_image']:.1f} |" if s else "- | - |"))
        if compare:  # the choice recomputed from the saved scores with the current rule (honed.advise.compare)
            choice, reasons = choose([BackboneScore(**s) for s in compare["scores"]], compare["sample"])
            compare = {**compare, "choice": choice, "reasons": reasons}
            notes += [f"{data}: `--compare-models` chose **{compare['choice']}** ({compare['cpu_seconds']:.0f} CPU s"
                      f", load {compare['load']:.0f}): " + "; ".join(compare["reasons"]), ""]
    return "\n".join(lines + [""] + notes) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/honed-bench-backbones"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_backbones.md"))
    parser.add_argument("--strategies", default="probe,partial")
    parser.add_argument("--report", action="store_true", help="only rewrite the table from saved results")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store = args.work / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    if args.report:
        args.out.write_text(report(results))
        return

    def save(key: str, value: dict) -> None:
        results[key] = value
        store.write_text(json.dumps(results, indent=1))
        print(key, json.dumps(value), flush=True)

    for data_name in SETS:
        data = build(data_name, args.work / "data")
        if f"{data_name}/compare" not in results:
            manifest = prepare_data(DataConfig(source=str(data)), seed=0).manifest
            save(f"{data_name}/compare", timed(lambda: compare_backbones(manifest, MODELS, image_size=SIZE).to_dict(),
                                                    args.work / "cache" / f"{data_name}-compare"))
        for strategy in args.strategies.split(","):
            if strategy != "probe" and data_name not in PARTIAL_SETS:
                continue
            for model in MODELS:
                key = f"{data_name}/{model}/{strategy}"
                if key not in results:
                    name = f"{data_name}-{model}-{strategy}".replace("_", "-")
                    save(key, timed(lambda: run_cell(data, model, strategy, args.work, name),
                                    args.work / "cache" / name))
        args.out.write_text(report(results))
    args.out.write_text(report(results))


if __name__ == "__main__":
    main()
