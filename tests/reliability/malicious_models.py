"""A corpus of malicious and malformed model files, built on the fly: none may run code or load.

Pickles: each one, if unpickled by a plain ``pickle.load`` (or ``torch.load(weights_only=False)``), creates
the sentinel file. Several are shaped to slip past blocklist scanners that look for ``os.system`` by name:
``builtins.getattr`` chains, ``importlib``, ``runpy``, ``posix`` instead of ``os``, torch's own
``_load_from_bytes`` (a nested pickle loaded without restrictions in old torch), module and attribute names
kept in the memo and fetched with ``BINGET`` for ``STACK_GLOBAL``, protocol 0 text. They are saved as raw
pickles, as legacy torch files, and inside a real ``torch.save`` zip in place of its ``data.pkl``.

Safetensors: a header length larger than the file or than any header may be, malformed or non-object JSON,
offsets out of range or overlapping, a byte count that does not fit the shape, an unknown dtype, a shape
claiming terabytes, and a pickle under a .safetensors name.
"""

from __future__ import annotations

from dataclasses import dataclass
import io
import json
import pickle
import struct
from pathlib import Path
import zipfile

import torch


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    family: str  # "pickle" or "safetensors"


def _u(text: str) -> bytes:
    """A protocol-0 unicode string argument."""
    return b"V" + text.encode("raw_unicode_escape") + b"\n"


def _short(text: str) -> bytes:
    """A protocol-4 SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def payloads(sentinel: Path) -> dict[str, bytes]:
    """Pickle streams that each write ``sentinel`` when unpickled without restrictions."""
    touch = f"touch '{sentinel}'"
    code = f"open({str(sentinel)!r}, 'w').write('pwned')"

    class Reduce:
        def __reduce__(self):
            import os

            return (os.system, (touch,))

    inner = pickle.dumps(Reduce(), protocol=2)
    return {
        "reduce_os_system": pickle.dumps(Reduce(), protocol=2),
        "reduce_protocol4": pickle.dumps(Reduce(), protocol=4),
        "protocol0_os_system": b"cos\nsystem\n(" + _u(touch) + b"tR.",
        "posix_system": b"cposix\nsystem\n(" + _u(touch) + b"tR.",
        "builtins_exec": b"cbuiltins\nexec\n(" + _u(code) + b"tR.",
        "builtins_eval": b"c__builtin__\neval\n(" + _u(code) + b"tR.",
        "getattr_chain": (b"cbuiltins\ngetattr\n(cimportlib\nimport_module\n(" + _u("os") + b"tR" + _u("system")
                          + b"tR(" + _u(touch) + b"tR."),
        "runpy_run_code": b"crunpy\n_run_code\n(" + _u(code) + b"(dtR.",
        "subprocess_popen": b"csubprocess\nPopen\n((" + _u("sh") + _u("-c") + _u(touch) + b"ltR.",
        "memo_stack_global": (b"\x80\x04" + _short("os") + b"\x94" + _short("system") + b"\x94" + b"00"
                              + b"h\x00h\x01\x93" + _short(touch) + b"\x85R."),
        "torch_load_from_bytes": (b"\x80\x02ctorch.storage\n_load_from_bytes\nq\x00C" + bytes([len(inner)])
                                  + inner + b"\x85R." if len(inner) < 256 else b""),
        "state_dict_then_payload": pickle.dumps({"weight": torch.zeros(2), "bias": Reduce()}, protocol=2),
    }


def _torch_zip_with(data_pkl: bytes) -> bytes:
    """A real ``torch.save`` zip whose data.pkl is replaced: the container checks pass, the pickle is hostile."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(4)}, buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else source.read(info.filename)
            target.writestr(info, data)
    return out.getvalue()


def _safetensors(header: object, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def safetensors_cases() -> dict[str, bytes]:
    tensor = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    return {
        "length_beyond_file": _safetensors({"w": tensor}, bytes(8), length=10**6),
        "length_huge": _safetensors({"w": tensor}, bytes(8), length=2**63 - 1),
        "length_zero": _safetensors(b"", bytes(8), length=0),
        "file_too_short": b"\x10\x00\x00",
        "empty_file": b"",
        "header_not_json": _safetensors(b"{'w': not json" + b" " * 16, bytes(8)),
        "header_not_utf8": _safetensors(b"\xff\xfe\xfa" * 8, bytes(8)),
        "header_is_a_list": _safetensors([1, 2, 3], bytes(8)),
        "offsets_out_of_range": _safetensors({"w": {**tensor, "data_offsets": [0, 4096]}}, bytes(8)),
        "offsets_reversed": _safetensors({"w": {**tensor, "data_offsets": [8, 0]}}, bytes(8)),
        "offsets_overlap": _safetensors({"a": tensor, "b": tensor}, bytes(8)),
        "size_does_not_fit_shape": _safetensors({"w": {**tensor, "shape": [1000, 1000]}}, bytes(8)),
        "unknown_dtype": _safetensors({"w": {**tensor, "dtype": "F128"}}, bytes(8)),
        "huge_tensor_claim": _safetensors({"w": {"dtype": "F32", "shape": [2**40, 2**40],
                                                 "data_offsets": [0, 8]}}, bytes(8)),
        "negative_shape": _safetensors({"w": {**tensor, "shape": [-2]}}, bytes(8)),
        "metadata_not_strings": _safetensors({"__metadata__": {"a": {"b": 1}}, "w": tensor}, bytes(8)),
        "pickle_named_safetensors": pickle.dumps({"w": 1}),
    }


def build_model_corpus(folder: Path, sentinel: Path) -> list[ModelFile]:
    """Write every malicious or malformed model file into ``folder``; none may ever create ``sentinel``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[ModelFile] = []

    def add(name: str, data: bytes, family: str) -> None:
        (folder / name).write_bytes(data)
        files.append(ModelFile(name, folder / name, family))

    for name, stream in payloads(sentinel).items():
        if not stream:
            continue
        add(f"{name}.pkl", stream, "pickle")
        add(f"{name}.pth", _torch_zip_with(stream), "pickle")
    scripted = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)  # TorchScript: code, not weights
    add("torchscript.pt", scripted.getvalue(), "pickle")
    add("not_a_checkpoint.bin", b"\x00" * 64, "pickle")
    add("truncated_zip.pt", _torch_zip_with(pickle.dumps({}))[:200], "pickle")
    for name, data in safetensors_cases().items():
        add(f"{name}.safetensors", data, "safetensors")
    return files
