"""The serving limits hold for 10 minutes at twice the measured capacity: no crash, only 200 or 429
answers, memory growth under 10% (benchmarks/bench_serve.py's soak, run against `honed serve`)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serve.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.reliability
def test_soak_at_twice_capacity_keeps_serving_with_flat_memory(tmp_path):
    bench = _bench()
    seconds = float(os.environ.get("HONED_SOAK_SECONDS", "600"))  # the issue asks for 10 minutes
    result = bench.soak(bench.make_bundle(tmp_path), seconds=seconds, log=tmp_path / "server.log")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    assert result["alive"] and result["health"] == 200
    assert set(result["statuses"]) <= {200, 429}, result["statuses"]  # refused politely, never 5xx or dropped
    # it kept serving: at least its measured capacity for most of the soak (the rest may be 429s)
    assert result["statuses"].get(200, 0) > 0.5 * result["capacity_rps"] * seconds
    assert result["rss_growth"] < 0.10, result["samples"]
