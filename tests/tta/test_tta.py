"""TTA on a real tiny run: the scikit-learn wrapper, the Predictor and bundle setting, and `honed evaluate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import honed
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.analyze.tta_evaluation import evaluate_tta
from honed.tta import TTAClassifier, TTASetting
from tests.conftest import write_image
from tests.training.test_train import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run on 'bright left half' vs 'bright right half' images: flipping an image changes its class,
    so TTA with flips visibly matters (and hurts), which the checks below can see."""
    from honed.training.fit import train

    root = tmp_path_factory.mktemp("data") / "halves"
    rng = np.random.default_rng(0)
    for i in range(12):
        for name, side in (("left", 0), ("right", 1)):
            image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            image[:, side * 8:(side + 1) * 8] += 180
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(image).save(path)
    torch.set_num_threads(1)
    return train(tiny_config(root, tmp_path_factory.mktemp("ws"), epochs=4, lr=1e-2)).run_dir


def _val(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "predictions_val.parquet")


def test_identity_view_is_the_plain_prediction_and_mean_is_the_mean_of_views(run_dir):
    predictor = honed.load(run_dir)
    paths = _val(run_dir)["path"].tolist()
    plain = predictor.predict_proba(paths, workers=0)
    np.testing.assert_allclose(TTAClassifier(predictor, views="identity").predict_proba(paths), plain, atol=1e-6)
    tta = TTAClassifier(predictor, views="flip,crop_center")
    raw = torch.from_numpy(tta.view_outputs(paths))  # [3 views, N, 2] logits
    assert raw.shape == (3, len(paths), 2)
    np.testing.assert_allclose(tta.predict_proba(paths), raw.softmax(dim=2).mean(dim=0).numpy(), atol=1e-6)
    logit = TTAClassifier(predictor, views="flip,crop_center", aggregate="logit")
    np.testing.assert_allclose(logit.predict_proba(paths), raw.mean(dim=0).softmax(dim=1).numpy(), atol=1e-6)
    flipped = TTAClassifier(predictor, views="hflip").predict(paths)
    truth = _val(run_dir)["target"].to_numpy()
    assert (flipped != truth).mean() >= 0.8  # a mirrored left-bright image looks right-bright: the view is real


def test_the_identity_view_reuses_a_plain_pass_it_is_given(run_dir):
    predictor = honed.load(run_dir)
    x = torch.rand(4, 3, 16, 16)
    calls = []

    def forward(batch):
        calls.append(batch)
        return predictor.logits(batch)

    setting = TTASetting(("identity", "hflip"))
    every_view = setting.view_outputs(x, forward)
    assert len(calls) == 2
    reused = setting.view_outputs(x, forward, identity=predictor.logits(x))
    assert len(calls) == 3  # the flip alone ran
    torch.testing.assert_close(reused, every_view)


def test_learned_weights_are_fitted_on_validation_and_move_away_from_a_harmful_view(run_dir):
    predictor = honed.load(run_dir)
    val = _val(run_dir)
    with pytest.raises(HonedError, match="call fit"):
        TTAClassifier(predictor, views="flip", aggregate="learned").predict_proba(val["path"])
    with pytest.raises(HonedError, match="give fit\\(\\) images and their targets"):
        TTAClassifier(predictor, views="flip", aggregate="learned").fit(val["path"])
    tta = TTAClassifier(predictor, views="flip", aggregate="learned").fit(val["path"], val["target"])
    assert tta.setting_.views == ("identity", "hflip") and sum(tta.weights_) == pytest.approx(1)
    assert tta.weights_[0] > 0.9  # the mirror view contradicts the label, so it gets (almost) no weight
    assert tta.score(val["path"], val["target"]) >= 0.9
    assert list(tta.predict(val["path"][:3])) == list(val["target"][:3])
    from sklearn.base import clone

    assert clone(tta).get_params()["aggregate"] == "learned" and not hasattr(clone(tta), "weights_")


