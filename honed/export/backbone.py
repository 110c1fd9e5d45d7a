"""``export_backbone``: a run's trained feature extractor without its head, as a safetensors file that
``--weights`` accepts, so a model honed trained on one dataset is the pretrained start for another.

Next to it go the statistics of the run's training images as that backbone sees them
(``honed.models.feature_stats``), so the advisor can say how far new data lies from the source."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from safetensors.torch import load_file

from honed.models.feature_stats import BASELINE_SAMPLE, SOURCE_SAMPLE, FeatureStats, save_stats, stats_path
from honed.data.decode import DecodeError, probe_image
from honed.errors import HonedError
from honed.export.card import RunFacts, read_run_facts
from honed.models.factory import build_model
from honed.models.state_dicts import head_keys
from honed.tracking.atomic import save_tensors
from honed.progress import Reporter
from honed.artifacts.run_folder import BEST_WEIGHTS


def export_backbone(run_dir: str | Path, out: str | Path, *, weights: str = BEST_WEIGHTS) -> tuple[Path, int]:
    """Write the run's weights minus its head to ``out``; returns the path and the number of tensors kept."""
    facts = read_run_facts(Path(run_dir))
    model = build_model(facts.config.model, facts.num_outputs, for_inference=True)  # only to know which keys are the head
    head = head_keys(model)
    if not head:
        raise HonedError(f"cannot tell the head of {facts.config.model.name} from its backbone: export the whole "
                         "run instead (`honed export RUN`)")
    tensors = load_file(str(facts.run_dir / weights))
    backbone = {key: value for key, value in tensors.items() if key not in head}
    out = Path(out)
    if out.suffix != ".safetensors":
        raise HonedError(f"--out {out} must end in .safetensors: it is a weights file, not a bundle")
    save_tensors(out, backbone, metadata={"format": "honed-backbone", "model": facts.config.model.name,
                                          "source_run": facts.run_dir.name, "dropped_head": ",".join(sorted(head))})
    return out, len(backbone)


def export_source_stats(run_dir: str | Path, backbone: str | Path, *, reporter: Reporter | None = None,
                        seed: int = 0) -> tuple[Path | None, str]:
    """Features of up to SOURCE_SAMPLE of the run's training images through the exported ``backbone``
    (built exactly as the advisor builds it from ``--weights``), summarised next to it. Returns the file and
    a line saying what was written, or None and why nothing was (the images are gone, too few of them)."""
    from honed.data.dataset import ImageDataset
    from honed.data.manifest import Manifest
    from honed.models.backbones import create_backbone_with_pretrained, data_config_for
    from honed.models.features import extract_features

    facts = read_run_facts(Path(run_dir))
    train = _source_images(facts)
    if len(train) < 2 * BASELINE_SAMPLE:
        return None, (f"no feature statistics: {len(train)} of the run's training images are readable files, "
                      f"fewer than {2 * BASELINE_SAMPLE}")
    train = train.sample(min(SOURCE_SAMPLE, len(train)), random_state=seed).reset_index(drop=True)
    train = train[train["path"].map(_decodable_header).astype(bool)].reset_index(drop=True)  # changed since
    manifest = Manifest(train, task=facts.task, classes=facts.classes, target_columns=facts.target_columns)
    name = facts.config.model.name
    network = create_backbone_with_pretrained(name, max(manifest.num_outputs, 1), pretrained=False,
                                              weights=str(backbone))
    defaults = data_config_for(network)
    size = facts.config.preprocess.image_size or int(defaults["input_size"][-1])
    try:
        features = extract_features(network, ImageDataset(train, manifest.targets(train), size),
                                    mean=list(defaults["mean"]), std=list(defaults["std"]), reporter=reporter,
                                    label="source feature statistics")
    except DecodeError as error:  # a file damaged since training, past its header: the backbone stands
        return None, (f"no feature statistics: one of the run's training images no longer decodes "
                      f"({error.reason}); repair or remove it and export again (or pass --no-stats)")
    path = stats_path(backbone)
    save_stats(path, FeatureStats.of(features, model=name, image_size=size, seed=seed))
    return path, f"feature statistics of {len(train)} training images ({size} px) written to {path}"


def _source_images(facts: RunFacts) -> pd.DataFrame:
    """The run's training rows whose images are still files (a torchvision source has none)."""
    frame = facts.manifest if facts.manifest is not None else pd.DataFrame({"path": [], "split": []})
    train = frame[frame["split"] == "train"]
    return train[train["path"].map(lambda p: Path(str(p)).is_file()).astype(bool)].reset_index(drop=True)


def _decodable_header(path: str) -> bool:
    try:
        probe_image(str(path))
    except DecodeError:
        return False
    return True
