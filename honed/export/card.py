"""What a bundle says about the run it ships: facts read from the run folder and the ledger, and the
model card that renders them for a reader (data, model, augmentations, settings, steps, scores).

The run folder is the source of truth for what was trained; the ledger adds the scores and the ancestry
(which run each was derived from, and what changed). A run copied out of its workspace still exports:
its card then says the ledger was not found instead of inventing steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from honed.combine.calibration import calibration_words
from honed.config import RunConfig
from honed.errors import HonedError
from honed.tracking.ledger import Ledger, RunRecord, has_ledger
from honed.artifacts.run_folder import BAD_FILES, BEST_WEIGHTS, CONFIG_FILE, MANIFEST_FILE, RunFolder
from honed.tasks import Task, get_task
from honed.export.card_quality import data_quality_section

NOT_METRICS = ("epoch", "lr", "seconds")  # per-epoch bookkeeping stored next to the metrics
WEIGHTS_NOTE = "model.safetensors holds the unfused weights, from which honed rebuilds the model."
SHOWN_SKIPPED = 10  # skipped files listed by name in the card; the rest are counted
STRATEGY_WORDS = {"full": "fine-tune everything (head warm-up first)", "head": "frozen backbone, new head",
                  "probe": "frozen features, scikit-learn head", "partial": "last stages fine-tuned",
                  "gradual": "stages unfrozen one by one, discriminative learning rates",
                  "scratch": "random initial weights", "auto": "chosen by the advisor"}


@dataclass
class RunFacts:
    """One run as a bundle describes it; read with ``read_run_facts``."""

    run_dir: Path
    config: RunConfig
    task: str
    classes: list[str]
    target_columns: list[str]
    metric: str  # the run's main metric
    metrics: dict[str, float]  # best epoch's validation metrics, plus test_* when there is a test split
    data_fingerprint: str  # '' when neither the ledger nor the manifest gives one
    record: RunRecord | None = None  # the run's ledger row, None when the ledger does not know it
    ancestry: list[RunRecord] = field(default_factory=list)  # oldest ancestor first, ending with the run
    manifest: pd.DataFrame | None = None  # the run's exact samples and splits
    bad_files: pd.DataFrame | None = None  # undecodable files the run skipped
    refit: dict | None = None  # a refit on train + val: the run it refits and that run's validation score

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def task_type(self) -> Task:
        return get_task(self.task)

    @property
    def output_names(self) -> list[str]:
        return self.task_type.output_names(self.classes, self.target_columns)

    @property
    def num_outputs(self) -> int:
        return len(self.output_names)

    @property
    def score(self) -> float | None:
        value = self.metrics.get(self.metric)
        return None if value is None else float(value)


def read_run_facts(run_dir: Path) -> RunFacts:
    """Everything a bundle needs from a finished run folder; HonedError if it is not one."""
    run = RunFolder(Path(run_dir))
    run_dir = run.path
    if not run.is_run:
        raise HonedError(f"{run_dir} is not a honed run (no {CONFIG_FILE}): give a run folder, see `honed runs`")
    if not run.file(BEST_WEIGHTS).is_file():
        raise HonedError(f"run {run.name!r} has no {BEST_WEIGHTS}: it has not finished an epoch yet")
    config, labels = run.config(), run.labels()
    record = _ledger_record(run_dir)
    manifest = _read_optional_table(run.file(MANIFEST_FILE))
    return RunFacts(
        run_dir=run_dir, config=config, task=labels.task, classes=labels.classes,
        target_columns=labels.target_columns, metric=config.main_metric(),
        metrics=_metrics(run_dir, record), data_fingerprint=_fingerprint(record, manifest, labels.to_dict()),
        record=record, ancestry=_ancestry(run_dir, record), manifest=manifest,
        bad_files=_read_optional_csv(run.file(BAD_FILES)), refit=run.refit_facts())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HonedError(f"{path} is missing: the run folder is incomplete") from None
    except json.JSONDecodeError as error:
        raise HonedError(f"{path} is damaged ({error})") from None


def _read_optional_table(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _read_optional_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def _ledger_record(run_dir: Path) -> RunRecord | None:
    """The run's ledger row, when the run still sits in its workspace (never creates a ledger)."""
    if not has_ledger(run_dir.parent):
        return None
    with Ledger(run_dir.parent) as ledger:
        return ledger.get(run_dir.name)


def _fingerprint(record: RunRecord | None, manifest: pd.DataFrame | None, labels: dict[str, Any]) -> str:
    """The ledger's data fingerprint; for a run outside its workspace, recomputed from its manifest."""
    if record is not None:
        return record.data_fingerprint
    if manifest is None:
        return ""
    from honed.data.manifest import Manifest

    return Manifest(manifest, task=labels["task"], classes=list(labels["classes"]),
                    target_columns=list(labels["target_columns"])).fingerprint()


