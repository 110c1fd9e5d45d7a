"""Killed runs resume exactly: mid-epoch checkpoints, the sampler position, atomic checkpoint order, and the
SIGKILL harness (short here; ``-m reliability`` for the full suite: 10 seeds, 30 planned kills)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import random
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file
import torch
from torch.utils.data import Dataset

from honed.config import RunConfig
from honed.data.fast_loader import CachedBatchLoader
from honed.data.loader import make_loader, start_epoch
from honed.tracking import atomic
from honed.training.checkpoint import CHECKPOINT_DIR, read_state
from honed.training.fit import train
from tests.reliability import kill_harness
from tests.training.test_train import tiny_config

REPO = Path(__file__).resolve().parents[2]


class _Indexed(Dataset):
    """Sample i is (a uint8 image filled with i % 256, target i): batches say which samples they hold."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full((3, 2, 2), i % 256, dtype=torch.uint8), i


def _order(loader) -> list[list[int]]:
    return [targets.tolist() for _, targets in loader]


@pytest.mark.parametrize("kind", ["per-image", "cached"])
def test_a_mid_epoch_start_skips_exactly_the_batches_done(kind):
    n, batch = 23, 4
    if kind == "per-image":
        loader = make_loader(_Indexed(n), batch_size=batch, train=True, workers=0, seed=7)
    else:
        images = np.stack([np.full((3, 2, 2), i, np.uint8) for i in range(n)])
        loader = CachedBatchLoader(images, np.arange(n), batch_size=batch, train=True, seed=7)
    orders = {}
    for epoch in (1, 2):
        start_epoch(loader, epoch)
        full = orders[epoch] = _order(loader)
        assert len(full) == len(loader) == n // batch  # drop_last, as before
        for done in range(len(full) + 1):
            start_epoch(loader, epoch, done)
            rest = _order(loader)
            assert len(loader) == len(full) - done
            assert rest == full[done:]  # same order, nothing seen twice, nothing skipped
        start_epoch(loader, epoch)  # the next epoch (or a plain set_epoch) starts from the beginning again
        assert _order(loader) == full
    assert orders[1] != orders[2]  # epochs still shuffle differently


class _InterruptAtBatch:
    """A reporter that stops training after the ``stop``-th batch overall, as Ctrl-C would (after that
    step's checkpoint); records how many batches the run trained on."""

    def __init__(self, stop: int | None = None):
        self.stop, self.batches, self.training = stop, 0, False

    def message(self, text): ...
    def phase_finished(self): ...
    def epoch_finished(self, row): ...

    def phase_started(self, label, total):
        self.training = label.startswith("epoch ")  # not the file scan or the cache build before them

    def advance(self, steps=1):
        if not self.training:
            return
        self.batches += steps
        if self.batches == self.stop:
            raise KeyboardInterrupt


