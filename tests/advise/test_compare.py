"""Comparing backbones by the advisor's linear probe: the rule picks the cheapest within one standard error of
the best, the real pip-shipped Lites are measured on real pixels, and `--model auto` in the workflow uses it."""

from __future__ import annotations

import json

import pytest

from honed.advise.compare import AUTO_MODELS, BackboneScore, auto_models, choose, compare_backbones
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.data.prepare import prepare_data
from honed.errors import HonedError

LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))


def _score(model: str, probe: float, ms: float) -> BackboneScore:
    return BackboneScore(model, 224, probe, ms, 1.0)


def test_the_cheapest_within_one_standard_error_of_the_best_is_chosen():
    small, medium, big = _score("small", 0.915, 10), _score("medium", 0.91, 20), _score("big", 0.93, 40)
    # standard error of 0.93 on 200 images: 0.018; small (0.915) is within it, so it wins on cost
    choice, reasons = choose([small, medium, big], 200)
    assert choice == "small" and "within one standard error" in reasons[1] and "0.25x" in reasons[1]
    # on 2000 images the error is 0.0057: only big is that close, and it is the choice
    assert choose([small, medium, big], 2000)[0] == "big"
    # a cheaper model is never passed over for a dearer one with the same score
    assert choose([_score("a", 0.8, 30), _score("b", 0.8, 5)], 100)[0] == "b"
    # costs within 15% are a timing's noise, not a difference: the better probe wins between them
    assert choose([_score("lite0", 0.903, 12), _score("lite1", 0.887, 11)], 185)[0] == "lite0"


def test_auto_models_are_the_installed_pip_shipped_lites():
    assert set(LITES) <= set(AUTO_MODELS) and auto_models() == sorted(LITES)


def test_the_lites_are_compared_on_the_same_sample(color_folder):
    manifest = prepare_data(DataConfig(source=str(color_folder), val_fraction=0.25), seed=0).manifest
    comparison = compare_backbones(manifest, LITES[:2], image_size=32)
    assert [s.model for s in comparison.scores] == LITES[:2] and comparison.choice in LITES[:2]
    assert comparison.sample == int((manifest.frame["split"] == "train").sum())
    assert all(s.image_size == 32 and 0 <= s.probe <= 1 and s.ms_per_image > 0 for s in comparison.scores)
    assert comparison.scores[0].probe >= 0.9  # red vs blue: ImageNet features separate them
    with pytest.raises(HonedError, match="at least one model"):
        compare_backbones(manifest, [])


def test_cli_compare_models_prints_the_choice_as_json(color_folder):
    from typer.testing import CliRunner

    from honed.cli import _register, app

    _register()
    done = CliRunner().invoke(app, ["advise", str(color_folder), "--compare-models",
                                    "tf_efficientnet_lite0, tf_efficientnet_lite1", "--image-size", "32", "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["choice"] in LITES[:2] and [s["model"] for s in out["scores"]] == LITES[:2]
    assert out["reasons"][0].startswith("tf_efficientnet_lite")


@pytest.mark.slow
def test_workflow_model_auto_trains_the_compared_choice(color_folder, tmp_path):
    from honed.workflow import WorkflowSpec, run_workflow

    base = RunConfig(name="", workspace=str(tmp_path / "ws"), data=DataConfig(source=str(color_folder)),
                     model=ModelConfig(name="auto"), preprocess=PreprocessConfig(image_size=32),
                     train=TrainConfig(epochs=1, batch_size=32, workers=0, seed=0))
    result = run_workflow(WorkflowSpec(name="wf", base=base, budget_s=600, strategy="probe", improve_rounds=0,
                                       tune_trials=0, tta="", ensemble_size=0, refit=False))
    setup = result.state.step("setup")
    chosen = setup.details["model"].split(":")[0]
    assert chosen in LITES
    config = RunConfig.from_yaml(tmp_path / "ws" / result.best / "config.yaml")
    assert config.model.name == chosen and config.model.pretrained
