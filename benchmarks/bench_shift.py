"""Planted shifts: does error analysis name the factor a person would see, and how much does `improve` win back?

For each dataset a training split stays untouched; the validation split gets ONE planted shift (quarter turn,
smaller objects, darker, blurrier; two strengths each). Per shift:

  baseline   trained on the untouched training images (the run whose validation split is shifted); its
             accuracy on the unshifted validation images is what the shift costs it ("clean")
  analysis   `analyze_run`: is the planted factor's group the first recommendation? (and the first shift)
  improve    `improve_run` with its checks (top 3 recommendations, short fine-tunes from the baseline, the best
             one continued from the baseline for twice the baseline's epochs, as an added augmentation is)
  by hand    the augmentation a practitioner would choose for the shift they see, trained the same way as
             improve's final run (from the baseline's weights, same epochs): it isolates the choice of fix

recovered = (accuracy after - shifted accuracy) / (clean - shifted). Nothing is downloaded.

    OMP_NUM_THREADS=2 python benchmarks/bench_shift.py --cifar ../shared/data/cifar10-jpg.tar.gz \
        --photos /work/data/hymenoptera --out benchmarks/results_shift.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from honed.analyze import analyze_run, improve_run
from honed.analyze.factors import blur, shrink
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig

CIFAR_CLASSES = ("airplane", "automobile", "frog", "ship")
SHIFTS = {  # name -> (group the analysis must name first, the change applied to a float [1, 3, H, W] image)
    "rot90": ("orientation", lambda x, s: torch.rot90(x, -1, dims=(-2, -1)) if s >= 1 or _half(x) else x),
    "small": ("scale", lambda x, s: shrink(x, s, torch.Generator().manual_seed(0))),
    "dark": ("colour", lambda x, s: x * s),
    "blur": ("blur", lambda x, s: blur(x, s * x.shape[-1] / 32, torch.Generator())),  # sigma at 32 px
}
STRENGTHS = {"rot90": (1.0, 0.5), "small": (0.6, 0.4), "dark": (0.5, 0.25), "blur": (0.8, 1.6)}  # blur: sigma
# in pixels of a 32 px image (scaled with the image); photos' validation images are written at twice the run's size
MIN_LOSS = 0.02  # a shift that costs less than this has no loss to recover
BY_HAND = {"rot90": "quarter_turn@0.5", "small": "scale:0.5@0.5", "dark": "color:0.4@0.8", "blur": "blur:2@0.5"}


def _half(x: torch.Tensor) -> bool:
    """rot90 at strength 0.5: every other image (by its pixel sum's parity, fixed per image) is turned."""
    return int(x.sum().item() * 255) % 2 == 0


def extract_cifar(archive: Path, root: Path, per_class: int, val_per_class: int) -> Path:
    """train/ (per_class images of 4 classes) and val/ (from the test split) under root/clean."""
    out = root / "clean"
    if out.exists():
        return out
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 3 or parts[1] not in CIFAR_CLASSES or not member.isfile():
                continue
            split, index = parts[0], int(Path(parts[2]).stem)
            if (split == "train" and index < per_class) or (split == "test" and index < val_per_class):
                target = out / ("train" if split == "train" else "val") / parts[1] / parts[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    return out


def plant(clean: Path, root: Path, shift: str, strength: float, size: int) -> Path:
    """root/<shift>-<strength>/: train/ linked to the clean one, val/ with the shift applied (PNG, no loss)."""
    out = root / f"{shift}-{strength:g}"
    if out.exists():
        return out
    (out / "val").mkdir(parents=True)
    os.symlink(clean / "train", out / "train")
    change = SHIFTS[shift][1]
    for path in sorted((clean / "val").rglob("*.*")):
        image = Image.open(path).convert("RGB").resize((size, size))
        x = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].float() / 255
        y = (change(x, strength).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        target = out / "val" / path.parent.name / (path.stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(y).save(target)
    return out


def config(data: Path, workspace: Path, args, seed: int = 0) -> RunConfig:
    return RunConfig(name="baseline", workspace=str(workspace), data=DataConfig(source=str(data)),
                     model=ModelConfig(name=args.model, pretrained=args.pretrained, strategy=args.strategy),
                     preprocess=PreprocessConfig(image_size=args.size),
                     train=TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr, workers=0, seed=seed))


def accuracy_on(run_dir: Path, folder: Path) -> float:
    import honed
    from honed.predict import collect_inputs

    paths = collect_inputs([str(folder)])
    predicted = honed.load(run_dir).predict(paths, workers=0)["prediction"]
    return float((predicted == [Path(p).parent.name for p in paths]).mean())


def by_hand(run_dir: Path, shift: str) -> float:
    """The practitioner's augmentation, from the baseline's weights for as many epochs as improve continues an
    added augmentation (twice the baseline's): the comparison is of the augmentation chosen."""
    from honed.analyze.improve import child_config
    from honed.analyze.recommend import AUGMENTED_EPOCHS
    from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE
    from honed.training.fit import train

    parent = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    child, _ = child_config(parent, run_dir, augment=BY_HAND[shift], dropout=None, weight_decay=None,
                            epochs=AUGMENTED_EPOCHS * parent.train.epochs, name="by-hand",
                            weights=str(run_dir / BEST_WEIGHTS))
    return float(train(child).metrics["accuracy"])


def one_case(dataset: str, clean: Path, root: Path, shift: str, strength: float, args, seed: int = 0) -> dict:
    started = time.perf_counter()
    data = plant(clean, root / dataset, shift, strength, args.size if dataset == "cifar4" else 2 * args.size)
    workspace = root / "ws" / f"{dataset}-{shift}-{strength:g}-seed{seed}"
    shutil.rmtree(workspace, ignore_errors=True)
    from honed.training.fit import train

    base = train(config(data, workspace, args, seed))
    clean_acc = accuracy_on(base.run_dir, clean / "val")
    shifted = float(base.metrics["accuracy"])
    analysis = analyze_run(base.run_dir, workers=0, max_images=args.val_images, reference_images=256)
    group = SHIFTS[shift][0]
    groups = [r.group for r in analysis.recommendations]
    top_shift = next((c for c in analysis.shifts["candidates"] if c["significant"]), None)
    row = {"dataset": dataset, "shift": shift, "strength": strength, "seed": seed, "clean": clean_acc,
           "shifted": shifted,
           "lost": clean_acc - shifted, "first": groups[0] if groups else "", "named_first": groups[:1] == [group],
           "rank": groups.index(group) + 1 if group in groups else 0,
           "top_shift": top_shift["name"] if top_shift else "", "fit": analysis.fit.get("verdict", ""),
           "analysis_s": analysis.settings["seconds"]}
    if not args.skip_improve and shift in args.improve_shifts.split(","):
        result, comparison = improve_run(base.run_dir, check=3)
        kept = comparison.get("kept", "")  # nothing kept: no fix is applied and the baseline stands
        row.update(improved=float(result.metrics["accuracy"]) if kept else shifted, kept=kept,
                   candidates={c["group"]: round(c["check_score"], 4) for c in comparison["candidates"]})
        row["hand"] = by_hand(base.run_dir, shift)
        lost = row["lost"] if row["lost"] >= MIN_LOSS else float("nan")  # no loss: no share of it to recover
        row["recovered"] = (row["improved"] - shifted) / lost
        row["hand_recovered"] = (row["hand"] - shifted) / lost
    row["seconds"] = time.perf_counter() - started
    return row


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| data | shift | strength | seed | clean | shifted | lost | first recommendation | planted named first "
             "| improve (kept) | recovered | by hand | recovered by hand | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        improved = (f"{r['improved']:.3f} ({r['kept'] or 'none'})" if "improved" in r else "-")
        lines.append(f"| {r['dataset']} | {r['shift']} | {r['strength']:g} | {r.get('seed', 0)} | {r['clean']:.3f} "
                     f"| {r['shifted']:.3f} "
                     f"| {r['lost']:+.3f} | {r['first']} | {'yes' if r['named_first'] else 'NO'} (rank "
                     f"{r['rank'] or '-'}) | {improved} | {r.get('recovered', float('nan')):.0%} | "
                     f"{r.get('hand', float('nan')):.3f} | {r.get('hand_recovered', float('nan')):.0%} "
                     f"| {r['seconds']:.0f} |")
    costly = [r for r in rows if r["lost"] > 0.10]
    if costly:
        named = sum(r["named_first"] for r in costly)
        lines += ["", f"Shifts costing more than 10 points: {len(costly)}; planted factor named first on {named}."]
        with_improve = [r for r in costly if "recovered" in r]
        if with_improve:
            mean = np.mean([r["recovered"] for r in with_improve])
            hand = np.mean([r["hand_recovered"] for r in with_improve])
            hit = sum(r["recovered"] >= 0.75 for r in with_improve)
            lines.append(f"Mean share of the loss recovered: improve {mean:.0%}, by hand {hand:.0%}; improve "
                         f">= 75% on {hit} of {len(with_improve)}.")
    if len({r.get("seed", 0) for r in rows}) > 1:
        lines += ["", "Per case over the seeds (recovery: the seeds where the shift cost more than 10 points):", "",
                  "| data | shift | strength | lost (mean) | named first | improve recovered | by hand recovered |",
                  "|---|---|---|---|---|---|---|"]
        for key in dict.fromkeys((r["dataset"], r["shift"], r["strength"]) for r in rows):
            case = [r for r in rows if (r["dataset"], r["shift"], r["strength"]) == key]
            paid = [r for r in case if r["lost"] > 0.10 and "recovered" in r]
            mean = lambda name: f"{np.mean([r[name] for r in paid]):.0%}" if paid else "-"  # noqa: E731
            lines.append(f"| {key[0]} | {key[1]} | {key[2]:g} | {np.mean([r['lost'] for r in case]):+.3f} | "
                         f"{sum(r['named_first'] for r in case)} of {len(case)} | {mean('recovered')} "
                         f"({len(paid)} seeds) | {mean('hand_recovered')} |")
    return "\n".join(lines) + "\n"


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers joined by commas (e.g. 0,1,2), got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="cifar10-jpg.tar.gz")
    parser.add_argument("--photos", type=Path, help="a train/ val/ class-folder set (e.g. hymenoptera)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-shift"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_shift.md"))
    parser.add_argument("--shifts", default="rot90,small,dark,blur")
    parser.add_argument("--strengths", default="all", choices=("all", "first", "second"),
                        help="every strength of each shift in STRENGTHS, or only its first or second")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--val-images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet weights (the photo set's backbone)")
    parser.add_argument("--strategy", default="full", help="transfer strategy of the baseline (partial, head, ...)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=_seeds, default="0", help="training seeds, e.g. 0,1,2: each case once per seed")
    parser.add_argument("--skip-improve", action="store_true")
    parser.add_argument("--improve-shifts", default="rot90,small,dark,blur", help="shifts improve is run on")
    args = parser.parse_args()
    torch.manual_seed(0)
    sets = []
    if args.cifar:
        sets.append(("cifar4", extract_cifar(args.cifar, args.root / "cifar", args.per_class, args.val_per_class)))
    if args.photos:
        sets.append(("photos", args.photos))
    rows = []
    load = os.getloadavg()[0]
    started = time.perf_counter()
    for dataset, clean in sets:
        for shift in args.shifts.split(","):
            strengths = {"all": STRENGTHS[shift], "first": STRENGTHS[shift][:1],
                         "second": STRENGTHS[shift][1:2]}[args.strengths]
            for strength in strengths:
                for seed in args.seeds:
                    rows.append(one_case(dataset, clean, args.root, shift, strength, args, seed))
                    print(json.dumps(rows[-1]), flush=True)
    cpu = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    header = (f"## planted shifts ({args.model}{' pretrained, ' + args.strategy if args.pretrained else ''}, "
              f"{args.size} px, {args.epochs} epochs, lr {args.lr:g}; "
              f"{time.perf_counter() - started:.0f} s wall; load average at start {load:.1f}, at end: {cpu})")
    args.out.write_text(markdown(rows, header) + "\n```json\n" + json.dumps(rows, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
