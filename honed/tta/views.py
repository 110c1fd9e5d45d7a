"""Test-time views: named, deterministic transforms of a whole float batch on its device.

A view maps a float batch ``[B, 3, S, S]`` in [0, 1] to another of the same shape (the model's input size),
with tensor ops on the batch: flips, corner and centre crops resized back, small shifts, zooms. Groups
name common sets (``flip``, ``crops``, ``shifts``, ``scales``), and ``aug:NAME[:STRENGTH][xN]`` draws N
views from a registered training augmentation (applied to every sample, seeded per view and batch, so a
prediction is reproducible for a given batch size). Views are only ever used at prediction time.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from honed.errors import HonedError
from honed.registry import Registry

View = Callable[[Tensor], Tensor]
CROP_FRACTION = 0.875  # side of a corner/centre crop, as a fraction of the image side (the 224-of-256 ratio)
SHIFT_FRACTION = 1 / 16  # a shift moves the image by this fraction of its side (at least 1 pixel)
ZOOM = 1.1  # zoom_in crops 1/ZOOM of the side and enlarges it; zoom_out shrinks the image to 1/ZOOM and pads
AUG_SYNTAX = "aug:NAME[:STRENGTH][xN], e.g. aug:rotate:10x4"
_AUG = re.compile(r"^aug:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<strength>[-+0-9.eE]+))?(?:x(?P<n>[0-9]+))?$")
_AUG_VIEW = re.compile(r"^aug:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<strength>[-+0-9.eE]+))?#(?P<seed>[0-9]+)$")


@dataclass(frozen=True)
class ViewSpec:
    name: str
    view: View
    help: str


VIEWS: Registry[ViewSpec] = Registry("test-time view")  # filled by @register_view at import, never elsewhere
GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType({  # names that expand to several views
    "flip": ("identity", "hflip"),
    "crops": ("crop_center", "crop_tl", "crop_tr", "crop_bl", "crop_br"),
    "shifts": ("shift_left", "shift_right", "shift_up", "shift_down"),
    "scales": ("zoom_out", "identity", "zoom_in"),
})


def register_view(name: str, *, help: str = "", override: bool = False) -> Callable[[View], View]:
    """Register a deterministic batch view under ``name``; registering a name twice (or a group's name) is an
    error unless ``override``."""

    def decorator(view: View) -> View:
        if name in GROUPS:  # a group name would shadow the view in every spec
            raise HonedError(f"test-time view {name!r} is already registered as a group; pick another name")
        VIEWS.register(name, ViewSpec(name, view, help), override=override)
        return view

    return decorator


def list_views(pattern: str = "*") -> list[str]:
    """Sorted names of registered views and groups matching a shell wildcard."""
    return sorted([*VIEWS.names(pattern), *(n for n in GROUPS if fnmatch.fnmatchcase(n, pattern))])


def expand_views(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"flip,crops"`` (or a list of names) -> the distinct view names, in order; unknown names raise."""
    tokens = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec)]
    names: list[str] = []
    for token in tokens:
        if not token:
            continue
        for name in _expand_token(token):
            if name not in names:
                names.append(name)
    if not names:
        raise HonedError(f"no test-time views given: use names from {', '.join(list_views())} or {AUG_SYNTAX}")
    return tuple(names)


def _expand_token(token: str) -> tuple[str, ...]:
    if token in GROUPS:
        return GROUPS[token]
    if token.startswith("aug:") and "#" not in token:
        match = _AUG.match(token)
        if match is None:
            raise HonedError(f"bad augmentation view {token!r}: use {AUG_SYNTAX}")
        base = f"aug:{match['name']}" + (f":{match['strength']}" if match["strength"] is not None else "")
        count = int(match["n"] or 1)
        if not 1 <= count <= 64:
            raise HonedError(f"{token!r} asks for {count} views: use 1 to 64")
        names = tuple(f"{base}#{seed}" for seed in range(count))
        get_view(names[0])  # validates the augmentation name and strength now
        return names
    get_view(token)
    return (token,)