def _ancestry(run_dir: Path, record: RunRecord | None) -> list[RunRecord]:
    """The parent chain from the oldest ancestor the ledger still knows down to the run itself."""
    if record is None:
        return []
    chain = [record]
    with Ledger(run_dir.parent) as ledger:
        while chain[-1].parent and all(r.name != chain[-1].parent for r in chain):  # a cycle stops the walk
            parent = ledger.get(chain[-1].parent)
            if parent is None:
                break
            chain.append(parent)
    return chain[::-1]


def _metrics(run_dir: Path, record: RunRecord | None) -> dict[str, float]:
    """The ledger's metrics for the run; else the best epoch's row of its history (state.json)."""
    raw = dict(record.metrics) if record and record.metrics else _best_epoch_row(run_dir)
    numbers = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: v for k, v in numbers.items() if math.isfinite(v)}  # JSON has no NaN: unmeasured is absent


def _best_epoch_row(run_dir: Path) -> dict[str, Any]:
    state_path = run_dir / "state.json"
    if not state_path.is_file():
        return {}
    state = _read_json(state_path)
    return next((row for row in state.get("history", []) if row.get("epoch") == state.get("best_epoch")), {})


# ---------------------------------------------------------------------------------------------- model card


def model_card(facts: RunFacts, meta: dict[str, Any]) -> str:
    """The bundle's ``model_card.md``: what the model is, what it saw, how it was made and how well it does."""
    kind = facts.task_type.model_word
    sections = [
        f"# {facts.name}: {facts.config.model.name} image {kind}",
        f"Exported by honed {meta['honed_version']} on {meta['created']} from run `{facts.name}`. "
        f"Load it with `honed.load(\"<this folder or .zip>\")` or `honed predict <bundle> IMAGES`.",
        _data_section(facts),
        data_quality_section(facts.run_dir, facts.config.data.exclude),
        _model_section(facts, meta),
        _augment_section(facts.config),
        _training_section(facts.config),
        _steps_section(facts),
        _scores_section(facts),
        *([f"## Calibration\n{calibration_words(meta.get('calibration'))}"] if facts.task_type.is_classification
          else []),
        _export_section(meta),
    ]
    return "\n\n".join(sections) + "\n"


def _data_section(facts: RunFacts) -> str:
    data = facts.config.data
    labels = f"- {facts.task_type.outputs_word} ({facts.num_outputs}): {', '.join(facts.output_names)}"
    lines = ["## Data", f"- source: `{data.source or '(in-memory datasets)'}`", f"- task: {facts.task}", labels,
             f"- data fingerprint: `{facts.data_fingerprint or 'unknown'}`"]
    if facts.manifest is not None:
        lines += ["", _split_counts(facts)]
    lines += ["", _skipped(facts)]
    return "\n".join(lines)


def _split_counts(facts: RunFacts) -> str:
    """Images per split (and per class, for classification) as a markdown table."""
    frame = facts.manifest
    splits = [s for s in ("train", "val", "test") if (frame["split"] == s).any()]
    if not facts.task_type.is_classification or "label" not in frame:
        rows = [[s, str(int((frame["split"] == s).sum()))] for s in splits]
        return _table(["split", "images"], rows)
    counts = frame.groupby(["split", "label"]).size()
    rows = [[s, *[str(int(counts.get((s, c), 0))) for c in facts.classes], str(int((frame["split"] == s).sum()))]
            for s in splits]
    return _table(["split", *facts.classes, "total"], rows)


def _skipped(facts: RunFacts) -> str:
    bad = facts.bad_files
    if bad is None or not len(bad):
        return "Skipped files: none (every image decoded)."
    shown = [f"- `{row.path}`: {getattr(row, 'reason', '')}" for row in bad.head(SHOWN_SKIPPED).itertuples()]
    more = [f"- ... and {len(bad) - SHOWN_SKIPPED} more (bad_files.csv in the run)"] if len(bad) > SHOWN_SKIPPED else []
    return "\n".join([f"Skipped files: {len(bad)} could not be decoded and were left out:", *shown, *more])


def _model_section(facts: RunFacts, meta: dict[str, Any]) -> str:
    model, pre = facts.config.model, meta["preprocessing"]
    start = model.weights or ("ImageNet-pretrained weights" if model.pretrained else "random initialisation")
    return "\n".join([
        "## Model and strategy",
        f"- architecture: `{model.name}` with {facts.num_outputs} output(s), rebuilt from its name when loaded",
        f"- started from: {start}",
        f"- transfer strategy: {model.strategy} ({STRATEGY_WORDS.get(model.strategy, model.strategy)})",
        f"- dropout before the head: {model.drop_rate}",
        *_regularization_lines(facts.config),
        f"- preprocessing: {pre['image_size']} px, {pre['resize']}, mean {pre['mean']}, std {pre['std']}",
        f"- test-time augmentation: {meta['tta']}",
    ])


