"""Synthetic shape datasets with controllable factors, for tests and error-analysis demos.

Each class is a shape (circle, square, ...). Every image draws its size, colour, rotation, blur, position
and background from the ranges in :class:`ShapeFactors`. The defaults (large, upright, crisp, centred) are
easy for a tiny CNN; generating a validation split with ONE factor shifted (``factors.shift("rotated")``)
plants a known weakness for error analysis to find.

    train = generate_shapes("shapes", n_per_class=200, split="train")
    val = generate_shapes("shapes", n_per_class=50, split="val", factors=ShapeFactors().shift("rotated"))
"""

from __future__ import annotations

import csv
import dataclasses
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter

from honed.errors import HonedError

_SUPERSAMPLE = 4  # shapes are drawn this many times larger, then averaged down: smooth, crisp edges


def _regular(n: int, radius: float = 1.0, start: float = -90.0) -> np.ndarray:
    angles = np.deg2rad(start + np.arange(n) * 360.0 / n)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(points)
    inner_pts = _regular(points, inner, start=-90.0 + 180.0 / points)
    return np.stack([outer, inner_pts], axis=1).reshape(-1, 2)


def _cross(half_width: float = 0.3) -> np.ndarray:
    w, arm = half_width, math.sqrt(1 - half_width**2)  # arm tips lie on the unit circle
    return np.array(
        [(-w, -arm), (w, -arm), (w, -w), (arm, -w), (arm, w), (w, w), (w, arm), (-w, arm), (-w, w), (-arm, w),
         (-arm, -w), (-w, -w)]
    )


# Unit outlines (circumradius 1, centred on 0, y pointing down, upright). Read-only.
SHAPES: Mapping[str, Callable[[], np.ndarray]] = MappingProxyType(
    {
        "circle": lambda: _regular(64),
        "square": lambda: _regular(4, start=-135.0),
        "triangle": lambda: _regular(3),
        "cross": _cross,
        "star": _star,
        "hexagon": lambda: _regular(6, start=0.0),
    }
)
DEFAULT_CLASSES = ("circle", "square", "triangle", "cross")

_BRIGHT = ("red", "lime", "dodgerblue", "yellow", "magenta", "cyan", "orange", "white")
_DARK = ("black", "#1e1e1e", "#20202e")


@dataclass(frozen=True)
class ShapeFactors:
    """Ranges each image draws its factors from; ``(lo, hi)`` ranges are sampled uniformly."""

    size: tuple[float, float] = (0.6, 0.85)  # shape diameter as a fraction of the image side
    rotation: tuple[float, float] = (0.0, 0.0)  # degrees, counter-clockwise from upright
    blur: tuple[float, float] = (0.0, 0.0)  # gaussian sigma, pixels at the output size
    offset: tuple[float, float] = (0.0, 0.05)  # centre's distance from the image centre, fraction of the side
    foreground: tuple[str, ...] = _BRIGHT  # shape colours (PIL names or #rrggbb), one drawn per image
    background: tuple[str, ...] = _DARK  # background colours, one drawn per image
    noise: tuple[float, float] = (0.0, 0.0)  # std of gaussian pixel noise, intensities 0..1

    def __post_init__(self) -> None:
        for name, low in (("size", 0.0), ("rotation", -math.inf), ("blur", 0.0), ("offset", 0.0), ("noise", 0.0)):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), low))
        for name in ("foreground", "background"):
            object.__setattr__(self, name, _check_colours(name, getattr(self, name)))
        if self.size[0] <= 0:
            raise HonedError(f"ShapeFactors.size must be above 0, got {self.size}")

    def shift(self, name: str) -> ShapeFactors:
        """These factors with one named shift from :data:`SHIFTS` applied (e.g. ``"rotated"``, ``"small"``)."""
        if name not in SHIFTS:
            raise HonedError(f"unknown factor shift {name!r}; valid shifts: {', '.join(sorted(SHIFTS))}")
        return dataclasses.replace(self, **SHIFTS[name])


# One factor moved away from the defaults: validate on these to plant a known weakness.
SHIFTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "rotated": {"rotation": (25.0, 65.0)},
        "small": {"size": (0.2, 0.3)},
        "recoloured": {"foreground": ("#707070", "saddlebrown", "olive", "#5050a0")},
        "blurred": {"blur": (1.2, 2.0)},
        "offcentre": {"offset": (0.18, 0.25)},
        "noisy": {"noise": (0.15, 0.25)},
        "light_background": {"background": ("white", "#e0e0e0", "lightyellow")},
    }
)


