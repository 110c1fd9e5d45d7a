"""Benchmark: one model vs test-time augmentation vs 3- and 5-member soft/hard/weighted ensembles vs bagging vs
a snapshot ensemble, on a CPU-sized CIFAR-10 subset, with the measured majority-vote error next to the error
independent members would give.

    python benchmarks/bench_ensemble.py                      # /tmp/cifar (ImageFolder train/ test/) if present
    python benchmarks/bench_ensemble.py --data honed/data/demo/cifar10-mini --train-per-class 48 --val-per-class 12

Every member is the same small network (timm ``test_resnet`` at 32 px, hflip + crop augmentation) with its
own seed, trained on the same explicit train/validation split (runs must share validation rows to be
ensembled). Validation scores are what the ensembles were built on (weighted voting: cross-fitted); test
scores are held out. Prediction cost is timed on the test images (decoding included, one process).
Writes a markdown table (default benchmarks/results_ensemble.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import honed  # noqa: E402
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig  # noqa: E402
from honed.ensemble import create_ensemble  # noqa: E402
from honed.ensemble.bagging import bag  # noqa: E402
from honed.optim import schedule_cycles  # noqa: E402
from honed.analyze.tta_evaluation import evaluate_tta  # noqa: E402


def main() -> None:
    args = _parse()
    args.cycles = schedule_cycles(args.epochs, args.cycles)  # refuses a bad value now, not after an hour
    started = time.perf_counter()
    workspace = Path(args.workspace)
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    manifest = _manifest(Path(args.data), args, workspace / "subset.csv")
    test_paths = pd.read_csv(manifest).query("split == 'test'")["path"].tolist()
    rows: list[dict] = []

    members = []
    for k in range(args.members):
        result, seconds = _timed(lambda: honed.train(_config(args, manifest, workspace, f"m{k}", seed=k)))
        members.append((result, seconds))
        print(f"member m{k}: val {result.metrics['accuracy']:.4f} test {result.metrics['test_accuracy']:.4f} "
              f"({seconds:.0f} s)", flush=True)
    single, single_s = members[0]
    rows.append({"method": "single model (m0)", "members": 1, "val": single.metrics["accuracy"],
                 "test": single.metrics["test_accuracy"], "train_s": single_s,
                 "ms": _predict_ms(single.run_dir, test_paths)})
    for views in ("flip", "flip,crops"):
        evaluation = evaluate_tta(single.run_dir, views=views, workers=0)
        table = evaluation.table().set_index(["split", "tta"])
        label = evaluation.setting.describe()
        rows.append({"method": f"m0 + TTA {views} ({len(evaluation.setting.views)} views, mean)", "members": 1,
                     "val": table.loc[("val", label), "accuracy"],
                     "test": table.loc[("test", label), "accuracy"], "train_s": single_s,
                     "ms": _predict_ms(single.run_dir, test_paths, tta=views)})

    for size in sorted({min(3, args.members), args.members}):
        names = [f"m{k}" for k in range(size)]
        for method in ("soft", "hard", "weighted"):
            if method == "weighted" and size != args.members:
                continue
            result = create_ensemble(names, name=f"{method}-{size}", method=method, workspace=workspace)
            rows.append(_ensemble_row(f"{method} vote", result, size, sum(s for _, s in members[:size]),
                                      _predict_ms(result.run_dir, test_paths)))

    result, seconds = _timed(lambda: bag(_config(args, manifest, workspace, "bag", seed=0), members=args.members))
    rows.append(_ensemble_row(f"bagging (OOB acc {result.metrics['oob_accuracy']:.3f}, "
                              f"coverage {result.metrics['oob_coverage']:.2f})", result, args.members, seconds,
                              _predict_ms(result.run_dir, test_paths)))
    print(f"bag: val {result.score:.4f} ({seconds:.0f} s)", flush=True)

    cyclic = _config(args, manifest, workspace, "cyclic", seed=0, schedule="cyclic", cycles=args.cycles)
    run, seconds = _timed(lambda: honed.train(cyclic))
    rows.append({"method": f"cyclic schedule, {args.cycles} cycles: the run alone (best epoch)", "members": 1,
                 "val": run.metrics["accuracy"], "test": run.metrics["test_accuracy"], "train_s": seconds,
                 "ms": _predict_ms(run.run_dir, test_paths)})
    result = create_ensemble(snapshots="cyclic", name="snapshots", workspace=workspace)
    rows.append(_ensemble_row("snapshot ensemble (soft)", result, args.cycles, seconds,
                              _predict_ms(result.run_dir, test_paths)))

    total = time.perf_counter() - started
    text = _markdown(rows, args, manifest, total)
    Path(args.out).write_text(text)
    print(text)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/cifar" if Path("/tmp/cifar/train").is_dir()
                        else str(Path(honed.__file__).parent / "data" / "demo" / "cifar10-mini"))
    parser.add_argument("--train-per-class", type=int, default=120)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=0, help="cyclic run: 0 = largest divisor of epochs up to 5")
    parser.add_argument("--workspace", default="/tmp/bench-ensemble")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_ensemble.md")))
    return parser.parse_args()


def _manifest(root: Path, args: argparse.Namespace, out: Path) -> Path:
    """An explicit train/val/test split: the first files of each class folder (sorted names), so every member
    and every ensemble sees the same rows."""
    root = root.resolve()
    rows = []
    for cls in sorted(p.name for p in (root / "train").iterdir() if p.is_dir()):
        files = sorted((root / "train" / cls).iterdir())
        rows += [(str(f), cls, "train") for f in files[:args.train_per_class]]
        rows += [(str(f), cls, "val") for f in files[args.train_per_class:args.train_per_class + args.val_per_class]]
        rows += [(str(f), cls, "test") for f in sorted((root / "test" / cls).iterdir())[:args.test_per_class]]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(out, index=False)
    return out


def _config(args: argparse.Namespace, manifest: Path, workspace: Path, name: str, *, seed: int,
            **train) -> RunConfig:
    return RunConfig(name=name, workspace=str(workspace), data=DataConfig(source=str(manifest)),
                     model=ModelConfig(name=args.model), preprocess=PreprocessConfig(image_size=args.image_size),
                     train=TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, seed=seed, workers=1,
                                       augment="hflip,crop:4", **train))


def _timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def _predict_ms(run_dir: Path, paths: list[str], *, tta: str | None = None) -> float:
    predictor = honed.load(run_dir, tta=tta)
    start = time.perf_counter()
    predictor.predict_proba(paths, workers=0)
    return 1000 * (time.perf_counter() - start) / len(paths)


def _ensemble_row(label: str, result, size: int, train_s: float, ms: float) -> dict:
    report = result.diversity
    off = [v for i, row in enumerate(report.disagreement) for j, v in enumerate(row) if i != j]
    return {"method": label, "members": size, "val": result.score,
            "test": result.metrics.get("test_accuracy"), "train_s": train_s, "ms": ms,
            "best_member": max(report.member_scores), "majority": report.majority_error,
            "independent": report.independent_error, "disagreement": sum(off) / len(off)}


def _markdown(rows: list[dict], args: argparse.Namespace, manifest: Path, total: float) -> str:
    def number(value, digits=4):
        return "-" if value is None or value != value else f"{value:.{digits}f}"

    split = pd.read_csv(manifest)["split"].value_counts()
    lines = [
        "# Ensembles and TTA on a CIFAR-10 subset (CPU)", "",
        f"Data: {args.data}, {split.get('train', 0)} train / {split.get('val', 0)} validation / "
        f"{split.get('test', 0)} test images (explicit split, 10 classes). Members: `{args.model}` at "
        f"{args.image_size} px, {args.epochs} epochs, AdamW lr 3e-3, hflip + crop:4 augmentation, seeds 0.."
        f"{args.members - 1}. Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Total runtime {total / 60:.1f} min.", "",
        "Command: `python benchmarks/bench_ensemble.py " + " ".join(sys.argv[1:]) + "`", "",
        "Accuracy on validation (what the ensembles were built on; weighted voting cross-fitted over 5 folds) and "
        "on the held-out test images. Majority-vote error on validation: measured, and what members with the "
        "same error rates would give if their errors were independent (Poisson-binomial). Disagreement: mean "
        "pairwise share of validation images whose top classes differ. Predict: ms per test image, decoding "
        "included, one process (timings on a shared machine are noisy).", "",
        "Reading the independence column: it is P(more than half of the members wrong) for independent members "
        "with these error rates. With ten classes, wrong members rarely agree on the same wrong class, so a "
        "plurality vote can be right although most members are wrong; when member errors are above 0.5, the "
        "bound is then pessimistic rather than optimistic. Below 0.5 it shows how much independence would buy.",
        "",
        "| method | members | val acc | test acc | best member (val) | majority-vote err: measured | if independent "
        "| disagreement | train s | predict ms/img |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['method']} | {row['members']} | {number(row['val'])} | {number(row.get('test'))} | "
                     f"{number(row.get('best_member'))} | {number(row.get('majority'))} | "
                     f"{number(row.get('independent'))} | {number(row.get('disagreement'), 3)} | "
                     f"{row['train_s']:.0f} | {number(row.get('ms'), 2)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
