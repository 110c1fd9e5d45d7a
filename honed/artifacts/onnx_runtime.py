"""A bundle's ONNX graph run by ONNX Runtime, called like a torch model."""

from __future__ import annotations

import torch
from torch import nn

from honed.artifacts.bundle_files import ONNX_FILE
from honed.artifacts.bundle_meta import INPUT_NAME
from honed.errors import HonedError


class OnnxModel(nn.Module):
    """An ONNX graph run by ONNX Runtime on the CPU, called like the torch model: float batch in, tensor out.

    ONNX is a data format (a graph of standard operators), so running a bundle's graph executes no code
    from it. The graph is read from bytes: external data files it might reference are never opened.
    """

    def __init__(self, model_bytes: bytes):
        super().__init__()
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad graphs
            message = f"{ONNX_FILE} cannot be loaded by ONNX Runtime ({error}): export the bundle again"
            raise HonedError(message) from None
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT_NAME]:
            raise HonedError(f"{ONNX_FILE} takes inputs {names}, expected [{INPUT_NAME!r}]: not a honed export")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (out, *_) = self.session.run(None, {INPUT_NAME: x.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(out).to(x.device)
