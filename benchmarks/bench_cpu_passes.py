"""How many images should one forward pass take on a CPU? The rule of ``honed.models.cpu_passes`` measured.

    python benchmarks/bench_cpu_passes.py
    python benchmarks/bench_cpu_passes.py --run WORKSPACE/RUN --photos /work/data/hymenoptera/val

First, tf_efficientnet_lite0 in eval mode: ms an image for a batch of 64 random images split into passes of
1 to 64 images, at 64 to 288 px (the fastest of ``--repeats``). Then, with ``--run`` (a honed run or bundle)
and ``--photos`` (a folder of images): ``Predictor.predict`` on every photo with honed's rule against one
pass per loader batch of 64, alternated in one process, and whether their predictions agree.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import timm
import torch

from honed.models import cpu_passes

PASSES = (1, 2, 4, 8, 16, 32, 64)
SIZES = (64, 128, 160, 224, 288)


def per_image_ms(model: torch.nn.Module, x: torch.Tensor, per_pass: int, repeats: int) -> float:
    with torch.inference_mode():
        model(x[:per_pass])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for part in x.split(per_pass):
                model(part)
            best = min(best, time.perf_counter() - started)
    return 1000 * best / len(x)


def predict_seconds(run: Path, photos: list[str], pixels: int) -> tuple[float, list]:
    import honed

    cpu_passes.CPU_PASS_PIXELS = pixels
    predictor = honed.load(run, device="cpu")
    started = time.perf_counter()
    table = predictor.predict(photos, batch_size=64, workers=0)
    return time.perf_counter() - started, table["prediction"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a honed run or bundle for the end-to-end comparison")
    parser.add_argument("--photos", type=Path, help="a folder of images it predicts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if (args.run is None) != (args.photos is None):
        parser.error("--run and --photos go together")
    if args.photos is not None and not args.photos.is_dir():
        parser.error(f"{args.photos} is not a folder")
    if args.run is not None:
        import honed
        from honed.errors import HonedError

        try:  # before the table, so a wrong --run stops at once
            honed.load(args.run, device="cpu")
        except HonedError as error:
            parser.error(str(error))
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    print("| px | " + " | ".join(f"{p} a pass" for p in PASSES) + " | honed's rule |")
    print("|---" * (len(PASSES) + 2) + "|")
    for size in SIZES:
        x = torch.rand(64, 3, size, size)
        cells = [per_image_ms(model, x, p, args.repeats) for p in PASSES]
        rule = cpu_passes.images_per_pass(x)
        print(f"| {size} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {rule} |", flush=True)
    if args.run is None:
        return
    photos = sorted(str(p) for p in args.photos.rglob("*") if p.is_file())
    default = cpu_passes.CPU_PASS_PIXELS
    timings: dict[str, list[float]] = {"rule": [], "one pass": []}
    answers = {}
    for _ in range(2):  # alternated, so a change in the machine's load falls on both
        for label, pixels in (("rule", default), ("one pass", 1 << 40)):
            seconds, answers[label] = predict_seconds(args.run, photos, pixels)
            timings[label].append(seconds)
    print(f"Predictor.predict on {len(photos)} photos, batch 64, best of 2: honed's rule "
          f"{min(timings['rule']):.1f} s, one pass a batch {min(timings['one pass']):.1f} s; the same "
          f"predictions: {answers['rule'] == answers['one pass']}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
