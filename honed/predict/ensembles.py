"""Ensembles as predictors: an ensemble run folder (``ensemble.json``) or an ensemble bundle loaded as an
``EnsemblePredictor`` of its members, each with its own preprocessing.

``ensemble.json`` is read here (the builders in ``honed.ensemble`` write it); an ensemble bundle's
bundle.json is validated field by field before any member is read, and each member's bundle.json is checked
against the SHA-256 the ensemble recorded, so no member can be swapped unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

from honed.artifacts.bundle_files import BUNDLE_FILE, BundleFiles, read_meta, sha256
from honed.artifacts.bundle_meta import FORMAT_NAME as BUNDLE_FORMAT, FORMAT_VERSION as BUNDLE_VERSION
from honed.artifacts.bundle_meta import validate_calibration
from honed.artifacts.run_folder import CONFIG_FILE, ENSEMBLE_FILE, WEIGHTS_NAME, RunFolder
from honed.artifacts.trained import from_bundle_files
from honed.predict.ensemble_predictor import EnsemblePredictor
from honed.combine.rules import CombinationRule, get_method
from honed.errors import HonedError
from honed.predict.predictor import Predictor, bundle_tta
from honed.tasks import TASKS

FORMAT_NAME = "honed-ensemble"
FORMAT_VERSION = 1
KINDS = ("vote", "snapshot", "bag", "boost")  # what built the ensemble
MEMBER_FOLDER = re.compile(r"^members/[0-9]{2}$")
MAX_MEMBERS = 99


def read_definition(run_dir: Path) -> dict[str, Any]:
    """ensemble.json, validated: a known format, kind, rule and member list."""
    path = Path(run_dir) / ENSEMBLE_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise HonedError(f"cannot read {path} ({error}): build the ensemble again") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise HonedError(f"{path} is not a honed ensemble definition")
    if raw.get("format_version") != FORMAT_VERSION:
        raise HonedError(f"{path} has format_version {raw.get('format_version')}; this honed reads {FORMAT_VERSION}")
    if raw.get("kind") == "gbm":  # honed boost --method gbm before it saved a probe run: scores only
        raise HonedError(f"{Path(run_dir).name} is a gradient-boosting run from an older honed: it recorded scores "
                         "but kept nothing to predict with; run `honed boost --method gbm` again, which now saves "
                         "a probe run that predicts and exports")
    if raw.get("kind") not in KINDS:
        raise HonedError(f"{path}: unknown ensemble kind {raw.get('kind')!r}; known: {', '.join(KINDS)}")
    members = raw.get("members")
    if not isinstance(members, list) or not all(
            isinstance(m, dict) and set(m) == {"name", "path", "weights"}
            and all(isinstance(v, str) for v in m.values()) and WEIGHTS_NAME.match(m["weights"]) for m in members):
        raise HonedError(f"{path}: 'members' must be a list of {{name, path, weights}} entries")
    raw["rule"] = CombinationRule.from_dict(raw.get("rule"), len(members), where=str(path))
    return raw


def member_folders(run_dir: Path, definition: dict[str, Any]) -> list[tuple[str, Path, str]]:
    """(name, run folder, weights file) of each member named in a definition, resolved against the ensemble's
    workspace."""
    members = []
    for entry in definition["members"]:
        path = Path(entry["path"])
        folder = path if path.is_absolute() else Path(run_dir).resolve().parent / path
        if not (folder / CONFIG_FILE).is_file():
            raise HonedError(f"member {entry['name']!r} of ensemble {Path(run_dir).name!r} is missing (no run at "
                             f"{folder}): ensembles refer to their members' run folders; keep them, or export "
                             "the ensemble as a bundle with `honed export`")
        members.append((entry["name"], folder, entry["weights"]))
    return members


def load_ensemble(run_dir: Path, *, device: str = "auto", backend: str = "torch",
                  calibrate: bool = True) -> EnsemblePredictor:
    """An EnsemblePredictor from an ensemble run folder (each member from its own run folder). Members predict
    raw, as they were combined when the ensemble was built; the ensemble's own temperature (soft votes)
    calibrates the combination."""
    from honed.predict.loading import load  # a member is any run: the same loader

    definition = read_definition(run_dir)
    if backend != "torch":
        raise HonedError(f"backend {backend!r} needs a bundle: export the ensemble with `honed export "
                         f"{Path(run_dir).name} --format {backend}` and load the bundle")
    predictors = [load(folder, device=device, weights=weights, calibrate=False)
                  for _, folder, weights in member_folders(run_dir, definition)]
    calibration = RunFolder(Path(run_dir)).calibration() if calibrate else None
    return EnsemblePredictor(predictors, definition["rule"], name=definition["name"],
                             temperature=None if calibration is None else float(calibration["temperature"]))


def load_ensemble_bundle(files: BundleFiles, raw: Any, *, device: str = "auto", backend: str = "torch",
                         calibrate: bool = True) -> EnsemblePredictor:
    """An EnsemblePredictor from an ensemble bundle's files (see the module docstring)."""
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
        trained = from_bundle_files(member, member_meta, backend=backend)
        predictors.append(Predictor.from_trained(trained, device=device, tta=bundle_tta(trained.bundle_meta),
                                                 calibrate=False))  # raw, as combined when it was built
    calibration = meta.get("calibration") if calibrate else None
    return EnsemblePredictor(predictors, meta["rule"], name=meta["name"],
                             temperature=None if calibration is None else float(calibration["temperature"]))


def validate_ensemble_meta(meta: Any) -> dict[str, Any]:
    """The ensemble's bundle.json, checked field by field; the rule parsed into a CombinationRule."""
    where = f"ensemble {BUNDLE_FILE}"
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT or meta.get("kind") != "ensemble":
        raise HonedError(f"{BUNDLE_FILE} is not a honed ensemble bundle description")
    if meta.get("format_version") != BUNDLE_VERSION:
        raise HonedError(f"{where} has format_version {meta.get('format_version')!r}; this honed reads "
                         f"{BUNDLE_VERSION}")
    for key, kind in (("name", str), ("task", str), ("classes", list), ("target_columns", list), ("members", list),
                      ("metric", str), ("metrics", dict)):
        if not isinstance(meta.get(key), kind):
            raise HonedError(f"{where} field {key!r} is missing or not a {kind.__name__}")
    if meta["task"] not in TASKS:
        raise HonedError(f"{where} field 'task' must be {' or '.join(TASKS)}, not {meta['task']!r}")
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
    get_method(rule.method, meta["task"])
    validate_calibration(meta)
    return {**meta, "rule": rule}
