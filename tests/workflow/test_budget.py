import pytest

from honed.errors import HonedError
from honed.workflow.budget import Budget, parse_duration


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("20m", 1200), ("1h30m", 5400), ("1.5h", 5400),
                                           (" 2m 30s ", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "0", "5m-3s", "m"])
def test_nonsense_durations_are_refused(text):
    with pytest.raises(HonedError, match="budget"):
        parse_duration(text)


def test_budget_counts_time_spent_before_a_resume_and_runs():
    budget = Budget(seconds=100, max_runs=3, spent_before=95)
    assert budget.remaining() <= 5
    assert not budget.allows(10, runs_done=0)
    assert Budget(seconds=100, max_runs=3).allows(10, runs_done=2)
    assert not Budget(seconds=100, max_runs=3).allows(10, runs_done=3)
    assert Budget(seconds=100).runs_left(1000) > 1000


def test_a_fix_at_a_larger_input_is_priced_by_its_pixels_and_given_up_when_it_does_not_fit():
    from honed.analyze.candidates import Candidate
    from honed.config import DataConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.workflow.improve_step import sized_to_fit

    parent = RunConfig(data=DataConfig(source="x"), preprocess=PreprocessConfig(image_size=112),
                       train=TrainConfig(epochs=5))
    scale = Candidate("scale", "t", 0.6, augment="scale:0.4@0.8", epochs=10, image_size=224)
    kept, epochs, note = sized_to_fit(parent, scale, fitting=50)  # 10 epochs continued at 4x: 40 of the 50
    assert (kept.image_size, epochs, note) == (224, 10, "")
    kept, epochs, note = sized_to_fit(parent, scale, fitting=30)  # 10 at 4x do not fit: at the parent's size
    assert kept.image_size is None and epochs == 10 and "does not fit the budget" in note and "112 px" in note
    assert scale.image_size == 224  # the analysis's candidate is left as it was
    assert sized_to_fit(parent, scale, fitting=3)[1] == 3


def test_the_refits_reserve_is_held_while_it_fits_and_released_once_it_cannot(tmp_path):
    """Seen on ants/bees under load: the augmented head ran long, the refit no longer fitted, and its held-back
    time made TTA and the ensemble skip for "0s left" while 130 s of the budget went unused."""
    from honed.workflow import pace
    from honed.workflow.context import Context
    from honed.workflow.plan import Asked, Data, make_plan, reserve_seconds
    from honed.workflow.state import Step, WorkflowState
    from honed.workflow.timing import Costs
    from tests.workflow.test_workflow import tiny_spec

    costs = Costs(image_size=224, build_s=1.0, load_s=0.01, train_s=0.12, infer_s=0.04, seconds=1.5)
    data = Data(train=196, val=48, test=0, classes=2, batch_size=32)
    asked = Asked(strategy="probe", lr_given=False, epochs=5, improve_rounds=0, tune_trials=0, tta_views=2,
                  ensemble_size=2, analysis_images=200, refit=True)
    plan = make_plan(300, 10, costs, data, asked)
    assert not plan.step("refit").skipped
    state = WorkflowState(name="wf", steps=[Step("baseline", "done", run="wf-baseline", seconds=10,
                                                 details={"runs": 1}),
                                            Step("augmented-head", "done", run="wf-head", seconds=115,
                                                 details={"runs": 1})])

    def context(spent: float) -> Context:
        return Context(spec=tiny_spec(tmp_path, tmp_path / "ws", budget_s=300), folder=tmp_path, state=state,
                       budget=Budget(seconds=300, spent_before=spent), plan=plan)

    refit_s = 115 * (196 + 48) / 196  # the longest run, on train + val
    early = context(spent=60)
    assert pace.refit_reserve(early) == pytest.approx(refit_s)
    assert pace.time_left(early) == pytest.approx(300 - 60 - reserve_seconds(costs) - refit_s, abs=1)
    late = context(spent=171)  # 129 s left: the refit's 143 s cannot fit any more
    assert pace.refit_reserve(late) == 0
    assert pace.time_left(late) == pytest.approx(300 - 171 - reserve_seconds(costs), abs=1)
    assert pace.fits(late, 15) == ""  # TTA and the ensemble get the time instead
    state.best = "wf-baseline"  # the probe is kept: its refit is the one to hold time for, not the head's
    assert pace.refit_reserve(early) == pytest.approx(max(plan.step("refit").seconds, 10 * (196 + 48) / 196))
    assert pace.refit_reserve(late) == pytest.approx(pace.refit_reserve(early))  # and it still fits
    state.steps.append(Step("refit", "done", run="wf-refit"))
    assert pace.refit_reserve(early) == 0  # started or done: nothing left to hold back
