"""honed as the pretrainer: train a backbone from scratch on CIFAR-10's first five classes, then transfer it.

    nice python benchmarks/bench_pretrainer.py --cifar /tmp/cifar --threads 1   # the grid (results_pretrainer.md)
    python benchmarks/bench_pretrainer.py --report                         # the table from saved results

The source run trains resnet10t from random weights on airplane, automobile, bird, cat and deer (32 px). Its
best weights (``<run>/best.safetensors``) are then the ``ModelConfig.weights`` of every transfer run, on two
targets: (a) CIFAR-10's other five classes (dog, frog, horse, ship, truck: same photos, new classes) and
(b) drawn shapes (honed.data.synthetic, any angle, size, place, with noise and blur: a different-looking
domain), at 20, 100, 500 and 1,000 training images per class. Strategies probe, head, partial, gradual
and full start from those weights; scratch trains the same network from random weights with the same
epochs, data and learning rate. The advisor (``honed.advise.probe_gain`` with the source weights, then ``decide``) measures each training
set; the table says what it would pick and how far that pick is from the best strategy.

A checkpoint's classifier head fits a new task of the same class count (5 -> 5 for target a): honed then
loads it like any other tensor and keeps it as the starting head (``reset_new_head`` zeroes only head
tensors the file does not provide). The grid therefore starts from a backbone-only copy of the source
weights (head tensors removed, as a ``--backbone-only`` export would write), so every transfer run starts
with a zero head; the extra "source head kept" cells show what loading the whole file does.

Each cell's result is saved in ``<work>/results.json`` as it finishes, so an interrupted run continues
where it stopped; ``--report`` rewrites the table (with the advisor's current rule) without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from honed.advise import decide, measure  # noqa: E402
from honed.advise.probe_gain import Measurements  # noqa: E402
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig  # noqa: E402
from honed.data.prepare import prepare_data  # noqa: E402
from honed.data.synthetic import ShapeFactors, generate_shapes  # noqa: E402
from honed.export.backbone import export_backbone, export_source_stats  # noqa: E402
from honed.models.feature_stats import stats_path  # noqa: E402
from honed.training.fit import train  # noqa: E402
from benchmarks.seeds import accuracy_text, mean_accuracy, seed_key  # noqa: E402

MODEL = "resnet10t"
SIZE = 32
SOURCE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")  # CIFAR-10 classes 0-4
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")  # CIFAR-10 classes 5-9
SOURCE_EPOCHS = 5
SOURCE_PER_CLASS = 1500  # of CIFAR's 5,000 per class: CPU time
SOURCE_VAL_PER_CLASS = 200
VAL_PER_CLASS = 20  # target validation images per class: best-epoch selection only
TEST_PER_CLASS = 200  # target test images per class: 1,000 CIFAR, 800 shapes (standard error ~1.5 points)
SIZES = (20, 100, 500, 1000)  # training images per class
EPOCHS = {20: 15, 100: 8, 500: 4, 1000: 3}  # the same for every strategy at a size; fewer as data grows (CPU time)
BATCH = 32
LR = 1e-3  # honed's default peak learning rate, every strategy: no per-strategy tuning
AUGMENT = "crop:4,hflip"  # every run, source included
STRATEGIES = ("probe", "head", "partial", "gradual", "full", "scratch")
KEPT_HEAD = ("head", "full")  # strategies also run from the whole file (source head kept) on target a
KEPT_HEAD_SIZES = (20,)
HARD_SHAPES = ShapeFactors(size=(0.3, 0.8), rotation=(0.0, 360.0), offset=(0.0, 0.2), noise=(0.0, 0.1),
                           blur=(0.0, 1.0))  # the same factors as bench_transfer.py: not trivially separable
ONE_POINT = 0.01 + 1e-9  # "within one point", safe from float rounding (0.57 - 0.58)
MEASURED = {f.name for f in dataclasses.fields(Measurements)}


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _link(folder: Path, names: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (dest / name).exists():
            (dest / name).symlink_to(folder / name)


def cifar_subset(source: Path, dest: Path, classes: tuple[str, ...], per_class: int, val: int, test: int) -> Path:
    """train/val/test folders of symlinks for ``classes``; val and train are disjoint draws from CIFAR's train
    split (smaller training sets nest in larger ones), test is the first ``test`` of its test split."""
    if (dest / "done").exists():
        return dest
    rng = np.random.default_rng(0)
    for cls in classes:
        pool = sorted(os.listdir(source / "train" / cls))
        order = rng.permutation(len(pool))
        _link(source / "train" / cls, [pool[i] for i in order[:val]], dest / "val" / cls)
        _link(source / "train" / cls, [pool[i] for i in order[val:val + per_class]], dest / "train" / cls)
        _link(source / "test" / cls, sorted(os.listdir(source / "test" / cls))[:test], dest / "test" / cls)
    (dest / "done").write_text("")
    return dest


def shapes_set(dest: Path, per_class: int) -> Path:
    if not (dest / "done").exists():
        for split, n in (("train", per_class), ("val", VAL_PER_CLASS), ("test", TEST_PER_CLASS)):
            generate_shapes(dest, n_per_class=n, size=SIZE, factors=HARD_SHAPES, split=split, write_factors=False)
        (dest / "done").write_text("")
    return dest


def config(name: str, data: Path, work: Path, *, strategy: str, weights: str, epochs: int, batch: int,
           seed: int = 0) -> RunConfig:
    return RunConfig(name=name, workspace=str(work / "runs"), data=DataConfig(source=str(data)),
                     model=ModelConfig(name=MODEL, pretrained=False, weights=weights, strategy=strategy),
                     preprocess=PreprocessConfig(image_size=SIZE),
                     train=TrainConfig(epochs=epochs, batch_size=batch, lr=LR, workers=0, seed=seed, augment=AUGMENT))


def timed(run) -> dict:
    """Wall and CPU seconds of one cell, and the load average when it ended (the cores may be shared)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return {**result, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "load": load_average()}


