"""After a probe, the workflow trains the head on augmented images, started from the probe's weights, and keeps
it only when it beats the probe on validation; other strategies learn from augmentation in the improvement rounds."""

from __future__ import annotations

from honed.config import RunConfig
from honed.tracking.ledger import Ledger
from honed.workflow import run_workflow
from honed.workflow.augmented_head import PHOTO_POLICY, SMALL_POLICY, policy_for
from honed.workflow.context import wins_tie
from honed.workflow.plan import Asked, Data, make_plan
from honed.workflow.state import Step
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
    probe = result.state.step("baseline")
    ties_lower = step.score == probe.score and step.details["metrics"]["val_loss"] < probe.details["metrics"]["val_loss"]
    assert step.kept == (step.score > probe.score or ties_lower)  # kept when it beats the probe, or ties it lower
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


def _run_step(run: str, score: float | None, val_loss: float, *, size: int = 224, model: str = "m") -> Step:
    config = RunConfig.from_dict({"data": {"source": "x"}, "model": {"name": model},
                                  "preprocess": {"image_size": size}}).to_dict()
    return Step(run, "done", run=run, score=score, details={"config": config, "runs": 1,
                                                            "metrics": {"accuracy": score, "val_loss": val_loss}})


def test_a_tie_on_validation_goes_to_the_lower_loss_only_at_the_same_cost_to_predict():
    """Seen on ants/bees: the augmented head tied the probe at 0.918 on 49 photos with a lower loss, on every
    seed of the dataset's own split, and the probe was shipped."""
    probe = _run_step("probe", 0.918, 0.219)
    assert wins_tie("accuracy", _run_step("head", 0.918, 0.190), probe)
    assert not wins_tie("accuracy", _run_step("head", 0.918, 0.250), probe)  # the loss says the probe
    assert not wins_tie("accuracy", _run_step("head", 0.898, 0.100), probe)  # not a tie: the metric decides
    assert not wins_tie("accuracy", _run_step("head", 0.918, 0.190, size=288), probe)  # dearer to predict
    assert not wins_tie("accuracy", _run_step("head", 0.918, 0.190, model="bigger"), probe)
    no_metrics = _run_step("head", 0.918, 0.190)
    no_metrics.details.pop("metrics")  # a step without its metrics (a search's best trial): no tie-break
    assert not wins_tie("accuracy", no_metrics, probe)


def test_the_tie_rule_keeps_the_run_in_the_workflow_unless_a_minimum_gain_is_asked(tmp_path):
    from honed.workflow.budget import Budget
    from honed.workflow.context import Context
    from honed.workflow.state import WorkflowState

    def context(min_gain: float) -> Context:
        state = WorkflowState(name="wf", metric="accuracy", best="probe", best_score=0.918,
                              steps=[_run_step("probe", 0.918, 0.219)])
        spec = tiny_spec(tmp_path, tmp_path / "ws", min_gain=min_gain)
        return Context(spec=spec, folder=tmp_path / "wf", state=state, budget=Budget(seconds=60))

    (tmp_path / "wf").mkdir()
    ctx = context(0.0)
    kept = ctx.finish_against_best(_run_step("head", 0.918, 0.190))
    assert kept.kept and ctx.state.best == "head" and kept.delta == 0
    strict = context(0.01)
    assert not strict.finish_against_best(_run_step("head", 0.918, 0.190)).kept and strict.state.best == "probe"
