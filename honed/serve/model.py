"""The model a server serves: a bundle's Predictor plus the facts ``GET /metadata`` shows.

Only local bundles are served: a URL is refused before anything is fetched, and loading goes through
``honed.export.bundle`` (validated JSON, hash-checked safetensors or ONNX; nothing is unpickled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import HonedError
from honed.predict import Predictor

# Fields of bundle.json that /metadata shows; file hashes and the full training config stay in the bundle.
SHOWN_FIELDS = ("name", "kind", "task", "classes", "target_columns", "preprocessing", "tta", "metric", "score",
                "metrics", "data_fingerprint", "honed_version", "created", "model", "method", "members")


@dataclass
class ServedModel:
    """A Predictor and what the bundle says about it."""

    predictor: Predictor
    meta: dict[str, Any] = field(default_factory=dict)  # the parts of bundle.json worth showing
    card: str = ""  # model_card.md, when the bundle has one
    source: str = ""  # where it was loaded from

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or Path(self.source).name or "model")

    def metadata(self) -> dict[str, Any]:
        p = self.predictor
        out = {key: self.meta[key] for key in SHOWN_FIELDS if key in self.meta}
        out.update(name=self.name, task=p.task, classes=p.classes, target_columns=p.target_columns,
                   image_size=p.image_size, model_card=self.card)
        out.setdefault("preprocessing", {"image_size": p.image_size, "mean": list(p.config.preprocess.mean),
                                         "std": list(p.config.preprocess.std)})
        out["tta"] = "none" if p.tta is None else p.tta.to_dict()  # what is applied now (--tta may override)
        out["calibration"] = {"temperature": p.temperature, "applied": p.calibrated}  # --no-calibration: raw
        return out


def load_served(bundle: str | Path, *, device: str = "auto", backend: str = "torch",
                tta: str | None = None, calibrate: bool = True) -> ServedModel:
    """Load a local bundle (folder or .zip) for serving; HonedError for URLs, run folders and broken bundles.
    ``calibrate=False`` serves raw probabilities instead of temperature-scaled ones."""
    from honed.artifacts.bundle_meta import CARD_FILE
    from honed.artifacts.trained import is_bundle
    from honed.artifacts.bundle_files import BUNDLE_FILE, BundleFiles, read_meta
    from honed.predict import load

    text = str(bundle)
    if "://" in text:
        raise HonedError(f"{text} is a URL: honed serve only loads local bundles; download and check it first, "
                         "then give its path")
    path = Path(text).expanduser()
    if not path.exists():
        raise HonedError(f"no such bundle: {path} (make one with `honed export RUN --out {path}`)")
    if not is_bundle(path):
        raise HonedError(f"{path} is not a bundle (no {BUNDLE_FILE}): export the run first with "
                         f"`honed export {path.name}` and serve the bundle")
    predictor = load(path, device=device, backend=backend, tta=tta, calibrate=calibrate)
    files = BundleFiles(path)  # zip or folder, size-checked, nothing extracted
    raw = read_meta(files)
    try:
        card = files.read(CARD_FILE).decode("utf-8", "replace")
    except HonedError:  # an ensemble bundle keeps its cards with the members
        card = ""
    return ServedModel(predictor, {k: raw[k] for k in SHOWN_FIELDS if k in raw}, card, str(path))