def pretrain(cifar: Path, work: Path, epochs: int, per_class: int) -> dict:
    """The source run: resnet10t from random weights on CIFAR-10 classes 0-4; writes the backbone-only file."""
    data = cifar_subset(cifar, work / "data" / "source", SOURCE_CLASSES, per_class, SOURCE_VAL_PER_CLASS, 1000)
    result = train(config("source", data, work, strategy="full", weights="", epochs=epochs, batch=128))
    backbone, _ = export_backbone(result.run_dir, work / "source_backbone.safetensors")  # `--backbone-only`
    export_source_stats(result.run_dir, backbone)
    return {"test_accuracy": result.metrics["test_accuracy"], "val_accuracy": result.metrics["accuracy"],
            "best_epoch": result.best_epoch, "epochs": epochs, "weights": str(result.run_dir / "best.safetensors"),
            "backbone": str(backbone), "train_per_class": per_class}


def run_cell(name: str, data: Path, work: Path, strategy: str, weights: str, epochs: int, seed: int) -> dict:
    result = train(config(name, data, work, strategy=strategy, weights=weights, epochs=epochs, batch=BATCH,
                          seed=seed))
    return {"test_accuracy": result.metrics["test_accuracy"], "val_accuracy": result.metrics["accuracy"],
            "best_epoch": result.best_epoch, "epochs": epochs}


def run_advisor(data: Path, weights: str) -> dict:
    manifest = prepare_data(DataConfig(source=str(data)), seed=0).manifest
    return measure(manifest, model=MODEL, pretrained=False, weights=weights, image_size=SIZE).to_dict()


def datasets(cifar: Path, work: Path, sizes: tuple[int, ...]) -> dict[str, tuple[str, int, Path]]:
    """name -> (target, per class, folder)."""
    out = {}
    for n in sizes:
        out[f"cifar5-9-{n}"] = ("a: CIFAR dog..truck", n, cifar_subset(
            cifar, work / "data" / f"cifar5-9-{n}", TARGET_CLASSES, n, VAL_PER_CLASS, TEST_PER_CLASS))
        out[f"shapes-{n}"] = ("b: drawn shapes", n, shapes_set(work / "data" / f"shapes-{n}", n))
    return out


