"""A run's bundle: a trained run packed as one folder (or .zip) that predicts anywhere honed is installed.

Layout::

    bundle.json            format version, model name, task, labels, preprocessing, TTA, calibration, metrics,
                           data fingerprint, honed version, created time, file hashes, parity reports
    model.safetensors      the run's best weights, unfused: the architecture is rebuilt from its name
    model_card.md          data, model and strategy, augmentations, settings, steps, scores
    gbm_head.onnx          a gbm probe run only: its fitted trees as an ONNX graph (no training data, no pickle)
    model.onnx             optional: the BatchNorm-fused eval model, for ONNX Runtime (a gbm probe: network
                           and trees in one graph)
    model.torchscript.pt   optional: the same as TorchScript, for other runtimes (never loaded by honed)

An ensemble bundle (``"kind": "ensemble"`` in bundle.json, see ``honed.export.ensemble_bundle``) holds one such
bundle per member under ``members/NN/`` and the rule that combines them.

Loading a bundle never executes anything from it: the architecture comes from honed's model factory by
name, weights from safetensors, everything else from strictly validated JSON; the ONNX backend runs a
graph (data) in ONNX Runtime. TorchScript and pickles are never loaded. Exporting builds the bundle in a
temporary folder next to the target and renames it into place, so a failure (a parity check included)
leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import shutil
from typing import Any
import zipfile

import pandas as pd
import torch
from torch import nn

from honed.errors import HonedError
from honed.artifacts.bundle_files import BUNDLE_FILE, ONNX_FILE, sha256
from honed.artifacts.run_folder import BEST_WEIGHTS, TEST_PREDICTIONS, VAL_PREDICTIONS, RunFolder
from honed.artifacts.trained import load_trained
from honed.artifacts.bundle_meta import (
    CARD_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    RESIZE_POLICY,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
)
from honed.export.card import RunFacts, model_card, read_run_facts
from honed.export.formats import EXPORT_FORMATS
from honed.export.gbm_onnx import export_gbm_onnx, gbm_reference
from honed.export.fuse import fuse_batchnorm
from honed.export.parity import ParityReport, check_parity, combine_reports
from honed.tta.setting import as_setting
from honed.tracking.atomic import atomic_path, temp_path_for, write_json, write_text
from honed.models.heads.gbm import HEAD_FILE as GBM_FILE, gbm_head_file

PARITY_IMAGES = 32  # validation images the parity checks run on


@dataclass(frozen=True)
class BundleReport:
    """Where the bundle went, what it holds, and the parity checks that let it ship."""

    path: Path  # the bundle folder, or the .zip when archived
    files: tuple[str, ...]  # names inside the bundle
    parity: dict[str, ParityReport]  # "fusion", "onnx", "torchscript": those that ran
    fused_pairs: int  # conv/BatchNorm pairs folded in the exported models (0 without fusion)
    parity_inputs: str  # what the checks ran on, e.g. "24 validation images"

    @property
    def passed(self) -> bool:
        return all(report.passed for report in self.parity.values())


# ---------------------------------------------------------------------------------------------- export


def export_run_bundle(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("bundle",),
    fuse: bool = True,
    archive: bool = False,
    tta: Any = None,
    weights: str = BEST_WEIGHTS,
) -> BundleReport:
    """Pack the run at ``run_dir`` as a bundle at ``out_dir`` (a new folder, or ``out_dir``.zip with ``archive``).

    ``formats`` may add "onnx" and "torchscript" files, exported from the BatchNorm-fused (``fuse``) eval
    model; each must match the unfused eval model on the run's validation images, else HonedError and
    nothing is written. ``tta`` ("flip,crops" or a ``honed.tta.TTASetting``) is stored for ``honed predict``
    to apply; ``weights`` picks another weights file of the run (a snapshot).
    """
    RunFolder(Path(run_dir)).refuse_without_weights("exported")  # an old gbm probe run has no head to export
    wanted = _check_formats(formats)
    gbm_head = _gbm_head(Path(run_dir), wanted)
    setting = as_setting(tta)
    facts = read_run_facts(Path(run_dir))
    target = target_path(Path(out_dir), archive)
    model = _rebuilt(facts, weights)
    inputs, described = parity_inputs(facts)
    stage = temp_path_for(target)
    stage.mkdir(parents=True)
    try:
        shutil.copyfile(facts.run_dir / weights, stage / WEIGHTS_FILE)
        if gbm_head is not None:
            shutil.copyfile(gbm_head, stage / GBM_FILE)
        trees = gbm_head.read_bytes() if gbm_head is not None else None
        reports, fused_pairs = _export_models(model, inputs, stage, wanted, fuse=fuse, trees=trees)
        _refuse_failed(reports, described)
        meta = _bundle_meta(facts, stage, reports, fused_pairs=fused_pairs, inputs=described)
        meta["tta"] = "none" if setting is None else setting.to_dict()
        if weights != BEST_WEIGHTS:  # the temperature was fitted on the best weights' outputs, not a snapshot's
            meta["calibration"] = None
        write_text(stage / CARD_FILE, model_card(facts, meta))
        write_json(stage / BUNDLE_FILE, meta)
        files = tuple(sorted(p.name for p in stage.iterdir()))
        publish(stage, target, archive=archive)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BundleReport(target, files, reports, fused_pairs, described)


def _check_formats(formats: Sequence[str]) -> set[str]:
    wanted = {formats} if isinstance(formats, str) else set(formats)
    valid = ["bundle", *EXPORT_FORMATS.names()]  # the bundle itself is always written
    unknown = sorted(wanted - set(valid))
    if unknown:
        raise HonedError(f"unknown export format(s) {', '.join(unknown)}: use {', '.join(valid)}")
    return wanted | {"bundle"}


def _gbm_head(run_dir: Path, formats: set[str]) -> Path | None:
    """A gbm probe run's trees (an ONNX graph), or None; an old gbm run (training features) is refused.
    Such a run exports to ONNX (network and trees in one graph) but not to TorchScript."""
    path = gbm_head_file(run_dir)
    if path is not None and "torchscript" in formats:
        raise HonedError(f"{run_dir.name} is a gbm probe run: TorchScript cannot hold its trees; export it "
                         "without --format torchscript (--format onnx holds network and trees)")
    return path


def target_path(out_dir: Path, archive: bool) -> Path:
    """The bundle's final path; refuses to replace anything but an empty folder."""
    target = out_dir.with_name(out_dir.name + ".zip") if archive and out_dir.suffix != ".zip" else out_dir
    if not archive and target.is_dir() and not any(target.iterdir()):
        return target  # an empty folder made for the bundle is replaced by it
    if target.exists():
        raise HonedError(f"{target} already exists: remove it or choose another --out")
    return target


