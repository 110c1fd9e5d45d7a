"""The run's batches: the loaders (decoded-image cache or per-image DataLoader) and the batch pipeline
(normalization, augmentation on the device); shared by training, its test evaluation and ``lr_find``."""

from __future__ import annotations

import torch

from honed.config import RunConfig
from honed.data.fast_loader import make_fast_loader
from honed.data.loader import make_loader
from honed.data.manifest import Manifest
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.progress import Phase, Reporter
from honed.runtime import Runtime
from honed.tasks import get_task


def batch_pipeline(config: RunConfig, manifest: Manifest, runtime: Runtime) -> BatchPipeline:
    augmenter = None
    if config.train.augment:
        from honed.augment import parse_policy

        augmenter = parse_policy(config.train.augment).build()
        if augmenter.has_mix and not get_task(config.data.task).is_classification:
            raise HonedError("mixup/cutmix mix class labels: they are for classification, not regression")
    return BatchPipeline(config.preprocess.mean, config.preprocess.std, augmenter,
                         channels_last=runtime.device.type == "cuda" and config.train.channels_last,
                         num_classes=manifest.num_outputs)


CACHE_AUTO_LIMIT_BYTES = 8 << 30  # --cache auto decodes once to disk when the split fits in this


def loader_factory(config: RunConfig, runtime: Runtime, dataset, reporter: Reporter | None = None):
    """The decoded-image cache (decode once, batches sliced from a memory map; on CUDA the training array
    lives on the GPU when it fits) or the per-image DataLoader for data that should not be cached.
    ``reporter`` sees a cache build as a phase (nothing when the cache is found on disk)."""
    size = config.preprocess.image_size
    decoded_bytes = len(dataset) * 3 * size * size
    use_cache = config.train.cache == "on" or (config.train.cache == "auto" and decoded_bytes <= CACHE_AUTO_LIMIT_BYTES)
    if not use_cache:
        return make_loader
    resident = runtime.device.type == "cuda" and decoded_bytes < 0.4 * torch.cuda.mem_get_info(runtime.device)[0]

    def make(ds, **kwargs):
        on_device = runtime.device if resident and kwargs.get("train") else None
        with Phase(reporter, f"decoding {len(ds)} images at {size}px into the cache", len(ds)) as phase:
            return make_fast_loader(ds, device=on_device, progress=phase, **kwargs)

    return make
