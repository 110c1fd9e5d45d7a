"""Inference on a CPU in passes of a few images: the same outputs as one pass, in as many calls as the rule says."""

from __future__ import annotations

import timm
import torch

from honed.models.cpu_passes import CPU_PASS_PIXELS, forward_in_passes, images_per_pass


def _counted(model: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return calls


def test_eval_mode_outputs_are_those_of_one_pass_in_passes_sized_by_the_pixels():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3).eval()
    x = torch.rand(10, 3, 160, 160)
    with torch.no_grad():
        whole = model(x)
        calls = _counted(model)
        passes = forward_in_passes(model, x)
    assert images_per_pass(x) == CPU_PASS_PIXELS // (160 * 160) == 6
    assert calls == [6, 4]
    torch.testing.assert_close(passes, whole, rtol=1e-4, atol=1e-5)


def test_small_images_train_mode_and_other_devices_take_one_pass():
    model = timm.create_model("test_resnet", num_classes=3)
    calls = _counted(model)
    with torch.no_grad():
        forward_in_passes(model.eval(), torch.rand(16, 3, 64, 64))  # 16 x 64 px fit in one pass
        forward_in_passes(model.train(), torch.rand(10, 3, 160, 160))  # batch norm must see the whole batch
    assert calls == [16, 10]
    assert images_per_pass(torch.empty(8, 3, 288, 288, device="meta")) == 8
    assert images_per_pass(torch.empty(8, 3, 288, 288)) == 2