def _rebuilt(facts: RunFacts, weights: str = BEST_WEIGHTS) -> nn.Module:
    """The run's network (a gbm probe: without its trees) with its best (or given) weights, in eval mode on the
    CPU: the parity reference. The run's preprocessing, filled from the model, goes into ``facts``."""
    trained = load_trained(facts.run_dir, weights=weights, gbm_head=False)
    facts.config.preprocess = trained.preprocess
    return trained.network


def parity_inputs(facts: RunFacts, *, limit: int = PARITY_IMAGES) -> tuple[torch.Tensor, str]:
    """A normalized float batch of the run's validation images (the run's own preprocessing), and its label.

    Falls back to seeded noise only when no validation file can be read (in-memory datasets), and says so.
    """
    from honed.data.decode import DecodeError, decode_to_tensor
    from honed.data.preprocess import normalize, to_unit_float

    pre = facts.config.preprocess
    images = []
    paths, split = _validation_paths(facts.run_dir)
    for path in paths:
        try:
            images.append(decode_to_tensor(path, pre.image_size))
        except (DecodeError, OSError):
            continue
        if len(images) == limit:
            break
    if not images:
        noise = torch.randn(4, 3, pre.image_size, pre.image_size, generator=torch.Generator().manual_seed(0))
        return noise, "4 noise images (no validation image of the run could be read)"
    batch = normalize(to_unit_float(torch.stack(images)), pre.mean, pre.std)
    return batch, f"{len(images)} {split} images"


def _validation_paths(run_dir: Path) -> tuple[list[str], str]:
    """The run's validation images, or its test images when it has no validation split (a refit)."""
    for name, split in ((VAL_PREDICTIONS, "validation"), (TEST_PREDICTIONS, "test")):
        table = run_dir / name
        if table.is_file():
            return [p for p in pd.read_parquet(table, columns=["path"])["path"].astype(str) if Path(p).is_file()], split
    return [], "validation"


