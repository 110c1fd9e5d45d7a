"""A corpus of odd and broken image files, built on the fly, with what honed must do with each.

Every case is either decodable, with a reference array the decoded RGB must match (EXIF-oriented files are
compared with a pre-rotated reference, 16-bit files with the scaled 8-bit values), or must be skipped with a
``DecodeError`` whose reason starts with ``skip``. The files mimic what scraped and exported datasets carry:
truncated downloads, HTML error pages saved as .jpg, placeholders, CMYK and 16-bit exports, camera rotations,
decompression bombs, macOS ``._`` litter, animated files.
"""

from __future__ import annotations

from dataclasses import dataclass
import io
import os
from pathlib import Path
import struct
import zlib

import numpy as np
from PIL import Image

BLOCK = 16  # px per colour block: JPEG keeps each block's colour at its centre
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 210), (230, 220, 40), (200, 40, 200), (40, 210, 210)]
LOSSLESS = 0  # tolerance (max abs difference) for lossless formats
JPEG_TOLERANCE = 40  # max abs difference at block centres for lossy files
CUT = "truncated|not an image (unknown format)"  # cut in the first bytes, a file is not even recognisable


@dataclass(frozen=True)
class Case:
    name: str  # file name in the corpus folder, unique
    path: Path
    reference: np.ndarray | None = None  # HWC uint8 RGB the decoded image must match; None when skipped
    skip: str | None = None  # DecodeError.reason must start with this (or one of its "|"-separated options)
    tolerance: int = LOSSLESS  # max abs difference, at block centres when ``centres``
    centres: bool = False  # compare only block centres (lossy codecs blur block edges)

    @property
    def kind(self) -> str:
        return "skip" if self.skip is not None else "decode"

    def reason_ok(self, reason: str) -> bool:
        return self.skip is not None and reason.startswith(tuple(self.skip.split("|")))


