"""Temperature scaling: the fit recovers a known temperature, never changes the predicted class, and a trained
run, its bundle, ``honed predict`` and TTA use it unless asked for raw probabilities."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import honed
from honed.combine.calibration import (ECE_BINS, apply_temperature, expected_calibration_error, fit_calibration,
                                       fit_temperature, negative_log_likelihood, reliability)
from honed.errors import HonedError
from tests.conftest import write_image
from tests.training.test_train import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(temperature: float, n: int = 4000, classes: int = 5, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): the true temperature is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    p = _softmax(logits / temperature)
    targets = np.array([rng.choice(classes, p=row) for row in p])
    return logits, targets


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_recovers_the_temperature_labels_were_drawn_at(true_t):
    logits, targets = _sampled(true_t)
    assert fit_temperature(logits, targets) == pytest.approx(true_t, rel=0.1)
    calibration = fit_calibration(_softmax(logits), targets)  # the same fit from probabilities (log p = z - c)
    assert calibration.temperature == pytest.approx(true_t, rel=0.1)
    assert calibration.nll_after < calibration.nll_before and calibration.ece_after < calibration.ece_before


def test_temperature_never_changes_the_predicted_class():
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(0, 4, (500, 7))).astype(np.float32)
    for t in (0.1, 0.7, 1.5, 20.0):
        scaled = apply_temperature(probs, t)
        assert (scaled.argmax(axis=1) == probs.argmax(axis=1)).all()
        np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-5)
    assert apply_temperature(probs, None) is probs


def test_ece_and_nll_on_hand_computed_cases():
    probs = np.array([[0.9, 0.1]] * 10)
    targets = np.array([0] * 5 + [1] * 5)  # 90% confident, 50% right
    assert expected_calibration_error(probs, targets) == pytest.approx(0.4)
    assert negative_log_likelihood(probs, targets) == pytest.approx(-(np.log(0.9) + np.log(0.1)) / 2)
    table = reliability(probs, targets)
    assert len(table) == 1 and table["images"].sum() == 10 and ECE_BINS == 15
    assert fit_calibration(probs[:5], targets[:5]) is None  # too few images to fit on


# ----------------------------------------------------------------------------------------------- a real run


def _overlapping_colours(root: Path, per_class: int = 48) -> Path:
    """Reddish vs bluish 16 px images with one label in six flipped: a run cannot be sure of everything."""
    for i in range(per_class):
        red, blue = (170, 60, 80), (80, 60, 170)
        write_image(root / "red" / f"{i}.png", blue if i % 6 == 0 else red, noise_seed=i)
        write_image(root / "blue" / f"{i}.png", red if i % 6 == 0 else blue, noise_seed=500 + i)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from honed.training.fit import train

    torch.set_num_threads(1)
    data = _overlapping_colours(tmp_path_factory.mktemp("data") / "colours")
    return train(tiny_config(data, tmp_path_factory.mktemp("ws"), epochs=4, lr=1e-2)).run_dir


def test_a_run_fits_its_temperature_and_predict_uses_it(run_dir):
    facts = json.loads((run_dir / "calibration.json").read_text())
    saved = pd.read_parquet(run_dir / "predictions_val.parquet")
    assert facts["images"] == len(saved) >= 20 and facts["temperature"] > 0
    assert facts["nll_after"] <= facts["nll_before"] + 1e-9
    paths = saved["path"].tolist()
    calibrated = honed.load(run_dir, device="cpu")
    raw = honed.load(run_dir, device="cpu", calibrate=False)
    assert calibrated.temperature == pytest.approx(facts["temperature"]) and raw.temperature is None
    assert honed.load(run_dir, device="cpu", weights="last.safetensors").temperature is None  # fitted on best
    p_cal, p_raw = calibrated.predict_proba(paths, workers=0), raw.predict_proba(paths, workers=0)
    np.testing.assert_allclose(p_raw, saved[[f"p:{c}" for c in raw.classes]].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(p_cal, apply_temperature(p_raw, facts["temperature"]), atol=1e-5)
    assert (p_cal.argmax(axis=1) == p_raw.argmax(axis=1)).all()  # accuracy cannot change
    assert not np.allclose(p_cal, p_raw, atol=1e-4)  # and the probabilities did
    # TTA: the temperature scales the aggregated views, and again keeps their class
    tta_cal = honed.load(run_dir, device="cpu", tta="flip").predict_proba(paths, workers=0)
    tta_raw = honed.load(run_dir, device="cpu", tta="flip", calibrate=False).predict_proba(paths, workers=0)
    np.testing.assert_allclose(tta_cal, apply_temperature(tta_raw, facts["temperature"]), atol=1e-5)
    from honed.tta import TTAClassifier

    np.testing.assert_allclose(TTAClassifier(calibrated, views="flip").predict_proba(paths), tta_cal, atol=1e-5)


def test_the_bundle_carries_it_and_an_old_bundle_is_uncalibrated(run_dir, tmp_path):
    from honed.export.bundle import export_bundle

    bundle = export_bundle(run_dir, tmp_path / "b").path
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["calibration"]["temperature"] == pytest.approx(
        json.loads((run_dir / "calibration.json").read_text())["temperature"])
    assert "## Calibration\nTemperature" in (bundle / "model_card.md").read_text()
    assert honed.load(bundle, device="cpu").calibrated
    from honed.serve.model import load_served

    served, raw = load_served(bundle, device="cpu"), load_served(bundle, device="cpu", calibrate=False)
    assert served.metadata()["calibration"] == {"temperature": meta["calibration"]["temperature"], "applied": True}
    assert raw.metadata()["calibration"] == {"temperature": None, "applied": False}
    del meta["calibration"]  # a bundle exported before honed calibrated
    (bundle / "bundle.json").write_text(json.dumps(meta))
    old = honed.load(bundle, device="cpu")
    assert old.temperature is None and not old.calibrated
    meta["calibration"] = {"temperature": -1}
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(HonedError, match="temperature"):
        honed.load(bundle, device="cpu")


def test_cli_no_calibration_returns_the_raw_probabilities(run_dir, tmp_path):
    saved = pd.read_parquet(run_dir / "predictions_val.parquet").head(8)
    out, said = {}, {}
    for flag in ("", "--no-calibration"):
        path = tmp_path / f"p{flag}.csv"
        command = [sys.executable, "-m", "honed", "predict", str(run_dir), *saved["path"], "--out", str(path), "-q",
                   "--device", "cpu", "--top-k", "2"] + ([flag] if flag else [])
        said[flag] = subprocess.run(command, check=True, capture_output=True, text=True).stderr
        out[flag] = pd.read_csv(path)
    assert "uncalibrated" not in said[""]
    assert (out[""]["prediction"] == out["--no-calibration"]["prediction"]).all()
    raw = saved[[c for c in saved.columns if c.startswith("p:")]].max(axis=1).to_numpy()
    np.testing.assert_allclose(out["--no-calibration"]["probability"], raw, atol=1e-5)
    assert not np.allclose(out[""]["probability"], raw, atol=1e-4)
    (run_dir / "calibration.json").rename(tmp_path / "kept.json")  # a run from before honed calibrated
    try:
        old = subprocess.run(command[:-1], check=True, capture_output=True, text=True)
        assert "uncalibrated (temperature 1)" in old.stderr.replace("\n", " ")
        np.testing.assert_allclose(pd.read_csv(path)["probability"], raw, atol=1e-5)
    finally:
        (tmp_path / "kept.json").rename(run_dir / "calibration.json")


def test_a_soft_vote_ensemble_fits_its_own_temperature_on_the_combination(run_dir, tmp_path):
    from honed.combine.rules import soft_vote
    from honed.ensemble import create_ensemble
    from honed.training.fit import train

    config = tiny_config(Path(pd.read_parquet(run_dir / "manifest.parquet")["path"][0]).parents[1], run_dir.parent,
                         epochs=3, lr=3e-3)  # same seed: the same split
    config.name = "second"
    second = train(config).run_dir
    ensemble = create_ensemble([run_dir.name, second.name], name="duo", method="soft",
                               workspace=run_dir.parent).run_dir
    facts = json.loads((ensemble / "calibration.json").read_text())
    member_probs = np.stack([pd.read_parquet(r / "predictions_val.parquet").filter(like="p:").to_numpy()
                             for r in (run_dir, second)])
    targets = pd.read_parquet(run_dir / "predictions_val.parquet")["target"].map({"blue": 0, "red": 1}).to_numpy()
    expected = fit_calibration(soft_vote(member_probs), targets)  # fitted on the combined log-probabilities
    assert facts["temperature"] == pytest.approx(expected.temperature, rel=1e-4)
    paths = pd.read_parquet(run_dir / "predictions_val.parquet")["path"].tolist()
    loaded = honed.load(ensemble, device="cpu")
    raw = honed.load(ensemble, device="cpu", calibrate=False)
    assert loaded.temperature == pytest.approx(facts["temperature"]) and raw.temperature is None
    p_cal, p_raw = loaded.predict_proba(paths, workers=0), raw.predict_proba(paths, workers=0)
    np.testing.assert_allclose(p_raw, soft_vote(member_probs), atol=1e-5)  # members raw, as combined at build
    np.testing.assert_allclose(p_cal, apply_temperature(p_raw, facts["temperature"]), atol=1e-5)
    assert (p_cal.argmax(axis=1) == p_raw.argmax(axis=1)).all()
    from honed.predict.voting import VotingEnsemble

    members = [honed.load(r, device="cpu", calibrate=False) for r in (run_dir, second)]
    voting = VotingEnsemble(members, method="soft").fit(paths, targets)
    assert voting.temperature_ == pytest.approx(facts["temperature"], rel=1e-3)
    np.testing.assert_allclose(voting.predict_proba(paths), p_cal, atol=1e-5)
    hard = create_ensemble([run_dir.name, second.name], name="hard-duo", method="hard", workspace=run_dir.parent)
    assert not (hard.run_dir / "calibration.json").exists()  # vote shares are not probabilities


def test_analysis_report_and_card_state_ece_and_nll_before_and_after(run_dir, tmp_path):
    from honed.analyze.calibration_report import calibration_report, reliability_png, save_reliability
    from honed.report import build_report

    report = calibration_report(run_dir)
    facts = json.loads((run_dir / "calibration.json").read_text())
    val = report["splits"]["val"]
    assert report["status"] == "calibrated" and report["bins"] == 15
    assert val["ece"] == pytest.approx([facts["ece_before"], facts["ece_after"]])
    assert val["nll"] == pytest.approx([facts["nll_before"], facts["nll_after"]])
    assert val["accuracy"][0] == val["accuracy"][1]
    png = reliability_png(run_dir)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert save_reliability(run_dir, tmp_path / "analysis") == "reliability.png"
    page = build_report(run_dir, tmp_path / "report.html").read_text()
    section = page[page.index('<section id="calibration">'):]
    section = section[:section.index("</section>")]
    assert f"{val['ece'][0]:.4f} -&gt; {val['ece'][1]:.4f}" in section and "data:image/png;base64," in section
    (run_dir / "calibration.json").rename(tmp_path / "kept.json")  # a run from before honed calibrated
    try:
        old = calibration_report(run_dir)
        assert old["status"] == "uncalibrated" and old["temperature"] == 1.0
        assert old["splits"]["val"]["ece"][0] == old["splits"]["val"]["ece"][1]
        assert "Not calibrated" in old["words"]
    finally:
        (tmp_path / "kept.json").rename(run_dir / "calibration.json")
