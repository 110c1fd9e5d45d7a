"""audit: planted leakage, near duplicates, imbalance and bad files are all found; the report renders."""

from __future__ import annotations

from io import StringIO
import json
from pathlib import Path
import shutil

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance
import pytest
from rich.console import Console
from rich.table import Table

from honed.data.audit import audit
from honed.data.audit_tables import render_audit
from honed.data.near_duplicates import near_duplicate_pairs
from honed.errors import HonedError


def picture(seed: int, size: int = 64) -> Image.Image:
    """A random picture with detail at several scales, like a photo: distinct seeds hash far apart."""
    rng = np.random.default_rng(seed)
    layers = [
        weight * np.asarray(Image.fromarray(rng.integers(0, 255, (cells, cells, 3), dtype=np.uint8))
                            .resize((size, size), Image.Resampling.BICUBIC), dtype=float)
        for cells, weight in ((4, 1.0), (8, 0.6), (16, 0.3))
    ]
    return Image.fromarray(np.clip(sum(layers) / 1.9, 0, 255).astype(np.uint8))


def add(rows: list, path: Path, split: str, label: str, image: Image.Image | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is not None:
        image.save(path, **kwargs)
    rows.append({"path": str(path), "split": split, "label": label})
    return path


@pytest.fixture
def planted(tmp_path) -> dict:
    """train: 12 cat, 2 dog; val: 3 cat, 2 dog, 1 bird; test: 2 cat, 1 dog; with planted problems."""
    rows: list[dict] = []
    seed = iter(range(1000))
    for split, counts in {"train": {"cat": 12, "dog": 2}, "val": {"cat": 3, "dog": 2}, "test": {"cat": 2}}.items():
        for label, count in counts.items():
            for i in range(count):
                add(rows, tmp_path / split / label / f"{i}.png", split, label, picture(next(seed)))
    add(rows, tmp_path / "val" / "bird" / "0.png", "val", "bird", picture(next(seed)))
    leaked = tmp_path / "val" / "cat" / "leaked.png"
    shutil.copy(tmp_path / "train" / "cat" / "0.png", leaked)  # exact duplicate across train/val
    add(rows, leaked, "val", "cat")
    original = add(rows, tmp_path / "train" / "dog" / "orig.jpg", "train", "dog", picture(next(seed)), quality=95)
    with Image.open(original) as saved:
        brighter = ImageEnhance.Brightness(saved).enhance(1.08)
    near = add(rows, tmp_path / "test" / "dog" / "resaved.jpg", "test", "dog", brighter, quality=60)
    full = (tmp_path / "train" / "cat" / "1.png").read_bytes()
    cut = add(rows, tmp_path / "train" / "cat" / "cut.png", "train", "cat")
    cut.write_bytes(full[: len(full) // 2])
    html = add(rows, tmp_path / "train" / "dog" / "page.jpg", "train", "dog")
    html.write_text("<html><body>404</body></html>")
    return {"frame": pd.DataFrame(rows), "leaked": str(leaked), "original": str(original), "near": str(near),
            "cut": str(cut), "html": str(html), "root": tmp_path}


def test_audit_finds_everything_planted(planted):
    report = audit(planted["frame"])
    assert report.n_images == len(planted["frame"])
    assert report.class_counts["cat"] == {"train": 13, "val": 4, "test": 2}
    assert report.class_counts["dog"] == {"train": 4, "val": 2, "test": 1}
    assert report.imbalance_ratio == pytest.approx(13 / 4)

    assert {b.path: b.reason for b in report.bad_files} == {
        planted["cut"]: "truncated",
        planted["html"]: "not an image (looks like HTML)",
    }
    [exact] = report.exact_duplicates
    assert sorted(exact.splits) == ["train", "val"] and planted["leaked"] in exact.paths
    [near] = report.near_duplicates
    assert sorted(near.paths) == sorted([planted["original"], planted["near"]])
    assert sorted(near.splits) == ["test", "train"]
    assert report.labels_missing_from_train == ["bird"]
    assert report.labels_in_one_split == {"bird": "val"}

    warnings = "\n".join(report.warnings)
    assert "1 image appears in both train and val (leakage)" in warnings
    assert "1 near-duplicate group spans train and test (likely leakage)" in warnings
    assert "2 files cannot be decoded" in warnings and "1 truncated" in warnings
    assert "class 'bird' appears in val but not in train" in warnings


def test_imbalance_warning_names_the_classes(tmp_path):
    rows: list[dict] = []
    for i in range(24):
        add(rows, tmp_path / "dog" / f"{i}.png", "train", "dog", picture(i, size=16))
    for i in range(2):
        add(rows, tmp_path / "cat" / f"{i}.png", "train", "cat", picture(100 + i, size=16))
    report = audit(pd.DataFrame(rows), cheap=True)
    assert report.imbalance_ratio == 12.0
    assert "class 'cat' has 12x fewer images than 'dog' in train" in report.warnings


def test_cheap_audit_reads_headers_only(planted):
    report = audit(planted["frame"], cheap=True)
    assert report.cheap and report.near_duplicates == []
    assert len(report.exact_duplicates) == 1  # content hashes are cheap
    assert {b.path for b in report.bad_files} == {planted["html"]}  # truncation needs a full decode
    assert report.flags["dark"] == [] and report.flags["low_information"] == []


def test_sizes_modes_and_formats(tmp_path):
    rows: list[dict] = []
    add(rows, tmp_path / "a.png", "train", "x", picture(1, size=40).convert("L"))
    add(rows, tmp_path / "b.jpg", "train", "x", picture(2, size=40).resize((60, 20)))
    sixteen = (np.asarray(picture(3, size=30).convert("L")).astype(np.uint16) * 257)
    add(rows, tmp_path / "c.png", "val", "x", Image.fromarray(sixteen))
    report = audit(pd.DataFrame(rows))
    assert report.sizes["width"] == {"min": 30, "median": 40.0, "max": 60}
    assert report.sizes["height"] == {"min": 20, "median": 30.0, "max": 40}
    assert report.modes == {"L": 1, "RGB": 1, "I;16": 1}
    assert report.formats == {"PNG": 2, "JPEG": 1}


def test_flags_for_dark_tiny_and_extreme_images(tmp_path):
    rows: list[dict] = []
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 12, (32, 32, 3), dtype=np.uint8)
    add(rows, tmp_path / "dark.png", "train", "x", Image.fromarray(dark))
    add(rows, tmp_path / "tiny.png", "train", "x", picture(5, size=4))
    add(rows, tmp_path / "long.png", "train", "x", picture(6, size=40).resize((400, 12)))
    two_tone = np.zeros((32, 32, 3), np.uint8)
    two_tone[:, 16:] = 255
    add(rows, tmp_path / "flat.png", "train", "x", Image.fromarray(two_tone))
    add(rows, tmp_path / "fine.png", "train", "x", picture(7))
    report = audit(pd.DataFrame(rows))
    assert report.flags["dark"] == [str(tmp_path / "dark.png")]
    assert report.flags["tiny"] == [str(tmp_path / "tiny.png")]
    assert report.flags["extreme_aspect"] == [str(tmp_path / "long.png")]
    assert str(tmp_path / "flat.png") in report.flags["low_information"]
    assert str(tmp_path / "fine.png") not in report.flags["low_information"]


def test_identical_images_with_different_labels(tmp_path):
    rows: list[dict] = []
    add(rows, tmp_path / "a.png", "train", "cat", picture(1))
    shutil.copy(tmp_path / "a.png", tmp_path / "b.png")
    add(rows, tmp_path / "b.png", "train", "dog")
    report = audit(pd.DataFrame(rows), cheap=True)
    assert report.exact_duplicates[0].conflicting_labels
    assert "1 group of identical images with different labels" in report.warnings
    assert "train: 2 files in 1 group of identical images" in report.warnings


def test_regression_frame_without_labels(tmp_path):
    rows = [{"path": str(tmp_path / f"{i}.png"), "split": "train", "age": float(i)} for i in range(3)]
    for i in range(3):
        picture(i).save(tmp_path / f"{i}.png")
    report = audit(pd.DataFrame(rows))
    assert report.class_counts == {} and report.imbalance_ratio is None and report.warnings == []


def test_report_is_json_and_renders(planted):
    report = audit(planted["frame"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["bad_files"][0]["reason"] in {"truncated", "not an image (looks like HTML)"}
    assert data["exact_duplicates"][0]["splits"]
    tables = render_audit(report)
    assert tables and all(isinstance(t, Table) for t in tables)
    out = StringIO()
    console = Console(file=out, width=200)
    for table in tables:
        console.print(table)
    text = out.getvalue()
    assert "leakage" in text and "truncated" in text and "bird" in text


def test_bad_frames_and_options_are_user_errors(planted):
    with pytest.raises(HonedError, match="split"):
        audit(planted["frame"].drop(columns=["split"]))
    with pytest.raises(HonedError, match="distance"):
        audit(planted["frame"], near_duplicate_distance=40)


# --- near-duplicate search ------------------------------------------------------------------------------


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    xor = hashes[:, None] ^ hashes[None, :]
    bits = np.unpackbits(xor.view(np.uint8), axis=-1).reshape(len(hashes), len(hashes), 64).sum(-1)
    i, j = np.nonzero(np.triu(bits <= max_distance, 1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("max_distance", [0, 1, 4, 9])
def test_banded_search_equals_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = rng.integers(0, 64, (300, 6))
    variants = base.copy()
    for column in range(flips.shape[1] if max_distance else 0):
        keep = rng.random(300) < 0.5
        variants ^= np.where(keep, np.uint64(1) << flips[:, column].astype(np.uint64), np.uint64(0))
    hashes = np.concatenate([base, variants, base[:20]])  # near copies, exact copies, unrelated
    found = set(map(tuple, near_duplicate_pairs(hashes, max_distance).tolist()))
    assert found == brute_force_pairs(hashes, max_distance)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=40), st.integers(0, 12))
def test_banded_search_property(values, max_distance):
    hashes = np.array(values, dtype=np.uint64)
    if len(values) > 1:  # add neighbours one bit away so small distances have work to do
        hashes = np.concatenate([hashes, hashes ^ np.uint64(1 << 63)])
    found = set(map(tuple, near_duplicate_pairs(hashes, max_distance).tolist()))
    assert found == brute_force_pairs(hashes, max_distance)


def test_banded_search_scales_to_50k_hashes():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 50_000, dtype=np.uint64) << np.uint64(1)
    hashes[:50] = hashes[50:100] ^ np.uint64(0b101)
    pairs = near_duplicate_pairs(hashes, 4)
    assert {(int(a), int(b)) for a, b in pairs} >= {(i, i + 50) for i in range(50)}


@pytest.fixture
def reads(tmp_path, monkeypatch):
    """How many files the audit inspects; counted in a file, since inspection runs in forked workers."""
    import honed.data.file_facts as file_facts

    calls, real = tmp_path / "reads", file_facts.inspect_file

    def counted(*args, **kwargs):
        with calls.open("a") as out:
            out.write("1")
        return real(*args, **kwargs)

    monkeypatch.setattr(file_facts, "inspect_file", counted)

    def count() -> int:
        done = len(calls.read_text()) if calls.exists() else 0
        calls.unlink(missing_ok=True)
        return done

    return count


def test_the_cheap_audit_of_the_same_files_is_read_back_not_redone(planted, reads):
    """Training audits its images at every run: the second audit of unchanged files reads no file, and the
    facts it keeps are per file, so another split of the same files is judged afresh."""
    first = audit(planted["frame"], cheap=True)
    assert reads() == len(planted["frame"])
    again = audit(planted["frame"], cheap=True)
    assert reads() == 0 and again.to_dict() == first.to_dict()

    moved = planted["frame"].assign(split="train")  # the leaked copy no longer crosses a split
    resplit = audit(moved, cheap=True)
    assert reads() == 0
    assert len(resplit.exact_duplicates) == 1 and not any("leakage" in w for w in resplit.warnings)

    picture(999).save(planted["leaked"])  # a changed file: a new key, so the files are read again
    changed = audit(planted["frame"], cheap=True)
    assert reads() == len(planted["frame"])
    assert changed.exact_duplicates == [] and not any("leakage" in w for w in changed.warnings)


def test_a_damaged_memo_costs_an_audit_and_the_full_audit_is_never_kept(planted, reads):
    from honed.data.cache import cache_root

    first = audit(planted["frame"], cheap=True).to_dict()
    for memo in (cache_root() / "audits").glob("*.json"):
        memo.write_text('{"version": 1, "count": %d, "facts": [[1, 2]]}' % len(planted["frame"]))
    reads()
    assert audit(planted["frame"], cheap=True).to_dict() == first and reads() == len(planted["frame"])

    audit(planted["frame"])
    audit(planted["frame"])  # decoding, near duplicates and pixel statistics: measured at each full audit
    assert reads() == 2 * len(planted["frame"])
