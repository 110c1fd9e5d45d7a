"""What upscaling small photos buys: accuracy and CPU seconds of a pretrained model at the images' own size
against 2x, 4x and the model's input size, for the probe and head strategies; and what the head strategy's
frozen-feature cache saves.

tf_efficientnet_lite0 with its pip-shipped ImageNet weights on CIFAR-10 photos (32 px): the demo set
(``honed/data/demo/cifar10-mini``: 60 train / 20 test per class) and, with ``--cifar DIR``, a larger subset
of the same layout (train/<class>/*.jpg, test/<class>/*.jpg). Each cell starts with an empty cache (decoded
images and features), so its CPU seconds include decoding and feature extraction; ``workers=0`` keeps all
the work in this process, where ``time.process_time`` counts it. Accuracy is on the held-out test folder.

    python benchmarks/bench_image_size.py                          # demo set; results_image_size.md
    python benchmarks/bench_image_size.py --cifar /tmp/cifar-sub   # + the larger subset

Results go to ``<work>/results.json`` as each cell finishes (an interrupted run continues) and the table to
``benchmarks/results_image_size.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig  # noqa: E402
from honed.data.demo import demo_data_path  # noqa: E402
from honed.training.fit import train  # noqa: E402

MODEL = "tf_efficientnet_lite0"
MODEL_SIZE = 224  # its pretrained input size
NATIVE = 32  # CIFAR-10's side
SIZES = (NATIVE, 2 * NATIVE, 4 * NATIVE, MODEL_SIZE)
EPOCHS = 5  # head strategy
BATCH = 32
SPEEDUP_SIZE = 128  # the head strategy with and without its feature cache at this size


def run_cell(source: Path, *, strategy: str, size: int, weights: Path, feature_cache: str = "auto") -> dict:
    """One training run in a fresh cache (but the converted weights of ``weights``); its test accuracy, CPU and
    wall seconds."""
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "cache").mkdir()
        (Path(work) / "cache" / "weights").symlink_to(weights, target_is_directory=True)
        os.environ["HONED_CACHE"] = str(Path(work) / "cache")
        config = RunConfig(name="cell", workspace=str(Path(work) / "ws"),
                           data=DataConfig(source=str(source), val_fraction=0.1),
                           model=ModelConfig(name=MODEL, pretrained=True, strategy=strategy),
                           preprocess=PreprocessConfig(image_size=size),
                           train=TrainConfig(epochs=EPOCHS, batch_size=BATCH, workers=0, seed=0, device="cpu",
                                             feature_cache=feature_cache))
        cpu, wall = time.process_time(), time.perf_counter()
        result = train(config)
        return {"strategy": strategy, "size": size, "feature_cache": feature_cache,
                "test_accuracy": float(result.metrics["test_accuracy"]),
                "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                "epoch_s": [float(s) for s in result.history["seconds"]]}


def cells(datasets: dict[str, Path], speedup: bool = False) -> list[tuple[str, dict]]:
    """The demo set's grid and the head without its feature cache first, then the larger set's grid;
    ``speedup``: the head with and without its feature cache alone."""
    names = list(datasets)
    if speedup:
        return [(names[0], dict(strategy="head", size=SPEEDUP_SIZE, feature_cache=c)) for c in ("auto", "off")]
    grid = [(names[0], dict(strategy=s, size=size)) for s in ("probe", "head") for size in SIZES]
    grid += [(names[0], dict(strategy="head", size=SPEEDUP_SIZE, feature_cache="off"))]
    return grid + [(name, dict(strategy=s, size=size)) for name in names[1:] for s in ("probe", "head")
                   for size in SIZES]


def key(name: str, cell: dict) -> str:
    return f"{name}|{cell['strategy']}|{cell['size']}|{cell.get('feature_cache', 'auto')}"


def report(results: dict, command: str, loads: list[str]) -> str:
    lines = ["# Image size: what upscaling small photos buys", "",
             f"`{command}`", "",
             f"{MODEL}, pip ImageNet weights, CPU ({platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores shared with other work; "
             f"load average before / after: {' / '.join(loads)}). Head: {EPOCHS} epochs, batch {BATCH}, "
             "lr 1e-3, no augmentation (so on frozen features, computed once). Each cell in a fresh cache: "
             "CPU seconds include decoding and feature extraction, and the final test pass.", "",
             "| data | strategy | size | x native | test accuracy | CPU s | wall s |",
             "|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        name = k.split("|")[0]
        cache = "" if r["feature_cache"] == "auto" else " (feature cache off)"
        lines.append(f"| {name} | {r['strategy']}{cache} | {r['size']} | {r['size'] / NATIVE:.1f} | "
                     f"{r['test_accuracy']:.3f} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, help="a larger CIFAR folder (train/, test/)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "honed-bench-image-size")
    parser.add_argument("--speedup", action="store_true", help="only the head with and without its feature cache")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_image_size.md"))
    args = parser.parse_args()
    datasets = {"cifar10-mini (600 train, 200 test)": demo_data_path()}
    if args.cifar:
        datasets[f"{args.cifar.name} ({sum(1 for _ in (args.cifar / 'train').rglob('*.jpg'))} train, "
                 f"{sum(1 for _ in (args.cifar / 'test').rglob('*.jpg'))} test)"] = args.cifar
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    weights = args.work / "weights"  # the pip weights converted once, shared by the cells
    weights.mkdir(exist_ok=True)
    loads = [" ".join(f"{x:.1f}" for x in os.getloadavg())]
    for name, cell in cells(datasets, args.speedup):
        if key(name, cell) in results:
            continue
        results[key(name, cell)] = run_cell(datasets[name], weights=weights, **cell)
        saved.write_text(json.dumps(results, indent=1))
        print(key(name, cell), results[key(name, cell)], flush=True)
    loads.append(" ".join(f"{x:.1f}" for x in os.getloadavg()))
    command = "python benchmarks/bench_image_size.py" + (f" --cifar {args.cifar}" if args.cifar else "") + (
        f" --speedup --out {args.out}" if args.speedup else "")
    args.out.write_text(report(results, command, loads))


if __name__ == "__main__":
    main()
