"""Bagging by independent workers sharing a workspace: members claimed once each, the bag built once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from honed.ensemble.bagging import CLAIMS_DIR, bag_worker, claim
from honed.tracking.ledger import Ledger
from tests.ensemble.conftest import colour_folder
from tests.training.test_train import tiny_config


def test_a_claim_is_won_once_and_retaken_only_from_a_gone_worker(tmp_path):
    claims = tmp_path / "claims"
    assert claim(claims, "m") and not claim(claims, "m")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (claims / "n.0").parent.mkdir(exist_ok=True)
    (claims / "n.0").write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "claimed": 0}))
    assert not claim(claims, "n")  # without --resume a claim is never taken over
    assert claim(claims, "n", resume=True) and (claims / "n.1").is_file()
    assert json.loads((claims / "n.1").read_text())["pid"] == os.getpid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (claims / "o.0").write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid, "claimed": 0}))
        assert not claim(claims, "o", resume=True)  # a running worker keeps its member
    finally:
        alive.kill()
        alive.wait()


def test_two_worker_processes_split_the_members_and_build_the_bag_once(tmp_path):
    data = colour_folder(tmp_path / "colors")
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "honed", "bag", str(data), "--members", "4", "--name", "bag", "--worker",
               "--model", "test_resnet", "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--workers", "0",
               "--device", "cpu", "--val-fraction", "0.25", "--workspace", str(ws), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    trained = []
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        line = next(line for line in out.splitlines() if line.startswith("trained: "))
        trained.append([] if line == "trained: none" else line.removeprefix("trained: ").split(", "))
    members = [f"bag-b{k}" for k in range(4)]
    assert sorted(trained[0] + trained[1]) == members  # every member trained, none twice
    assert sum("saved to" in out for out, _ in outputs) == 1  # exactly one worker built the bag
    definition = json.loads((ws / "bag" / "ensemble.json").read_text())
    assert [m["name"] for m in definition["members"]] == members
    with Ledger(ws) as ledger:
        assert all(ledger.get(m).status == "done" for m in members) and ledger.get("bag").status == "done"
    draws = pd.read_parquet(ws / "bag" / "bootstrap.parquet")
    for k, name in enumerate(members):  # each worker trained its member on the bag's own draws
        rows = pd.read_parquet(ws / name / "manifest.parquet").query("split == 'train'")
        drawn = rows["path"].value_counts().reindex(draws["path"], fill_value=0).to_numpy()
        assert (drawn == draws[f"count:{name}"].to_numpy()).all()
    assert not (ws / CLAIMS_DIR / "bag").exists()


class _CrashInMember:
    """A reporter that fails in member ``member`` after its first epoch, like a worker dying mid-run."""

    def __init__(self, member: int):
        self.member, self.current = member, -1

    def message(self, text):
        if text.startswith("bag member "):
            self.current = int(text.split()[2].split("/")[0]) - 1

    def phase_started(self, label, total): ...
    def advance(self, steps=1): ...
    def phase_finished(self): ...

    def epoch_finished(self, row):
        if self.current == self.member:
            raise RuntimeError("worker died")


def test_resume_retakes_a_crashed_member_and_continues_it(tmp_path):
    data = colour_folder(tmp_path / "colors")
    config = tiny_config(data, tmp_path / "ws", epochs=2)
    config.name = "bag"
    with pytest.raises(RuntimeError, match="worker died"):
        bag_worker(config, members=3, reporter=_CrashInMember(1))
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.get("bag-b0").status == "done" and ledger.get("bag-b1").status == "failed"
    assert len(pd.read_csv(tmp_path / "ws" / "bag-b1" / "metrics.csv")) == 1
    other = bag_worker(config, members=3)  # a second worker: b1 is claimed, so it trains b2 and waits
    assert other.trained == ["bag-b2"] and other.pending == ["bag-b1"] and other.ensemble is None
    resumed = bag_worker(config, members=3, resume=True)
    assert resumed.trained == ["bag-b1"] and resumed.ensemble is not None
    assert resumed.ensemble.members == ["bag-b0", "bag-b1", "bag-b2"]
    assert len(pd.read_csv(tmp_path / "ws" / "bag-b1" / "metrics.csv")) == 2  # continued, not restarted
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.get("bag-b1").status == "done"
    from honed.errors import HonedError

    with pytest.raises(HonedError, match="already assembled"):
        bag_worker(config, members=3)