def blocks(columns: int = 3, rows: int = 2) -> np.ndarray:
    """An asymmetric image of solid colour blocks: every flip and rotation of it differs."""
    array = np.zeros((rows * BLOCK, columns * BLOCK, 3), np.uint8)
    for index in range(rows * columns):
        r, c = divmod(index, columns)
        array[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = COLOURS[index % len(COLOURS)]
    return array


def block_centres(array: np.ndarray) -> np.ndarray:
    return array[BLOCK // 2::BLOCK, BLOCK // 2::BLOCK].astype(int)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write (16-bit RGB, headers declaring huge sizes)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def oriented(reference: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for an upright ``reference`` with EXIF ``orientation`` (numpy only, so the
    expected result does not come from the code under test)."""
    stored = {
        1: lambda a: a,
        2: np.fliplr,
        3: lambda a: np.rot90(a, 2),
        4: np.flipud,
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, 1),  # the viewer turns it 90 degrees clockwise back
        7: lambda a: np.rot90(a.transpose(1, 0, 2), 2),
        8: lambda a: np.rot90(a, -1),
    }[orientation](reference)
    return np.ascontiguousarray(stored)


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.round(rgb.astype(np.float64) * a + 255.0 * (1 - a)).astype(np.uint8)


def build_corpus(folder: Path) -> list[Case]:
    """Write every case into ``folder`` (created) and return them."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes | None = None, **kwargs) -> Path:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        cases.append(Case(name=name, path=path, **kwargs))
        return path

    ref = blocks()
    good_jpeg = encoded(Image.fromarray(ref), "JPEG", quality=95)
    good_png = encoded(Image.fromarray(ref), "PNG")
    add("good.jpg", good_jpeg, reference=ref, tolerance=JPEG_TOLERANCE, centres=True)
    add("good.png", good_png, reference=ref)

    # truncated downloads, cut at several points; a cut header is "not an image" or "corrupt", a cut body "truncated"
    noisy = np.random.default_rng(2).integers(0, 256, ref.shape, dtype=np.uint8)  # noise: long data to cut
    noisy_jpeg = encoded(Image.fromarray(noisy), "JPEG", quality=95)
    for fraction in (0.002, 0.1, 0.3, 0.5, 0.7, 0.9):
        cut = max(2, int(len(noisy_jpeg) * fraction))
        add(f"truncated_{int(fraction * 1000):03d}.jpg", noisy_jpeg[:cut], skip=CUT)
    noisy_png = encoded(Image.fromarray(noisy), "PNG")
    idat = noisy_png.index(b"IDAT") + 4
    idat_end = len(noisy_png) - 12 - 4  # before the IDAT's CRC and the IEND chunk
    for name, cut in (("header", 20), ("idat_start", idat + 10), ("idat_middle", (idat + idat_end) // 2),
                      ("idat_late", idat_end - 64)):
        add(f"truncated_{name}.png", noisy_png[:cut], skip=CUT)
    add("no_iend.png", noisy_png[:-12], reference=noisy)  # every pixel is there: only the end marker is missing

    # not images at all, under image names
    add("zero.jpg", b"", skip="zero bytes")
    add("zero.png", b"", skip="zero bytes")
    add("error_page.jpg", b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>",
        skip="not an image (looks like HTML)")
    add("text.jpg", b"this file was supposed to be a photo\n" * 5, skip="not an image (looks like text)")
    add("json.png", b'{"error": "rate limited", "retry_after": 60}', skip="not an image (looks like text)")
    add("drawing.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        skip="not a raster image (SVG)")
    add("feed.jpg", b'<?xml version="1.0"?><rss></rss>', skip="not an image (looks like XML)")
    add("iphone.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
        skip="unsupported format (HEIC)")
    add("noise.jpg", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        skip="not an image")
    (folder / "folder.jpg").mkdir()
    add("folder.jpg", skip="not a file")
    add("dangling.jpg", skip="file not found")
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")

    # placeholders hosts serve for missing photos
    add("placeholder_gif.jpg", encoded(Image.new("P", (120, 90), 7), "GIF"), skip="placeholder")
    add("placeholder_grey.png", encoded(Image.new("RGB", (100, 100), (204, 204, 204)), "PNG"), skip="placeholder")
    add("transparent.png", encoded(Image.new("RGBA", (32, 32), (10, 20, 30, 0)), "PNG"), skip="placeholder")
    pixel = Image.new("P", (1, 1), 0)
    pixel.info["transparency"] = 0
    add("tracking_pixel.jpg", encoded(pixel, "GIF", transparency=0), reference=np.full((1, 1, 3), 255, np.uint8))

    # colour modes
    cmyk = encoded(Image.fromarray(ref).convert("CMYK"), "JPEG", quality=95)
    add("cmyk.jpg", cmyk, reference=ref, tolerance=JPEG_TOLERANCE, centres=True)
    grey16 = np.linspace(0, 65535, 64 * 16, dtype=np.float64).round().astype(np.uint16).reshape(16, 64)
    add("grey16.png", encoded(Image.fromarray(grey16.astype(np.uint16)), "PNG"),
        reference=np.repeat(((grey16.astype(np.uint32) + 128) // 257).astype(np.uint8)[..., None], 3, axis=2))
    rgb16 = (ref.astype(np.uint32) * 257).astype(">u2")  # 8-bit values spread over 16 bits: scaled back exactly
    rows = b"".join(b"\x00" + rgb16[r].tobytes() for r in range(rgb16.shape[0]))
    add("rgb16.png", png_bytes(ref.shape[1], ref.shape[0], 16, 2, zlib.compress(rows)), reference=ref)
    dark16 = np.full((8, 8, 3), 300, ">u2")  # 300/65535: dark, must not read as bright (clipping would give 255)
    dark16[:, :4] = 65535
    rows = b"".join(b"\x00" + dark16[r].tobytes() for r in range(8))
    dark_ref = np.where(dark16 == 65535, 255, 1).astype(np.uint8)
    add("rgb16_dark.png", png_bytes(8, 8, 16, 2, zlib.compress(rows)), reference=dark_ref, tolerance=1)
    palette = Image.fromarray(ref).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    index = np.asarray(palette)
    transparent_index = int(index[0, 0])
    pal_rgb = np.asarray(palette.convert("RGB"))
    pal_ref = np.where((index == transparent_index)[..., None], 255, pal_rgb).astype(np.uint8)
    add("palette_transparent.png", encoded(palette, "PNG", transparency=transparent_index), reference=pal_ref)
    alpha = np.tile(np.linspace(0, 255, ref.shape[1]).round().astype(np.uint8), (ref.shape[0], 1))
    grey = ref.mean(axis=2).round().astype(np.uint8)
    la = Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha)))
    add("grey_alpha.png", encoded(la, "PNG"), reference=np.repeat(on_white(grey[..., None], alpha), 3, axis=2),
        tolerance=1)
    rgba = np.dstack([ref, alpha])
    add("rgba.png", encoded(Image.fromarray(rgba, "RGBA"), "PNG"), reference=on_white(ref, alpha), tolerance=1)
    add("grey.jpg", encoded(Image.fromarray(grey), "JPEG", quality=95),
        reference=np.repeat(grey[..., None], 3, axis=2), tolerance=JPEG_TOLERANCE, centres=True)
    bilevel = Image.fromarray(np.where(grey > 120, 255, 0).astype(np.uint8)).convert("1")
    add("bilevel.png", encoded(bilevel, "PNG"), reference=np.repeat(np.asarray(bilevel.convert("L"))[..., None], 3, 2))
    int32 = (grey.astype(np.int32) * 257)
    add("int32.tif", encoded(Image.fromarray(int32, "I"), "TIFF"), reference=np.repeat(grey[..., None], 3, axis=2))
    floats = grey.astype(np.float32) / 255.0
    add("float.tif", encoded(Image.fromarray(floats, "F"), "TIFF"), reference=np.repeat(grey[..., None], 3, axis=2))

    # every EXIF orientation, as JPEG and as lossless PNG, against the pre-rotated (upright) reference
    for orientation in range(1, 9):
        stored = Image.fromarray(oriented(ref, orientation))
        exif = Image.Exif()
        exif[0x0112] = orientation
        add(f"exif_{orientation}.jpg", encoded(stored, "JPEG", quality=95, exif=exif.tobytes()),
            reference=ref, tolerance=JPEG_TOLERANCE, centres=True)
        add(f"exif_{orientation}.png", encoded(stored, "PNG", exif=exif.tobytes()), reference=ref)
    broken_exif = good_jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff" + good_jpeg[2:]
    add("exif_broken.jpg", broken_exif, reference=ref, tolerance=JPEG_TOLERANCE, centres=True)

    # decompression bombs: headers declaring huge images, and a real one that compresses to almost nothing
    add("bomb_header.png", png_bytes(100_000, 100_000, 8, 2, zlib.compress(b"\x00" * 64)), skip="too many pixels")
    sof = good_jpeg.index(b"\xff\xc0")
    jpeg_bomb = good_jpeg[:sof + 5] + struct.pack(">HH", 65_000, 65_000) + good_jpeg[sof + 9:]
    add("bomb_header.jpg", jpeg_bomb, skip="too many pixels")
    add("bomb_header.gif", b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + b"\x00\x00\x00" +
        b"\x2c" + struct.pack("<HHHH", 0, 0, 65_535, 65_535) + b"\x00\x02\x02\x44\x01\x00\x3b",
        skip="too many pixels")
    width = 10_000
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(width)
    idat = b"".join(compressor.compress(row) for _ in range(width)) + compressor.flush()
    add("bomb_real.png", png_bytes(width, width, 8, 0, idat), skip="too many pixels")  # 100 Mpx in ~100 kB

    # extreme shapes
    add("one_pixel.png", encoded(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG"),
        reference=np.array([[[12, 34, 56]]], np.uint8))
    stripe = np.random.default_rng(1).integers(0, 256, (5000, 1, 3), dtype=np.uint8)
    add("tall_1x5000.png", encoded(Image.fromarray(stripe), "PNG"), reference=stripe)
    wide = np.ascontiguousarray(stripe.transpose(1, 0, 2))
    add("wide_5000x1.png", encoded(Image.fromarray(wide), "PNG"), reference=wide)

    # macOS litter: AppleDouble files next to real photos, even when their bytes happen to be an image
    add("._good.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64), skip="macOS metadata")
    add("._copy.png", good_png, skip="macOS metadata")

    # other containers and animation: the first frame
    add("lossless.webp", encoded(Image.fromarray(ref), "WEBP", lossless=True), reference=ref)
    add("lossy.webp", encoded(Image.fromarray(ref), "WEBP", quality=95), reference=ref,
        tolerance=JPEG_TOLERANCE, centres=True)
    add("bitmap.bmp", encoded(Image.fromarray(ref), "BMP"), reference=ref)
    add("scan.tif", encoded(Image.fromarray(ref), "TIFF", compression="tiff_lzw"), reference=ref)
    add("portable.ppm", encoded(Image.fromarray(ref), "PPM"), reference=ref)
    frames = [Image.fromarray(ref), Image.fromarray(np.ascontiguousarray(ref[::-1]))]
    add("animated.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
        reference=ref)
    add("animated.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
        reference=ref)
    add("animated.png", encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]), reference=ref)
    add("pages.tif", encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:]), reference=ref)
    add("png_named.jpg", good_png, reference=ref)
    add("jpeg_named.png", good_jpeg, reference=ref, tolerance=JPEG_TOLERANCE, centres=True)
    linked = add("linked.jpg", reference=ref)
    os.symlink(folder / "good.png", linked)
    return cases
