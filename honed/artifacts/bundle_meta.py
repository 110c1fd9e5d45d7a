"""bundle.json: the names a bundle's files go by, and the strict check of its description that loading runs
before anything else is read (``validate_meta``)."""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError
from honed.artifacts.bundle_files import BUNDLE_FILE, ONNX_FILE
from honed.artifacts.run_folder import check_temperature
from honed.models.heads.gbm import HEAD_FILE as GBM_FILE, refuse_old_gbm
from honed.tasks import TASKS, get_task

FORMAT_NAME = "honed-bundle"
FORMAT_VERSION = 1  # bump when bundle.json changes incompatibly; loaders refuse versions they do not know
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.md"
TORCHSCRIPT_FILE = "model.torchscript.pt"
INPUT_NAME = "input"  # the ONNX graph's input name, stored so predictors can feed it
RESIZE_POLICY = "shorter side + centre crop"  # the only one honed's preprocessing implements
TTA_POLICIES = ("none",)  # the string form of "tta"; an object {views, aggregate, weights} names a TTA setting


def validate_meta(meta: Any) -> dict[str, Any]:
    """Return ``meta`` if it is a bundle.json this honed understands; else HonedError naming the problem."""
    if not isinstance(meta, dict):
        raise HonedError(f"{BUNDLE_FILE} must hold a JSON object, not {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise HonedError(f"{BUNDLE_FILE} is not a honed bundle description (format {meta.get('format')!r})")
    version = _field(meta, "format_version", int)
    if version != FORMAT_VERSION:
        newer = " (written by a newer honed: upgrade honed)" if version > FORMAT_VERSION else ""
        raise HonedError(f"{BUNDLE_FILE} has format_version {version}; this honed reads version "
                         f"{FORMAT_VERSION}{newer}")
    _field(meta, "name", str)
    _validate_model(meta)
    _validate_labels(meta)
    _validate_preprocessing(_field(meta, "preprocessing", dict))
    if "tta" not in meta:
        raise HonedError(f"{BUNDLE_FILE} is missing the field 'tta': export the bundle again")
    tta = meta["tta"]
    if isinstance(tta, dict):
        pass  # a TTA setting: checked field by field where it is built (honed.predict.loading.bundle_tta)
    elif not isinstance(tta, str) or tta not in TTA_POLICIES:
        raise HonedError(f"{BUNDLE_FILE} asks for test-time augmentation {tta!r}; this honed knows "
                         f"{', '.join(TTA_POLICIES)} or an object {{views, aggregate, weights}}")
    _validate_files(_field(meta, "files", dict))
    validate_calibration(meta)
    _field(meta, "metrics", dict)
    _field(meta, "parity", dict)
    return meta


def validate_calibration(meta: dict[str, Any]) -> None:
    """The optional "calibration" field: absent or null (an uncalibrated bundle, e.g. exported before honed
    calibrated), or an object with a positive "temperature" (honed.combine.calibration)."""
    raw = meta.get("calibration")
    if raw is not None:
        check_temperature(raw, f"{BUNDLE_FILE} field 'calibration'")


def _field(mapping: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """``mapping[key]``, which must exist and be of ``kind`` (bools are not numbers here)."""
    name = f"{where}.{key}" if where else key
    if key not in mapping:
        raise HonedError(f"{BUNDLE_FILE} is missing the field {name!r}: export the bundle again")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise HonedError(f"{BUNDLE_FILE} field {name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _validate_model(meta: dict[str, Any]) -> None:
    model = _field(meta, "model", dict)
    if not _field(model, "name", str, "model").strip():
        raise HonedError(f"{BUNDLE_FILE} field 'model.name' is empty: it must name the architecture")
    if _field(model, "num_outputs", int, "model") < 1:
        raise HonedError(f"{BUNDLE_FILE} field 'model.num_outputs' must be at least 1")
    if "head_bn" in model:  # absent in bundles exported before --head-bn existed
        _field(model, "head_bn", bool, "model")


def _validate_labels(meta: dict[str, Any]) -> None:
    task = _field(meta, "task", str)
    if task not in TASKS:
        raise HonedError(f"{BUNDLE_FILE} field 'task' must be {' or '.join(TASKS)}, not {task!r}")
    for key in ("classes", "target_columns"):
        values = _field(meta, key, list)
        if not all(isinstance(v, str) for v in values) or len(set(values)) != len(values):
            raise HonedError(f"{BUNDLE_FILE} field {key!r} must be a list of distinct names")
    key = get_task(task).labels_key
    outputs = meta["model"]["num_outputs"]
    if len(meta[key]) != outputs:
        raise HonedError(f"{BUNDLE_FILE} lists {len(meta[key])} {key} but model.num_outputs is {outputs}: "
                         "the label list does not match the weights")


def _validate_preprocessing(pre: dict[str, Any]) -> None:
    size = _field(pre, "image_size", int, "preprocessing")
    if not 8 <= size <= 4096:
        raise HonedError(f"{BUNDLE_FILE} field 'preprocessing.image_size' is {size}: it must be between 8 and 4096")
    resize = _field(pre, "resize", str, "preprocessing")
    if resize != RESIZE_POLICY:
        raise HonedError(f"{BUNDLE_FILE} asks for resize policy {resize!r}; this honed implements {RESIZE_POLICY!r}")
    for key in ("mean", "std"):
        values = _field(pre, key, list, "preprocessing")
        if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise HonedError(f"{BUNDLE_FILE} field 'preprocessing.{key}' must be 3 numbers (R, G, B)")
    if any(v <= 0 for v in pre["std"]):
        raise HonedError(f"{BUNDLE_FILE} field 'preprocessing.std' must be positive")


def _validate_files(files: dict[str, Any]) -> None:
    known = (WEIGHTS_FILE, ONNX_FILE, TORCHSCRIPT_FILE, GBM_FILE)
    refuse_old_gbm(files, f"the bundle (its {BUNDLE_FILE})")  # old gbm bundles carried training features
    if WEIGHTS_FILE not in files:
        raise HonedError(f"{BUNDLE_FILE} field 'files' does not list {WEIGHTS_FILE}")
    for name, info in files.items():
        if name not in known:
            raise HonedError(f"{BUNDLE_FILE} field 'files' names {name!r}; a bundle holds only {', '.join(known)}")
        digest = _field(_field(files, name, dict, "files"), "sha256", str, f"files.{name}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise HonedError(f"{BUNDLE_FILE} field 'files.{name}.sha256' is not a SHA-256 hex digest")
