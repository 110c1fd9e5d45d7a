"""Checkpoints as safetensors plus JSON: no pickle anywhere, so loading one never runs code.

A run folder holds ``best.safetensors`` and ``last.safetensors`` (model weights), ``last.optimizer.safetensors``
(optimizer tensors, flattened) and ``state.json`` (epoch, step, best score, optimizer hyperparameters,
history). Each file is written atomically; ``state.json`` is written last, so it only ever names an
epoch whose weights are complete on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file

from honed.errors import HonedError
from honed.tracking.atomic import save_tensors, write_json

STATE_FILE = "state.json"


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
    missing, unexpected = target.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise HonedError(f"{path} does not fit the model: {len(missing)} missing and {len(unexpected)} "
                         f"unexpected tensors (e.g. {(missing or unexpected)[:3]})")


def save_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any]) -> None:
    """Weights, optimizer and RNG first, then ``state.json`` which points at them."""
    save_weights(run_dir / "last.safetensors", model)
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    save_tensors(run_dir / "last.optimizer.safetensors", tensors)
    write_json(run_dir / STATE_FILE, {**state, "optimizer_groups": groups})


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HonedError(f"{path} is damaged ({error}): start the run again") from None


def restore_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                           state: dict[str, Any]) -> None:
    load_weights(run_dir / "last.safetensors", model)
    tensors = load_file(str(run_dir / "last.optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer_groups"]))


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            tensors[f"state.{index}.{key}"] = torch.as_tensor(value).detach().cpu()
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": groups}
