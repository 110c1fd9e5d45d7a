"""A gain kept only beyond the noise of the validation split: a paired bootstrap of two outputs on the same images."""

import numpy as np

from honed.combine.noise import paired_gain


def _outputs(correct: np.ndarray, targets: np.ndarray, classes: int = 2) -> np.ndarray:
    """Probabilities that put 0.9 on the target where ``correct``, else on the next class."""
    predicted = np.where(correct, targets, (targets + 1) % classes)
    out = np.full((len(targets), classes), 0.1 / (classes - 1))
    out[np.arange(len(targets)), predicted] = 0.9
    return out


def test_one_more_image_right_of_49_is_within_noise():
    targets = np.arange(49) % 2
    correct = np.arange(49) >= 5  # 44 of 49 right
    better = correct.copy()
    better[0] = True  # one more: 0.898 -> 0.918, the ants/bees case
    gain = paired_gain(_outputs(correct, targets), _outputs(better, targets), targets, task="classify",
                       metric="accuracy")
    assert abs(gain.gain - 1 / 49) < 1e-12
    assert 0.5 / 49 < gain.se < 2 / 49  # the one changed image is drawn about once, give or take one: se ~ 1/49
    assert not gain.beyond_noise


def test_a_consistent_gain_on_many_images_is_beyond_noise_and_a_loss_never_is():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 1000)
    correct = rng.random(1000) < 0.7
    better = correct | (rng.random(1000) < 0.3)  # fixes about 90 images, breaks none
    plain, improved = _outputs(correct, targets, 3), _outputs(better, targets, 3)
    gain = paired_gain(plain, improved, targets, task="classify", metric="accuracy")
    assert gain.gain > 0.05 and gain.beyond_noise
    assert not paired_gain(improved, plain, targets, task="classify", metric="accuracy").beyond_noise


def test_a_loss_metric_counts_lower_as_better():
    targets = np.arange(200) % 2
    sharp = _outputs(np.ones(200, bool), targets)
    blurred = 0.5 * sharp + 0.25  # the same argmax, worse log loss
    gain = paired_gain(blurred, sharp, targets, task="classify", metric="log_loss")
    assert gain.gain > 0 and gain.beyond_noise
    assert gain.se == 0.0 or gain.se < gain.gain


def _run_folder(folder, order, correct):
    """A run folder holding only predictions_val.parquet: rows in ``order``, ``correct`` images right."""
    import pandas as pd

    targets = np.arange(len(correct)) % 2
    p_b = np.where(correct, targets, 1 - targets) * 0.8 + 0.1
    folder.mkdir()
    pd.DataFrame({"path": [f"{i}.png" for i in order], "target": np.array(["a", "b"])[targets[order]],
                  "p:a": 1 - p_b[order], "p:b": p_b[order]}).to_parquet(folder / "predictions_val.parquet")


def test_two_runs_are_paired_by_image_whatever_the_order_of_their_tables(tmp_path):
    from honed.combine.noise import runs_gain

    n = 300
    right = np.arange(n) >= 120
    better = right | (np.arange(n) < 60)  # 60 more right, none lost
    _run_folder(tmp_path / "best", np.arange(n), right)
    _run_folder(tmp_path / "ensemble", np.random.default_rng(0).permutation(n), better)
    gain = runs_gain(tmp_path / "best", tmp_path / "ensemble", metric="accuracy")
    assert abs(gain.gain - 60 / n) < 1e-12 and gain.beyond_noise
    assert runs_gain(tmp_path / "best", tmp_path / "missing", metric="accuracy") is None
