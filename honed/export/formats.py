"""Write a model as TorchScript or ONNX, then load the written file back and prove parity with the original.

Both exporters work on an eval-mode copy, so the caller's model keeps its mode and state. Files are
written atomically (temporary file in the target folder, then ``os.replace``): a crash never leaves
half a model behind. The parity check runs on a batch of 2 and a batch of 1 built from the example, so a
batch size baked into the export is caught.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): the newer dynamo exporter needs the
``onnxscript`` package, which honed does not depend on, and the result should not change with whether an
optional package happens to be installed. The deprecation warnings of the paths honed chose are silenced.

Each format is registered by name in ``EXPORT_FORMATS`` (``--format onnx``): its file name inside a bundle,
its exporter, and how to load the written file back for the bundle's parity check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
import contextlib
import copy
from dataclasses import dataclass
import inspect
import os
from pathlib import Path
from typing import Any
import warnings

import numpy as np
import torch
from torch import nn

from honed.artifacts.bundle_files import ONNX_FILE
from honed.artifacts.bundle_meta import INPUT_NAME, TORCHSCRIPT_FILE
from honed.errors import HonedError
from honed.export.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, check_parity, combine_reports
from honed.registry import Registry
from honed.tracking.atomic import atomic_path



def export_torchscript(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """Trace ``model`` (eval mode) on ``example``, save it to ``path``, reload it and check parity.

    Tracing records the operations run on ``example``: data-dependent branches are frozen, which the
    parity check on other batch sizes helps to catch. Check ``report.passed`` before shipping the file.
    """
    _check_example(example)
    reference = eval_copy(model)
    with _quiet_deprecations(), torch.no_grad():
        traced = torch.jit.trace(reference, example, check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(path), map_location=example.device)
    return _parity(reference, loaded, _parity_batches(example, dynamic_batch=True), atol=atol, rtol=rtol)


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    dynamic_batch: bool = True,
    opset: int = 17,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """Export ``model`` (eval mode) to ONNX at ``path`` and check parity with onnxruntime on the CPU.

    With ``dynamic_batch`` the graph's batch dimension is symbolic, so one file serves any batch size;
    parity is then checked on a batch of 2 and of 1. The graph input is named ``INPUT_NAME``.
    """
    _check_example(example)
    reference = eval_copy(model)
    with torch.no_grad():
        output_names = _output_names(reference(example))
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *output_names)} if dynamic_batch else None
    with atomic_path(path) as tmp:
        _torch_onnx_export(reference, example, tmp, output_names=output_names, dynamic_axes=axes, opset=opset)
        _check_onnx_file(tmp)
    session = _ort_session(Path(path))
    batches = _parity_batches(example, dynamic_batch=dynamic_batch)
    return _parity(reference, session, batches, atol=atol, rtol=rtol)


def eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode: exporting must never switch or touch the caller's model."""
    return copy.deepcopy(model).eval()


def _check_example(example: torch.Tensor) -> None:
    """Exports need a real batched tensor to trace with."""
    if not isinstance(example, torch.Tensor) or example.dim() < 1 or example.shape[0] < 1:
        raise HonedError("export needs an example input tensor with a batch dimension, e.g. (1, 3, 224, 224)")


def _parity_batches(example: torch.Tensor, *, dynamic_batch: bool) -> list[torch.Tensor]:
    """A batch of 2 and a batch of 1 from the example (a mirrored copy fills a 2nd row); just the example
    when the batch size is fixed."""
    if not dynamic_batch:
        return [example]
    pair = example[:2] if example.shape[0] >= 2 else torch.cat([example, example.flip(-1)])
    return [pair, example[:1]]


def _parity(
    reference: nn.Module,
    candidate: Callable[[torch.Tensor], Any],
    batches: list[torch.Tensor],
    *,
    atol: float,
    rtol: float,
) -> ParityReport:
    """Parity over several batches, combined into one report."""
    return combine_reports([check_parity(reference, candidate, b, atol=atol, rtol=rtol) for b in batches])


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """Silence PyTorch's deprecation notices for TorchScript and the TorchScript-based ONNX exporter only."""
    with warnings.catch_warnings():
        for message in ("torch.jit", "legacy TorchScript-based ONNX", "The feature will be removed"):
            warnings.filterwarnings("ignore", message=f".*{message}", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=f".*{message}", category=FutureWarning)
        yield


def _output_names(outputs: Any) -> list[str]:
    """ONNX output names: ``output`` for one tensor, ``output_0``, ``output_1``... for several."""
    count = _count_tensors(outputs)
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _count_tensors(outputs: Any) -> int:
    if isinstance(outputs, torch.Tensor):
        return 1
    if isinstance(outputs, Mapping):
        return sum(_count_tensors(value) for value in outputs.values())
    if isinstance(outputs, (tuple, list)):
        return sum(_count_tensors(item) for item in outputs)
    return 0


def _torch_onnx_export(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    opset: int,
) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter, its errors turned into HonedError."""
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": output_names,
        "dynamic_axes": dynamic_axes,
        "opset_version": opset,
        "do_constant_folding": True,
    }
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5; older ones are legacy only
        kwargs["dynamo"] = False
    try:
        with _quiet_deprecations(), torch.no_grad():
            torch.onnx.export(model, (example,), str(path), **kwargs)
    except torch.onnx.errors.OnnxExporterError as error:
        message = f"ONNX export failed at opset {opset}: {error}. Try another opset, or TorchScript"
        raise HonedError(message) from error


def _check_onnx_file(path: Path) -> None:
    """Validate the written graph before it replaces anything."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        raise HonedError(f"the exported ONNX graph is invalid: {error}") from error


def _ort_session(path: Path) -> Callable[[torch.Tensor], list[np.ndarray]]:
    """A callable running the ONNX file with onnxruntime on the CPU, taking and returning arrays."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs: torch.Tensor) -> list[np.ndarray]:
        return session.run(None, {INPUT_NAME: inputs.detach().cpu().numpy()})

    return run


def _load_torchscript(path: Path) -> Callable[[torch.Tensor], Any]:
    """A TorchScript file this export just wrote, on the CPU (bundles are never loaded this way)."""
    with _quiet_deprecations():
        return torch.jit.load(str(path), map_location="cpu")


@dataclass(frozen=True)
class ExportFormat:
    """A file format a bundle can add beside its weights."""

    name: str
    file: str  # the file's name inside a bundle
    export: Callable[[nn.Module, torch.Tensor, Path], ParityReport]  # (model, example, path): writes, checks
    load: Callable[[Path], Callable[[torch.Tensor], Any]]  # the written file as a callable, for parity checks


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")  # besides "bundle", which is always written
EXPORT_FORMATS.register("onnx", ExportFormat("onnx", ONNX_FILE, export_onnx, _ort_session))
EXPORT_FORMATS.register("torchscript", ExportFormat("torchscript", TORCHSCRIPT_FILE, export_torchscript,
                                                    _load_torchscript))
