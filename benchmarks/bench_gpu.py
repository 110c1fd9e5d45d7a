"""`honed train` on a CUDA GPU against the hand-written GPU baseline, same network, same data, same run.

    python benchmarks/bench_gpu.py --data /tmp/cifar --baseline ../shared/bench/handwritten_gpu_baseline.py \
        --epochs 15 --workers 16 --out benchmarks/results_gpu.md

The hand-written side is ../shared/bench/handwritten_gpu_baseline.py, run unchanged as a subprocess: ImageFolder +
DataLoader feeding a ResNet-18 with the CIFAR stem (3x3 stride-1 first conv, no max-pool), bf16 autocast,
channels_last, SGD (nesterov, lr 0.2, weight decay 5e-4), OneCycle, batch 512, crop + flip. honed trains the
same network (registered with timm here, in this process only, as ``resnet18_cifar``) with the same recipe on all
50,000 training images, its decoded-image cache held on the GPU and the augmentation done there; both are scored
on the 10,000 test images, with and without flip TTA. ``--device cpu --epochs 1`` on a small --data checks the
script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def register_cifar_resnet18() -> None:
    """timm's resnet18 with the baseline's CIFAR stem, so both sides train the same network."""
    import timm
    from timm.models import register_model

    if "resnet18_cifar" in timm.list_models("resnet18_cifar"):
        return

    @register_model
    def resnet18_cifar(pretrained: bool = False, **kwargs):
        model = timm.create_model("resnet18", pretrained=False, **kwargs)
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
        return model


def handwritten(script: Path, data: Path, epochs: int, workers: int) -> dict[str, float]:
    """Run the reference unchanged and read its printed figures."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(data), str(epochs), str(workers)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: the hand-written baseline failed (exit {done.returncode}): {last}")
    out = done.stdout
    print(out, flush=True)
    result = re.search(r"train_s=([\d.]+) acc=([\d.]+) acc_flipTTA=([\d.]+)", out)
    return {"train_s": float(result[1]), "test_acc": float(result[2]), "test_acc_flip": float(result[3]),
            "loader_images_s": float(re.search(r"loader_only images/s: (\d+)", out)[1]),
            "gpu_step_images_s": float(re.search(r"gpu_only_train images/s: (\d+)", out)[1]),
            "wall_s": time.perf_counter() - start}


class PhaseClock:
    """A honed reporter that prints when each phase (scan, cache build, epochs, test) starts and ends, so a
    run that is slow shows where."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def _print(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {text}", flush=True)

    def message(self, text: str) -> None:
        self._print(text)

    def phase_started(self, label: str, total: int) -> None:
        self._print(f"start: {label} ({total})")

    def advance(self, steps: int = 1) -> None:
        pass

    def phase_finished(self) -> None:
        self._print("phase finished")

    def epoch_finished(self, row: dict) -> None:
        self._print(f"epoch {row.get('epoch')}: {row}")


def with_honed(data: Path, epochs: int, workers: int, device: str, batch: int, seed: int,
               workspace: Path) -> dict[str, float]:
    """The same recipe through honed's Python API: train on all of train/, test/ scored by the run itself."""
    import honed
    from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.data.sources import from_folder
    from honed.training.fit import train
    from honed.tta.setting import TTASetting

    register_cifar_resnet18()
    config = RunConfig(
        name=f"gpu-{seed}", workspace=str(workspace), data=DataConfig(source=str(data), validation=False),
        model=ModelConfig(name="resnet18_cifar", strategy="scratch"),
        preprocess=PreprocessConfig(image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD),
        train=TrainConfig(epochs=epochs, batch_size=batch, optimizer="sgd", lr=0.2, weight_decay=5e-4,
                          schedule="onecycle", grad_clip=0.0, augment="crop:4,hflip", precision="bf16"
                          if device == "cuda" else "32", device=device, workers=workers, seed=seed))
    start = time.perf_counter()
    clock = PhaseClock()
    result = train(config, reporter=clock)
    wall = time.perf_counter() - start
    clock.message(f"trained: test accuracy {result.metrics['test_accuracy']:.4f}; now the test folder with flip TTA")
    epoch_seconds = result.history["seconds"].astype(float)
    test = from_folder(data).split("test")
    predictor = honed.load(result.run_dir, device=device, tta=TTASetting(("identity", "hflip")))
    start = time.perf_counter()
    flip = predictor.predict(test["path"].tolist(), workers=workers)
    predict_s = time.perf_counter() - start
    clock.message(f"predicted {len(test)} test images with flip TTA in {predict_s:.1f} s")
    flip_acc = float((flip["prediction"].to_numpy() == test["label"].to_numpy()).mean())
    return {"train_s": float(epoch_seconds.sum()), "first_epoch_s": float(epoch_seconds.iloc[0]),
            "later_epoch_s": float(epoch_seconds.iloc[1:].mean()) if epochs > 1 else float("nan"),
            "test_acc": float(result.metrics["test_accuracy"]), "test_acc_flip": flip_acc,
            "wall_s": wall, "predict_flip_images_s": len(test) / predict_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 ImageFolder root (train/, test/)")
    parser.add_argument("--baseline", type=Path, default=Path("../shared/bench/handwritten_gpu_baseline.py"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of honed's runs")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only checks the script (no baseline run)")
    parser.add_argument("--skip-baseline", action="store_true", help="honed's side only (the baseline measured)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_gpu.md"))
    args = parser.parse_args()
    if not all((args.data / split).is_dir() for split in ("train", "test")):
        parser.error(f"{args.data} needs train/<class>/ and test/<class>/ folders (CIFAR-10 as JPEG, extracted)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run it on a GPU machine, or --device cpu to check the script")
    if args.device == "cuda" and not args.skip_baseline and not args.baseline.is_file():
        parser.error(f"no baseline script at {args.baseline}: give --baseline, or --skip-baseline")

    rows = []
    if args.device == "cuda" and not args.skip_baseline:
        rows.append(("hand-written (ImageFolder + DataLoader)", handwritten(args.baseline, args.data, args.epochs,
                                                                            args.workers)))
    counts = {split: sum(1 for p in (args.data / split).rglob("*") if p.is_file()) for split in ("train", "test")}
    with tempfile.TemporaryDirectory() as workspace:
        for seed in (int(s) for s in args.seeds.split(",")):
            figures = with_honed(args.data, args.epochs, args.workers, args.device, args.batch, seed,
                                 Path(workspace))
            print(f"honed seed {seed}: {figures}", flush=True)
            rows.append((f"honed train (GPU-resident cache), seed {seed}", figures))

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    lines = [f"# `honed train` vs the hand-written GPU baseline ({gpu}, torch {torch.__version__})", "",
             f"`python benchmarks/bench_gpu.py --data {args.data} --epochs {args.epochs} --workers {args.workers} "
             f"--seeds {args.seeds} --device {args.device}`: ResNet-18 with the CIFAR stem, {args.epochs} epochs, "
             f"batch {args.batch}, all {counts['train']:,} training images, {counts['test']:,} test images.", "",
             "| pipeline | training s | test acc | with flip TTA | wall s (incl. decoding, test) |",
             "|---|---|---|---|---|"]
    for name, f in rows:
        lines.append(f"| {name} | {f['train_s']:.1f} | {f['test_acc']:.4f} | {f['test_acc_flip']:.4f} | "
                     f"{f['wall_s']:.1f} |")
    lines += ["", "Raw figures:", ""] + [f"- {name}: {f}" for name, f in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
