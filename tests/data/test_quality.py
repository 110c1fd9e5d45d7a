"""Image quality flags: planted blurry, dark, bright, oddly shaped and grayscale images are found by thresholds
taken from the dataset, and the shares per split say where they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
import pytest
from typer.testing import CliRunner

from honed.data.audit import audit
from honed.data.quality import ImageQuality, quality_flags
from tests.data.test_audit import picture


def _save(rows: list, path: Path, split: str, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    rows.append({"path": str(path), "split": split, "label": path.parent.name})


@pytest.fixture
def planted(tmp_path) -> tuple[pd.DataFrame, dict[str, str]]:
    """24 ordinary 64x64 colour pictures in train and 6 in val, plus one planted problem of each kind (in val
    for the blurry ones, so the val split is blur-heavy)."""
    rows: list[dict] = []
    for i in range(24):
        _save(rows, tmp_path / "train" / ("a" if i % 2 else "b") / f"{i}.png", "train", picture(i))
    for i in range(6):
        _save(rows, tmp_path / "val" / "a" / f"{i}.png", "val", picture(100 + i))
    planted = {
        "blurry": picture(200).filter(ImageFilter.GaussianBlur(4)),
        "too_dark": Image.fromarray((np.asarray(picture(201)) * 0.08).astype(np.uint8)),
        "too_bright": Image.fromarray((255 - (255 - np.asarray(picture(202))) * 0.08).astype(np.uint8)),
        "odd_aspect": picture(203, size=64).resize((160, 40)),
        "grayscale": picture(204).convert("L").convert("RGB"),
    }
    paths = {}
    for flag, image in planted.items():
        split = "val" if flag == "blurry" else "train"
        path = tmp_path / split / "b" / f"{flag}.png"
        _save(rows, path, split, image)
        paths[flag] = str(path)
    return pd.DataFrame(rows), paths


def test_each_planted_problem_is_flagged_with_its_threshold(planted):
    frame, paths = planted
    report = audit(frame)
    for flag, path in paths.items():
        assert path in report.quality.flags[flag], flag
        assert path in report.flags[flag]  # the same lists as the other flags: the tables show them
        assert flag in report.quality.thresholds
    ordinary = set(frame["path"]) - set(paths.values())
    flagged = {p for flag in paths for p in report.quality.flags[flag]}
    assert not flagged & ordinary  # robust thresholds: the ordinary pictures stay unflagged
    blur = report.quality.thresholds["blurry"]
    assert blur["value"] < blur["median"]
    assert any("blurry" in w and f"{blur['value']:.2f}" in w for w in report.warnings)  # the value is shown
    assert report.quality.shares["val"]["blurry"] == pytest.approx(1 / 7)
    assert report.quality.shares["train"]["blurry"] < report.quality.shares["val"]["blurry"]  # (the dark image
    # has little contrast, so little Laplacian variance too: it may count as blurry as well)


def test_a_uniform_dataset_flags_nothing():
    """All images the same shape and nearly the same look (CIFAR's 32x32): the floors keep MAD 0 harmless."""
    measures = [ImageQuality(2.0 + 0.01 * (i % 3), 120.0 + (i % 5), 30.0, 0.0) for i in range(40)]
    report = quality_flags([f"{i}.png" for i in range(40)], ["train"] * 40, measures)
    assert all(not paths for paths in report.flags.values())
    assert set(report.thresholds) == {"blurry", "too_dark", "too_bright", "odd_aspect", "grayscale"}


def test_grayscale_dataset_does_not_flag_grayscale():
    measures = [ImageQuality(2.0, 120.0, 0.5 if i else 40.0, 0.0) for i in range(20)]
    report = quality_flags([f"{i}.png" for i in range(20)], ["train"] * 20, measures)
    assert report.flags["grayscale"] == []
    assert report.thresholds["grayscale"]["colour_dataset"] is False


def test_too_few_images_give_no_thresholds():
    report = quality_flags(["a.png"], ["train"], [ImageQuality(0.1, 3.0, 0.0, 2.0)])
    assert report.thresholds == {} and report.flags == {}


def test_cli_shows_quality_and_writes_it_to_json(planted, tmp_path):
    from tests.reliability.cli_app import cli_app

    frame, paths = planted
    manifest = tmp_path / "manifest.csv"
    frame.to_csv(manifest, index=False)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(cli_app(), ["data", "check", str(manifest), "--json", str(out)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Image quality" in result.output and "blurry" in result.output
    saved = json.loads(out.read_text())
    assert paths["grayscale"] in saved["quality"]["flags"]["grayscale"]


def test_a_blur_heavy_validation_set_asks_for_blur_augmentation(planted):
    from honed.analyze.recommend import QUALITY_BLUR_POLICY, recommend, to_apply
    from honed.data.quality import split_quality

    frame, paths = planted
    train = frame.loc[frame["split"] == "train", "path"].tolist()
    val = [paths["blurry"]] + [str(Path(paths["blurry"]).with_name(f"b{i}.png")) for i in range(3)]
    for i, path in enumerate(val[1:]):
        picture(300 + i).filter(ImageFilter.GaussianBlur(4)).save(path)
    shares = split_quality({"train": train, "val": val + frame.loc[frame["split"] == "val", "path"].tolist()}).shares
    assert shares["val"]["blurry"] >= 0.3 and shares["train"]["blurry"] < 0.1
    gap = {"relative_gap": 0.0}
    recommendations = recommend([], gap=gap, drop_rate=0.0, weight_decay=0.0, quality=shares)
    assert [r.group for r in recommendations] == ["blur"]
    assert recommendations[0].policy == QUALITY_BLUR_POLICY and to_apply(recommendations) == recommendations
    even = {"train": {"blurry": 0.3}, "val": {"blurry": 0.35}}  # as blurry as the training images: no advice
    assert recommend([], gap=gap, drop_rate=0.0, weight_decay=0.0, quality=even) == []