def generate_shapes(
    out_dir: str | Path,
    *,
    n_per_class: int,
    size: int = 32,
    classes: tuple[str, ...] = DEFAULT_CLASSES,
    factors: ShapeFactors | None = None,
    split: str = "train",
    seed: int = 0,
    write_factors: bool = True,
) -> Path:
    """Write ``out_dir/<split>/<class>/NNNN.png`` (ImageFolder layout) and return ``out_dir/<split>``.

    Deterministic per ``(seed, split, class)``: the same call writes the same pixels, and different splits
    never repeat each other's images. With ``write_factors``, ``out_dir/factors-<split>.csv`` records each
    image's drawn factors, for slicing errors by factor. ``factors=None`` uses ``ShapeFactors()``.
    """
    factors = ShapeFactors() if factors is None else factors
    _check_request(n_per_class, size, classes)
    root = Path(out_dir) / split
    digits = max(4, len(str(n_per_class - 1)))
    records: list[dict[str, Any]] = []
    for shape in classes:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(shape.encode())])
        for i in range(n_per_class):
            drawn = _draw_factors(factors, rng)
            path = folder / f"{i:0{digits}d}.png"
            render_shape(shape, size, drawn, rng).save(path, optimize=False, compress_level=1)
            records.append({"path": str(path.relative_to(root)), "label": shape, **drawn})
    if write_factors:
        _write_records(Path(out_dir) / f"factors-{split}.csv", records)
    return root


def render_shape(shape: str, size: int, drawn: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``shape`` with concrete factors (as drawn by ``generate_shapes``)."""
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), drawn["background"])
    centre = np.array([drawn["offset_x"], drawn["offset_y"]]) * big + big / 2
    angle = math.radians(-drawn["rotation"])  # y points down: negate for counter-clockwise on screen
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    outline = SHAPES[shape]() @ rot.T * (drawn["size"] * big / 2) + centre
    ImageDraw.Draw(image).polygon([tuple(p) for p in outline], fill=drawn["foreground"])
    image = image.resize((size, size), Image.BOX)
    if drawn["blur"] > 0:
        image = image.filter(ImageFilter.GaussianBlur(radius=drawn["blur"]))
    if drawn["noise"] > 0:
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, drawn["noise"] * 255, (size, size, 3))
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    return image


def _draw_factors(factors: ShapeFactors, rng: np.random.Generator) -> dict[str, Any]:
    distance = rng.uniform(*factors.offset)
    direction = rng.uniform(0, 2 * math.pi)
    return {
        "size": float(rng.uniform(*factors.size)),
        "rotation": float(rng.uniform(*factors.rotation)),
        "blur": float(rng.uniform(*factors.blur)),
        "offset_x": float(distance * math.cos(direction)),
        "offset_y": float(distance * math.sin(direction)),
        "foreground": factors.foreground[rng.integers(len(factors.foreground))],
        "background": factors.background[rng.integers(len(factors.background))],
        "noise": float(rng.uniform(*factors.noise)),
    }


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def _check_request(n_per_class: int, size: int, classes: tuple[str, ...]) -> None:
    if n_per_class < 1:
        raise HonedError(f"n_per_class must be at least 1, got {n_per_class}")
    if size < 8:
        raise HonedError(f"image size must be at least 8 pixels, got {size}")
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes:
        raise HonedError(f"unknown shape classes {unknown or '(none given)'}; valid shapes: {', '.join(SHAPES)}")
    if len(set(classes)) != len(classes):
        raise HonedError(f"shape classes repeat: {list(classes)}")


def _check_range(name: str, value: Any, low: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise HonedError(f"ShapeFactors.{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not lo <= hi or lo < low:
        raise HonedError(f"ShapeFactors.{name} must satisfy {low:g} <= low <= high, got ({lo:g}, {hi:g})")
    return lo, hi


def _check_colours(name: str, colours: Any) -> tuple[str, ...]:
    colours = (colours,) if isinstance(colours, str) else tuple(colours)
    if not colours:
        raise HonedError(f"ShapeFactors.{name} needs at least one colour")
    for colour in colours:
        try:
            ImageColor.getrgb(colour)
        except (ValueError, AttributeError):
            raise HonedError(f"ShapeFactors.{name}: {colour!r} is not a colour; use a PIL name or #rrggbb") from None
    return colours
