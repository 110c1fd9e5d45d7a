"""A gbm probe run as one ONNX graph: the frozen network up to its pre-logit features, then the stored trees.

The network part is exported as every honed ONNX file is (``honed.export.formats.export_onnx``), from a copy
whose last linear layer is an identity, so it outputs exactly the features the trees were fitted on. The
trees' graph (``gbm_head.onnx``, already ONNX) is joined onto it with ``onnx.compose``; a classifier's
probabilities become log-probabilities (a softmax gives them back), as ``GbmProbeModel`` returns them. The
caller checks the result against ``GbmProbeModel`` (torch network + trees) on real images before it ships.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

from honed.artifacts.bundle_meta import INPUT_NAME
from honed.errors import HonedError
from honed.export.formats import export_onnx
from honed.export.parity import ParityReport
from honed.models.features import last_linear
from honed.models.heads.gbm import MIN_LOG_PROB, GbmHead, GbmProbeModel
from honed.models.heads.tree_onnx import INPUT as TREES_INPUT
from honed.tracking.atomic import atomic_path

FEATURES = "features"
PREFIX = "gbm_"


def feature_network(network: nn.Module) -> nn.Module:
    """A copy of ``network`` (eval mode) whose output is its last linear layer's input."""
    features = copy.deepcopy(network).eval()
    layer = last_linear(features)
    parent_name, _, child = next(name for name, m in features.named_modules() if m is layer).rpartition(".")
    setattr(features.get_submodule(parent_name) if parent_name else features, child, nn.Identity())
    return features


def export_gbm_onnx(network: nn.Module, head_bytes: bytes, example: torch.Tensor, path: Path) -> ParityReport:
    """Write network + trees as one ONNX graph at ``path``; the report is the network part's own parity
    (file vs. torch features). The whole graph's check against ``GbmProbeModel`` is the caller's."""
    import onnx

    head = GbmHead.from_bytes(head_bytes)
    with tempfile.TemporaryDirectory(prefix="honed-gbm-onnx-") as tmp:
        part = Path(tmp) / "features.onnx"
        report = export_onnx(feature_network(network), example, part)
        net = onnx.load(str(part))
    graph = _joined(net, onnx.load_from_string(head_bytes), classify=head.task == "classify",
                    outputs=head.outputs)
    onnx.checker.check_model(graph)
    with atomic_path(Path(path)) as tmp_path:
        Path(tmp_path).write_bytes(graph.SerializeToString())
    return report


def gbm_reference(network: nn.Module, head_bytes: bytes) -> nn.Module:
    """The torch network with the stored trees: what the joined graph must reproduce."""
    return GbmProbeModel(network, GbmHead.from_bytes(head_bytes)).eval()


def _joined(net, head, *, classify: bool, outputs: int):
    """``net`` (input -> output) and ``head`` (features -> output) as input -> output."""
    import onnx
    from onnx import TensorProto, helper

    out = net.graph.output[0].name
    for node in net.graph.node:  # the network's output becomes the internal tensor "features"
        node.output[:] = [FEATURES if name == out else name for name in node.output]
        node.input[:] = [FEATURES if name == out else name for name in node.input]
    net.graph.output[0].name = FEATURES
    head = onnx.compose.add_prefix(head, PREFIX)
    head.ir_version = net.ir_version
    merged = onnx.compose.merge_models(net, head, io_map=[(FEATURES, PREFIX + TREES_INPUT)])
    final = merged.graph.output[0].name
    if classify:
        merged.graph.initializer.append(helper.make_tensor(PREFIX + "floor", TensorProto.FLOAT, [], [MIN_LOG_PROB]))
        merged.graph.node.extend([helper.make_node("Max", [final, PREFIX + "floor"], [PREFIX + "clipped"]),
                                  helper.make_node("Log", [PREFIX + "clipped"], ["output"])])
    else:
        merged.graph.node.append(helper.make_node("Identity", [final], ["output"]))
    del merged.graph.output[:]
    merged.graph.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", outputs]))
    if [i.name for i in merged.graph.input] != [INPUT_NAME]:
        raise HonedError(f"the joined gbm graph takes {[i.name for i in merged.graph.input]}, not [{INPUT_NAME!r}]: "
                         "export without --format onnx and report this")
    return merged
