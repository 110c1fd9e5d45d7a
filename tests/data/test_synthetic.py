"""Synthetic shape datasets: layout, determinism, and factors that really change the images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from honed.data.synthetic import SHAPES, SHIFTS, ShapeFactors, generate_shapes
from honed.errors import HonedError


def _load(root: Path) -> dict[str, np.ndarray]:
    """Relative path -> uint8 pixels, for every PNG under ``root``."""
    return {str(p.relative_to(root)): np.asarray(Image.open(p)) for p in sorted(root.rglob("*.png"))}


def _foreground_share(images: dict[str, np.ndarray]) -> float:
    """Mean fraction of bright pixels; default backgrounds are dark and default colours bright."""
    return float(np.mean([(img.max(axis=2) > 100).mean() for img in images.values()]))


def _edge_energy(images: dict[str, np.ndarray]) -> float:
    return float(np.mean([(np.diff(img.astype(float), axis=1) ** 2).mean() for img in images.values()]))


def test_writes_imagefolder_layout_with_the_right_counts(tmp_path):
    root = generate_shapes(tmp_path, n_per_class=5, size=24, split="val")
    assert root == tmp_path / "val"
    assert sorted(p.name for p in root.iterdir()) == ["circle", "cross", "square", "triangle"]
    for folder in root.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == [f"{i:04d}.png" for i in range(5)]
    with Image.open(root / "circle" / "0000.png") as img:
        assert img.size == (24, 24) and img.mode == "RGB"
    with (tmp_path / "factors-val.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and rows[0]["path"] == "circle/0000.png" and rows[0]["label"] == "circle"


def test_every_shape_draws(tmp_path):
    root = generate_shapes(tmp_path, n_per_class=1, classes=tuple(SHAPES), write_factors=False)
    assert len(_load(root)) == len(SHAPES)
    assert not (tmp_path / "factors-train.csv").exists()


def test_deterministic_per_seed_and_split(tmp_path):
    a = _load(generate_shapes(tmp_path / "a", n_per_class=4, seed=3))
    b = _load(generate_shapes(tmp_path / "b", n_per_class=4, seed=3))
    c = _load(generate_shapes(tmp_path / "c", n_per_class=4, seed=4))
    val = _load(generate_shapes(tmp_path / "a", n_per_class=4, seed=3, split="val"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert all(not np.array_equal(a[k], val[k]) for k in a)  # splits never share an image


def test_classes_differ_with_defaults(tmp_path):
    images = _load(generate_shapes(tmp_path, n_per_class=1, factors=ShapeFactors(foreground=("white",))))
    masks = {k.split("/")[0]: img.max(axis=2) > 100 for k, img in images.items()}
    names = sorted(masks)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert (masks[first] != masks[second]).mean() > 0.05, (first, second)


def _pair(tmp_path: Path, shift: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = ShapeFactors(foreground=("white",), background=("black",), offset=(0.0, 0.0))
    upright = _load(generate_shapes(tmp_path / "base", n_per_class=6, factors=base))
    shifted = _load(generate_shapes(tmp_path / shift, n_per_class=6, factors=base.shift(shift)))
    return upright, shifted


def test_rotation_changes_non_round_shapes(tmp_path):
    upright, rotated = _pair(tmp_path, "rotated")
    for name in ("square", "triangle", "cross"):
        keys = [k for k in upright if k.startswith(name)]
        assert all((upright[k] != rotated[k]).any(axis=2).mean() > 0.05 for k in keys), name


def test_small_shapes_cover_less_area(tmp_path):
    upright, small = _pair(tmp_path, "small")
    assert _foreground_share(small) < 0.25 * _foreground_share(upright)


def test_blur_softens_edges(tmp_path):
    upright, blurred = _pair(tmp_path, "blurred")
    assert _edge_energy(blurred) < 0.7 * _edge_energy(upright)


def test_offset_moves_the_shape(tmp_path):
    upright, moved = _pair(tmp_path, "offcentre")
    def centre(img: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(img.max(axis=2) > 100)
        return np.array([ys.mean(), xs.mean()])
    shifts = [np.linalg.norm(centre(moved[k]) - centre(upright[k])) for k in upright]
    assert min(shifts) > 0.1 * 32


def test_recolouring_and_background_noise(tmp_path):
    factors = ShapeFactors(foreground=("#00ff00",), background=("black",), noise=(0.1, 0.1))
    images = _load(generate_shapes(tmp_path, n_per_class=2, factors=factors))
    corner = np.stack([img[:4, :4] for img in images.values()]).astype(float)
    assert corner.std() > 10  # noise on a black background
    centre = np.stack([img[14:18, 14:18] for img in images.values()]).astype(float).mean(axis=(0, 1, 2))
    assert centre[1] > 150 and centre[0] < 80 and centre[2] < 80  # green shape


@pytest.mark.parametrize(
    "kwargs, message",
    [({"classes": ("circle", "blob")}, "blob"), ({"n_per_class": 0}, "n_per_class"), ({"size": 4}, "size")],
)
def test_bad_requests_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(HonedError, match=message):
        generate_shapes(tmp_path, **{"n_per_class": 1, **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [({"size": (0.5, 0.2)}, "size"), ({"blur": (-1, 1)}, "blur"), ({"foreground": ("notacolour",)}, "notacolour"),
     ({"rotation": 5}, "rotation")],
)
def test_bad_factors_are_user_errors(kwargs, message):
    with pytest.raises(HonedError, match=message):
        ShapeFactors(**kwargs)


def test_shifts_change_one_factor_and_unknown_shift_lists_valid():
    base = ShapeFactors()
    for name in SHIFTS:
        changed = [f for f in base.__dataclass_fields__ if getattr(base, f) != getattr(base.shift(name), f)]
        assert len(changed) == 1, (name, changed)
    with pytest.raises(HonedError, match="rotated"):
        base.shift("upside_down")


@pytest.mark.slow
def test_tiny_cnn_learns_defaults_and_fails_on_a_shifted_factor(tmp_path):
    """The point of the generator: easy with defaults, a planted weakness when one factor moves."""
    import torch
    from torch import nn

    def load(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
        items = sorted(_load(root).items())
        x = torch.tensor(np.stack([img for _, img in items])).permute(0, 3, 1, 2).float() / 255
        names = sorted({k.split("/")[0] for k, _ in items})
        return x, torch.tensor([names.index(k.split("/")[0]) for k, _ in items])

    torch.manual_seed(0)
    x, y = load(generate_shapes(tmp_path, n_per_class=100, size=24, split="train"))
    val_x, val_y = load(generate_shapes(tmp_path, n_per_class=50, size=24, split="val"))
    rot_x, rot_y = load(generate_shapes(tmp_path, n_per_class=50, size=24, split="test",
                                        factors=ShapeFactors().shift("rotated")))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 6 * 6, 4))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(val_x).argmax(1) == val_y).float().mean()
        rotated = (model(rot_x).argmax(1) == rot_y).float().mean()
    assert accuracy > 0.95 and rotated < accuracy - 0.3
