"""Data-parallel training with torchrun: two CPU processes (gloo) must end on the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_two_process_data_parallel_ranks_agree(color_folder, tmp_path):
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
               "-m", "honed", "train", str(color_folder), "--model", "test_resnet", "--image-size", "16",
               "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--name", "ddp",
               "--workspace", str(ws), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((ws / "ddp" / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["agree"] is True
    assert len(set(report["weights_sha256"])) == 1
    assert (ws / "ddp" / "best.safetensors").exists()
