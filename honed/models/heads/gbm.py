"""The gbm probe head (HistGradientBoosting on frozen features), stored as its fitted trees: an ONNX graph.

``fit_gbm`` is registered as the ``gbm`` head in ``honed.models.heads.sklearn.HEADS``. Right after fitting,
the trees are written as an ONNX-ML tree ensemble (``honed.models.heads.tree_onnx``), run once by ONNX
Runtime on the training features and compared with scikit-learn's own probabilities: a graph that disagrees
is refused there, before anything is saved. The run keeps only that graph (``gbm_head.onnx``, with the
task and output count in its metadata): no training features or targets, nothing pickled, no refit at load.
Loading is an ONNX Runtime session over the file's bytes (0.1 s where the refit took 25.6 s on 2,000 x 512,
see benchmarks/RESULTS.md), and the run exports to ONNX as one graph (network, then trees).

Runs and bundles from before (``probe_features.safetensors``: the training data, refitted at every load)
are refused with a message that says to train the probe again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from honed.errors import HonedError
from honed.models.heads.sklearn import FittedHead, register_head
from honed.models.heads.tree_onnx import INPUT, OUTPUT, hgb_to_onnx
from honed.tracking.atomic import atomic_path
from honed.tasks import get_task

HEAD_FILE = "gbm_head.onnx"
OLD_FEATURES_FILE = "probe_features.safetensors"  # before issue 21: the trees' training data; refused
FORMAT_NAME = "honed-gbm-head"
FORMAT_VERSION = "2"  # 1 was OLD_FEATURES_FILE
PARITY_ATOL = 1e-5  # graph vs. scikit-learn on the training features (float32 sums of float64 leaves)
MIN_LOG_PROB = 1e-30  # a class the trees give probability 0: log of this instead of -inf
GBM_ROUNDS = 100  # boosting iterations unless config.model.gbm_rounds (honed boost --method gbm --rounds) says
GBM_LEAF = 20  # scikit-learn's min_samples_leaf; fewer on tiny data (gbm_leaf), so the trees can split at all
RERUN = "train the gbm probe again (`honed boost --method gbm`, or `--strategy probe --head-model gbm`)"


@register_head("gbm", tasks=("classify", "regress"))
def fit_gbm(features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int, seed: int = 0,
            rounds: int = GBM_ROUNDS, leaf: int | None = None, **_options: Any) -> FittedHead:
    """HistGradientBoosting on ``features``: ``rounds`` iterations, ``leaf`` rows a leaf at least (None:
    ``gbm_leaf`` of N), one model per target for regression. The head predicts with its ONNX graph
    (``FittedHead.file``), checked against scikit-learn on ``features`` first."""
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    leaf = gbm_leaf(len(features)) if leaf is None else leaf
    options = dict(max_iter=rounds, early_stopping=False, random_state=seed, min_samples_leaf=leaf)
    x = np.ascontiguousarray(features, dtype=np.float32)  # what the graph reads, and what loading feeds it
    if get_task(task).is_classification:
        model = HistGradientBoostingClassifier(**options).fit(x, targets)
        models = [model]
        expected = np.zeros((len(x), outputs))
        expected[:, model.classes_.astype(int)] = model.predict_proba(x)
    else:
        y = targets.reshape(len(targets), -1)
        models = [HistGradientBoostingRegressor(**options).fit(x, y[:, t]) for t in range(y.shape[1])]
        expected = np.stack([m.predict(x) for m in models], axis=1)
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "gbm", "task": task,
                "outputs": str(outputs), "features": str(x.shape[1]), "rounds": str(rounds),
                "min_samples_leaf": str(leaf), "seed": str(seed), "sklearn": sklearn.__version__}
    graph = hgb_to_onnx(models, task=task, outputs=outputs, metadata=metadata)
    head = GbmHead.from_bytes(graph, where="the fitted gbm head")
    gap = float(np.abs(head.predict(x) - expected).max())
    if not gap <= PARITY_ATOL:
        raise HonedError(f"the gbm head's ONNX graph differs from scikit-learn's trees by {gap:.3g} (tolerance "
                         f"{PARITY_ATOL}) on the training features: report this; use --head-model logreg meanwhile")
    details = {"rounds": rounds, "min_samples_leaf": leaf, "onnx_parity_max_abs_diff": gap}
    return FittedHead("gbm", head.predict, details=details, file=graph)


def gbm_leaf(rows: int) -> int:
    """min_samples_leaf for ``rows`` training rows: scikit-learn's 20, or a tenth of the rows on tiny data."""
    return max(1, min(GBM_LEAF, rows // 10))


def save_gbm_head(path: Path, head: FittedHead) -> None:
    """Write a fitted gbm head's ONNX graph (its trees, nothing of the data they were fitted on), atomically."""
    if head.file is None:
        raise HonedError(f"a {head.kind} head has no file to save: only gbm heads are stored this way")
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(head.file)


@dataclass
class GbmHead:
    """Stored trees in ONNX Runtime: ``predict(features [N, F])`` -> probabilities [N, C] or values [N, T]."""

    task: str
    outputs: int
    features: int
    session: Any  # onnxruntime.InferenceSession

    @classmethod
    def from_file(cls, path: str | Path) -> GbmHead:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise HonedError(f"cannot read {path} ({error.strerror}): {RERUN}") from None
        return cls.from_bytes(data, where=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = HEAD_FILE) -> GbmHead:
        """Parse and check the graph (data only: ONNX operators, read from bytes), then open a session."""
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load_from_string(data)
            metadata = {p.key: p.value for p in model.metadata_props}
        except Exception as error:  # protobuf raises its own types for a truncated or foreign file
            raise HonedError(f"{where} is not a gbm head ({type(error).__name__}): {RERUN}") from None
        _check_metadata(metadata, where)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # small trees: threads cost more than they save (and share the box)
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad graphs
            raise HonedError(f"{where} cannot be loaded by ONNX Runtime ({error}): {RERUN}") from None
        if [i.name for i in session.get_inputs()] != [INPUT] or [o.name for o in session.get_outputs()] != [OUTPUT]:
            raise HonedError(f"{where} does not take {INPUT!r} to {OUTPUT!r}: not a honed gbm head; {RERUN}")
        return cls(metadata["task"], int(metadata["outputs"]), int(metadata["features"]), session)

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != self.features:
            raise HonedError(f"the gbm head reads {self.features} features per image, got shape "
                             f"{tuple(features.shape)}: the network and the head do not belong together")
        (out,) = self.session.run(None, {INPUT: np.ascontiguousarray(features, dtype=np.float32)})
        return out.astype(np.float64)


def _check_metadata(metadata: dict[str, str], where: str) -> None:
    if metadata.get("format") != FORMAT_NAME:
        raise HonedError(f"{where} is not a gbm head (format {metadata.get('format')!r}): {RERUN}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise HonedError(f"{where} has format_version {metadata.get('format_version')!r}; this honed reads "
                         f"{FORMAT_VERSION}: upgrade honed or {RERUN}")
    if metadata.get("task") not in ("classify", "regress"):
        raise HonedError(f"{where}: unknown task {metadata.get('task')!r}")
    if not (metadata.get("outputs", "").isdigit() and metadata.get("features", "").isdigit()):
        raise HonedError(f"{where}: outputs and features must be counts: {RERUN}")


def refuse_old_gbm(names: Any, where: str) -> None:
    """HonedError when ``names`` (a folder's files) hold a gbm head from before issue 21: its training data."""
    if OLD_FEATURES_FILE in names and HEAD_FILE not in names:
        raise HonedError(f"{where} is a gbm probe from an older honed, which kept the trees' training features "
                         f"and targets ({OLD_FEATURES_FILE}) and refitted them at every load; this honed stores "
                         f"the fitted trees only and will not read training data: {RERUN}, then export it again")


class GbmProbeModel(nn.Module):
    """The frozen network and its stored trees as one model: images -> the network's penultimate features
    (exactly those the probe was fitted on) -> trees. Returns log-probabilities for classification (so a
    softmax gives the trees' probabilities back) or values for regression."""

    def __init__(self, network: nn.Module, head: GbmHead):
        super().__init__()
        self.network = network
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from honed.models.features import captured_features

        with torch.no_grad(), captured_features(self.network) as captured:
            self.network(x)
        features = captured[-1].reshape(len(x), -1).numpy()
        out = self.head.predict(features)
        if get_task(self.head.task).is_classification:  # log-probabilities: a softmax gives them back
            out = np.log(np.clip(out, MIN_LOG_PROB, None))
        return torch.from_numpy(out.astype(np.float32)).to(x.device)


def gbm_head_file(run_dir: Path) -> Path | None:
    """The head file of a gbm probe run, or None for any other run; an old gbm run is refused."""
    run_dir = Path(run_dir)
    refuse_old_gbm({p.name for p in (run_dir / OLD_FEATURES_FILE, run_dir / HEAD_FILE) if p.is_file()},
                   f"run {run_dir.name!r}")
    path = run_dir / HEAD_FILE
    return path if path.is_file() else None


def with_gbm_head(network: nn.Module, run_dir: Path) -> nn.Module:
    """``network`` wrapped with the run's stored trees when it is a gbm probe run; unchanged otherwise."""
    path = gbm_head_file(run_dir)
    return network if path is None else GbmProbeModel(network, GbmHead.from_file(path))
