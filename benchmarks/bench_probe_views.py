"""Does augmentation in feature space help the probe on real photos? A check of one lever for issue 17.

    python benchmarks/bench_probe_views.py --data /work/data/hymenoptera --views 8

On ants/bees the workflow's probe (logistic regression on frozen EfficientNet-Lite0 features of one centre view)
scored 94.1% on the test folder, the hand-written frozen head trained on random resized crops 95.9 ± 0.8%. Here
the probe is fitted on the features of more views of each training photo (its mirror image; ``--views`` random
resized crops with flips, as the hand-written head sees them) and scored with and without flip TTA, for three
regularization strengths. Features come from ``train/`` and the test folder (``val/`` or ``test/``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision
import torchvision.transforms as T
from sklearn.linear_model import LogisticRegression

MODEL, MEAN, STD = "tf_efficientnet_lite0", (0.5,) * 3, (0.5,) * 3


def backbone() -> torch.nn.Module:
    from honed.models.pip_weights import pretrained_state_dict

    model = timm.create_model(MODEL, num_classes=1000)
    model.load_state_dict(pretrained_state_dict(MODEL))
    model.reset_classifier(0)
    return model.eval()


def features(model, folder: Path, transform, passes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``[passes, N, D]`` features of every photo in ``folder`` (a new random view per pass) and the labels."""
    dataset = torchvision.datasets.ImageFolder(str(folder), transform)
    out = []
    for _ in range(passes):
        loader = torch.utils.data.DataLoader(dataset, 64, num_workers=1)
        with torch.no_grad():
            out.append(torch.cat([model(x) for x, _ in loader]).numpy())
    return np.stack(out), np.array(dataset.targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--views", type=int, default=8, help="random resized crops per training photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    test_dir = args.data / ("test" if (args.data / "test").is_dir() else "val")
    if not (args.data / "train").is_dir() or not test_dir.is_dir():
        parser.error(f"{args.data} needs train/<class>/ and a val/ or test/ folder of the same classes")
    if args.views < 0:
        parser.error(f"--views must be 0 or more, not {args.views}")
    centre = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    mirrored = T.Compose([T.RandomHorizontalFlip(1.0), centre])
    crops = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    model, start = backbone(), time.perf_counter()
    (train_c,), y = features(model, args.data / "train", centre)
    (train_m,), _ = features(model, args.data / "train", mirrored)
    train_r, _ = features(model, args.data / "train", crops, args.views)
    (test_c,), y_test = features(model, test_dir, centre)
    (test_m,), _ = features(model, test_dir, mirrored)
    print(f"features: {time.perf_counter() - start:.0f} s")
    fits = {"centre view": [train_c], "+ mirror": [train_c, train_m],
            f"+ mirror + {args.views} crops": [train_c, train_m, *train_r]}
    print("| C | " + " | ".join(f"{name} | with flip TTA" for name in fits) + " |")
    print("|---" * (1 + 2 * len(fits)) + "|")
    for c in (0.01, 0.1, 1.0):
        cells = []
        for views in fits.values():
            probe = LogisticRegression(C=c, max_iter=3000).fit(np.concatenate(views), np.tile(y, len(views)))
            plain = probe.predict_proba(test_c)
            flip = plain + probe.predict_proba(test_m)
            cells += [f"{(plain.argmax(1) == y_test).mean():.3f}", f"{(flip.argmax(1) == y_test).mean():.3f}"]
        print(f"| {c} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
