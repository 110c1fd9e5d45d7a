"""``advise``: which transfer strategy suits this data and backbone, and why.

    advice = honed.advise.advise(DataConfig(source="data/"), model="tf_efficientnet_lite0", pretrained=True)
    advice.decision, advice.reasons, advice.measurements

``--strategy auto`` runs the same advisor before training (``honed.advise.auto``) and records its advice
in the run (``advice.json``, and the run's change text in the ledger).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from honed.artifacts.run_folder import ADVICE_FILE
from honed.advise.probe_gain import Measurements, measure
from honed.advise.rule import decide
from honed.config import DataConfig, RunConfig
from honed.data.manifest import Manifest
from honed.tracking.atomic import write_json
from honed.progress import Reporter



@dataclass
class Advice:
    decision: str  # a strategy name: probe, head, partial, gradual, full or scratch
    reasons: list[str]  # why, in words, one line each
    measurements: Measurements

    def to_dict(self) -> dict:
        return {"decision": self.decision, "reasons": self.reasons, "measurements": self.measurements.to_dict()}

    def summary(self) -> str:
        """One line: the decision and its reasons."""
        return f"{self.decision}: " + "; ".join(self.reasons)


def advise(data: DataConfig | str, *, model: str, pretrained: bool = False, weights: str = "", image_size: int = 0,
           seed: int = 0, sample_per_class: int = 0, manifest: Manifest | None = None,
           reporter: Reporter | None = None) -> Advice:
    """Measure ``data`` (a DataConfig or a source path) with ``model`` and decide a strategy."""
    from honed.data.prepare import prepare_data

    config = data if isinstance(data, DataConfig) else DataConfig(source=str(data))
    prepared = prepare_data(config, seed=seed, manifest=manifest, reporter=reporter).manifest
    return advise_manifest(prepared, model=model, pretrained=pretrained, weights=weights, image_size=image_size,
                           seed=seed, sample_per_class=sample_per_class, reporter=reporter)


def advise_manifest(manifest: Manifest, *, model: str, pretrained: bool = False, weights: str = "",
                    image_size: int = 0, seed: int = 0, sample_per_class: int = 0,
                    reporter: Reporter | None = None) -> Advice:
    """The advice for a manifest that already has its train split."""
    measured = measure(manifest, model=model, pretrained=pretrained, weights=weights, image_size=image_size,
                       seed=seed, sample_per_class=sample_per_class, reporter=reporter)
    decision, reasons = decide(measured)
    return Advice(decision, reasons, measured)


def advise_run(config: RunConfig, manifest: Manifest, *, reporter: Reporter | None = None) -> Advice:
    """The advice for a run's own data, model, weights and image size (``--strategy auto``)."""
    advice = advise_manifest(manifest, model=config.model.name, pretrained=config.model.pretrained,
                             weights=config.model.weights, image_size=config.preprocess.image_size,
                             seed=config.train.seed, reporter=reporter)
    if reporter is not None:
        reporter.message(f"strategy auto -> {advice.summary()}")
    return advice


def record_advice(run_dir: Path, advice: Advice) -> None:
    """Write ``advice.json`` into the run (``resolve_strategy`` puts the decision in the run's change text)."""
    write_json(Path(run_dir) / ADVICE_FILE, advice.to_dict())


def read_advice(run_dir: Path) -> dict | None:
    """A run's recorded advice, or None when it was not trained with ``--strategy auto``."""
    path = Path(run_dir) / ADVICE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