@pytest.mark.parametrize("cache", ["on", "off"])
def test_mid_epoch_resume_is_bit_identical(color_folder, tmp_path, cache):
    settings = dict(epochs=2, batch_size=4, checkpoint_every=1, deterministic=True, cache=cache,
                    augment="hflip,crop:2")  # augmentation: its generator must resume mid-stream too
    seen = _InterruptAtBatch()
    full = train(tiny_config(color_folder, tmp_path / "a", **settings), reporter=seen)
    per_epoch = seen.batches // 2
    assert per_epoch >= 3  # 18 training images in batches of 4

    counter = _InterruptAtBatch(stop=per_epoch + 2)  # inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(color_folder, tmp_path / "b", **settings), reporter=counter)
    run_dir = tmp_path / "b" / "tiny"
    state = read_state(run_dir)
    assert state["epoch"] == 1 and state["in_epoch"]["epoch"] == 2 and state["in_epoch"]["batches"] == 2
    assert sorted(p.name for p in (run_dir / CHECKPOINT_DIR).iterdir()) == sorted(
        Path(p).name for p in state["checkpoint"].values())  # older checkpoints are gone

    rest = _InterruptAtBatch()
    resumed = train(RunConfig.from_yaml(run_dir / "config.yaml"), resume=True, reporter=rest)
    assert rest.batches == per_epoch - 2  # only the batches not yet done
    assert list(resumed.history["epoch"]) == [1, 2]
    assert list(resumed.history["train_loss"]) == list(full.history["train_loss"])  # running loss sum resumed
    for name in ("best.safetensors", "last.safetensors"):
        a, b = load_file(str(full.run_dir / name)), load_file(str(run_dir / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_state_json_names_one_step_complete_files(color_folder, tmp_path):
    result = train(tiny_config(color_folder, tmp_path, epochs=1, batch_size=4, checkpoint_every=2))
    state = json.loads((result.run_dir / "state.json").read_text())
    weights = result.run_dir / state["checkpoint"]["weights"]
    extra = result.run_dir / state["checkpoint"]["optimizer"]
    assert "in_epoch" not in state and state["epoch"] == 1
    assert weights.read_bytes() == (result.run_dir / "last.safetensors").read_bytes()
    assert extra.read_bytes() == (result.run_dir / "last.optimizer.safetensors").read_bytes()
    rng = {k for k in load_file(str(extra)) if k.startswith("rng.")}
    assert {"rng.torch", "rng.numpy.keys", "rng.python"} <= rng


def test_a_run_killed_before_its_config_starts_again(color_folder, tmp_path):
    (tmp_path / "tiny").mkdir(parents=True)  # what a kill between claiming the folder and writing the config leaves
    (tmp_path / "tiny" / ".config.yaml.123.abcd.tmp").write_text("partial")
    result = train(tiny_config(color_folder, tmp_path, epochs=1))
    assert (result.run_dir / "config.yaml").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's folder is never taken")
    from honed.errors import HonedError

    with pytest.raises(HonedError, match="already exists"):
        train(RunConfig.from_dict({**tiny_config(color_folder, tmp_path, epochs=1).to_dict(), "name": "mine"}))
    assert (tmp_path / "mine" / "notes.txt").exists()


FAULTY_WRITER = """
import sys
from pathlib import Path
from honed.tracking.atomic import write_text
folder = Path(sys.argv[1])
for name in ("a", "b", "c"):
    write_text(folder / name, "new " + name)
"""


def test_fault_point_kills_between_temp_file_and_rename(tmp_path):
    (tmp_path / "b").write_text("old b")
    env = {**os.environ, "PYTHONPATH": str(REPO), atomic.FAULT_ENV: "atomic-rename:2"}
    done = subprocess.run([sys.executable, "-c", FAULTY_WRITER, str(tmp_path)], env=env, timeout=60)
    assert done.returncode == -9  # SIGKILL, self-inflicted at the 2nd write
    assert (tmp_path / "a").read_text() == "new a"
    assert (tmp_path / "b").read_text() == "old b"  # the rename never happened: old content intact
    assert not (tmp_path / "c").exists()
    temps = [p for p in tmp_path.iterdir() if atomic.is_temp_name(p.name)]
    assert len(temps) == 1 and temps[0].read_text() == "new b"  # complete, fsynced, not yet renamed


def test_fault_spec_errors_are_clear(monkeypatch):
    monkeypatch.setenv(atomic.FAULT_ENV, "atomic-rename:zero")
    with pytest.raises(ValueError, match="point:N"):
        atomic.fault_point("atomic-rename")
    monkeypatch.setenv(atomic.FAULT_ENV, "ledger-commit:5")
    atomic.fault_point("atomic-rename")  # another point: nothing happens


def _assert_clean(outcomes):
    for outcome in outcomes:
        assert not outcome.failures, outcome.failures
        assert outcome.identical, f"seed {outcome.seed}: weights differ from the uninterrupted run"


def test_kill_and_resume_short(tmp_path):
    """One seed: a kill inside a checkpoint write, one inside a ledger commit, one at a random moment."""
    data = kill_harness.make_data(tmp_path / "data")
    reference, wall, first_state = kill_harness.run_uninterrupted(data, tmp_path / "ref", seed=0, cache="on")
    rng = random.Random(0)
    # writes of the first process: config, labels, manifest, then 5 per checkpoint (weights, optimizer + RNG,
    # state.json, 2 links): the 11th is the 2nd mid-epoch checkpoint's state.json, killed before its rename
    kills = [kill_harness.Kill(fault="atomic-rename:11"),
             kill_harness.Kill(fault="ledger-commit:3"),
             kill_harness.Kill(at_s=rng.uniform(first_state, wall))]
    outcome = kill_harness.run_with_kills(data, tmp_path / "killed", seed=0, cache="on", kills=kills,
                                          reference=reference)
    _assert_clean([outcome])
    assert len(outcome.kills) >= 2 and outcome.kills[0] == "atomic-rename:11"


@pytest.mark.reliability
def test_kill_and_resume_full(tmp_path):
    """10 seeds (cached and per-image loaders alternating), 3 planned kills each: every resume succeeds and
    the final weights are bit-identical; the kills include mid-checkpoint-write and mid-ledger-commit ones."""
    outcomes = kill_harness.suite(tmp_path, list(range(10)), kills_per_seed=3)
    _assert_clean(outcomes)
    landed = [kill for outcome in outcomes for kill in outcome.kills]
    assert len(landed) >= 20, landed
    assert any(k.startswith("atomic-rename") for k in landed) and any(k.startswith("ledger-commit") for k in landed)
