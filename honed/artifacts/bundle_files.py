"""Reading a bundle's files: a folder or a zip, size-checked, hash-checked, never extracted to disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
import zipfile
import zlib

from honed.errors import HonedError

BUNDLE_FILE = "bundle.json"
ONNX_FILE = "model.onnx"
MAX_JSON_BYTES = 4 * 1024 * 1024  # a bundle.json is a few KiB; anything huge is not one


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BundleFiles:
    """Reads the named files of a bundle folder or zip (at its top level, or in its one top folder, as
    zipping a bundle folder by hand gives), never extracting anything to disk."""

    def __init__(self, path: Path):
        self.path = path
        self.prefix = ""
        if path.is_dir():
            links = sorted(p.name for p in path.iterdir() if p.is_symlink())
            if links:  # a link may point anywhere (outside the bundle, at a device): bundles hold plain files
                raise HonedError(f"{path} holds symbolic links ({', '.join(links)}): a bundle holds plain files "
                                 "only; copy the real files in or export the bundle again")
            self._sizes = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
        elif path.is_file() and zipfile.is_zipfile(path):
            self._sizes = self._zip_members(path)
        else:
            raise HonedError(f"{path} is not a honed bundle: give a bundle folder or its .zip (see `honed export`)")
        if BUNDLE_FILE not in self._sizes:
            raise HonedError(f"{path} is not a honed bundle: it has no {BUNDLE_FILE} at its top level")

    def _zip_members(self, path: Path) -> dict[str, int]:
        """Member name -> uncompressed size, with the single top folder (if that is where bundle.json is) cut off."""
        with zipfile.ZipFile(path) as zf:
            sizes = {info.filename: info.file_size for info in zf.infolist() if not info.is_dir()}
        nested = [name for name in sizes if name.count("/") == 1 and name.endswith("/" + BUNDLE_FILE)]
        if BUNDLE_FILE not in sizes and len(nested) == 1:
            self.prefix = nested[0][: -len(BUNDLE_FILE)]
        return {name[len(self.prefix):]: size for name, size in sizes.items() if name.startswith(self.prefix)}

    def sub(self, folder: str) -> BundleFiles:
        """The files of the bundle nested in ``folder`` (an ensemble's member), read the same way."""
        if self.path.is_dir():
            return BundleFiles(self.path / folder)
        view = object.__new__(BundleFiles)
        view.path, view.prefix = self.path, f"{self.prefix}{folder}/"
        view._sizes = {n[len(folder) + 1:]: s for n, s in self._sizes.items() if n.startswith(f"{folder}/")}
        if BUNDLE_FILE not in view._sizes:
            raise HonedError(f"{self.path} has no {folder}/{BUNDLE_FILE}: the ensemble bundle is incomplete")
        return view

    def size(self, name: str) -> int:
        if name not in self._sizes:
            raise HonedError(f"the bundle {self.path} has no {name}: export it again with `honed export`")
        return self._sizes[name]

    def read(self, name: str) -> bytes:
        self.size(name)
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            try:
                return zf.read(self.prefix + name)
            except (zipfile.BadZipFile, OSError, zlib.error) as error:
                raise HonedError(f"{name} in {self.path} cannot be read ({error}): the archive is damaged") from None


def read_meta(files: BundleFiles) -> Any:
    """bundle.json parsed, after its size is checked (a huge one is no bundle description, maybe a zip bomb)."""
    size = files.size(BUNDLE_FILE)
    if size > MAX_JSON_BYTES:
        raise HonedError(f"{BUNDLE_FILE} in {files.path} is {size} bytes: too large to be a bundle description")
    data = files.read(BUNDLE_FILE)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HonedError(f"{BUNDLE_FILE} in {files.path} is not valid JSON ({error})") from None


def checked_file(files: BundleFiles, meta: dict[str, Any], name: str) -> bytes:
    """A file's bytes, refused unless bundle.json lists it and its SHA-256 matches."""
    if name not in meta["files"]:
        hint = " (export with --format onnx)" if name == ONNX_FILE else ""
        raise HonedError(f"the bundle {files.path} has no {name}{hint}")
    data = files.read(name)
    if sha256(data) != meta["files"][name]["sha256"]:
        raise HonedError(f"{name} in {files.path} does not match the SHA-256 in {BUNDLE_FILE}: "
                         "the file was changed or damaged; export the bundle again")
    return data
