"""Atomic writes: a failing or killed writer leaves the previous file (or none), never a partial one."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open
from safetensors.torch import load_file
import torch

from honed.tracking import atomic

REPO = Path(__file__).resolve().parents[2]

# A writer that fills a big file slowly, in chunks, announcing on stdout once it is midway.
SLOW_WRITER = """
import sys, time
from honed.tracking.atomic import atomic_path
chunk = b"N" * (1 << 20)
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        for i in range(200):
            f.write(chunk)
            f.flush()
            if i == 4:
                print("midway", flush=True)
            time.sleep(0.02)
"""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if atomic.is_temp_name(p.name))


def test_write_text_bytes_json_round_trip(tmp_path: Path) -> None:
    atomic.write_text(tmp_path / "a.txt", "héllo\n")
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic.write_json(tmp_path / "sub" / "c.json", {"b": 1, "a": [1.5, None]}, sort_keys=True)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    text = (tmp_path / "sub" / "c.json").read_text()
    assert json.loads(text) == {"a": [1.5, None], "b": 1}
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "sub") == []


def test_overwrite_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic.write_text(target, "old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_temp_names_are_hidden_and_unique(tmp_path: Path) -> None:
    names = {atomic.temp_path_for(tmp_path / "x.json").name for _ in range(100)}
    assert len(names) == 100
    assert all(atomic.is_temp_name(n) and str(os.getpid()) in n for n in names)
    assert not atomic.is_temp_name("x.json")


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_raising_writer_keeps_old_content(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "f.txt"
    atomic.write_text(target, "old complete version")
    with pytest.raises(error):
        with atomic.atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise error("writer died midway")
    assert target.read_text() == "old complete version"
    assert leftovers(tmp_path) == []


def test_raising_writer_leaves_nothing_when_no_old_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with atomic.atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("partial")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def kill_midway(target: Path) -> None:
    """Start the slow writer on ``target`` and SIGKILL it once it has written a few MiB."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"midway"
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_midway_leaves_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    previous = b"previous complete version" * 1000
    atomic.write_bytes(target, previous)
    kill_midway(target)
    assert target.read_bytes() == previous
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and (tmp_path / stale[0]).stat().st_size >= 5 << 20  # the killed write stayed aside


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_midway_leaves_no_target(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    kill_midway(target)
    assert not target.exists()
    assert atomic.remove_stale_temps(tmp_path, min_age_s=3600) == []  # too fresh: could be a live write
    assert len(atomic.remove_stale_temps(tmp_path, min_age_s=0)) == 1
    assert list(tmp_path.iterdir()) == []


def test_save_tensors_with_shared_and_non_contiguous(tmp_path: Path) -> None:
    weight = torch.randn(4, 3)
    tensors = {
        "weight": weight,
        "tied": weight,  # tied weights share memory
        "transposed": weight.t(),  # non-contiguous view of the same buffer
        "grad": torch.ones(2, requires_grad=True),
    }
    atomic.save_tensors(tmp_path / "m.safetensors", tensors, {"epoch": "3"})
    loaded = load_file(tmp_path / "m.safetensors")
    assert set(loaded) == set(tensors)
    assert torch.equal(loaded["tied"], weight) and torch.equal(loaded["transposed"], weight.t())
    with safe_open(tmp_path / "m.safetensors", framework="pt") as f:
        assert f.metadata() == {"epoch": "3"}
    assert leftovers(tmp_path) == []


def test_save_tensors_rejects_non_string_metadata(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="str"):
        atomic.save_tensors(tmp_path / "m.safetensors", {"w": torch.zeros(1)}, {"epoch": 3})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []
