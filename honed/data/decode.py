"""One decoding path for every image file: bytes -> upright 8-bit RGB, or a DecodeError naming why not.

Training, evaluation, scanning and the audit all decode through here, so a file that scans clean is a file
training can read, and every bad file comes with a short reason instead of a crash or a silent skip.

Rules, in the order they are applied:
- Refused before any pixel is decoded: macOS ``._`` AppleDouble files, missing or empty files, files that are
  not images (HTML, text, SVG, unknown), and images whose header declares more than ``max_pixels`` pixels.
  Pillow's own ``MAX_IMAGE_PIXELS`` check still runs inside ``Image.open`` (warning above it, error above
  twice it); its error is reported with the same reason, but the limit that counts is ``max_pixels``.
- Decoded strictly: a truncated file is an error, never a partial image (``LOAD_TRUNCATED_IMAGES`` untouched).
- Multi-frame files (GIF, APNG, animated WebP, multi-page TIFF) give their first frame.
- Colour: 16-bit grey is scaled to 8 bits (65535 -> 255, 32768 -> 128), never clipped; 32-bit integer grey is
  read as 16-bit when it fits in 0..65535, else stretched min..max; float grey is read as 0..1 when it fits,
  else stretched min..max. Transparency (alpha or a transparent palette/colour key) is composited on white.
  CMYK and other modes use Pillow's conversion. Embedded ICC profiles are ignored, as most deployments do.
- EXIF orientation (all 8 values) is applied; an unreadable EXIF block counts as "upright".
- Placeholder: an image whose pixels all share one RGB value is refused when it has more than
  ``PLACEHOLDER_MIN_PIXELS`` pixels (hosts serve such images for missing photos; a fully transparent image
  becomes all white and is caught too). Smaller uniform images (1x1, 8x8) decode: with so few pixels,
  uniformity is no evidence of a placeholder, and the audit flags tiny images separately. Callers decoding a
  single user-given image (prediction) pass ``reject_placeholders=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
import torch

DEFAULT_MAX_PIXELS = 89_478_485  # 256 MiB once decoded to RGB; Pillow's own warning threshold
PLACEHOLDER_MIN_PIXELS = 64  # uniform images with more pixels than this (8x8) are placeholders
SNIFF_BYTES = 1024  # bytes read to explain a file Pillow cannot identify

Source = str | os.PathLike | bytes  # a file path or the encoded file itself

_APPLEDOUBLE_MAGIC = (b"\x00\x05\x16\x07", b"\x00\x05\x16\x00")  # AppleDouble, AppleSingle
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {  # EXIF orientation -> the operation that makes the image upright (as in PIL.ImageOps)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class DecodeError(Exception):
    """A file that cannot be used as an image; ``reason`` is short and stable, ``detail`` is free text."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says, without decoding pixels."""

    width: int  # upright, after EXIF orientation
    height: int
    mode: str  # as stored: "RGB", "L", "I;16", "P", "CMYK", ...
    format: str  # "JPEG", "PNG", ...


def decode_image(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shrink_to: int | None = None,
    reject_placeholders: bool = True,
) -> Image.Image:
    """Decode a file path or encoded bytes into an upright RGB image, or raise DecodeError with the reason.

    ``shrink_to`` lets JPEG decode at 1/2, 1/4 or 1/8 scale while both sides stay >= shrink_to: the same
    result every time, several times faster on large photos; other formats ignore it.
    """
    with _opened(source, max_pixels) as image:
        if shrink_to:
            image.draft(None, (shrink_to, shrink_to))
        _load(image)
        orientation = _orientation(image)
        rgb = _upright(_to_rgb(image), orientation)
    if reject_placeholders:
        _reject_placeholder(rgb)
    return rgb


def decode_to_tensor(
    source: Source,
    size: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reject_placeholders: bool = True,
) -> torch.Tensor:
    """THE deterministic preprocessing for training and evaluation: uint8 tensor [3, size, size].

    Decodes, resizes the shorter side to ``size`` (bilinear, antialiased when shrinking) and crops the centre.
    """
    image = decode_image(source, max_pixels=max_pixels, shrink_to=size, reject_placeholders=reject_placeholders)
    return image_to_tensor(image, size)


def image_to_tensor(image: Image.Image | np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """An in-memory image (PIL, HWC array, or CHW tensor with values in 0..255 or 0..1) -> uint8 [3, size, size],
    through the same resize and crop as decoded files, so in-memory datasets see the same preprocessing."""
    square = center_crop(resize_shorter_side(_as_pil_rgb(image), size), size)
    # numpy does the HWC -> CHW copy: torch's threaded permute-copy is many times slower on small tensors
    return torch.from_numpy(np.ascontiguousarray(np.asarray(square).transpose(2, 0, 1)))


def _as_pil_rgb(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    array = image.detach().cpu().numpy().transpose(1, 2, 0) if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 2 or array.shape[2] == 1:
        array = np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, keeping the aspect ratio (Pillow's bilinear antialiases)."""
    width, height = image.size
    if min(width, height) == size:
        return image
    scale = size / min(width, height)
    if width <= height:
        new_size = (size, max(size, round(height * scale)))
    else:
        new_size = (max(size, round(width * scale)), size)
    return image.resize(new_size, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square (offsets rounded as torchvision's center_crop does)."""
    width, height = image.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def probe_image(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read only the header: size, mode and format, or DecodeError for problems visible without decoding."""
    with _opened(source, max_pixels) as image:
        width, height = image.size
        if _orientation(image) in (5, 6, 7, 8):
            width, height = height, width
        return ImageInfo(width=width, height=height, mode=image.mode, format=image.format or "")


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, after the checks that need only its name and length."""
    _check_name(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise _os_error(error) from None
    _check_prefix(data[:SNIFF_BYTES])
    return data


@contextmanager
def _opened(source: Source, max_pixels: int) -> Iterator[Image.Image]:
    """Yield the image with its header parsed and size checked; no pixels decoded yet."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield _open_checked(io.BytesIO(source), max_pixels)
        return
    _check_name(source)
    try:
        stream = open(source, "rb")
    except OSError as error:
        raise _os_error(error) from None
    with stream:
        yield _open_checked(stream, max_pixels)


def _open_checked(stream: BinaryIO, max_pixels: int) -> Image.Image:
    head = stream.read(SNIFF_BYTES)
    _check_prefix(head)
    stream.seek(0)
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise DecodeError("too many pixels", str(error)) from None
    except Image.UnidentifiedImageError:
        raise DecodeError(_not_an_image_reason(head)) from None
    except Exception as error:  # Pillow's plugins raise many types on corrupt headers
        raise DecodeError(_corrupt_reason(error), f"{type(error).__name__}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(f"too many pixels ({width} x {height} > {max_pixels})")
    if width == 0 or height == 0:
        raise DecodeError("empty image (0 pixels)")
    return image


def _check_name(path: str | os.PathLike) -> None:
    if os.path.basename(os.fspath(path)).startswith("._"):
        raise DecodeError("macOS metadata (._ file)")


def _check_prefix(head: bytes) -> None:
    if not head:
        raise DecodeError("zero bytes")
    if head[:4] in _APPLEDOUBLE_MAGIC:
        raise DecodeError("macOS metadata (._ file)")


def _os_error(error: OSError) -> DecodeError:
    if isinstance(error, FileNotFoundError):
        return DecodeError("file not found", str(error))
    if isinstance(error, IsADirectoryError):
        return DecodeError("not a file (directory)", str(error))
    if isinstance(error, PermissionError):
        return DecodeError("unreadable (permission denied)", str(error))
    return DecodeError("unreadable", str(error))


def _not_an_image_reason(head: bytes) -> str:
    """Say what a file Pillow cannot identify looks like, from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text or b"<body" in text:
        return "not an image (looks like HTML)"
    if b"<svg" in text:
        return "not a raster image (SVG)"
    if text.startswith(b"<?xml"):
        return "not an image (looks like XML)"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "unsupported format (HEIC)"
    if _looks_like_text(head):
        return "not an image (looks like text)"
    return "not an image (unknown format)"


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # invalid inside, not just a character cut at the end
            return False
        decoded = head[: error.start].decode("utf-8")
    return bool(decoded) and all(ch.isprintable() or ch.isspace() for ch in decoded)


def _load(image: Image.Image) -> None:
    """Decode the pixels strictly: any short read or corrupt stream becomes a DecodeError."""
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise DecodeError("too many pixels", str(error)) from None
    except EOFError as error:
        raise DecodeError("truncated", str(error)) from None
    except Exception as error:  # Pillow's decoders raise many types on corrupt data
        raise DecodeError(_corrupt_reason(error), f"{type(error).__name__}: {error}") from None


def _corrupt_reason(error: Exception) -> str:
    """'truncated' when Pillow says so ("image file is truncated", JPEG's "Truncated File Read"), else 'corrupt'."""
    return "truncated" if "truncated" in str(error).lower() else "corrupt"


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8); metadata is advisory, so an unreadable block means upright."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF must not reject good pixels
        return 1
    return value if value in _TRANSPOSE else 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    operation = _TRANSPOSE.get(orientation)
    return image if operation is None else image.transpose(operation)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: high bit depths scaled, transparency composited on white."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(_scale_16_bit(np.asarray(image)))
    if mode == "I":
        return _grey_to_rgb(_scale_int32(np.asarray(image)))
    if mode == "F":
        return _grey_to_rgb(_scale_float(np.asarray(image)))
    try:
        if mode in _ALPHA_MODES or "transparency" in image.info:
            return _on_white(image.convert("RGBA"))
        return image if mode == "RGB" else image.convert("RGB")
    except ValueError as error:
        raise DecodeError(f"unsupported colour mode ({mode})", str(error)) from None


def _scale_16_bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (v * 257 maps back to v exactly)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _scale_int32(values: np.ndarray) -> np.ndarray:
    if values.size and values.min() >= 0 and values.max() <= 65535:
        return _scale_16_bit(values)
    return _stretch(values.astype(np.float64))


def _scale_float(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64))
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return np.round(values * 255.0).astype(np.uint8)
    return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map min..max linearly onto 0..255 (a constant image becomes 0)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _reject_placeholder(rgb: Image.Image) -> None:
    width, height = rgb.size
    if width * height <= PLACEHOLDER_MIN_PIXELS:
        return
    if all(low == high for low, high in rgb.getextrema()):
        raise DecodeError("placeholder (single colour)", f"every pixel is {rgb.getpixel((0, 0))}")
