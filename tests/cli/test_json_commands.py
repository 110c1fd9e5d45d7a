"""--json on the commands beyond train/runs/show: stdout is exactly one JSON document holding the result."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from honed.cli import analyze_cmd, data_cmd


def test_data_check_json_dash_prints_the_report_and_json_file_writes_it(color_folder, tmp_path):
    app = typer.Typer()
    app.add_typer(data_cmd.app, name="data")
    (color_folder / "red" / "broken.png").write_bytes(b"no image here")
    saved = tmp_path / "audit.json"
    done = CliRunner().invoke(app, ["data", "check", str(color_folder), "--json", "-"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)  # the whole of stdout: no table, no progress line
    assert report["n_images"] == 25 and [b["path"] for b in report["bad_files"]] == [str(color_folder / "red" /
                                                                                         "broken.png")]
    written = CliRunner().invoke(app, ["data", "check", str(color_folder), "--json", str(saved)])
    assert written.exit_code == 0 and str(saved) in written.stdout  # the tables, then where the JSON went
    assert json.loads(saved.read_text()) == report


def test_augment_list_json_lists_the_registry():
    from honed.augment import AUGMENTATIONS

    app = typer.Typer()
    app.add_typer(analyze_cmd.augment_app, name="augment")
    done = CliRunner().invoke(app, ["augment", "list", "*flip", "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == sorted(AUGMENTATIONS.names("*flip")) and rows
    assert all(r["p"] == AUGMENTATIONS[r["name"]].default_p for r in rows)
