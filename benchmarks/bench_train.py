"""Training throughput of `honed train` vs the loop a user writes by hand, same model, same data, same run.

    python benchmarks/bench_train.py --data /tmp/cifar --images 5000 --model resnet18 --out benchmarks/results_train.md

The hand-written side is ../shared/bench/handwritten_cpu_loader.py's loader (ImageFolder + PIL + crop/flip +
ToTensor + Normalize, DataLoader with 2 workers) feeding the same timm model with AdamW. Both train one epoch
over the same subset at 32 px; images/s counts training images only (honed's validation pass is timed apart).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T


def subset(root: Path, images: int, out: Path) -> Path:
    """A class-balanced subset of train/ as an ImageFolder (symlinks), so both sides read the same files."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    per_class = images // len(classes)
    for cls in classes:
        (out / cls).mkdir(parents=True)
        for f in sorted((root / "train" / cls).glob("*.jpg"))[:per_class]:
            (out / cls / f.name).symlink_to(f)
    return out


def handwritten(folder: Path, model_name: str, workers: int, batch: int) -> float:
    tr = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.5,) * 3, (0.25,) * 3)])
    ds = torchvision.datasets.ImageFolder(str(folder), tr)
    dl = torch.utils.data.DataLoader(ds, batch, shuffle=True, num_workers=workers, drop_last=True)
    model = timm.create_model(model_name, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start, n = time.perf_counter(), 0
    for x, y in dl:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - start)


def with_honed(folder: Path, model_name: str, workers: int, batch: int, workspace: Path) -> tuple[float, float]:
    from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.training.fit import train

    config = RunConfig(name="bench", workspace=str(workspace), data=DataConfig(source=str(folder), val_fraction=0.1),
                       model=ModelConfig(name=model_name), preprocess=PreprocessConfig(image_size=32),
                       train=TrainConfig(epochs=1, batch_size=batch, workers=workers, augment="crop:4,hflip"))
    start = time.perf_counter()
    result = train(config)
    total = time.perf_counter() - start
    train_images = int(len(list(folder.rglob("*.jpg"))) * 0.9) // batch * batch
    return train_images / float(result.history["seconds"].iloc[0]), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 ImageFolder root (train/, test/)")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_train.md"))
    args = parser.parse_args()
    random.seed(0)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        folder = subset(args.data, args.images, tmp / "data")
        hand = handwritten(folder, args.model, args.workers, args.batch)
        honed_ips, honed_total = with_honed(folder, args.model, args.workers, args.batch, tmp / "ws")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"| pipeline ({args.model}, 32 px, batch {args.batch}, {args.images} CIFAR-10 JPEGs, {args.workers} workers, "
        f"{torch.get_num_threads()} threads) | training images/s |",
        "|---|---|",
        f"| hand-written: ImageFolder + DataLoader + PIL transforms + AdamW loop | {hand:.0f} |",
        f"| `honed train` (epoch incl. batched crop+flip; run total with scan, eval, saving: {honed_total:.1f} s) "
        f"| {honed_ips:.0f} |",
        f"| ratio honed / hand-written | {honed_ips / hand:.2f}x |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
