"""The workflow's timing probe: a second or two of real work (build the model, decode a few training images,
a few forward and forward-backward passes at the run's input size) measured on this machine, from which the
plan prices every step. Measured, not guessed: the same model costs 50x more at 224 px on two busy CPU cores
than at 32 px on a GPU."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.manifest import Manifest
from honed.models.factory import build_model, with_preprocess_defaults
from honed.runtime import setup_runtime, teardown_runtime

PROBE_IMAGES = 8  # images per timed batch: enough to amortize per-call overhead, small enough to take ~1 s
TIMED_REPEATS = 2  # timed passes after one warm-up pass; the faster one counts (the slower saw a hiccup)


@dataclass
class Costs:
    """Seconds per unit of work on this machine, for this model at this input size."""

    image_size: int  # the input size the runs use (the model's default when none was given)
    build_s: float  # building the model with its weights (every run, and twice in the advisor)
    load_s: float  # decoding one image to the input size
    train_s: float  # forward and backward of one image through the whole network
    infer_s: float  # forward of one image, no gradients
    seconds: float = 0.0  # what the probe itself took

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
        dataset = split_dataset(manifest, "train", size)
        count = min(PROBE_IMAGES, len(dataset))
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
                 seconds=time.perf_counter() - started)


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
