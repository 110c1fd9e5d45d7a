"""TorchScript and ONNX export: files load back, match the eval-mode original, accept any batch size."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
import torchvision

from honed.errors import HonedError
from honed.export.formats import INPUT_NAME, export_onnx, export_torchscript
from honed.export.parity import ParityReport, check_parity, combine_reports
from honed.tracking.atomic import is_temp_name


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def _tiny_resnet() -> nn.Module:
    """A resnet18 in train mode with non-trivial BatchNorm stats: export must switch a copy to eval."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return model


def _no_temp_files(folder: Path) -> bool:
    return not any(is_temp_name(p.name) for p in folder.iterdir())


@pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning")  # the test's own torch.jit.load
def test_torchscript_export_matches_and_keeps_caller_model(tmp_path: Path) -> None:
    model = _tiny_resnet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "model.pt"

    report = export_torchscript(model, torch.randn(1, 3, 32, 32), path)

    assert report.passed and report.num_samples == 3  # a batch of 2 and a batch of 1
    assert report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert _no_temp_files(tmp_path)
    loaded = torch.jit.load(str(path))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), copy.deepcopy(model).eval()(x), rtol=1e-4, atol=1e-5)


def test_onnx_export_accepts_any_batch(tmp_path: Path) -> None:
    model = _tiny_resnet()
    path = tmp_path / "sub" / "model.onnx"

    report = export_onnx(model, torch.randn(2, 3, 32, 32), path)

    assert report.passed and report.num_samples == 3
    assert report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    assert model.training
    assert _no_temp_files(path.parent)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = copy.deepcopy(model).eval()
    for batch in (1, 2, 5):
        x = torch.randn(batch, 3, 32, 32)
        (out,) = session.run(None, {INPUT_NAME: x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(out, reference(x).numpy(), rtol=1e-3, atol=1e-4)


def test_onnx_fixed_batch_keeps_example_batch(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"

    report = export_onnx(_tiny_resnet(), torch.randn(1, 3, 32, 32), path, dynamic_batch=False)

    assert report.passed and report.num_samples == 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 32, 32]


def test_export_rejects_example_without_batch(tmp_path: Path) -> None:
    with pytest.raises(HonedError, match="batch dimension"):
        export_onnx(_tiny_resnet(), torch.randn(()), tmp_path / "m.onnx")


def test_parity_report_detects_mismatch_and_serialises() -> None:
    x = torch.randn(4, 10)

    same = check_parity(lambda t: t, lambda t: t.numpy(), x, atol=1e-6, rtol=1e-6)
    off = check_parity(lambda t: t, lambda t: t + 1e-3, x, atol=1e-5, rtol=1e-5)
    wrong_shape = check_parity(lambda t: t, lambda t: t[:2], x, atol=1e-5, rtol=1e-5)

    assert same.passed and same.max_abs_diff == 0.0 and same.top1_agreement == 1.0
    assert not off.passed and off.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert not wrong_shape.passed and wrong_shape.to_dict()["max_abs_diff"] is None
    combined = combine_reports([same, off])
    assert not combined.passed and combined.num_samples == 8
    assert set(same.to_dict()) == {f for f in ParityReport.__dataclass_fields__}
