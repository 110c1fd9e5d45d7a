"""Sharded prediction under torchrun: 2 CPU processes (gloo) write the same rows, in the same order, as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from honed.predict.sharded import merge_parts, part_path, shard_bounds, write_part
from tests.training.test_train import tiny_config


def honed(*args, nproc: int = 1, port: int = 29533):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}"]
                if nproc > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "honed", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("n,world", [(25, 2), (1, 3), (0, 2), (10, 4)])
def test_shards_cover_the_inputs_in_order(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, no gap or overlap
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_two_processes_predict_what_one_does(color_folder, tmp_path):
    from honed.training.fit import train

    ws = tmp_path / "ws"
    train(tiny_config(color_folder, ws, epochs=1))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")  # an error row in rank 0's half: the merge must keep it in place
    inputs = [color_folder / "blue", broken, color_folder / "red"]  # 12 + 1 + 12 = 25 rows, uneven shards
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    single = honed("predict", "tiny", *inputs, "--out", one, "--workspace", ws, "--top-k", "2",
                   "--batch-size", "4", "--device", "cpu", "-q")
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = honed("predict", "tiny", *inputs, "--out", two, "--workspace", ws, "--top-k", "2",
                    "--batch-size", "4", "--device", "cpu", "-q", nproc=2)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "25 predictions by 2 processes" in sharded.stderr
    a, b = (pd.read_csv(p, keep_default_na=False) for p in (one, two))
    assert len(a) == 25 and list(a.columns) == list(b.columns)
    assert a["path"].tolist() == b["path"].tolist()  # input order kept across the ranks' slices
    assert a["error"].iloc[12] != "" and b["error"].tolist() == a["error"].tolist()
    assert b["prediction"].tolist() == a["prediction"].tolist()
    assert b["prediction_2"].tolist() == a["prediction_2"].tolist()
    ok = a["error"] == ""
    pd.testing.assert_series_equal(b["probability"][ok].astype(float), a["probability"][ok].astype(float),
                                   atol=1e-6, rtol=0)
    assert not (tmp_path / ("two.csv" + ".parts")).exists()  # parts removed after the merge


def test_json_parts_merge_into_one_array_in_rank_order(tmp_path):
    out = tmp_path / "preds.json"
    frames = [pd.DataFrame({"path": [f"{r}-{i}.png" for i in range(r + 1)], "prediction": ["a"] * (r + 1),
                            "probability": [0.5] * (r + 1), "error": [""] * (r + 1)}) for r in range(3)]
    frames[1] = frames[1].iloc[:0]  # an empty rank (more ranks than inputs) writes an empty part
    for rank, frame in enumerate(frames):
        write_part(frame, out, rank)
    merge_parts(out, 3)
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == ["0-0.png", "2-0.png", "2-1.png", "2-2.png"]
    assert not part_path(out, 0).parent.exists()


def test_a_missing_part_names_the_shared_filesystem_fix(tmp_path):
    out = tmp_path / "preds.csv"
    write_part(pd.DataFrame({"path": ["a"], "error": [""]}), out, 0)
    from honed.errors import HonedError

    with pytest.raises(HonedError, match="shares"):
        merge_parts(out, 2)
