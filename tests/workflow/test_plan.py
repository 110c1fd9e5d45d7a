"""The plan scales every step, setup included, to the data and the budget (issue 17)."""

from __future__ import annotations

from honed.workflow.plan import LR_MIN_STEPS, Asked, Data, Plan, make_plan
from honed.workflow.timing import Costs

# Costs of the same order as tf_efficientnet_lite0 at 224 px on two busy CPU cores (measured by the probe)
SLOW = Costs(image_size=224, build_s=1.0, load_s=0.002, train_s=0.08, infer_s=0.025, seconds=1.5)


def asked(**overrides) -> Asked:
    settings = dict(strategy="auto", lr_given=False, epochs=5, improve_rounds=3, tune_trials=4, tta_views=1,
                    ensemble_size=3, analysis_images=2000, refit=True)
    settings.update(overrides)
    return Asked(**settings)


def test_a_tiny_budget_shrinks_setup_and_skips_steps_saying_why():
    data = Data(train=196, val=49, test=0, classes=10, batch_size=64)
    plan = make_plan(40, 2, SLOW, data, asked())
    lr, advisor = plan.step("lr-test"), plan.step("advisor")
    assert plan.lr_steps == 0 and lr.skipped  # a probe has no learning rate; 196 images are 4 batches anyway
    assert lr.seconds == 0
    assert advisor.seconds <= 0.08 * 40 + 1e-9 or advisor.skipped
    assert plan.strategy == "probe" and plan.costs.image_size < 224  # a smaller input, priced by the pixels
    assert plan.costs.train_s < SLOW.train_s
    skipped = [s for s in plan.steps if s.skipped]
    assert any(s.key == "augmented-head" and "budget" in s.skipped for s in skipped)
    assert plan.seconds() <= 40 - 2
    text = "\n".join(plan.lines())
    assert "skipped (budget" in text and "of 40s" in text


def test_when_fine_tuning_cannot_fit_a_cheaper_strategy_is_planned_and_the_advisor_skipped():
    data = Data(train=480, val=120, test=0, classes=10, batch_size=64)
    plan = make_plan(90, 8, SLOW, data, asked())
    assert plan.strategy in ("head", "probe") and "only" in plan.step("advisor").skipped
    assert plan.seconds() <= 90 - 8
    given = make_plan(90, 8, SLOW, data, asked(size_given=True, strategy="full"))
    assert given.costs.image_size == 224 and given.strategy == "full"  # given settings are kept: the overrun is said


def test_the_lr_test_is_bounded_by_one_pass_and_by_its_share_of_the_budget():
    big = Data(train=50_000, val=10_000, test=0, classes=10, batch_size=64)
    per_batch = 64 * (SLOW.load_s + SLOW.train_s)
    short = make_plan(20 * 60, 0, SLOW, big, asked(size_given=True, strategy="full"))
    assert LR_MIN_STEPS <= short.lr_steps < 100
    assert short.step("lr-test").seconds <= 0.08 * 20 * 60 + SLOW.build_s + 1e-9
    assert short.lr_steps == int(0.08 * 20 * 60 // per_batch)
    long = make_plan(24 * 3600, 0, SLOW, big, asked())
    assert long.lr_steps == 100  # the default when the budget allows
    mid = make_plan(24 * 3600, 0, SLOW, Data(train=1000, val=250, test=0, classes=10, batch_size=64), asked())
    assert mid.lr_steps == 16  # one pass over 1,000 images
    assert mid.step("advisor").size == "20 images per class"


def test_epochs_shrink_so_the_baseline_fits_and_a_long_budget_plans_every_step():
    data = Data(train=400, val=100, test=0, classes=10, batch_size=32)
    tight = make_plan(240, 5, SLOW, data, asked())
    loose = make_plan(4 * 3600, 5, SLOW, data, asked())
    assert tight.epochs < loose.epochs == 5
    assert tight.step("baseline").seconds <= 0.35 * 240
    assert not [s for s in loose.steps if s.skipped] and loose.tune_trials == 4
    assert loose.seconds() <= 4 * 3600
    assert tight.seconds() <= 240  # what runs fits: the rest is skipped


def test_given_settings_skip_their_setup_and_the_plan_round_trips():
    data = Data(train=400, val=100, test=50, classes=10, batch_size=32)
    plan = make_plan(600, 0, SLOW, data, asked(strategy="full", lr_given=True, tta_views=0, ensemble_size=0))
    assert plan.step("lr-test").skipped == "learning rate given"
    assert plan.step("advisor").skipped == "strategy full given"
    assert plan.step("tta").skipped == plan.step("ensemble").skipped == "not asked for"
    assert Plan.from_dict(plan.to_dict()) == plan
    probe = make_plan(600, 0, SLOW, data, asked(strategy="probe"))
    assert probe.step("tune").skipped and probe.step("improve-1").skipped.startswith("probe")


def test_the_refit_is_planned_before_the_optional_steps_and_skipped_only_when_asked():
    data = Data(train=400, val=100, test=0, classes=10, batch_size=32)
    plan = make_plan(600, 5, SLOW, data, asked(strategy="partial", size_given=True, refit=True))
    refit, baseline = plan.step("refit"), plan.step("baseline")
    assert not refit.skipped and "500 images" in refit.size
    assert refit.seconds > baseline.seconds  # the same epochs on train + val, no validation pass
    keys = [s.key for s in plan.steps]
    assert keys.index("refit") == keys.index("export") - 1  # it runs last, but its time is set aside first
    tight = make_plan(120, 5, SLOW, data, asked(strategy="partial", size_given=True, refit=True))
    assert not tight.step("refit").skipped  # a tight budget drops tuning before the refit
    assert tight.step("tune").skipped and "budget" in tight.step("tune").skipped
    assert tight.seconds() <= 120 - 5
    off = make_plan(600, 5, SLOW, data, asked(strategy="head", size_given=True, refit=False))
    assert off.step("refit").skipped == "--no-refit"


def test_short_runs_are_priced_per_fold_on_the_pooled_images():
    from honed.workflow.plan import run_seconds, short_runs_seconds

    data = Data(train=400, val=100, test=50, classes=10, batch_size=32)
    five = short_runs_seconds(SLOW, data, "partial", folds=5, epochs=3)
    one_fold = Data(train=400, val=100, test=0, classes=10, batch_size=32)  # 500 pooled: 400 / 100 per fold
    assert abs(five - 5 * run_seconds(SLOW, one_fold, 3, "partial")) < 1e-9
    assert short_runs_seconds(SLOW, data, "partial", folds=1, epochs=3) < five / 4
