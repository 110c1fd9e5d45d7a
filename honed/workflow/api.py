"""``honed.workflow(data, budget="20m", ...)``: the workflow from Python, its keyword arguments the options of
``honed workflow`` in snake case, its result carrying the exported best model as an estimator.

``workflow_spec`` builds the ``WorkflowSpec`` from those options, and from a config file under them
(``honed workflow --config``): a workflow's own ``workflow-spec.json``, a file of the same shape in YAML, or
a run's ``config.yaml`` (its data, model and training settings become the workflow's base).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from honed.config import RunConfig, with_options
from honed.data.sources import is_image_column
from honed.errors import HonedError
from honed.estimator import ImageEstimator, load
from honed.progress import Reporter
from honed.workflow.budget import parse_duration
from honed.workflow.context import WorkflowSpec
from honed.workflow.run import WorkflowResult, run_workflow

# Options of the spec itself; every other option is one of the base RunConfig's (honed.config.OPTION_FIELDS).
SPEC_OPTIONS = ("name", "budget", "max_runs", "strategy", "lr", "improve_rounds", "tune_trials", "tta",
                "ensemble_size", "onnx", "refit", "min_gain")


@dataclass
class WorkflowFit(WorkflowResult):
    """What ``honed.workflow`` returns: the ``WorkflowResult``, and its exported model as a fitted estimator
    (``ImageClassifier`` or ``ImageRegressor``; None when nothing was exported)."""

    estimator: ImageEstimator | None = None


def workflow(data: Any, *, budget: str | float = "30m", name: str = "workflow", workspace: str = "honed-runs",
             model: str = "tf_efficientnet_lite0", pretrained: bool = True, strategy: str = "auto",
             lr: float = 0.0, epochs: int = 5, batch_size: int = 64, image_size: int = 0, task: str = "classify",
             target: Sequence[str] = (), val_fraction: float = 0.2, metric: str = "", max_runs: int = 0,
             improve_rounds: int = 3, tune_trials: int = 4, tta: str = "flip", ensemble_size: int = 3,
             onnx: bool = False, refit: bool = True, min_gain: float = 0.0, device: str = "auto",
             workers: int = -1, seed: int = 0, reporter: Reporter | None = None) -> WorkflowFit:
    """Run ``honed workflow`` on ``data`` (a folder or a CSV/Parquet path; a DataFrame of image paths is
    written next to the workflow as a CSV manifest first). Defaults are the command's."""
    options = {key: value for key, value in locals().items() if key not in ("data", "reporter")}
    options["data"] = _source(data, Path(workspace), name)
    options["target"] = [target] if isinstance(target, str) else list(target)
    result = run_workflow(workflow_spec(options), reporter=reporter)
    return fitted(result)


def fitted(result: WorkflowResult) -> WorkflowFit:
    """``result`` with its bundle loaded as an estimator."""
    values = {f.name: getattr(result, f.name) for f in fields(WorkflowResult)}
    return WorkflowFit(**values, estimator=load(result.bundle) if result.bundle else None)


def workflow_spec(options: Mapping[str, Any], file: Mapping[str, Any] | None = None,
                  explicit: Sequence[str] = ()) -> WorkflowSpec:
    """The spec of ``options`` (every option, defaults included) over a config file's mapping, whose values
    win over the options except those named in ``explicit`` (the flags given on the command line)."""
    raw = _spec_dict(options)
    if file is not None:
        raw = _merged(raw, _file_spec(file))
        raw = _merged(raw, _spec_dict({key: options[key] for key in explicit if key in options}))
    raw["base"]["name"] = ""  # each step names its own run
    return WorkflowSpec.from_dict(raw)


def _spec_dict(options: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's mapping for the options given (only their fields)."""
    raw: dict[str, Any] = {}
    base = {key: value for key, value in options.items() if key not in SPEC_OPTIONS}
    if "strategy" in options:  # a given strategy is the base's; auto is decided in the setup step
        base["strategy"] = options["strategy"] if options["strategy"] != "auto" else "full"
    raw["base"] = with_options({}, base)
    for key in SPEC_OPTIONS:
        if key not in options:
            continue
        if key == "budget":
            value = options[key]
            raw["budget_s"] = float(value) if isinstance(value, (int, float)) else parse_duration(str(value))
        elif key == "onnx":
            raw["export_formats"] = ["bundle", "onnx"] if options[key] else ["bundle"]
        else:
            raw[key] = options[key]
    return raw


def _file_spec(file: Mapping[str, Any]) -> dict[str, Any]:
    """A config file's mapping in the spec's shape: a run's config is the base; ``budget: 20m`` is allowed."""
    raw = copy.deepcopy(dict(file))
    if "base" not in raw:
        if not set(raw) <= {f.name for f in fields(RunConfig)}:
            unknown = sorted(set(raw) - {f.name for f in fields(RunConfig)})
            raise HonedError(f"unknown config key(s) {unknown}: a workflow config has the keys of its "
                             f"workflow-spec.json (with a 'base' run config), or is a run's config.yaml")
        raw = {"base": raw}
    if "budget" in raw:
        raw["budget_s"] = parse_duration(str(raw.pop("budget")))
    return raw


def _merged(under: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``under`` with ``over``'s values in place, mapping into mapping."""
    result = copy.deepcopy(under)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _source(data: Any, workspace: Path, name: str) -> str:
    """A path for the workflow's data: its steps reopen the data, so a DataFrame is written as a CSV manifest
    (its paths made absolute) beside the workflow's folder, and images in memory cannot do."""
    if isinstance(data, pd.DataFrame):
        if "path" not in data.columns or is_image_column(data["path"]):
            raise HonedError("a workflow reopens its data: give a DataFrame with a 'path' column of image files")
        path = workspace / f"{name}.data.csv"
        if path.exists():
            raise HonedError(f"{path} exists: give the workflow another name, or that CSV file as its data")
        workspace.mkdir(parents=True, exist_ok=True)
        data.assign(path=[str(Path(p).expanduser().resolve()) for p in data["path"]]).to_csv(path, index=False)
        return str(path.resolve())
    if isinstance(data, (str, Path)):
        return str(data)
    raise HonedError(f"a workflow takes a folder, a CSV/Parquet path or a DataFrame of image paths, "
                     f"not a {type(data).__name__}")
