"""The learning-rate range test on real data: the curve falls then diverges, the suggestion trains."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from honed.errors import HonedError
from honed.training.fit import train
from honed.training.lr_find import DIVERGENCE_FACTOR, find_lr, smooth, suggest_lr
from tests.training.test_train import tiny_config


def test_range_test_falls_diverges_and_its_suggestion_trains(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path / "ws", epochs=4)
    before = config.to_dict()
    result = find_lr(config, min_lr=1e-7, max_lr=10.0, steps=100, out_dir=tmp_path / "lr")
    assert config.to_dict() == before  # the caller's config is not filled in or changed

    losses = np.asarray(result.losses)
    lowest = int(np.argmin(losses))
    assert losses[lowest] < 0.5 * losses[0]  # it falls ...
    assert result.diverged and len(result.lrs) < 100  # ... then diverges, and the test stops there
    assert losses[-1] > DIVERGENCE_FACTOR * losses[:-1].min()
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == pytest.approx(1e-7)
    assert 1e-7 < result.suggested_lr < result.lrs[-1]
    assert result.suggested_lr <= result.min_loss_lr / 10 + 1e-12
    assert result.plot == tmp_path / "lr" / "lr_find.png" and result.plot.stat().st_size > 5000
    table = pd.read_csv(tmp_path / "lr" / "lr_find.csv")
    np.testing.assert_allclose(table["smoothed_loss"], result.losses)

    trained = train(tiny_config(color_folder, tmp_path / "ws", epochs=4, lr=result.suggested_lr))
    assert trained.metrics["accuracy"] >= 0.9


def test_suggestion_is_the_steepest_descent_bounded_by_a_tenth_of_the_minimum():
    lrs = list(np.logspace(-6, 0, 61))
    # a loss that falls steepest at 1e-3 and is lowest at 1e-1: steepest wins (below 1e-2)
    falling = [2.0 - np.tanh(3 * (np.log10(lr) + 3)) - 0.1 * (np.log10(lr) + 6) / 6 for lr in lrs[:51]]
    rising = [falling[-1] + 0.5 * i for i in range(1, 11)]
    assert suggest_lr(lrs, falling + rising) == pytest.approx(1e-3, rel=0.3)
    # steepest right before the minimum (1e-1): bounded to a tenth of it
    late = [2.0 - np.tanh(4 * (np.log10(lr) + 1.2)) for lr in lrs[:51]]
    assert suggest_lr(lrs, late + [late[-1] + 1 + i for i in range(10)]) == pytest.approx(1e-2, rel=1e-6)
    with pytest.raises(HonedError, match="only rose"):
        suggest_lr(lrs[:5], [1.0, 2.0, 3.0, 4.0, 5.0])


def test_smoothing_is_bias_corrected():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards zero at the start


def test_probe_and_auto_have_no_rate_to_find(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path / "ws")
    config.model.strategy = "probe"
    with pytest.raises(HonedError, match="no learning rate"):
        find_lr(config, steps=10)
    config.model.strategy = "auto"
    with pytest.raises(HonedError, match="honed advise"):
        find_lr(config, steps=10)


def test_cli_prints_the_suggestion_and_the_plot(color_folder, tmp_path):
    import typer
    from typer.testing import CliRunner

    from honed.cli.lr_find_cmd import lr_find

    app = typer.Typer()
    app.command("lr-find")(lr_find)
    app.command("unused")(lambda: None)  # two commands: typer keeps the command name in the arguments
    out = tmp_path / "lr.png"
    done = CliRunner().invoke(app, ["lr-find", str(color_folder), "--model", "test_resnet", "--image-size", "16",
                                    "--batch-size", "8", "--workers", "0", "--steps", "40", "--min-lr", "1e-5",
                                    "--out", str(out), "--workspace", str(tmp_path / "ws"), "--quiet"])
    assert done.exit_code == 0, done.output
    assert "suggested learning rate" in done.output and str(out) in done.output.replace("\n", "")
    assert out.stat().st_size > 5000
    bad = CliRunner().invoke(app, ["lr-find", str(color_folder), "--model", "test_resnet", "--strategy", "probe",
                                   "--workspace", str(tmp_path / "ws"), "--quiet"])
    assert isinstance(bad.exception, HonedError) and "no learning rate" in str(bad.exception)


def test_a_noisy_flat_start_is_not_taken_for_the_steepest_descent():
    # Measured on a random-weight network: the first smoothed losses wobble by a few hundredths over a
    # tiny lr range, which per decade looks steeper than the real descent around 1e-3..1e-2.
    lrs = list(np.logspace(-7, 1, 100))
    rng = np.random.default_rng(0)
    flat = [2.40 - 0.07 * (i == 1) + rng.normal(0, 0.01) for i in range(55)]
    falling = list(np.linspace(2.33, 2.05, 12))
    rising = list(np.linspace(2.1, 6.0, 33))
    suggested = suggest_lr(lrs, flat + falling + rising)
    assert 3e-4 < suggested < 1e-2
