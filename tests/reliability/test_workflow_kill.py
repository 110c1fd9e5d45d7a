"""A workflow killed with SIGKILL in the middle of a training step resumes with `--resume`: the steps done
are not redone, the step under way continues, and the workflow finishes with a bundle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from honed.tracking.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]


def _workflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "honed", "workflow", *args]


@pytest.mark.reliability
@pytest.mark.parametrize("kill_in", ["baseline", "tune"])
def test_a_killed_workflow_resumes_where_it_stopped(cifar_mini, tmp_path, kill_in):
    workspace = tmp_path / "ws"
    state_file = workspace / "wf" / "workflow.json"
    command = _workflow(str(cifar_mini), "--workspace", str(workspace), "--name", "wf", "--model", "test_resnet",
                        "--no-pretrained", "--image-size", "16", "--epochs", "3", "--batch-size", "32",
                        "--workers", "0", "--strategy", "full", "--lr", "0.003", "--improve-rounds", "0",
                        "--tune-trials", "2", "--tta", "", "--ensemble-size", "2", "--budget", "20m", "--quiet")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        steps = json.loads(state_file.read_text())["steps"] if state_file.exists() else []
        if any(s["key"] == kill_in and s["status"] == "running" for s in steps):
            time.sleep(3)  # inside the step's training
            break
        time.sleep(0.2)
    assert process.poll() is None, "the workflow ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = json.loads(state_file.read_text())
    done_before = [s["key"] for s in before["steps"] if s["status"] == "done"]
    baseline_weights = (workspace / "wf-baseline" / "best.safetensors").read_bytes() if "baseline" in done_before \
        else None

    resumed = subprocess.run(_workflow("--resume", "wf", "--workspace", str(workspace), "--json"), env=env,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout)
    keys = [s["key"] for s in result["steps"] if s["status"] in ("done", "skipped")]
    for key in ("setup", "baseline", "tune", "ensemble", "export"):
        assert key in keys, key
    assert Path(result["bundle"]).is_dir()
    if baseline_weights is not None:
        assert (workspace / "wf-baseline" / "best.safetensors").read_bytes() == baseline_weights
    with Ledger(workspace) as ledger:
        assert ledger.integrity_check() == "ok"
        statuses = {r.name: r.status for r in ledger.runs()}
    assert statuses["wf"] == "done" and statuses["wf-baseline"] == "done"
