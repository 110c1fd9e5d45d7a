"""decode_image / decode_to_tensor on real files of every kind a scraped or exported dataset contains."""

from __future__ import annotations

from pathlib import Path
import struct
import time
import zlib

import numpy as np
from PIL import Image, ImageFile
import pytest
import torch

from honed.data.decode import (
    DecodeError,
    decode_image,
    decode_to_tensor,
    probe_image,
    read_image_bytes,
)

BLOCK = 16  # px per colour block: big enough that JPEG keeps each block's colour
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 210), (230, 220, 40), (200, 40, 200), (40, 210, 210)]


def blocks(columns: int = 3, rows: int = 2) -> np.ndarray:
    """An asymmetric image of solid colour blocks (every flip and rotation of it differs)."""
    array = np.zeros((rows * BLOCK, columns * BLOCK, 3), np.uint8)
    for index in range(rows * columns):
        r, c = divmod(index, columns)
        array[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = COLOURS[index % len(COLOURS)]
    return array


def block_centres(array: np.ndarray) -> np.ndarray:
    return array[BLOCK // 2 :: BLOCK, BLOCK // 2 :: BLOCK].astype(int)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write itself (16-bit RGB, huge headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def stored_mode(path: Path) -> str:
    """The colour mode the file holds, as Pillow reads its header."""
    with Image.open(path) as image:
        return image.mode


def reason_of(source, **kwargs) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_image(source, **kwargs)
    return caught.value.reason


# --- formats and colour modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, kwargs, tolerance",
    [
        (".jpg", {"quality": 95}, 12),
        (".png", {}, 0),
        (".webp", {"lossless": True}, 0),
        (".bmp", {}, 0),
        (".tif", {}, 0),
        (".gif", {}, 0),
    ],
)
def test_common_formats_decode_to_the_same_rgb(tmp_path, suffix, kwargs, tolerance):
    reference = blocks()
    path = save(tmp_path / f"x{suffix}", Image.fromarray(reference), **kwargs)
    image = decode_image(path)
    assert image.mode == "RGB" and image.size == (3 * BLOCK, 2 * BLOCK)
    assert np.abs(block_centres(np.asarray(image)) - block_centres(reference)).max() <= tolerance


def test_bytes_and_path_give_the_same_image(tmp_path):
    path = save(tmp_path / "x.png", Image.fromarray(blocks()))
    assert np.array_equal(np.asarray(decode_image(path)), np.asarray(decode_image(path.read_bytes())))
    assert np.array_equal(np.asarray(decode_image(str(path))), np.asarray(decode_image(path)))


def test_grayscale_becomes_three_equal_channels(tmp_path):
    grey = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    image = np.asarray(decode_image(save(tmp_path / "g.png", Image.fromarray(grey))))
    assert image.shape == (16, 16, 3)
    assert all(np.array_equal(image[..., c], grey) for c in range(3))


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[65535, 32768, 0, 257, 1000]], dtype=np.uint16)
    path = save(tmp_path / "16.png", Image.fromarray(values))
    assert stored_mode(path).startswith("I;16")
    red = np.asarray(decode_image(path))[0, :, 0]
    assert red.tolist() == [255, 128, 0, 1, 4]  # round(v / 257); Pillow's own convert would clip to 255


def test_16_bit_rgb_png_is_scaled(tmp_path):
    pixels = np.array([[[65535, 32768, 0], [256, 65535, 32768]]], dtype=">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter byte 0 per row
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_bytes(2, 1, 16, 2, zlib.compress(raw)))
    assert np.asarray(decode_image(path)).tolist() == [[[255, 128, 0], [1, 255, 128]]]


