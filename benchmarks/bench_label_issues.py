"""Label issues on CIFAR-10 JPEGs with a known share of labels flipped: does honed find them?

For each noise rate (5%, 10%) and seed, a share of the training labels is flipped to another class at random,
then:

- honed: ``honed.analyze.label_issues.find_label_issues`` (frozen EfficientNet-Lite0 features from its pip
  weights, 5-fold cross-validated logistic regression, cleanlab's ``find_label_issues``);
- baseline: the same cached features, written by hand: scikit-learn ``cross_val_predict`` of a default
  ``LogisticRegression`` and ``cleanlab.filter.find_label_issues`` called directly;

scored by precision and recall of the flagged set against the flipped set, and precision at N (N = the number
of flipped images) of the ranking. Last, the accuracy on the clean test images of a probe head (the logistic
regression head a ``--strategy probe`` run fits, ``honed.training.probe.fit_head``) trained on the noisy
labels with and without the images honed flagged.

    tar -xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp/i19a/cifar --wildcards 'train/*/00*' 'train/*/01*' 'test/*/00*'
    OMP_NUM_THREADS=1 python benchmarks/bench_label_issues.py --data /tmp/i19a/cifar --out benchmarks/results_label_issues.md
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


def flip(labels: np.ndarray, rate: float, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels and the indices flipped: ``rate`` of the rows get a different class, uniformly."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    return noisy, flipped


def scores(flagged_ranked: list[int], flipped: np.ndarray) -> dict:
    truth, flagged = set(flipped.tolist()), set(flagged_ranked)
    hits = len(truth & flagged)
    top = set(flagged_ranked[:len(truth)])
    return {"flagged": len(flagged), "precision": hits / max(len(flagged), 1), "recall": hits / max(len(truth), 1),
            "precision_at_n": len(truth & top) / max(len(truth), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/tmp/i19a/cifar", help="folder with train/ and test/ class folders")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--rates", default="0.05,0.10")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    from cleanlab.filter import find_label_issues as cleanlab_find
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from honed.analyze.label_issues import find_label_issues
    from honed.data.manifest import Manifest
    from honed.data.sources import load_source
    from honed.training.probe import fit_head
    from honed.models.heads.sklearn import softmax

    started = time.perf_counter()
    clean = load_source(args.data)
    frame = clean.frame
    train = frame[frame["split"] == "train"].groupby("label").head(args.per_class).reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    classes = clean.classes
    index = {c: i for i, c in enumerate(classes)}
    labels = train["label"].map(index).to_numpy()
    test_labels = test["label"].map(index).to_numpy()
    options = {"model": "tf_efficientnet_lite0", "image_size": args.image_size}

    # the features, extracted once and cached: every call below reads the same ones
    t = time.perf_counter()
    features = _features(Manifest(train, classes=classes), args.image_size)
    test_features = _features(Manifest(test.assign(split="train"), classes=classes), args.image_size)
    extract_seconds = time.perf_counter() - t

    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            noisy, flipped = flip(labels, rate, len(classes), seed)
            noisy_frame = train.assign(label=np.asarray(classes)[noisy])
            manifest = Manifest(noisy_frame, classes=classes)
            t = time.perf_counter()
            issues = find_label_issues(manifest, seed=seed, **options)
            honed_seconds = time.perf_counter() - t
            position = {p: i for i, p in enumerate(noisy_frame["path"])}
            honed_ranked = [position[p] for p in issues.paths()]

            t = time.perf_counter()
            probs = cross_val_predict(LogisticRegression(max_iter=1000), features, noisy, cv=5,
                                      method="predict_proba")
            base_ranked = list(cleanlab_find(noisy, probs, return_indices_ranked_by="self_confidence"))
            base_seconds = time.perf_counter() - t

            def without(dropped) -> float:
                keep = np.setdiff1d(np.arange(len(noisy)), np.asarray(dropped, dtype=int))
                return _accuracy(fit_head, softmax, features[keep], noisy[keep], test_features, test_labels,
                                 len(classes))

            accuracies = {"acc_all": without([]), "acc_without_flagged": without(honed_ranked),
                          "acc_without_top_n": without(honed_ranked[:len(flipped)]),
                          "acc_without_flipped": without(flipped),  # the oracle: every flipped image left out
                          "acc_clean": _accuracy(fit_head, softmax, features, labels, test_features, test_labels,
                                                 len(classes))}
            for name, ranked, seconds in (("honed", honed_ranked, honed_seconds),
                                          ("baseline", base_ranked, base_seconds)):
                rows.append({"noise": rate, "seed": seed, "method": name, "flipped": len(flipped),
                             **scores(ranked, flipped), "seconds": seconds})
            rows[-2].update(accuracies)
    table = pd.DataFrame(rows)
    total = time.perf_counter() - started
    text = _markdown(table, args, extract_seconds, total)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def _features(manifest, image_size: int) -> np.ndarray:
    """The cached features ``probabilities_from_features`` extracted (a second call reads the cache)."""
    from honed.data.cache import cache_root
    from honed.data.dataset import ImageDataset
    from honed.models.backbones import create_backbone_with_pretrained, data_config_for
    from honed.models.features import extract_features

    network = create_backbone_with_pretrained("tf_efficientnet_lite0", len(manifest.classes), pretrained=True,
                                              weights=None)
    defaults = data_config_for(network)
    frame = manifest.split("train")
    dataset = ImageDataset(frame, manifest.targets(frame), image_size)
    return extract_features(network, dataset, mean=list(defaults["mean"]), std=list(defaults["std"]),
                            cache_dir=cache_root())


def _accuracy(fit_head, softmax, x, y, test_x, test_y, classes: int) -> float:
    head = fit_head("logreg", x, y, task="classify", outputs=classes)
    logits = test_x @ head.weight.T + head.bias
    return float((softmax(logits).argmax(axis=1) == test_y).mean())


def _markdown(table: pd.DataFrame, args, extract_seconds: float, total: float) -> str:
    mean = (table.groupby(["noise", "method"])[["flagged", "precision", "recall", "precision_at_n", "seconds"]]
            .agg(["mean", "std"]))
    accuracy_columns = ["acc_all", "acc_without_flagged", "acc_without_top_n", "acc_without_flipped", "acc_clean"]
    acc = table.dropna(subset=["acc_all"]).groupby("noise")[accuracy_columns].agg(["mean", "std"])
    lines = [
        "# Label issues on CIFAR-10 with flipped labels",
        "",
        f"{args.per_class} training images per class (10 classes), labels flipped to a random other class at "
        f"rates {args.rates}, seeds {args.seeds}; features of EfficientNet-Lite0 (pip ImageNet weights) at "
        f"{args.image_size} px. Feature extraction (once, then cached): {extract_seconds:.1f} s; whole "
        f"benchmark {total:.0f} s; load average at the end {os.getloadavg()[0]:.2f} "
        f"(2 cores shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        "## Flagged set against the flipped set (mean, std over seeds)",
        "",
        "| noise | method | flagged | precision | recall | precision@N | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (noise, method), row in mean.iterrows():
        lines.append(f"| {noise:.0%} | {method} | {row[('flagged', 'mean')]:.0f} | "
                     f"{row[('precision', 'mean')]:.3f} ± {row[('precision', 'std')]:.3f} | "
                     f"{row[('recall', 'mean')]:.3f} ± {row[('recall', 'std')]:.3f} | "
                     f"{row[('precision_at_n', 'mean')]:.3f} ± {row[('precision_at_n', 'std')]:.3f} | "
                     f"{row[('seconds', 'mean')]:.2f} |")
    lines += ["", "## Test accuracy of a probe head (logreg on the same features) trained on the noisy labels", "",
              "| noise | all images | without all flagged | without the top N flagged | without the flipped "
              "(oracle) | clean labels (ceiling) |", "|---|---|---|---|---|---|"]
    for noise, row in acc.iterrows():
        lines.append(f"| {noise:.0%} | " + " | ".join(f"{row[(c, 'mean')]:.4f} ± {row[(c, 'std')]:.4f}"
                                                      for c in accuracy_columns) + " |")
    lines += ["", "Per run:", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines.append("")
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else str(value)


if __name__ == "__main__":
    main()
