"""Ensemble bundles: one bundle per member plus the rule that combines them, as one folder or .zip.

Layout::

    bundle.json        format "honed-bundle", kind "ensemble": labels, the rule, the members (folder and the
                       SHA-256 of each member's bundle.json, which in turn hashes that member's files), scores
    model_card.md      members, rule, scores and the diversity summary
    members/00/ ...    a complete bundle per member (its own architecture, input size, preprocessing, TTA)

Loading validates bundle.json strictly and each member as any bundle, after checking its bundle.json
against the recorded hash: nothing from the bundle is executed, and no member can be swapped unnoticed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from honed.combine.calibration import calibration_words
from honed.combine.rules import TIE_RULE
from honed.artifacts.run_folder import RunFolder
from honed.predict.ensembles import MAX_MEMBERS, member_folders, read_definition
from honed.errors import HonedError
from honed.export.run_bundle import BundleReport, export_run_bundle, publish, target_path
from honed.artifacts.bundle_files import BUNDLE_FILE, sha256
from honed.artifacts.bundle_meta import CARD_FILE, FORMAT_NAME, FORMAT_VERSION
from honed.tracking.atomic import temp_path_for, write_json, write_text



def export_ensemble_bundle(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                           formats: Sequence[str] = ("bundle",), fuse: bool = True,
                           archive: bool = False) -> BundleReport:
    """Pack an ensemble run: each member exported as its own bundle (parity-checked), then the rule."""
    run_dir = Path(run_dir)
    definition = read_definition(run_dir)
    members = member_folders(run_dir, definition)
    if len(members) > MAX_MEMBERS:
        raise HonedError(f"an ensemble bundle holds at most {MAX_MEMBERS} members, not {len(members)}")
    target = target_path(Path(out_dir), archive)
    stage = temp_path_for(target)
    (stage / "members").mkdir(parents=True)
    try:
        parity, entries, fused = {}, [], 0
        for i, (name, member_dir, weights) in enumerate(members):
            if RunFolder(member_dir).is_ensemble:
                raise HonedError(f"member {name!r} is itself an ensemble: export its members' ensemble "
                                 "with them as direct members instead")
            folder = f"members/{i:02d}"
            report = export_run_bundle(member_dir, stage / folder, formats=formats, fuse=fuse, weights=weights)
            parity.update({f"{folder}/{k}": v for k, v in report.parity.items()})
            fused += report.fused_pairs
            entries.append({"name": name, "folder": folder,
                            "bundle_sha256": sha256((stage / folder / BUNDLE_FILE).read_bytes())})
        meta = _meta(definition, entries)
        meta["calibration"] = RunFolder(run_dir).calibration()  # soft votes: the combination's temperature
        write_text(stage / CARD_FILE, _card(meta))
        write_json(stage / BUNDLE_FILE, meta)
        files = tuple(sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()))
        publish(stage, target, archive=archive)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BundleReport(target, files, parity, fused, f"each member's own validation images ({len(members)})")


def _meta(definition: dict[str, Any], entries: list[dict[str, str]]) -> dict[str, Any]:
    from honed.version import __version__
    from honed.tracking.ledger import utc_now

    metrics = {k: v for k, v in definition["metrics"].items() if isinstance(v, (int, float))}
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "ensemble", "name": definition["name"],
        "task": definition["task"], "classes": definition["classes"], "target_columns": definition["target_columns"],
        "rule": definition["rule"].to_dict(), "tie_rule": TIE_RULE, "members": entries,
        "metric": definition["metric"], "score": metrics.get(definition["metric"]), "metrics": metrics,
        "honed_version": __version__, "created": utc_now(),
    }


def _card(meta: dict[str, Any]) -> str:
    """A short model card: the rule, the scores, and one row per member."""
    rule, metric, metrics = meta["rule"], meta["metric"], meta["metrics"]
    weights = rule["weights"] or [1 / len(meta["members"])] * len(meta["members"])
    rows = []
    for member, weight in zip(meta["members"], weights):
        score = metrics.get("member:" + member["name"] + ":" + metric)
        rows.append(f"| `{member['name']}` | {member['folder']} | {weight:.3f} | {_number(score)} |")
    ties = f" (ties: {meta['tie_rule']})" if rule["method"] in ("hard", "samme") else ""
    test = metrics.get("test_" + metric)
    scores = f"Validation {metric}: {_number(meta['score'])}" + ("" if test is None else f"; test: {_number(test)}")
    return "\n".join([
        f"# Ensemble `{meta['name']}`", "",
        f"{len(meta['members'])} members combined by **{rule['method']}** voting{ties}.", scores + ".", "",
        f"| member | folder | weight | validation {metric} |", "|---|---|---|---|", *rows, "",
        "## Calibration", calibration_words(meta.get("calibration")), "",
        "Each member folder is a complete bundle with its own model card, preprocessing and parity checks.", ""])


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"