def get_view(name: str) -> View:
    """The view function for a single view name (not a group); unknown names list the valid ones."""
    if name in VIEWS:
        return VIEWS[name].view
    match = _AUG_VIEW.match(name)
    if match:
        return _augmentation_view(match["name"], match["strength"], int(match["seed"]))
    raise VIEWS.unknown(name, extra=GROUPS, tail=f", or {AUG_SYNTAX}")


def _augmentation_view(name: str, strength: str | None, seed: int) -> View:
    from honed.augment import BatchMix, create_augmentation

    try:
        value = None if strength is None else float(strength)
    except ValueError:
        raise HonedError(f"bad strength {strength!r} in test-time view aug:{name}: use {AUG_SYNTAX}") from None
    op = create_augmentation(name, value, 1.0)
    if isinstance(op, BatchMix):
        raise HonedError(f"{name} mixes images and labels: it cannot be a test-time view")

    def view(x: Tensor) -> Tensor:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        return op(x, generator)

    return view


# ---------------------------------------------------------------------------------------------- built-ins


def _resize(x: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def _crop(x: Tensor, top: int, left: int, side_h: int, side_w: int) -> Tensor:
    """The box at (top, left) resized back to the batch's size."""
    h, w = x.shape[-2:]
    return _resize(x[..., top:top + side_h, left:left + side_w], h, w)


def _corner_crop(where: str) -> View:
    def view(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * CROP_FRACTION)), max(1, round(w * CROP_FRACTION))
        top = {"t": 0, "b": h - ch, "c": (h - ch) // 2}[where[0]]
        left = {"l": 0, "r": w - cw, "c": (w - cw) // 2}[where[1]]
        return _crop(x, top, left, ch, cw)

    return view


def _shift(dy: int, dx: int) -> View:
    """Move the content by (dy, dx) steps of SHIFT_FRACTION of the side; the uncovered edge repeats its pixels."""

    def view(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        sy, sx = dy * max(1, round(h * SHIFT_FRACTION)), dx * max(1, round(w * SHIFT_FRACTION))
        padded = F.pad(x, (max(sx, 0), max(-sx, 0), max(sy, 0), max(-sy, 0)), mode="replicate")
        top, left = max(-sy, 0), max(-sx, 0)
        return padded[..., top:top + h, left:left + w]

    return view


register_view("identity", help="the image as it is")(lambda x: x)
register_view("hflip", help="mirror left-right")(lambda x: x.flip(-1))
register_view("vflip", help="mirror top-bottom")(lambda x: x.flip(-2))
for _where, _words in (("cc", "centre"), ("tl", "top-left"), ("tr", "top-right"), ("bl", "bottom-left"),
                       ("br", "bottom-right")):
    register_view("crop_center" if _where == "cc" else f"crop_{_where}",
                  help=f"the {_words} {CROP_FRACTION:.1%} crop, resized back")(_corner_crop(_where))
for _name, (_dy, _dx) in {"shift_left": (0, -1), "shift_right": (0, 1), "shift_up": (-1, 0),
                          "shift_down": (1, 0)}.items():
    register_view(_name, help=f"move the image by {SHIFT_FRACTION:.2%} of its side")(_shift(_dy, _dx))
del _where, _words, _name, _dy, _dx


@register_view("zoom_in", help=f"enlarge by {ZOOM}: the centre 1/{ZOOM} of the side, resized back")
def _zoom_in(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h / ZOOM)), max(1, round(w / ZOOM))
    return _crop(x, (h - ch) // 2, (w - cw) // 2, ch, cw)


@register_view("zoom_out", help=f"shrink by {ZOOM} about the centre; the border repeats the edge pixels")
def _zoom_out(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    sh, sw = max(1, round(h / ZOOM)), max(1, round(w / ZOOM))
    top, left = (h - sh) // 2, (w - sw) // 2
    return F.pad(_resize(x, sh, sw), (left, w - sw - left, top, h - sh - top), mode="replicate")
