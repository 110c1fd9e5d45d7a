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
