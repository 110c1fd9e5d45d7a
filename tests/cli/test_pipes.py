"""Output that survives a pipe: with stdout a file, tables keep whole paths and names, a line is never folded,
bars become one line per stage and an epoch is one line, with no blank lines between them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from honed.cli import progress as cli_progress
from honed.cli.progress import LOG_WIDTH, RichReporter
from tests.conftest import write_image

LONG = "a_folder_name_long_enough_that_eighty_columns_could_never_hold_it_whole_in_one_table_cell"
RUN = "a_run_with_a_name_well_over_forty_characters_long"
TINY = ["--model", "test_resnet", "--image-size", "16", "--batch-size", "8", "--workers", "0"]


def _log_console() -> tuple[Console, io.StringIO]:
    """What ``out_console()`` gives when stdout is a file."""
    buffer = io.StringIO()
    return Console(file=buffer, width=LOG_WIDTH, soft_wrap=True), buffer


def test_in_a_log_a_stage_is_one_line_and_an_epoch_its_epoch_line(monkeypatch):
    monkeypatch.setattr(cli_progress, "_terminal_stderr", lambda: None)  # stderr is not a terminal either
    console, buffer = _log_console()
    reporter = RichReporter(console)
    reporter.phase_started("scanning 40 images", 40)
    for _ in range(40):
        reporter.advance()
    reporter.phase_finished()
    for epoch in (1, 2):
        reporter.phase_started(f"epoch {epoch}/2", 5)
        reporter.advance(5)
        reporter.phase_finished()
        reporter.epoch_finished({"epoch": epoch, "train_loss": 0.5, "accuracy": 0.75, "lr": 1e-3, "seconds": 1.0})
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3 and all(lines), lines  # no blank line, no bar residue
    assert lines[0].startswith("scanning 40 images: 40/40 in ") and lines[0].endswith("/s)")
    assert lines[1].startswith("epoch   1  train_loss 0.5000  accuracy 0.7500") and lines[2].startswith("epoch   2")


def test_a_long_stage_says_count_rate_and_time_left_in_a_log(monkeypatch):
    monkeypatch.setattr(cli_progress, "_terminal_stderr", lambda: None)
    monkeypatch.setattr(cli_progress, "HEARTBEAT_S", 0.0)  # every advance is "long enough" for a heartbeat
    console, buffer = _log_console()
    reporter = RichReporter(console)
    reporter.phase_started("decoding 100 images at 224px into the cache", 100)
    reporter.advance(25)
    reporter.advance(25)
    reporter.phase_finished()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("decoding 100 images at 224px into the cache: 25/100 (") and "left)" in lines[0]
    assert lines[1].startswith("decoding 100 images at 224px into the cache: 50/100 (")
    assert lines[-1].startswith("decoding 100 images at 224px into the cache: 50/100 in ")


def test_a_quiet_reporter_and_a_phase_that_never_starts_print_nothing(monkeypatch):
    from honed.progress import Phase

    monkeypatch.setattr(cli_progress, "_terminal_stderr", lambda: None)
    console, buffer = _log_console()
    with Phase(RichReporter(console), "decoding into the cache", 10):
        pass  # the cache was found on disk: nothing decoded, nothing said
    with Phase(RichReporter(console, quiet=True), "scanning", 3) as phase:
        phase(3)
    assert buffer.getvalue() == ""


def _long_data(root: Path) -> tuple[Path, Path]:
    data = root / LONG / "images"
    for split in ("train", "val"):
        for label, color in (("red_class_with_a_long_label_name", (200, 40, 40)), ("blue", (40, 40, 200))):
            for i in range(6):
                write_image(data / split / label / f"image_{i:02d}_with_a_long_file_name_as_cameras_write.png",
                            color, noise_seed=i + (10 if split == "val" else 0) + (100 if label == "blue" else 0))
    broken = data / "train" / "blue" / "a_broken_file_whose_full_path_must_survive_the_pipe.jpg"
    broken.write_bytes(b"not an image at all")
    return data, broken


def _run(args: list[str], out: Path, cwd: Path) -> str:
    """``python -m honed ARGS > out``; stderr captured; the file's text."""
    with open(out, "w") as handle:
        done = subprocess.run([sys.executable, "-m", "honed", *args], stdout=handle, stderr=subprocess.PIPE,
                              text=True, cwd=cwd, timeout=600, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "…" not in text and "..." not in text.replace(" .. ", ""), text  # nothing cut
    assert "\n\n" not in text.strip(), text  # no blank lines (between epochs or stages)
    return text


@pytest.mark.slow  # eight interpreter start-ups and a short training run (~2-3 min on a loaded 2-core machine)
def test_commands_with_stdout_in_a_file_keep_whole_paths_and_lines(tmp_path):
    data, broken = _long_data(tmp_path)
    ws = tmp_path / "ws"

    checked = _run(["data", "check", str(data)], tmp_path / "check.txt", tmp_path)
    assert str(broken) in checked  # the bad file's whole path, on one line
    assert any(str(broken) in line and "not an image" in line for line in checked.splitlines())

    trained = _run(["train", str(data), "--epochs", "2", "--name", RUN, "--workspace", str(ws), *TINY],
                   tmp_path / "train.txt", tmp_path)
    epochs = [line for line in trained.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("val_loss" in line and line.endswith("s)") for line in epochs)
    assert any(line.startswith(f"scanning {6 * 4 + 1} images: ") for line in trained.splitlines())
    assert f"saved to {ws / RUN}" in trained

    listed = _run(["runs", "--workspace", str(ws)], tmp_path / "runs.txt", tmp_path)
    row = next(line for line in listed.splitlines() if RUN in line)
    assert "train" in row and "done" in row and "test_resnet" in row  # one run, one line
    assert str(ws) in listed

    shown = _run(["show", RUN, "--workspace", str(ws)], tmp_path / "show.txt", tmp_path)
    assert str(data) in shown and RUN in shown

    predicted = _run(["predict", RUN, str(data / "val"), "--out", str(tmp_path / f"{RUN}.csv"),
                      "--workspace", str(ws), "--json"], tmp_path / "predict.txt", tmp_path)
    result = json.loads(predicted)
    assert result == {"out": str(tmp_path / f"{RUN}.csv"), "predictions": 12, "failed": 0}

    analyzed = _run(["analyze", RUN, "--workspace", str(ws), "--probes", "flip,brightness", "--max-images", "12",
                     "--reference-images", "12"], tmp_path / "analyze.txt", tmp_path)
    assert f"saved to {ws / RUN / 'analysis'}" in analyzed

    bundle = tmp_path / f"{LONG}-bundle"
    exported = _run(["export", RUN, "--workspace", str(ws), "--out", str(bundle)], tmp_path / "export.txt", tmp_path)
    assert f"bundle written to {bundle}" in exported

    report = _run(["report", RUN, "--workspace", str(ws), "--out", str(tmp_path / f"{LONG}.html"), "--json"],
                  tmp_path / "report.txt", tmp_path)
    assert json.loads(report)["report"] == str(tmp_path / f"{LONG}.html")
