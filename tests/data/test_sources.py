import os
import struct

import numpy as np
import pandas as pd
import pytest

from honed.data.sources import from_datasets, from_torchvision, load_source
from honed.errors import HonedError
from tests.conftest import write_image


def test_folder_with_splits(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("a", "b"):
            write_image(tmp_path / split / cls / "1.png", (1, 2, 3))
    m = load_source(str(tmp_path))
    assert m.classes == ["a", "b"]
    assert sorted(m.frame["split"].unique()) == ["test", "train", "val"]
    assert len(m.split("train")) == 2 and len(m.split("val")) == 2


def test_flat_folder_is_all_training(color_folder):
    m = load_source(str(color_folder))
    assert set(m.frame["split"]) == {"train"}
    assert len(m.frame) == 24
    assert m.targets(m.frame).tolist().count(1) == 12


def test_cifar_mini_layout(cifar_mini):
    m = load_source(str(cifar_mini))
    assert len(m.classes) == 10 and len(m.split("train")) == 600 and len(m.split("test")) == 200


@pytest.mark.parametrize("case, message", [
    ("missing", "data not found"),
    ("empty_class", "has no images"),
    ("single_class", "at least 2"),
    ("unknown_val_label", "appear in val/test but not in train"),
])
def test_bad_folders(tmp_path, case, message):
    if case == "empty_class":
        write_image(tmp_path / "a" / "1.png", (0, 0, 0))
        (tmp_path / "b").mkdir()
    if case == "single_class":
        write_image(tmp_path / "a" / "1.png", (0, 0, 0))
    if case == "unknown_val_label":
        write_image(tmp_path / "train" / "a" / "1.png", (0, 0, 0))
        write_image(tmp_path / "train" / "b" / "1.png", (0, 0, 0))
        write_image(tmp_path / "val" / "c" / "1.png", (0, 0, 0))
    source = str(tmp_path / "nope") if case == "missing" else str(tmp_path)
    with pytest.raises(HonedError, match=message):
        load_source(source)


def test_csv_manifest_relative_paths_and_split(tmp_path):
    write_image(tmp_path / "img" / "1.png", (0, 0, 0))
    write_image(tmp_path / "img" / "2.png", (9, 9, 9))
    write_image(tmp_path / "img" / "3.png", (9, 9, 9))
    pd.DataFrame({"file": ["img/1.png", "img/2.png", "img/3.png"], "kind": ["x", "y", "x"],
                  "split": ["train", "train", "valid"]}).to_csv(tmp_path / "m.csv", index=False)
    m = load_source(str(tmp_path / "m.csv"), path_column="file", label_column="kind")
    assert m.frame["path"].iloc[0] == str((tmp_path / "img" / "1.png").resolve())
    assert list(m.frame["split"]) == ["train", "train", "val"]


def test_csv_wrong_column_names_the_columns(tmp_path):
    pd.DataFrame({"path": ["a.png"], "klass": ["x"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(HonedError, match="no column 'label'.*its columns are: path, klass"):
        load_source(str(tmp_path / "m.csv"))


def test_regression_targets(tmp_path):
    pd.DataFrame({"path": ["a.png", "b.png"], "age": [3.5, 7], "h": ["1", "x"]}).to_csv(tmp_path / "m.csv", index=False)
    m = load_source(str(tmp_path / "m.csv"), task="regress", target_columns=["age"])
    assert m.num_outputs == 1 and m.targets(m.frame).dtype == np.float32
    with pytest.raises(HonedError, match="non-numeric"):
        load_source(str(tmp_path / "m.csv"), task="regress", target_columns=["h"])
    with pytest.raises(HonedError, match="--target"):
        load_source(str(tmp_path / "m.csv"), task="regress")


def _write_idx(path, array):
    with open(path, "wb") as f:
        magic = 0x0800 | array.ndim  # unsigned byte data
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_dataset_from_local_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    m = from_torchvision("MNIST", str(tmp_path))
    assert m.in_memory and len(m.split("train")) == 30 and len(m.split("test")) == 10
    assert m.classes[0].startswith("0")


def test_torchvision_missing_files_never_downloads(tmp_path):
    with pytest.raises(HonedError, match="honed never downloads"):
        from_torchvision("MNIST", str(tmp_path))
    with pytest.raises(HonedError, match="no dataset 'NotADataset'"):
        from_torchvision("NotADataset", str(tmp_path))


def test_user_dataset():
    import torch

    class Tiny(torch.utils.data.Dataset):
        classes = ["off", "on"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((3, 8, 8), float(i % 2)), i % 2

    m = from_datasets({"train": Tiny()})
    assert m.classes == ["off", "on"] and list(m.frame["label"][:2]) == ["off", "on"]


def test_parquet_manifest(tmp_path):
    write_image(tmp_path / "a.png", (0, 0, 0))
    write_image(tmp_path / "b.png", (9, 9, 9))
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"]}).to_parquet(tmp_path / "m.parquet")
    m = load_source(str(tmp_path / "m.parquet"))
    assert m.classes == ["x", "y"] and m.frame["path"].iloc[1] == str((tmp_path / "b.png").resolve())


def test_image_files_lists_what_pathlib_would_in_the_same_order(tmp_path):
    """The listing skips pathlib's stat per file; what it lists and the order (which seeds the validation
    split) must not change: nested folders sort by their parts ("a/b" before "a-c"), any case of suffix,
    hidden files, symlinked files listed, broken links, symlinked folders and other files not."""
    from honed.data.sources import IMAGE_SUFFIXES, image_files

    root = tmp_path / "cat"
    for name in ("b.png", "a-c.jpg", "A.JPG", ".hidden.png", "notes.txt", "x.tar.jpeg", "a/b.jpg", "a/z/0.webp",
                 "a b/1.png", "a.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded here")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(parents=True)
    (elsewhere / "outside.png").write_bytes(b"x")
    (elsewhere / "inner" / "deep.png").write_bytes(b"x")
    (root / "linked.png").symlink_to(elsewhere / "outside.png")
    (root / "broken.png").symlink_to(tmp_path / "missing.png")
    (root / "linked_folder").symlink_to(elsewhere / "inner", target_is_directory=True)
    (root / "folder.png").mkdir()

    reference = [str(p) for p in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)]
    listed = image_files(root)
    assert listed == reference
    assert listed.index(str(root / "a" / "b.jpg")) < listed.index(str(root / "a-c.jpg"))  # by parts, not by text
    assert str(root / "linked.png") in listed and str(root / "broken.png") not in listed
    assert not any("linked_folder" in path or path.endswith("folder.png") for path in listed)


def test_a_folder_that_cannot_be_read_is_named_not_skipped(tmp_path, monkeypatch):
    """pathlib's rglob leaves an unreadable sub-folder out with its images, without a word; honed says which."""
    write_image(tmp_path / "train" / "a" / "1.png", (1, 2, 3))
    write_image(tmp_path / "train" / "b" / "1.png", (3, 2, 1))
    locked = tmp_path / "train" / "b" / "more"
    write_image(locked / "2.png", (3, 2, 1))
    real = os.scandir

    def scandir(path):  # root ignores file modes, so the refusal is stood in for
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(HonedError, match=r"cannot read the folder .*more \(Permission denied\)"):
        load_source(str(tmp_path))