def test_32_bit_int_and_float_grey_tiff(tmp_path):
    as_int = save(tmp_path / "i.tif", Image.fromarray(np.array([[0, 40000, 65535]], dtype=np.int32)))
    assert stored_mode(as_int) == "I"
    assert np.asarray(decode_image(as_int))[0, :, 0].tolist() == [0, 156, 255]
    unit = save(tmp_path / "f.tif", Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert stored_mode(unit) == "F"
    assert np.asarray(decode_image(unit))[0, :, 0].tolist() == [0, 128, 255]
    wide = save(tmp_path / "f2.tif", Image.fromarray(np.array([[-10.0, 0.0, 10.0]], dtype=np.float32)))
    assert np.asarray(decode_image(wide))[0, :, 0].tolist() == [0, 128, 255]  # stretched min..max


def test_palette_transparency_becomes_white(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 200, 20, 20] + [0] * 762)
    palette.paste(1, (4, 0, 8, 8))
    path = save(tmp_path / "p.png", palette, transparency=0)
    image = np.asarray(decode_image(path))
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[0, 7].tolist() == [200, 20, 20]


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.zeros((4, 12, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[:, :4, 3] = 0
    rgba[:, 4:8, 3] = 128
    rgba[:, 8:, 3] = 255
    image = np.asarray(decode_image(save(tmp_path / "a.png", Image.fromarray(rgba)))).astype(int)
    assert image[0, 0].tolist() == [255, 255, 255]
    assert np.abs(image[0, 5] - [227, 127, 127]).max() <= 1  # half-way between red and white
    assert image[0, 10].tolist() == [200, 0, 0]
    la = Image.fromarray(np.stack([np.full((4, 4), 10, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA")
    la_image = np.asarray(decode_image(save(tmp_path / "la.png", la)))
    assert (la_image == 255).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 16), (0, 0, 0, 0))
    cmyk.paste((255, 0, 0, 0), (16, 0, 32, 16))  # pure cyan on the right
    path = save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    assert stored_mode(path) == "CMYK"
    image = np.asarray(decode_image(path)).astype(int)
    assert np.abs(image[8, 4] - [255, 255, 255]).max() <= 6
    assert np.abs(image[8, 28] - [0, 255, 255]).max() <= 6


def test_animated_gif_gives_its_first_frame(tmp_path):
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    path = save(tmp_path / "anim.gif", red, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    assert np.asarray(decode_image(path, reject_placeholders=False))[0, 0].tolist() == [255, 0, 0]


# --- EXIF orientation -----------------------------------------------------------------------------------

STORED = {  # how a camera stores an upright picture for each EXIF orientation (the inverse of displaying it)
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),  # displayed by turning 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


def save_oriented(path: Path, upright: np.ndarray, orientation: int, **kwargs) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, Image.fromarray(np.ascontiguousarray(STORED[orientation](upright))), exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_png(tmp_path, orientation):
    upright = blocks()
    path = save_oriented(tmp_path / f"o{orientation}.png", upright, orientation)
    assert np.array_equal(np.asarray(decode_image(path)), upright)
    assert (probe_image(path).width, probe_image(path).height) == (3 * BLOCK, 2 * BLOCK)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_jpeg(tmp_path, orientation):
    upright = blocks()
    path = save_oriented(tmp_path / f"o{orientation}.jpg", upright, orientation, quality=95)
    image = np.asarray(decode_image(path))
    assert image.shape == upright.shape
    assert np.abs(block_centres(image) - block_centres(upright)).max() <= 12


def test_broken_exif_counts_as_upright(tmp_path):
    path = save(tmp_path / "x.jpg", Image.fromarray(blocks()), exif=b"Exif\x00\x00garbage-not-tiff")
    assert decode_image(path).size == (3 * BLOCK, 2 * BLOCK)


# --- bad files ------------------------------------------------------------------------------------------


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((160, 120), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.95])
def test_truncated_files_are_errors_not_partial_images(tmp_path, photo, suffix, fraction):
    data = (save(tmp_path / f"full{suffix}", photo)).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert reason_of(path) == "truncated"
    with pytest.raises(DecodeError):
        decode_to_tensor(path, 32)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing was switched on globally


def test_jpeg_missing_only_its_end_marker_is_truncated(tmp_path, photo):
    data = save(tmp_path / "full.jpg", photo).read_bytes()
    assert reason_of(data[:-2]) == "truncated"


def test_file_cut_inside_the_header_is_refused(tmp_path, photo):
    data = save(tmp_path / "full.png", photo).read_bytes()
    with pytest.raises(DecodeError):
        decode_image(data[:20])


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert reason_of(path) == "zero bytes"
    assert reason_of(b"") == "zero bytes"


def test_html_saved_as_jpg(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>")
    assert reason_of(path) == "not an image (looks like HTML)"


def test_text_and_unknown_bytes(tmp_path):
    (tmp_path / "a.jpg").write_text("Access denied. Please log in to view this photo.\n")
    assert reason_of(tmp_path / "a.jpg") == "not an image (looks like text)"
    (tmp_path / "euro.jpg").write_text("price: " + "€" * 600, encoding="utf-8")  # 3-byte chars cut at 1 KiB
    assert reason_of(tmp_path / "euro.jpg") == "not an image (looks like text)"
    (tmp_path / "b.png").write_bytes(bytes(range(256)) * 4)
    assert reason_of(tmp_path / "b.png") == "not an image (unknown format)"


def test_macos_appledouble_files(tmp_path, photo):
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 200
    path = tmp_path / "._photo.jpg"
    path.write_bytes(apple_double)
    assert reason_of(path) == "macOS metadata (._ file)"
    assert reason_of(apple_double) == "macOS metadata (._ file)"
    named_like_one = save(tmp_path / "._real.png", photo)  # the name alone decides: Finder made it
    assert reason_of(named_like_one) == "macOS metadata (._ file)"


def test_missing_file_and_directory(tmp_path):
    assert reason_of(tmp_path / "nope.jpg") == "file not found"
    with pytest.raises(DecodeError) as caught:
        read_image_bytes(tmp_path / "nope.jpg")
    assert caught.value.reason == "file not found"
    assert reason_of(tmp_path).startswith("not a file")


# --- decompression bombs --------------------------------------------------------------------------------

BOMB_SIDE = 30_000


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A real, valid 30000 x 30000 1-bit PNG: 900 megapixels in about 110 KB."""
    row = b"\x00" * (1 + BOMB_SIDE // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(BOMB_SIDE // 1000)) + compressor.flush()
    return png_bytes(BOMB_SIDE, BOMB_SIDE, 1, 0, idat)


def test_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(tmp_path, bomb_png, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own guard off: ours must hold alone

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    reason = reason_of(path)
    assert reason == f"too many pixels ({BOMB_SIDE} x {BOMB_SIDE} > 89478485)"
    assert time.perf_counter() - start < 1.0
    assert len(bomb_png) < 200_000  # cheap to make, cheap to refuse


def test_bomb_is_refused_with_pillows_defaults_too(bomb_png):
    assert reason_of(bomb_png).startswith("too many pixels")


def test_max_pixels_is_the_limit(tmp_path, photo):
    path = save(tmp_path / "p.png", photo)  # 160 x 120 = 19200 pixels
    assert reason_of(path, max_pixels=19_199) == "too many pixels (160 x 120 > 19199)"
    assert decode_image(path, max_pixels=19_200).size == (160, 120)
    with pytest.raises(DecodeError):
        probe_image(path, max_pixels=100)


# --- placeholders and odd sizes -------------------------------------------------------------------------


def test_single_colour_image_is_a_placeholder(tmp_path):
    path = save(tmp_path / "missing.gif", Image.new("RGB", (100, 80), (204, 204, 204)))
    assert reason_of(path) == "placeholder (single colour)"
    assert decode_image(path, reject_placeholders=False).size == (100, 80)


def test_fully_transparent_image_is_a_placeholder(tmp_path):
    path = save(tmp_path / "clear.png", Image.new("RGBA", (50, 50), (10, 20, 30, 0)))
    assert reason_of(path) == "placeholder (single colour)"


def test_tiny_uniform_images_decode(tmp_path):
    one = save(tmp_path / "one.png", Image.new("RGB", (1, 1), (5, 6, 7)))
    assert np.asarray(decode_image(one)).tolist() == [[[5, 6, 7]]]
    eight = save(tmp_path / "eight.png", Image.new("L", (8, 8), 3))
    assert decode_image(eight).size == (8, 8)
    assert decode_to_tensor(one, 4).tolist() == [[[5] * 4] * 4, [[6] * 4] * 4, [[7] * 4] * 4]


def test_very_long_images(tmp_path):
    line = np.zeros((5000, 1, 3), np.uint8)
    line[:, 0, 0] = np.arange(5000) % 256
    path = save(tmp_path / "line.png", Image.fromarray(line))
    assert decode_image(path).size == (1, 5000)
    tensor = decode_to_tensor(path, 8)
    assert tensor.shape == (3, 8, 8) and tensor.dtype == torch.uint8
    flat = save(tmp_path / "flat.png", Image.new("RGB", (1, 5000), (1, 2, 3)))
    assert reason_of(flat) == "placeholder (single colour)"


# --- the preprocessing ----------------------------------------------------------------------------------


def test_decode_to_tensor_resizes_shorter_side_and_crops_centre(tmp_path):
    array = np.zeros((40, 120, 3), np.uint8)  # wide: left third red, middle green, right third blue
    array[:, :40] = (255, 0, 0)
    array[:, 40:80] = (0, 255, 0)
    array[:, 80:] = (0, 0, 255)
    tensor = decode_to_tensor(save(tmp_path / "wide.png", Image.fromarray(array)), 20)
    assert tensor.shape == (3, 20, 20) and tensor.dtype == torch.uint8
    assert (tensor[1, :, 2:18] == 255).all() and (tensor[0, :, 2:18] == 0).all()  # only the middle survives


def test_decode_to_tensor_of_a_large_jpeg_matches_full_decode(tmp_path):
    rng = np.random.default_rng(1)
    smooth = Image.fromarray(rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)).resize((1200, 900))
    path = save(tmp_path / "big.jpg", smooth, quality=92)
    fast = decode_to_tensor(path, 64).float()  # the decoder shrinks the JPEG itself
    full = np.asarray(decode_image(path).resize((85, 64), Image.Resampling.BILINEAR))[:, 10:74]
    assert fast.shape == (3, 64, 64)
    assert (fast - torch.from_numpy(full.copy()).permute(2, 0, 1).float()).abs().mean() < 3.0
    assert torch.equal(decode_to_tensor(path, 64), decode_to_tensor(path.read_bytes(), 64))  # deterministic


def test_decode_error_pickles_with_its_reason():
    import pickle

    error = pickle.loads(pickle.dumps(DecodeError("truncated", "3 bytes missing")))
    assert (error.reason, error.detail, str(error)) == ("truncated", "3 bytes missing", "truncated: 3 bytes missing")


def test_probe_reads_header_facts(tmp_path, photo):
    info = probe_image(save(tmp_path / "p.jpg", photo.convert("L")))
    assert (info.width, info.height, info.mode, info.format) == (160, 120, "L", "JPEG")
