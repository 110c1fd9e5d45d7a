"""Load time of a gbm probe head: before issue 21 (training features stored, trees refitted at every load)
against now (the fitted trees as an ONNX graph, opened by ONNX Runtime).

    OMP_NUM_THREADS=1 python benchmarks/bench_gbm_load.py --rows 2000 --features 512 --classes 10

Both sides get the same features (seeded noise with a class signal) and 100 rounds. The old side runs the
honed of ``--baseline`` (a commit; extracted with ``git archive`` into a temporary folder) in a child
process: its ``save_gbm_data`` then ``GbmHead.from_file`` (the refit and its check). The new side:
``fit_gbm`` then ``GbmHead.from_file`` and one prediction of the validation rows. Also prints the sizes of
the stored files. Load times are medians over ``--repeats`` loads (the old one: ``--old-repeats``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE = "ad157dc"  # main before issue 21

OLD_SIDE = r"""
import json, sys, time, numpy as np
from threadpoolctl import threadpool_limits
from honed.models.heads.gbm import fit_gbm, save_gbm_data, GbmHead
data = np.load(sys.argv[1]); out = sys.argv[2]; repeats = int(sys.argv[3])
x, y, xv = data["x"], data["y"], data["xv"]
with threadpool_limits(1):
    head = fit_gbm(x, y, task="classify", outputs=int(y.max()) + 1, seed=0, rounds=100)
save_gbm_data(out, train_features=x, train_targets=y, val_features=xv, val_outputs=head.predict(xv),
              task="classify", outputs=int(y.max()) + 1, seed=0, rounds=100, leaf=head.details["min_samples_leaf"])
times = []
for _ in range(repeats):
    start = time.perf_counter(); GbmHead.from_file(out); times.append(time.perf_counter() - start)
print(json.dumps({"load_s": times}))
"""


def data(rows: int, features: int, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.6, size=(classes, features)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    x = (rng.normal(size=(rows, features)).astype(np.float32) + centres[y]).astype(np.float32)
    yv = rng.integers(0, classes, 200)
    xv = (rng.normal(size=(200, features)).astype(np.float32) + centres[yv]).astype(np.float32)
    return {"x": x, "y": y, "xv": xv}


def old_side(arrays: dict[str, np.ndarray], baseline: str, repeats: int, tmp: Path) -> dict:
    src = tmp / "baseline"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", baseline, "honed"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    np.savez(tmp / "data.npz", **arrays)
    out = tmp / "probe_features.safetensors"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", OLD_SIDE, str(tmp / "data.npz"), str(out), str(repeats)],
                          capture_output=True, text=True, env=env, cwd=tmp)  # not this checkout's honed
    if done.returncode:
        raise RuntimeError(f"the baseline side failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"load_s": statistics.median(result["load_s"]), "bytes": out.stat().st_size, "loads": len(result["load_s"])}


def new_side(arrays: dict[str, np.ndarray], repeats: int, tmp: Path) -> dict:
    from threadpoolctl import threadpool_limits

    from honed.models.heads.gbm import GbmHead, fit_gbm, save_gbm_head

    x, y, xv = arrays["x"], arrays["y"], arrays["xv"]
    start = time.perf_counter()
    with threadpool_limits(1):
        head = fit_gbm(x, y, task="classify", outputs=int(y.max()) + 1, seed=0, rounds=100)
    fit_s = time.perf_counter() - start
    path = tmp / "gbm_head.onnx"
    save_gbm_head(path, head)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loaded = GbmHead.from_file(path)
        loaded.predict(xv)
        times.append(time.perf_counter() - start)
    return {"load_s": statistics.median(times), "fit_and_convert_s": fit_s, "bytes": path.stat().st_size,
            "parity": head.details["onnx_parity_max_abs_diff"], "loads": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-repeats", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    arrays = data(args.rows, args.features, args.classes)
    with tempfile.TemporaryDirectory(prefix="honed-bench-gbm-") as tmp:
        new = new_side(arrays, args.repeats, Path(tmp))
        old = old_side(arrays, args.baseline, args.old_repeats, Path(tmp))
    print(f"gbm head, {args.rows} x {args.features}, {args.classes} classes, 100 rounds")
    print("| side | stored file | bytes | load s (median of n) |")
    print("|---|---|---:|---:|")
    print(f"| before ({args.baseline}: refit) | probe_features.safetensors | {old['bytes']:,} | "
          f"{old['load_s']:.2f} (n={old['loads']}) |")
    print(f"| now (ONNX trees) | gbm_head.onnx | {new['bytes']:,} | {new['load_s']:.3f} (n={new['loads']}) |")
    print(f"speed-up {old['load_s'] / new['load_s']:.0f}x; fit + convert + parity now {new['fit_and_convert_s']:.1f} s; "
          f"ONNX vs scikit-learn max abs diff {new['parity']:.2g}")


if __name__ == "__main__":
    main()