def _export_models(model: nn.Module, inputs: torch.Tensor, stage: Path, formats: set[str], *,
                   fuse: bool, trees: bytes | None = None) -> tuple[dict[str, ParityReport], int]:
    """Fuse, export what was asked for, and check each against the unfused eval model on ``inputs``.

    An export's report combines its own check (file vs. the model it was exported from, at batch sizes 2
    and 1) with the check that matters to users: file vs. the unfused original on real images. A gbm probe
    (``trees``: its head graph) exports network and trees as one ONNX graph, checked against both together.
    """
    reports: dict[str, ParityReport] = {}
    exported, fused_pairs = model, 0
    if fuse:
        fusion = fuse_batchnorm(model)
        exported, fused_pairs = fusion.model, fusion.fused_pairs
        reports["fusion"] = check_parity(model, exported, inputs)
    example = inputs[:2]
    if trees is not None and "onnx" in formats:
        own = export_gbm_onnx(exported, trees, example, stage / ONNX_FILE)
        session = EXPORT_FORMATS["onnx"].load(stage / ONNX_FILE)
        reports["onnx"] = combine_reports([check_parity(gbm_reference(model, trees), session, inputs), own])
        formats = formats - {"onnx"}
    for name in EXPORT_FORMATS.names():  # registration order: onnx, then torchscript
        if name in formats:
            fmt = EXPORT_FORMATS[name]
            own = fmt.export(exported, example, stage / fmt.file)
            reports[name] = combine_reports([check_parity(model, fmt.load(stage / fmt.file), inputs), own])
    return reports, fused_pairs


def _refuse_failed(reports: dict[str, ParityReport], described: str) -> None:
    failed = {name: report for name, report in reports.items() if not report.passed}
    if failed:
        detail = "; ".join(f"{name}: max abs diff {r.max_abs_diff:.3g} (atol {r.atol}, rtol {r.rtol})"
                           for name, r in failed.items())
        raise HonedError(f"parity check failed on {described} ({detail}): nothing was written; try --no-fuse, "
                         "or leave out the failing --format")


def _bundle_meta(facts: RunFacts, stage: Path, reports: dict[str, ParityReport], *, fused_pairs: int,
                inputs: str) -> dict[str, Any]:
    """The content of ``bundle.json`` for the files already written to ``stage``."""
    from honed.version import __version__
    from honed.tracking.ledger import utc_now

    pre = facts.config.preprocess
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": facts.name,
        "model": {"name": facts.config.model.name, "num_outputs": facts.num_outputs,
                  "head_bn": facts.config.model.head_bn},  # an architecture option: the head's layers
        "task": facts.task,
        "classes": facts.classes,
        "target_columns": facts.target_columns,
        "preprocessing": {"image_size": pre.image_size, "resize": RESIZE_POLICY, "interpolation": "bilinear",
                          "mean": list(pre.mean), "std": list(pre.std)},
        "tta": "none",
        "calibration": RunFolder(facts.run_dir).calibration(),  # the temperature; None: predicts uncalibrated
        "metric": facts.metric,
        "score": facts.score,
        "metrics": facts.metrics,
        "refit": facts.refit,  # None, or a refit on train + val with the validation score of the run it refits
        "data_fingerprint": facts.data_fingerprint,
        "honed_version": __version__,
        "created": utc_now(),
        "files": {p.name: {"sha256": sha256(p.read_bytes()), "bytes": p.stat().st_size}
                  for p in sorted(stage.iterdir()) if p.name in (WEIGHTS_FILE, ONNX_FILE, TORCHSCRIPT_FILE, GBM_FILE)},
        "parity": {"reference": "eval-mode unfused model", "inputs": inputs, "fused": "fusion" in reports,
                   "fused_pairs": fused_pairs, "checks": {k: r.to_dict() for k, r in reports.items()}},
        "training": facts.config.to_dict(),  # for people reading the bundle; loading never uses it
    }


def publish(stage: Path, target: Path, *, archive: bool) -> None:
    """Move the finished bundle into place atomically: rename the folder, or write the zip via a temp file."""
    if not archive:
        try:
            os.replace(stage, target)
        except OSError as error:  # another export filled the target since it was checked
            raise HonedError(f"cannot move the bundle to {target} ({error.strerror}): remove it or choose "
                             "another --out") from None
        return
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):  # member bundles of an ensemble nest
            zf.write(path, arcname=path.relative_to(stage).as_posix())


# ---------------------------------------------------------------------------------------------- loading
