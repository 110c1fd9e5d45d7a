"""What one image file says of itself, for the audit: its bytes' hash (exact duplicates), its header (size,
mode, format) and, unless the audit is cheap, statistics of a downscaled copy (perceptual hash, brightness,
information, quality measures). Files that cannot be read or decoded get the reason, as training reports it.

Training runs the cheap audit at every run; its facts are kept between runs as a ``honed.data.files_memo``
(keyed by the files' paths, sizes and mtimes), since hashing 60,000 CIFAR JPEGs takes about 4 s on 2 cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
import hashlib

import imagehash
import numpy as np
from PIL import Image

from honed.data.decode import DecodeError, ImageInfo, decode_image, probe_image, read_image_bytes
from honed.data.files_memo import memo_file, read_memo, write_memo
from honed.data.quality import ImageQuality, measure_quality
from honed.data.scan import map_files

CHEAP_FACTS_VERSION = 1  # bump when what the cheap audit learns of a file changes: old memos are then not read
STATS_SIZE = 128  # px: longest side of the copy that pixel statistics and the perceptual hash look at


@dataclass
class FileFacts:
    """What one file's inspection found."""

    digest: str = ""
    info: ImageInfo | None = None
    error: DecodeError | None = None
    phash: int | None = None
    brightness: float | None = None
    entropy: float | None = None
    quality: ImageQuality | None = None


def inspect_files(paths: list[str], *, cheap: bool, max_pixels: int, threads: int | None = None,
                  progress: Callable[[int], None] | None = None) -> list[FileFacts]:
    """Every file's facts, in order; cheap ones from the memo of exactly these files when there is one."""
    if cheap:
        return _cheap_facts(paths, max_pixels=max_pixels, threads=threads, progress=progress)
    return _inspect_all(paths, cheap=False, max_pixels=max_pixels, threads=threads, progress=progress)


def inspect_file(path: str, *, cheap: bool, max_pixels: int) -> FileFacts:
    """Hash, probe and (unless cheap) decode and measure one file; problems become ``error``."""
    try:
        data = read_image_bytes(path)
    except DecodeError as error:
        return FileFacts(error=error)
    facts = FileFacts(digest=hashlib.blake2b(data, digest_size=16).hexdigest())
    try:
        facts.info = probe_image(data, max_pixels=max_pixels)
        if not cheap:
            image = decode_image(data, max_pixels=max_pixels, shrink_to=STATS_SIZE)
            _measure(facts, image)
    except DecodeError as error:
        facts.error = error
    return facts


def _inspect_all(paths: list[str], *, cheap: bool, max_pixels: int, threads: int | None,
                 progress: Callable[[int], None] | None) -> list[FileFacts]:
    return map_files(partial(inspect_file, cheap=cheap, max_pixels=max_pixels), paths, threads=threads,
                     progress=progress,
                     crashed=lambda path, error: FileFacts(error=error))  # a codec segfault costs one file, not all


def _cheap_facts(paths: list[str], *, max_pixels: int, threads: int | None,
                 progress: Callable[[int], None] | None) -> list[FileFacts]:
    file = memo_file("audits", f"honed cheap audit {max_pixels}", paths)
    stored = read_memo(file, version=CHEAP_FACTS_VERSION, count=len(paths))
    try:
        return [_from_row(row) for row in stored["facts"]]
    except (TypeError, KeyError, ValueError):  # none stored, or a damaged memo: inspect again
        pass
    facts = _inspect_all(paths, cheap=True, max_pixels=max_pixels, threads=threads, progress=progress)
    write_memo(file, {"facts": [_to_row(f) for f in facts]}, version=CHEAP_FACTS_VERSION, count=len(paths))
    return facts


def _to_row(facts: FileFacts) -> list:
    info, error = facts.info, facts.error
    return [facts.digest, *((info.width, info.height, info.mode, info.format) if info else (None,) * 4),
            *((error.reason, error.detail) if error else (None, None))]


def _from_row(row: list) -> FileFacts:
    digest, width, height, mode, image_format, reason, detail = row
    info = None if width is None else ImageInfo(width=int(width), height=int(height), mode=str(mode),
                                                format=str(image_format))
    return FileFacts(digest=str(digest), info=info,
                     error=None if reason is None else DecodeError(str(reason), str(detail)))


def _measure(facts: FileFacts, image: Image.Image) -> None:
    small = image.copy()  # thumbnail works in place
    small.thumbnail((STATS_SIZE, STATS_SIZE), Image.Resampling.BILINEAR)
    grey = np.asarray(small.convert("L"))
    facts.phash = _phash(small)
    facts.brightness = float(grey.mean())
    facts.entropy = _entropy_bits(grey)
    facts.quality = measure_quality(np.asarray(small.convert("RGB")), grey, *image.size)


def _phash(image: Image.Image) -> int:
    bits = imagehash.phash(image).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _entropy_bits(grey: np.ndarray) -> float:
    counts = np.bincount(grey.ravel(), minlength=256)
    p = counts[counts > 0] / grey.size
    return float(-(p * np.log2(p)).sum())
