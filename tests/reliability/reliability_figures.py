"""Print the figures for benchmarks/RELIABILITY.md (hostile inputs): ``python -m tests.reliability.reliability_figures``.

Builds the hostile image corpus and the malicious model corpus in a temporary folder, decodes / loads each
file, and times the scan and cache build of the shipped demo data (cifar_mini).
"""

from __future__ import annotations

from collections import Counter
from functools import partial
import statistics
import tempfile
import time
from pathlib import Path

import torch

from honed.data.cache import DecodedCache
from honed.data.decode import DecodeError, decode_image
from honed.data.demo import demo_data_path
from honed.data.decode import DEFAULT_MAX_PIXELS
from honed.data.scan import _decode_error, map_files, scan_images
from honed.errors import HonedError
from honed.models.state_dicts import read_state_dict
from honed.artifacts.weights import load_weights
from tests.reliability.hostile_corpus import build_corpus
from tests.reliability.malicious_models import build_model_corpus


def image_figures(folder: Path) -> None:
    cases = build_corpus(folder / "images")
    decoded, skipped = 0, Counter()
    for case in cases:
        try:
            decode_image(case.path)
            decoded += 1
        except DecodeError as error:
            skipped[error.reason.split(" (")[0] if error.reason.startswith("too many") else error.reason] += 1
    print(f"image corpus: {len(cases)} files, {decoded} decoded, {sum(skipped.values())} skipped")
    for reason, count in skipped.most_common():
        print(f"  skipped {count:3d}  {reason}")


def model_figures(folder: Path) -> None:
    sentinel = folder / "PWNED"
    files = build_model_corpus(folder / "models", sentinel)
    model = torch.nn.Linear(2, 2)
    for label, load in (("read_state_dict", read_state_dict), ("load_weights", lambda p: load_weights(p, model))):
        refused, slowest = 0, 0.0
        for model_file in files:
            start = time.perf_counter()
            try:
                load(model_file.path)
            except HonedError:
                refused += 1
            slowest = max(slowest, time.perf_counter() - start)
        print(f"model corpus via {label}: {refused}/{len(files)} refused with HonedError, slowest {slowest:.3f} s")
    families = Counter(f.family for f in files)
    print(f"  {dict(families)}; sentinel created: {sentinel.exists()}")


def scan_figures(folder: Path, repeats: int = 7) -> None:
    paths = sorted(str(p) for p in Path(demo_data_path()).rglob("*.jpg"))
    scans, threaded, builds = [], [], []
    unprotected = partial(_decode_error, max_pixels=DEFAULT_MAX_PIXELS)
    for index in range(repeats):
        start = time.perf_counter()
        scan_images(paths)
        scans.append(time.perf_counter() - start)
        start = time.perf_counter()
        map_files(unprotected, paths)  # the scan as it was before crash isolation: a thread pool, no fork
        threaded.append(time.perf_counter() - start)
        start = time.perf_counter()
        DecodedCache.build(paths, 32, cache_dir=folder / f"cache{index}")
        builds.append(time.perf_counter() - start)
    print(f"cifar_mini ({len(paths)} JPEGs): thread-pool scan (before) median {statistics.median(threaded):.3f} s "
          f"(min {min(threaded):.3f}); forked, crash-isolated scan (now) median {statistics.median(scans):.3f} s "
          f"(min {min(scans):.3f})")
    print(f"  "
          f"cache build at 32 px median {statistics.median(builds):.3f} s (min {min(builds):.3f})")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        image_figures(Path(tmp))
        model_figures(Path(tmp))
        scan_figures(Path(tmp))
