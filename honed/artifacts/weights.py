"""A trained network's weights on disk: safetensors only, so reading them never runs code."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

from honed.errors import HonedError
from honed.models.state_dicts import check_shapes
from honed.tracking.atomic import save_tensors


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the model itself (unwrapping DDP and torch.compile)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    save_tensors(path, model_tensors(model), metadata)


def load_weights(path: Path, model: nn.Module) -> None:
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise HonedError(f"no weights at {path}: the run has no completed epoch yet") from None
    except Exception as error:
        raise HonedError(f"cannot read weights {path}: {error}") from None
    target = getattr(model, "module", model)
    check_shapes(target, tensors, path)  # torch would raise a RuntimeError on a shape mismatch
    missing, unexpected = target.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise HonedError(f"{path} does not fit the model: {len(missing)} missing and {len(unexpected)} "
                         f"unexpected tensors (e.g. {(missing or unexpected)[:3]})")
