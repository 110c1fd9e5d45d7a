"""Checkpoints as safetensors plus JSON: no pickle anywhere, so loading one never runs code.

A run folder holds ``best.safetensors`` and ``last.safetensors`` (model weights), ``last.optimizer.safetensors``
(optimizer tensors, flattened, and every random generator's state) and ``state.json`` (epoch, step, best
score, optimizer hyperparameters, history, and for a mid-epoch checkpoint the position inside the epoch).

Write order, so a kill at any moment leaves a resumable run: each checkpoint's two tensor files are written
atomically under a fresh name in ``checkpoints/``, then ``state.json`` (atomically) names them, and only then
are ``last.*`` pointed at them (hard links) and older checkpoints removed. ``state.json`` therefore only
ever names complete files of one and the same step; rewriting ``last.*`` in place instead would leave a
window where the weights belong to one step and the optimizer to another.
"""

from __future__ import annotations

import json
from pathlib import Path
import random
import secrets
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

from honed.artifacts.weights import load_weights, save_weights
from honed.errors import HonedError
from honed.tracking.atomic import is_temp_name, link_or_copy, remove_stale_temps, save_tensors, write_json

STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"
LAST_WEIGHTS = "last.safetensors"
LAST_OPTIMIZER = "last.optimizer.safetensors"


def save_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], *, generator: torch.Generator | None = None) -> None:
    """Weights, optimizer and every RNG (``generator``: the epoch's augmentation generator) first, then
    ``state.json`` which names them, then ``last.*`` (see the module notes for why this order)."""
    folder = run_dir / CHECKPOINT_DIR
    tag = f"{int(state['step']):09d}-{secrets.token_hex(3)}"  # fresh: never overwrites what state.json names
    weights, extra = folder / f"{tag}.safetensors", folder / f"{tag}.optimizer.safetensors"
    save_weights(weights, model)
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    tensors.update(capture_rng(generator))
    save_tensors(extra, tensors)
    write_json(run_dir / STATE_FILE, {**state, "optimizer_groups": groups, "checkpoint": {
        "weights": weights.relative_to(run_dir).as_posix(), "optimizer": extra.relative_to(run_dir).as_posix()}})
    link_or_copy(weights, run_dir / LAST_WEIGHTS)
    link_or_copy(extra, run_dir / LAST_OPTIMIZER)
    for old in folder.iterdir():
        if old.name not in (weights.name, extra.name) and not is_temp_name(old.name):
            old.unlink(missing_ok=True)


def discard_partial_writes(run_dir: Path) -> None:
    """Remove the temporary files that writers killed mid-write left in a run being resumed (nothing else
    writes to it meanwhile, so every temporary file there is abandoned)."""
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):
        if folder.is_dir():
            remove_stale_temps(folder, min_age_s=0.0)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HonedError(f"{path} is damaged ({error}): start the run again") from None


def restore_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                           state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load the checkpoint ``state`` names into ``model`` and ``optimizer``; return its RNG states, for
    ``restore_rng`` just before training goes on (anything drawn before then would shift the streams)."""
    files = state.get("checkpoint") or {"weights": LAST_WEIGHTS, "optimizer": LAST_OPTIMIZER}  # older runs
    load_weights(run_dir / files["weights"], model)
    try:
        tensors = load_file(str(run_dir / files["optimizer"]))
    except Exception as error:
        raise HonedError(f"cannot read the optimizer state {run_dir / files['optimizer']}: {error}; "
                         "start the run again") from None
    rng = {name: tensors.pop(name) for name in list(tensors) if name.startswith("rng.")}
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer_groups"]))
    return rng


def capture_rng(generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Every random stream training draws from, as tensors: torch (CPU, and CUDA when in use), numpy's and
    Python's global generators, and ``generator`` (the epoch's augmentation draws)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy.keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "rng.numpy.rest": torch.tensor([position, has_gauss, gauss], dtype=torch.float64),
        "rng.python": torch.tensor([version, *internal], dtype=torch.int64),
        "rng.python.gauss": torch.tensor([gauss_next is not None, gauss_next or 0.0], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = cuda_state
    if generator is not None:
        tensors["rng.augment"] = generator.get_state()
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> None:
    """Put back what ``capture_rng`` saved (checkpoints of older runs hold only the torch CPU state)."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.numpy.keys" in tensors:
        position, has_gauss, gauss = tensors["rng.numpy.rest"].tolist()
        np.random.set_state(("MT19937", tensors["rng.numpy.keys"].numpy().astype(np.uint32), int(position),
                             int(has_gauss), gauss))
    if "rng.python" in tensors:
        version, *internal = tensors["rng.python"].tolist()
        has_next, gauss_next = tensors["rng.python.gauss"].tolist()
        random.setstate((version, tuple(internal), gauss_next if has_next else None))
    cuda = sorted((name for name in tensors if name.startswith("rng.cuda.")), key=lambda n: int(n.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[name] for name in cuda])
    if generator is not None and "rng.augment" in tensors:
        generator.set_state(tensors["rng.augment"])


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
