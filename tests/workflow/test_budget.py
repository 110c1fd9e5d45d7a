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