def _regularization_lines(config: RunConfig) -> list[str]:
    """The regularization the run used beyond dropout, one line each; nothing for what it left off."""
    model, train = config.model, config.train
    lines = ["- head: batch norm -> dropout -> linear (--head-bn)" if model.head_bn else "",
             f"- stochastic depth (drop path): {model.drop_path}" if model.drop_path else "",
             f"- weight decay: {train.weight_decay} (not on norms and biases)" if train.weight_decay else "",
             f"- label smoothing: {train.label_smoothing}" if train.label_smoothing else "",
             f"- stochastic weight averaging from {train.swa_start:.0%} of the epochs" if train.swa else ""]
    return [line for line in lines if line]


def _augment_section(config: RunConfig) -> str:
    """The training augmentation policy, one item per line; none for a baseline."""
    policy = getattr(config.train, "augment", "")
    if not policy:
        return "## Augmentations\nnone: the model was trained on the images as they are."
    from honed.augment import parse_policy

    rows = [[item.name, _number(item.strength, "default"), _number(item.p, "default")]
            for item in parse_policy(policy).items]
    return "\n".join(["## Augmentations", f"Policy `{policy}`, applied in training only:", "",
                      _table(["augmentation", "strength", "probability"], rows)])


def _training_section(config: RunConfig) -> str:
    rows = [[key, f"`{value}`"] for key, value in config.to_dict()["train"].items()]
    return "## Training settings\n" + _table(["setting", "value"], rows)


def _steps_section(facts: RunFacts) -> str:
    """The ancestry: how this run was reached from its baseline, one run per row."""
    if not facts.ancestry:
        return "## Steps\nThe workspace ledger does not know this run, so its ancestry is unknown."
    rows = [[f"`{r.name}`", r.change or ("baseline" if not r.parent else "-"), r.model, r.metric,
             _number(r.score), r.status] for r in facts.ancestry]
    return "## Steps\n" + _table(["run", "what changed", "model", "metric", "score", "status"], rows)


def _scores_section(facts: RunFacts) -> str:
    val = {k: v for k, v in facts.metrics.items() if not k.startswith("test_") and k not in NOT_METRICS}
    test = {k[len("test_"):]: v for k, v in facts.metrics.items() if k.startswith("test_")}
    epoch = facts.metrics.get("epoch")
    lines = ["## Scores", f"Main metric: {facts.metric} = {_number(facts.score)}"
             + (f" (validation, best epoch {int(epoch)})" if epoch is not None else " (validation)")]
    if facts.refit:
        lines = ["## Scores", refit_words(facts.refit)]
    if val and not facts.refit:  # a refit has no validation split
        lines += ["", "Validation:", "", _table(["metric", "value"], [[k, _number(v)] for k, v in val.items()])]
    lines += ["", "Test:", "", _table(["metric", "value"], [[k, _number(v)] for k, v in test.items()])] if test else [
        "", "Test: no test split (the validation scores chose the weights, so they are optimistic)."]
    return "\n".join(lines)


def _export_section(meta: dict[str, Any]) -> str:
    parity = meta["parity"]
    rows = [[name, "yes" if r["passed"] else "NO", _scientific(r["max_abs_diff"]), _number(r["top1_agreement"]),
             str(r["num_samples"])] for name, r in parity["checks"].items()]
    files = ", ".join(f"`{name}`" for name in meta["files"])
    body = _table(["check", "passed", "max abs diff", "top-1 agreement", "samples"], rows) if rows else \
        "No fused or exported model in this bundle: nothing to check."
    fused = (f"ONNX/TorchScript files are BatchNorm-fused ({parity['fused_pairs']} conv/norm pairs folded); "
             if parity["fused"] else "Nothing is BatchNorm-fused; ")
    return "\n".join(["## Export", f"Files: {files}. {fused}{WEIGHTS_NOTE}",
                      f"Parity with the eval-mode original on {parity['inputs']}:", "", body])


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _number(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.4g}" if abs(value) >= 10 else f"{value:.4f}"


def _scientific(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def refit_words(refit: dict) -> str:
    """What a refit on train + val is, and the validation score it keeps from the run it refits."""
    return (f"**Refit on train + validation**: `{refit['refit_of']}`'s settings trained for its "
            f"{refit['epochs']} epoch(s) on all {refit['train_images']} labelled images, with no validation split "
            f"and so no validation score of its own. Validation score of `{refit['refit_of']}`, which chose the "
            f"settings and the epochs: {refit['metric']} = {_number(refit.get('validation_score'))}.")