def test_a_predictor_applies_the_setting_and_a_bundle_carries_it(run_dir, tmp_path):
    paths = _val(run_dir)["path"].tolist()
    expected = TTAClassifier(honed.load(run_dir), views="flip,shifts").predict_proba(paths)
    with_tta = honed.load(run_dir, tta="flip,shifts")
    assert with_tta.tta == TTASetting.parse("flip,shifts")
    np.testing.assert_allclose(with_tta.predict_proba(paths, workers=0), expected, atol=1e-6)

    learned = TTAClassifier(honed.load(run_dir), views="flip", aggregate="learned").fit(paths, _val(run_dir)["target"])
    bundle = export_bundle(run_dir, tmp_path / "tta-bundle", tta=learned.to_setting()).path
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    assert meta["tta"] == {"views": ["identity", "hflip"], "aggregate": "learned", "weights": list(learned.weights_)}
    loaded = honed.load(bundle)
    np.testing.assert_allclose(loaded.predict_proba(paths, workers=0), learned.predict_proba(paths), atol=1e-6)
    plain = honed.load(bundle, tta="none")  # switched off by the caller
    np.testing.assert_allclose(plain.predict_proba(paths, workers=0),
                               honed.load(run_dir).predict_proba(paths, workers=0), atol=1e-6)
    for tamper, message in [({"views": ["identity", "rot90"], "aggregate": "mean", "weights": None},
                             "field 'tta'.*unknown test-time view 'rot90'"),
                            ("flip", "asks for test-time augmentation 'flip'"),
                            ({"views": ["identity"], "aggregate": "mean", "weights": None, "code": "x"},
                             "exactly the keys")]:
        copy = Path(shutil.copytree(bundle, tmp_path / f"bad-{len(str(tamper))}"))
        broken = json.loads((copy / BUNDLE_FILE).read_text())
        broken["tta"] = tamper
        (copy / BUNDLE_FILE).write_text(json.dumps(broken))
        with pytest.raises(HonedError, match=message):
            honed.load(copy)


def test_evaluate_reports_with_and_without_tta_and_the_cost_per_image(run_dir):
    result = evaluate_tta(run_dir, views="flip,crops", workers=0)
    table = result.table()
    assert table["split"].tolist() == ["val", "val"] and table["tta"].iloc[0] == "none"
    assert "mean probability of 7 views" in table["tta"].iloc[1]
    recorded = json.loads(json.dumps(pd.read_csv(run_dir / "metrics.csv")["accuracy"].max()))
    assert table["accuracy"].iloc[0] == pytest.approx(recorded)  # plain = the run's own best validation score
    assert (table["ms_per_image"] > 0).all() and table["ms_per_image"].iloc[1] > table["ms_per_image"].iloc[0]
    learned = evaluate_tta(run_dir, views="flip", aggregate="learned", folds=3, workers=0)
    assert learned.setting.weights is not None and learned.table()["tta"].iloc[1].startswith("learned weights")


def test_evaluate_from_the_command_line(run_dir):
    from typer.testing import CliRunner

    from tests.ensemble.test_ensemble_runs import cli_app

    result = CliRunner().invoke(cli_app(), ["evaluate", str(run_dir), "--tta", "flip,crops", "--workers", "0",
                                            "--workspace", str(run_dir.parent)])
    assert result.exit_code == 0, result.output
    assert "ms/image" in result.output and "TTA: mean probability of 7 views" in result.output
    assert "scoring" in result.output and "images with and without TTA" in result.output  # progress, as a line


def test_evaluate_tta_reports_every_image_it_scores(run_dir):
    done = []
    result = evaluate_tta(run_dir, views="flip", workers=0, progress=done.append)
    assert sum(done) == sum(row["images"] for row in result.rows if row["tta"] == "none")


def test_training_never_applies_tta(run_dir, tmp_path, monkeypatch):
    """TTA lives in prediction only: training (and its validation) never reaches a view or an aggregation."""
    from honed.config import TrainConfig
    from honed.tta import setting, views

    assert not any("tta" in name for name in TrainConfig.__dataclass_fields__)

    def forbidden(*args, **kwargs):
        raise AssertionError("TTA used during training")

    monkeypatch.setattr(setting.TTASetting, "view_outputs", forbidden)
    monkeypatch.setattr(views, "get_view", forbidden)
    source = Path(pd.read_parquet(run_dir / "manifest.parquet")["path"][0]).parents[1]
    honed.train(tiny_config(source, tmp_path / "ws", epochs=1))


def test_regression_runs_take_mean_tta_but_not_logit(tmp_path):
    rows = []
    for i in range(16):
        write_image(tmp_path / "img" / f"{i}.png", (i * 15,) * 3, noise_seed=i)
        rows.append({"path": f"img/{i}.png", "level": i / 15})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = tiny_config(tmp_path / "m.csv", tmp_path / "ws", epochs=1)
    config.data.task, config.data.target_columns = "regress", ["level"]
    run = honed.train(config).run_dir
    paths = [str(tmp_path / "img" / f"{i}.png") for i in range(4)]
    predictor = honed.load(run)
    values = TTAClassifier(predictor, views="flip").predict(paths)
    manual = (predictor.predict_outputs(paths, workers=0)[0]
              + honed.load(run, tta="hflip").predict_outputs(paths, workers=0)[0]) / 2
    np.testing.assert_allclose(values, manual, atol=1e-5)
    with pytest.raises(HonedError, match="'logit' is for classification"):
        TTAClassifier(predictor, views="flip", aggregate="logit").predict(paths)
