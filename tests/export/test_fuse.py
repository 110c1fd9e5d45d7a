"""BatchNorm folding: same outputs as the eval-mode original, no foldable BatchNorm left, original untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import timm
import torch
from torch import nn
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from honed.export.fuse import FoldedNormAct, FusionResult, fuse_batchnorm, iter_conv_norm_edges

BatchNorm = nn.modules.batchnorm._BatchNorm


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def _with_real_stats(model: nn.Module, size: int) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running stats, so folding errors show.

    Random gamma/beta (timm zero-inits some gammas, which would hide a wrong fold); running stats are the
    exact average of a few train-mode batches (momentum None) of shifted, scaled noise.
    """
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, BatchNorm):
            with torch.no_grad():
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.2)
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, size, size, generator=generator) * 2 + 0.5)
    return model.eval()


def _count_norms(model: nn.Module) -> int:
    return sum(isinstance(m, BatchNorm) for m in model.modules())


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "tv_resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 32),
    "tv_mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), 32),
    "timm_resnet10t": (lambda: timm.create_model("resnet10t", num_classes=10), 32),
    "timm_tf_efficientnet_lite0": (lambda: timm.create_model("tf_efficientnet_lite0", num_classes=10), 32),
    "timm_efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", num_classes=10), 32),
    "timm_mobilenetv3_small_050": (lambda: timm.create_model("mobilenetv3_small_050", num_classes=10), 32),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_model_matches_original(name: str) -> None:
    build, size = MODELS[name]
    torch.manual_seed(0)
    model = _with_real_stats(build(), size)
    norms_before = _count_norms(model)

    result = fuse_batchnorm(model)

    assert isinstance(result, FusionResult)
    assert result.fused_pairs == len(result.pairs) == norms_before > 0  # every BN here follows a conv
    assert _count_norms(result.model) == 0
    assert not list(iter_conv_norm_edges(result.model))
    assert not result.model.training
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected, actual = model(x), result.model(x)
    scale = expected.abs().max().item()
    assert scale > 1e-2  # outputs large enough for the tolerances below to mean something
    # float32: deep nets accumulate rounding (~1e-5 of the output scale even unfused), so relative to scale
    assert (actual - expected).abs().max().item() <= 1e-5 + 1e-4 * scale


@pytest.mark.parametrize("name", ["tv_resnet18", "timm_tf_efficientnet_lite0"])
def test_fold_is_exact_in_float64(name: str) -> None:
    build, size = MODELS[name]
    torch.manual_seed(0)
    model = _with_real_stats(build(), size).double()

    fused = fuse_batchnorm(model).model

    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_timm_norm_act_keeps_its_activation() -> None:
    model = _with_real_stats(timm.create_model("mobilenetv3_small_050", num_classes=10), 32)
    act = type(model.bn1.act)

    fused = fuse_batchnorm(model).model

    assert isinstance(fused.bn1, FoldedNormAct)
    assert isinstance(fused.bn1.act, act) and not isinstance(fused.bn1.act, nn.Identity)


def test_fusion_leaves_original_untouched() -> None:
    model = _with_real_stats(torchvision.models.resnet18(num_classes=10), 32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    fuse_batchnorm(model)

    assert model.training
    assert isinstance(model.bn1, nn.BatchNorm2d)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _Branching(nn.Module):
    """A conv whose output feeds its BN and a skip path: folding would corrupt the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


def test_conv_with_second_consumer_is_not_folded() -> None:
    model = _with_real_stats(_Branching(), 8)

    result = fuse_batchnorm(model)

    assert result.pairs == (("conv2", "bn2"),)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-5)


class _DataDependent(nn.Module):
    """Data-dependent control flow: fx cannot trace it, nor anything that calls it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


class _Untraceable(nn.Module):
    """Neither the model nor its Sequential traces: only the Sequential's order can be trusted."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), _DataDependent())
        self.conv = nn.Conv2d(4, 4, 1)
        self.gate = _DataDependent()
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.gate(self.conv(self.stem(x))))  # conv and bn are siblings but not adjacent


def test_untraceable_model_falls_back_to_sequential_structure() -> None:
    model = _with_real_stats(_Untraceable(), 8)

    result = fuse_batchnorm(model)

    assert result.pairs == (("stem.0", "stem.1"),)  # conv/bn siblings are not trusted without a graph
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-5)


def _random_stats(norm: nn.Module) -> nn.Module:
    """Set a norm's affine parameters and running stats to random positive values, in place."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).copy_(torch.rand(getattr(norm, name).shape) + 0.5)
    return norm


def test_frozen_norm_folds_and_weight_standardized_conv_does_not() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        _random_stats(FrozenBatchNorm2d(4)),
        nn.ReLU(),
        timm.layers.StdConv2d(4, 4, 3),  # normalises its own weights: a folded scale would be undone
        _random_stats(nn.BatchNorm2d(4)),
    ).eval()

    result = fuse_batchnorm(model)

    assert result.pairs == (("0", "1"),)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-5)


def test_head_batchnorm_folds_into_the_linear_after_it() -> None:
    """--head-bn's BatchNorm1d -> Dropout -> Linear becomes one Linear; outputs unchanged."""
    from honed.models.factory import add_head_bn

    model = timm.create_model("resnet10t", num_classes=10)
    head = add_head_bn(model, drop_rate=0.3)
    model = _with_real_stats(model, 32)  # head BN1d gets random gamma/beta and running stats too
    assert head[0].running_var.std() > 0

    result = fuse_batchnorm(model)

    assert ("fc.2", "fc.0") in result.pairs and result.fused_pairs == len(result.pairs)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in result.model.modules())
    assert isinstance(result.model.fc[0], nn.Identity) and isinstance(result.model.fc[2], nn.Linear)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_after_a_linear_is_not_folded_into_it() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    assert fuse_batchnorm(model).pairs == ()
