"""The workflow's timing probe: a second or two of real work (build the model, decode a few training images,
a few forward and forward-backward passes at the run's input size) measured on this machine, from which the
plan prices every step. Measured, not guessed: the same model costs 50x more at 224 px on two busy CPU cores
than at 32 px on a GPU."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import torch

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.manifest import Manifest
from honed.models.factory import build_model, with_preprocess_defaults
from honed.runtime import setup_runtime, teardown_runtime

PROBE_IMAGES = 4  # images per timed batch: small enough to take about a second on busy CPU cores
PROBE_SIZE = 96  # px at most: timed at this size and scaled by the pixels (a convnet's cost grows with them;
# per-image overhead makes small inputs cost relatively more, so the scaled figure errs on the safe side)
TIMED_REPEATS = 1  # timed passes after one warm-up pass


@dataclass
class Costs:
    """Seconds per unit of work on this machine, for this model at this input size."""

    image_size: int  # the input size asked for (the model's default when none was given)
    build_s: float  # building the model with its weights (every run, and twice in the advisor)
    load_s: float  # decoding one image to the input size
    train_s: float  # forward and backward of one image through the whole network
    infer_s: float  # forward of one image, no gradients
    seconds: float = 0.0  # what the probe itself took
    probe_size: int = 0  # px the passes were timed at (0: at image_size)

    def at(self, size: int) -> Costs:
        """The costs at another input size: passes scale with the pixels, decoding does not."""
        scale = (size / (self.probe_size or self.image_size)) ** 2
        return replace(self, image_size=size, probe_size=size, train_s=self.train_s * scale,
                       infer_s=self.infer_s * scale)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Costs:
        return cls(**raw)


def measure_costs(config: RunConfig, manifest: Manifest) -> Costs:
    """Time the model on a few of ``manifest``'s training images, as a run with ``config`` would use them."""
    started = time.perf_counter()
    config = copy.deepcopy(config)  # building the model fills preprocessing defaults: not in the caller's copy
    runtime = setup_runtime(config.train.device, config.train.precision)
    try:
        torch.manual_seed(config.train.seed)
        built = time.perf_counter()
        model = build_model(config.model, manifest.num_outputs)
        build_s = time.perf_counter() - built
        size = with_preprocess_defaults(config.preprocess, model).image_size
        probe_size = min(size, PROBE_SIZE)
        dataset = split_dataset(manifest, "train", probe_size)
        count = min(PROBE_IMAGES, len(dataset))
        dataset.load_image(0)  # the decoder's first call pays its imports
        decoded = time.perf_counter()
        images = torch.stack([dataset.load_image(i) for i in range(count)])
        load_s = (time.perf_counter() - decoded) / max(count, 1)
        batch = (images.float() / 255).to(runtime.device)
        model.to(runtime.device)
        train_s = _seconds(lambda: _train_pass(model, batch, runtime), runtime) / max(count, 1)
        model.eval()
        with torch.inference_mode():
            infer_s = _seconds(lambda: _forward(model, batch, runtime), runtime) / max(count, 1)
    finally:
        teardown_runtime(runtime)
    return Costs(image_size=int(size), build_s=build_s, load_s=load_s, train_s=train_s, infer_s=infer_s,
                 seconds=time.perf_counter() - started, probe_size=int(probe_size))


def _seconds(work, runtime) -> float:
    """The fastest of TIMED_REPEATS runs of ``work`` after one warm-up run."""
    work()
    times = []
    for _ in range(TIMED_REPEATS):
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        started = time.perf_counter()
        work()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        times.append(time.perf_counter() - started)
    return min(times)


def _forward(model: torch.nn.Module, batch: torch.Tensor, runtime) -> torch.Tensor:
    with runtime.autocast():
        return model(batch)


def _train_pass(model: torch.nn.Module, batch: torch.Tensor, runtime) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    output = _forward(model, batch, runtime)
    output.float().logsumexp(dim=-1).mean().backward()
