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
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from honed.combine.rules import TIE_RULE, CombinationRule
from honed.ensemble.store import definition_members, read_definition
from honed.errors import HonedError
from honed.export.bundle import BundleReport, export_bundle, predictor_from_files, publish, target_path
from honed.artifacts.bundle_files import BUNDLE_FILE, BundleFiles, read_meta, sha256
from honed.artifacts.bundle_meta import CARD_FILE, FORMAT_NAME, FORMAT_VERSION
from honed.tracking.atomic import temp_path_for, write_json, write_text

MEMBER_FOLDER = re.compile(r"^members/[0-9]{2}$")
MAX_MEMBERS = 99


def export_ensemble_bundle(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                           formats: Sequence[str] = ("bundle",), fuse: bool = True,
                           archive: bool = False) -> BundleReport:
    """Pack an ensemble run: each member exported as its own bundle (parity-checked), then the rule."""
    run_dir = Path(run_dir)
    definition = read_definition(run_dir)
    members = definition_members(run_dir, definition)
    if len(members) > MAX_MEMBERS:
        raise HonedError(f"an ensemble bundle holds at most {MAX_MEMBERS} members, not {len(members)}")
    target = target_path(Path(out_dir), archive)
    stage = temp_path_for(target)
    (stage / "members").mkdir(parents=True)
    try:
        parity, entries, fused = {}, [], 0
        for i, member in enumerate(members):
            if (member.run_dir / "ensemble.json").is_file():
                raise HonedError(f"member {member.name!r} is itself an ensemble: export its members' ensemble "
                                 "with them as direct members instead")
            folder = f"members/{i:02d}"
            report = export_bundle(member.run_dir, stage / folder, formats=formats, fuse=fuse,
                                   weights=member.weights)
            parity.update({f"{folder}/{k}": v for k, v in report.parity.items()})
            fused += report.fused_pairs
            entries.append({"name": member.name, "folder": folder,
                            "bundle_sha256": sha256((stage / folder / BUNDLE_FILE).read_bytes())})
        meta = _meta(definition, entries)
        write_text(stage / CARD_FILE, _card(meta))
        write_json(stage / BUNDLE_FILE, meta)
        files = tuple(sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()))
        publish(stage, target, archive=archive)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BundleReport(target, files, parity, fused, f"each member's own validation images ({len(members)})")


def _meta(definition: dict[str, Any], entries: list[dict[str, str]]) -> dict[str, Any]:
    import honed
    from honed.tracking.ledger import utc_now

    metrics = {k: v for k, v in definition["metrics"].items() if isinstance(v, (int, float))}
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "ensemble", "name": definition["name"],
        "task": definition["task"], "classes": definition["classes"], "target_columns": definition["target_columns"],
        "rule": definition["rule"].to_dict(), "tie_rule": TIE_RULE, "members": entries,
        "metric": definition["metric"], "score": metrics.get(definition["metric"]), "metrics": metrics,
        "honed_version": honed.__version__, "created": utc_now(),
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
        "Each member folder is a complete bundle with its own model card, preprocessing and parity checks.", ""])


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


# ---------------------------------------------------------------------------------------------- loading


def load_ensemble_bundle(files: BundleFiles, raw: Any, *, device: str = "auto", backend: str = "torch"):
    """An EnsemblePredictor from an ensemble bundle's files (see the module docstring)."""
    from honed.combine.predictor import EnsemblePredictor

    meta = validate_ensemble_meta(raw)
    predictors = []
    for entry in meta["members"]:
        member = files.sub(entry["folder"])
        if sha256(member.read(BUNDLE_FILE)) != entry["bundle_sha256"]:
            raise HonedError(f"{entry['folder']}/{BUNDLE_FILE} in {files.path} does not match the SHA-256 in the "
                             f"ensemble's {BUNDLE_FILE}: a member was changed or swapped; export the bundle again")
        member_meta = read_meta(member)
        if isinstance(member_meta, dict) and member_meta.get("kind") == "ensemble":
            raise HonedError(f"{entry['folder']} in {files.path} is itself an ensemble: nested ensembles are "
                             "not loaded")
        predictor = predictor_from_files(member, member_meta, device=device, backend=backend)
        predictors.append(predictor)
    return EnsemblePredictor(predictors, meta["rule"], name=meta["name"])


def validate_ensemble_meta(meta: Any) -> dict[str, Any]:
    """The ensemble's bundle.json, checked field by field; the rule parsed into a CombinationRule."""
    where = f"ensemble {BUNDLE_FILE}"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or meta.get("kind") != "ensemble":
        raise HonedError(f"{BUNDLE_FILE} is not a honed ensemble bundle description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise HonedError(f"{where} has format_version {meta.get('format_version')!r}; this honed reads "
                         f"{FORMAT_VERSION}")
    for key, kind in (("name", str), ("task", str), ("classes", list), ("target_columns", list), ("members", list),
                      ("metric", str), ("metrics", dict)):
        if not isinstance(meta.get(key), kind):
            raise HonedError(f"{where} field {key!r} is missing or not a {kind.__name__}")
    if meta["task"] not in ("classify", "regress"):
        raise HonedError(f"{where} field 'task' must be classify or regress, not {meta['task']!r}")
    members = meta["members"]
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise HonedError(f"{where} lists {len(members)} members: 1 to {MAX_MEMBERS} are allowed")
    folders = set()
    for entry in members:
        ok = (isinstance(entry, dict) and set(entry) == {"name", "folder", "bundle_sha256"}
              and all(isinstance(v, str) for v in entry.values()) and MEMBER_FOLDER.match(entry["folder"])
              and re.fullmatch(r"[0-9a-f]{64}", entry["bundle_sha256"]))
        if not ok:
            raise HonedError(f"{where} field 'members' must hold {{name, folder: members/NN, bundle_sha256}} entries")
        folders.add(entry["folder"])
    if len(folders) != len(members):
        raise HonedError(f"{where} names a member folder twice")
    rule = CombinationRule.from_dict(meta.get("rule"), len(members), where=where)
    from honed.combine.rules import get_method

    get_method(rule.method, meta["task"])
    return {**meta, "rule": rule}
