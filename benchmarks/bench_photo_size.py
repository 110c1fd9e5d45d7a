"""At which size should pretrained weights see photos? The probe at 224 / 256 / 288 / 320 px, on the dataset's
own split and on resplits of it, to set the workflow's default (``honed.advise.image_size.FEATURE_SCALE``).

    python benchmarks/bench_photo_size.py --data /work/data/hymenoptera
    python benchmarks/bench_photo_size.py --data /work/data/flowers --per-class 60

ImageNet weights learned from random resized crops, in which objects look larger than in a whole photo
resized to the input size; testing such a network a little above its training size pays (Touvron et al.
2019, "Fixing the train-test resolution discrepancy"). Here the frozen tf_efficientnet_lite0 sees every photo
through honed's own preprocessing (shorter side to the size, centre crop), and honed's logistic-regression
head (C cross-validated) is fitted on the training features. Figures: test accuracy on the dataset's test
folder, then on ``--resplits`` redraws of a test set of the same size per class from the pooled photos, with
each size's paired difference from 224 px (mean ± standard error over the redraws).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from honed.data.decode import DecodeError, decode_to_tensor
from honed.errors import HonedError
from honed.training.probe import fit_head

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_probe_views import backbone  # noqa: E402  (the same frozen network and weights)

SIZES = (224, 256, 288, 320)
BATCH = 32


def photos(data: Path, test: str, per_class: int) -> tuple[list[Path], np.ndarray, np.ndarray, list[str]]:
    """Paths, labels and origin (train/test) of every photo; ``per_class`` training photos a class (0: all)."""
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    paths, labels, origin = [], [], []
    for split in ("train", test):
        for index, name in enumerate(classes):
            files = sorted(f for f in (data / split / name).iterdir() if f.is_file())
            if split == "train" and per_class:
                files = [files[i] for i in sorted(rng.permutation(len(files))[:per_class])]
            paths += files
            labels += [index] * len(files)
            origin += ["train" if split == "train" else "test"] * len(files)
    return paths, np.array(labels), np.array(origin), classes


def features(network: torch.nn.Module, paths: list[Path], size: int) -> np.ndarray:
    """``[N, D]`` features at ``size`` px; tf_ EfficientNet-Lite weights take inputs scaled to [-1, 1]."""
    out = []
    with torch.no_grad():
        for start in range(0, len(paths), BATCH):
            batch = torch.stack([decode(p, size) for p in paths[start:start + BATCH]]).float()
            out.append(network(batch / 127.5 - 1).numpy())
    return np.concatenate(out)


def decode(path: Path, size: int) -> torch.Tensor:
    try:
        return decode_to_tensor(path, size)
    except (DecodeError, HonedError, OSError) as error:
        raise SystemExit(f"cannot read {path}: {error}") from None


def accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, classes: int) -> float:
    head = fit_head("logreg", x[train], y[train], task="classify", outputs=classes)
    return float(np.mean(head.predict(x[~train]).argmax(1) == y[~train]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder with train/<class>/ and val/ or test/")
    parser.add_argument("--per-class", type=int, default=0, help="training photos per class (0: all)")
    parser.add_argument("--resplits", type=int, default=10)
    args = parser.parse_args()
    test = "test" if (args.data / "test").is_dir() else "val"
    if not (args.data / "train").is_dir() or not (args.data / test).is_dir():
        parser.error(f"{args.data} needs train/<class>/ and a val/ or test/ folder of the same classes")
    if args.per_class < 0 or args.resplits < 2:
        parser.error("--per-class must be 0 or more and --resplits 2 or more")
    torch.set_num_threads(2)
    paths, y, origin, classes = photos(args.data, test, args.per_class)
    network = backbone()
    feats = {}
    for size in SIZES:
        started = time.perf_counter()
        feats[size] = features(network, paths, size)
        print(f"features of {len(paths)} photos at {size} px: {time.perf_counter() - started:.0f} s", flush=True)
    own = {s: accuracy(feats[s], y, origin == "train", len(classes)) for s in SIZES}
    print("the dataset's own split, test accuracy %:", "  ".join(f"{s} px {100 * a:.1f}" for s, a in own.items()))
    test_counts = {c: int(np.sum((origin == "test") & (y == c))) for c in range(len(classes))}
    rows = []
    for seed in range(args.resplits):
        rng, train = np.random.default_rng(100 + seed), np.ones(len(y), bool)
        for c, count in test_counts.items():
            train[rng.permutation(np.flatnonzero(y == c))[:count]] = False
        rows.append([100 * accuracy(feats[s], y, train, len(classes)) for s in SIZES])
    rows = np.array(rows)
    print(f"{args.resplits} resplits, mean test accuracy %:", "  ".join(f"{s} px {a:.2f}" for s, a in
                                                                          zip(SIZES, rows.mean(0))))
    for j, size in enumerate(SIZES[1:], 1):
        gap = rows[:, j] - rows[:, 0]
        print(f"  {size} px minus 224 px: {gap.mean():+.2f} ± {gap.std(ddof=1) / np.sqrt(len(gap)):.2f} (se); "
              f"better on {np.sum(gap > 0)}, level on {np.sum(gap == 0)}, worse on {np.sum(gap < 0)}")


if __name__ == "__main__":
    main()
