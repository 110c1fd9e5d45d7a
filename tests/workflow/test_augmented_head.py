"""After a probe, the workflow trains the head on augmented images, started from the probe's weights, and keeps
it only when it beats the probe on validation; other strategies learn from augmentation in the improvement rounds."""

from __future__ import annotations

from honed.config import RunConfig
from honed.tracking.ledger import Ledger
from honed.workflow import run_workflow
from honed.workflow.augmented_head import PHOTO_POLICY, SMALL_POLICY, policy_for
from honed.workflow.plan import Asked, Data, make_plan
from honed.workflow.timing import Costs
from tests.workflow.test_workflow import tiny_spec


def test_after_a_probe_the_head_trains_on_augmented_images_from_the_probes_weights(cifar_mini, tmp_path, one_thread):
    spec = tiny_spec(cifar_mini, tmp_path / "ws", strategy="probe", improve_rounds=0, tune_trials=0,
                     ensemble_size=2, tta="")
    result = run_workflow(spec)
    step = result.state.step("augmented-head")
    assert step is not None and step.status == "done" and step.parent == "wf-baseline"
    config = RunConfig.from_yaml(tmp_path / "ws" / step.run / "config.yaml")
    assert config.model.strategy == "head" and config.train.augment == SMALL_POLICY  # 16 px images
    assert config.model.weights.endswith("wf-baseline/best.safetensors") and config.train.epochs >= 3
    with Ledger(tmp_path / "ws") as ledger:
        row = ledger.get(step.run)
    assert row.kind == "train" and row.parent == "wf-baseline" and row.score == step.score
    assert step.kept == (step.score > result.state.step("baseline").score)  # kept only when it beats the probe
    assert result.state.step("ensemble").status == "done"  # the probe and the head vote


def test_the_plan_prices_the_augmented_head_only_after_a_probe_and_the_policy_fits_the_images():
    costs = Costs(image_size=224, build_s=1.0, load_s=0.01, train_s=0.12, infer_s=0.04, seconds=1.5)
    data = Data(train=196, val=48, test=0, classes=2, batch_size=32)
    asked = Asked(strategy="probe", lr_given=False, epochs=5, improve_rounds=1, tune_trials=0, tta_views=1,
                  ensemble_size=3, analysis_images=200, refit=True)
    plan = make_plan(300, 10, costs, data, asked)
    head = plan.step("augmented-head")
    assert head is not None and not head.skipped and "epoch(s) of the head" in head.size
    assert plan.seconds() <= 300 - 10
    assert make_plan(20, 10, costs, data, asked).step("augmented-head").skipped.startswith("budget")
    asked.strategy = "full"
    assert make_plan(300, 10, costs, data, asked).step("augmented-head") is None
    assert policy_for(32) == SMALL_POLICY and policy_for(224) == PHOTO_POLICY
