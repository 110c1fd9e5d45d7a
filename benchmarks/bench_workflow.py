"""`honed workflow` on CIFAR-10 JPEGs next to the hand-written baseline, same data, same model, same machine.

    python benchmarks/bench_workflow.py --cifar /tmp/cifar --per-class 1000 --epochs 5 --budget 25m \
        --out benchmarks/results_workflow.md

The hand-written side is what a user writes by hand (../shared/bench/handwritten_gpu_baseline.py, on the CPU):
torchvision ImageFolder + DataLoader (2 workers) with random crop + flip, the same timm model, AdamW with a
OneCycle schedule, ``--epochs`` epochs on the training subset, test accuracy plain and with flip TTA. honed's
side is one `honed workflow` call on the same folder with the same epochs per run: every step's validation
and test score and its time, in the order the workflow took them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T

REPO = Path(__file__).resolve().parents[1]


def subset(root: Path, per_class: int, test_per_class: int, out: Path) -> Path:
    """train/ and test/ with the first N files of each class (symlinks), so both sides read the same files."""
    for split, count in (("train", per_class), ("test", test_per_class)):
        for cls in sorted(p.name for p in (root / split).iterdir()):
            (out / split / cls).mkdir(parents=True)
            for f in sorted((root / split / cls).glob("*.jpg"))[:count]:
                (out / split / cls / f.name).symlink_to(f)
    return out


def handwritten(folder: Path, model_name: str, epochs: int, batch: int = 64) -> dict:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    train_set = torchvision.datasets.ImageFolder(str(folder / "train"), T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]))
    test_set = torchvision.datasets.ImageFolder(str(folder / "test"), T.Compose([T.ToTensor(), T.Normalize(mean, std)]))
    train_loader = torch.utils.data.DataLoader(train_set, batch, shuffle=True, num_workers=2, drop_last=True,
                                               persistent_workers=True)
    test_loader = torch.utils.data.DataLoader(test_set, 256, num_workers=2)
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=epochs * len(train_loader))
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - started
    model.eval()
    plain = flipped = 0
    with torch.no_grad():
        for x, y in test_loader:
            p = model(x).softmax(1)
            plain += (p.argmax(1) == y).sum().item()
            flipped += ((p + model(x.flip(-1)).softmax(1)).argmax(1) == y).sum().item()
    return {"seconds": seconds, "test_accuracy": plain / len(test_set), "test_accuracy_tta": flipped / len(test_set)}


def workflow(folder: Path, model_name: str, epochs: int, budget: str, workspace: Path) -> dict:
    command = [sys.executable, "-m", "honed", "workflow", str(folder), "--workspace", str(workspace),
               "--name", "cifar", "--model", model_name, "--no-pretrained", "--image-size", "32",
               "--epochs", str(epochs), "--batch-size", "64", "--budget", budget, "--workers", "2", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout)
    result["wall_s"] = time.perf_counter() - started
    return result


def test_scores(workspace: Path) -> dict[str, dict]:
    from honed.tracking.ledger import Ledger

    with Ledger(workspace) as ledger:
        return {r.name: r.metrics for r in ledger.runs()}


def report(args, hand: dict, flow: dict, metrics: dict[str, dict]) -> str:
    load = open("/proc/loadavg").read().split()[:3]
    lines = [
        "# `honed workflow` on CIFAR-10 JPEGs vs the hand-written baseline (CPU)", "",
        f"`python benchmarks/bench_workflow.py --cifar {args.cifar} --per-class {args.per_class} "
        f"--test-per-class {args.test_per_class} --epochs {args.epochs} --budget {args.budget} --model {args.model}`",
        "", f"{args.per_class} training and {args.test_per_class} test images per class (the first files of each "
        f"class), {args.model} from random weights at 32 px, {args.epochs} epochs per run, 2 CPU cores, torch "
        f"{torch.__version__}; load average at the end {' '.join(load)}.", "",
        "| pipeline / step | run | what changed | val accuracy | test accuracy | seconds |", "|---|---|---|---|---|---|",
        f"| hand-written (ImageFolder + DataLoader, crop + flip, AdamW OneCycle) | - | - | - | "
        f"{hand['test_accuracy']:.4f} (flip TTA {hand['test_accuracy_tta']:.4f}) | {hand['seconds']:.0f} |"]
    for step in flow["steps"]:
        own = not step["key"].startswith("analysis")  # an analysis row names the run it analyzed
        test = metrics.get(step["run"], {}).get("test_accuracy") if own else None
        score = "" if step["score"] is None else f"{step['score']:.4f}"
        lines.append(f"| honed: {step['key']} | {step['run']} | {step['change'][:90]} | {score} | "
                     f"{'' if test is None else f'{test:.4f}'} | {step['seconds']:.0f} |")
    lines += ["", f"Workflow wall time {flow['wall_s'] / 60:.1f} min (budget {args.budget}); best step "
              f"{flow['best']} (val accuracy {flow['best_score']:.4f}).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar"))
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--budget", default="25m")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_workflow.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = subset(args.cifar, args.per_class, args.test_per_class, Path(tmp) / "cifar")
        hand = handwritten(folder, args.model, args.epochs)
        print(f"hand-written: {hand}", flush=True)
        workspace = Path(tmp) / "ws"
        flow = workflow(folder, args.model, args.epochs, args.budget, workspace)
        text = report(args, hand, flow, test_scores(workspace))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