def report(results: dict, wall: float) -> str:
    source = results["source"]
    cells = {k: v for k, v in results.items() if not k.startswith("_") and k != "source"}
    header = ["target", "imgs/class", "epochs", *STRATEGIES, "best", "best - scratch", "auto picks", "auto - best"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    verdicts: list[bool] = []
    for name, entry in cells.items():
        runs = entry["cells"]
        scores = {s: mean_accuracy(runs, s) for s in STRATEGIES if s in runs}
        row = [entry["target"], str(entry["per_class"]), str(EPOCHS.get(entry["per_class"], "?"))]
        row += [f"{accuracy_text(runs, s)} ({runs[s]['seconds']:.0f}s, L{runs[s]['load']:.1f})"
                if s in runs else "-" for s in STRATEGIES]
        transfer = {s: v for s, v in scores.items() if s != "scratch"}
        best = max(scores, key=scores.get) if scores else "-"
        row.append(best)
        row.append(f"{100 * (max(transfer.values()) - scores['scratch']):+.1f}"
                   if transfer and "scratch" in scores else "-")
        if "advisor" in runs and scores:
            pick, _ = decide(Measurements(**{k: v for k, v in runs["advisor"].items() if k in MEASURED}))
            if pick in scores:
                gap = scores[pick] - scores[best]
                verdicts.append(gap >= -ONE_POINT)
                row += [pick, f"{100 * gap:+.1f}" + (" (yes)" if gap >= -ONE_POINT else " (no)")]
            else:
                row += [pick, "not run"]
        else:
            row += ["-", "-"]
        rows.append("| " + " | ".join(row) + " |")
    kept = ["| target | imgs/class | strategy | zero head (backbone-only file), seed 0 | "
            "source head kept (whole file), seed 0 |",
            "|---|---|---|---|---|"]
    for entry in cells.values():
        for s in KEPT_HEAD:
            key = f"{s}+source-head"
            if key in entry["cells"] and s in entry["cells"]:
                kept.append(f"| {entry['target']} | {entry['per_class']} | {s} | "
                            f"{100 * entry['cells'][s]['test_accuracy']:.1f} | "
                            f"{100 * entry['cells'][key]['test_accuracy']:.1f} |")
    advisor = ["| target | imgs/class | probe acc, source weights | probe acc, random | gain | distance to source "
               "(x the source's own) | advisor s |", "|---|---|---|---|---|---|---|"]
    for entry in cells.values():
        a = entry["cells"].get("advisor")
        if a:
            advisor.append(f"| {entry['target']} | {entry['per_class']} | {a['probe_pretrained']:.3f} | "
                           f"{a['probe_random']:.3f} | {a['gain']:+.3f} | {_distance_text(a)} | {a['seconds']:.0f} |")
    loads = [c["load"] for e in cells.values() for c in e["cells"].values() if "load" in c]
    return "\n".join([
        "# honed as the pretrainer: CIFAR-10 classes 0-4 -> classes 5-9 and drawn shapes (CPU)", "",
        f"`{results.get('_command', 'python benchmarks/bench_pretrainer.py')}` on "
        f"{platform.processor() or 'CPU'}, {results.get('_threads', torch.get_num_threads())} torch threads, "
        f"torch {torch.__version__}. "
        f"{MODEL} at {SIZE} px throughout.", "",
        f"Source run: {MODEL} from random weights on CIFAR-10 airplane, automobile, bird, cat, deer "
        f"({source['train_per_class']:,} training and {SOURCE_VAL_PER_CLASS} validation images per class, batch 128, "
        f"{source['epochs']} epochs, "
        f"augmentation {AUGMENT}): test accuracy {100 * source['test_accuracy']:.1f}% on 5,000 test images (best "
        f"epoch {source['best_epoch']}; {source['seconds'] / 60:.1f} min, load average {source['load']:.1f} at "
        "its end). Its weights without the head are the starting point of every transfer cell.", "",
        f"Transfer cells: batch {BATCH}, AdamW, peak lr {LR} (cosine, 0.5 warm-up epochs), augmentation "
        f"{AUGMENT}, the same epochs for every strategy at a size; {VAL_PER_CLASS} validation images per class "
        f"pick the best epoch; test accuracy on {TEST_PER_CLASS} held-out images per class (standard error "
        "about 1.5 points: differences of 2-3 points are noise). Each cell: test accuracy %, the mean over the "
        "training seeds run (± their standard deviation, n: same data, other initialization, order and "
        "augmentation), then seed 0's wall seconds and the load average at its end. 'best - scratch' is the "
        "best transfer strategy "
        "minus scratch. The advisor's pick is recomputed from its saved measurements with the current rule "
        "(honed/advise/rule.py); 'auto - best': its accuracy minus the best strategy's, (yes) within one point.",
        "",
        *rows, "",
        f"The advisor's pick was within one point of the best strategy on {sum(verdicts)} of {len(verdicts)} "
        "datasets.", "",
        "Loading the whole source file into a 5-class target keeps the source's 5-class head as the starting "
        "head (same shape, so honed loads it); the backbone-only file gives a zero head. Target a only (target "
        "b has 4 classes, so the source head never fits):", "",
        *kept, "",
        "The advisor's measurements (3-fold CV logistic regression on frozen features of up to 200 training "
        "images, source weights vs random weights; and the Fréchet distance of that sample's pooled features to "
        "the statistics of the source run's training features that `honed export --backbone-only` stores, with "
        "its ratio to the distance between 200 source images and the rest of the source):", "",
        *advisor, "",
        f"Whole run: {wall / 60:.1f} min wall on a shared 2-core machine (load average {min(loads, default=0):.1f}"
        f"-{max(loads, default=0):.1f} at the ends of cells).", "",
    ])


def _distance_text(advisor: dict) -> str:
    """The Fréchet distance of the target sample's features to the source run's, over the source's own."""
    if advisor.get("source_distance") is None or not advisor.get("source_baseline"):
        return "-"
    return f"{advisor['source_distance']:.3g} ({advisor['source_distance'] / advisor['source_baseline']:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar"), help="CIFAR-10 in ImageFolder layout")
    parser.add_argument("--work", type=Path, default=Path("/tmp/honed-bench-pretrainer"), help="scratch folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_pretrainer.md"))
    parser.add_argument("--source-epochs", type=int, default=SOURCE_EPOCHS, help="epochs of the source run")
    parser.add_argument("--source-per-class", type=int, default=SOURCE_PER_CLASS,
                        help="source training images per class (at most 5,000 less the validation ones)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="training images per class")
    parser.add_argument("--seeds", default="0", help="training seeds per cell, e.g. 0,1,2: the table shows "
                        "their mean and spread (data and test set fixed)")
    parser.add_argument("--report", action="store_true", help="only rewrite the table from saved results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HONED_CACHE", str(args.work / "cache"))
    store = args.work / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    started = time.perf_counter()

    def save() -> None:
        store.write_text(json.dumps(results, indent=2))

    if not args.report:
        results["_command"] = "python benchmarks/bench_pretrainer.py " + " ".join(sys.argv[1:])
        results["_threads"] = torch.get_num_threads()
        if "source" not in results:
            print("source run", flush=True)
            results["source"] = timed(lambda: pretrain(args.cifar, args.work, args.source_epochs,
                                                            args.source_per_class))
            print(f"    {results['source']}", flush=True)
            save()
        backbone, whole = results["source"]["backbone"], results["source"]["weights"]
        if not stats_path(backbone).is_file():  # a source run from before the backbone carried its statistics
            print(export_source_stats(Path(whole).parent, backbone)[1], flush=True)
        sizes = tuple(int(s) for s in args.sizes.split(","))
        seeds = [int(s) for s in args.seeds.split(",")]
        for name, (target, per_class, data) in datasets(args.cifar, args.work, sizes).items():
            entry = results.setdefault(name, {"target": target, "per_class": per_class, "cells": {}})
            todo = ["advisor", *STRATEGIES] + ([f"{s}+source-head" for s in KEPT_HEAD]
                                              if "CIFAR" in target and per_class in KEPT_HEAD_SIZES else [])
            for seed, cell in [(seed, cell) for seed in seeds for cell in todo]:
                key = seed_key(cell, seed)
                measured = key in entry["cells"] and (cell != "advisor" or "source_distance" in entry["cells"][key])
                if measured or (seed and cell == "advisor"):  # the advisor measures once
                    continue
                print(f"[{time.perf_counter() - started:6.0f}s] {name} {key} (load {load_average()})", flush=True)
                strategy, _, kept = cell.partition("+")
                weights = whole if kept else backbone
                if cell == "advisor":
                    run = lambda: run_advisor(data, backbone)  # noqa: E731
                else:
                    run = lambda: run_cell(f"{name}-{key}", data, args.work, strategy, weights,  # noqa: E731
                                           EPOCHS[per_class], seed)
                entry["cells"][key] = timed(run)
                print(f"    {entry['cells'][key]}", flush=True)
                save()
    results["_wall_seconds"] = results.get("_wall_seconds", 0.0) + time.perf_counter() - started
    save()
    args.out.write_text(report(results, results["_wall_seconds"]))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
