"""Standard augmentation policies from torchvision v2: RandAugment and TrivialAugmentWide, per sample.

torchvision's policies draw their operations from torch's global generator and apply one draw to whatever
they are given, so a batch would share one draw. Here each chosen sample gets its own draw: a seed per
sample comes from the op's generator, and each sample is transformed with the global CPU generator forked
and seeded from it (``torch.random.fork_rng``), so the same generator gives the same batch and the caller's
global random state is left as it was. The samples stay on their device and dtype.

Cost: one torchvision call per sample (measured on a shared 2-core CPU: RandAugment about 2 ms for a 32 px
image and 19 ms at 224 px, TrivialAugmentWide about 1 ms and 4 ms); on a GPU the calls are small kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from honed.augment.ops.base import BatchAugmentation
from honed.augment.ops.tensors import check_rgb

MAGNITUDE_BINS = 31  # torchvision's default: magnitudes 0..30, RandAugment's paper setting for ImageNet is 9


class TorchvisionPolicy(BatchAugmentation):
    """Apply a torchvision v2 policy to each sample with its own seeded draw; see the module docstring."""

    select_subset = True  # a call per sample: skip the samples not chosen
    name = ""

    def policy(self) -> nn.Module:
        """The torchvision transform applied to one sample ``[C, H, W]``."""
        raise NotImplementedError

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        check_rgb(x, self.name)
        policy = self.policy()
        seeds = torch.randint(0, 2**62, (x.shape[0],), generator=g, device=x.device).tolist()
        out = torch.empty_like(x)
        with torch.random.fork_rng(devices=[]):  # torchvision draws on the CPU generator only
            for i, seed in enumerate(seeds):
                torch.default_generator.manual_seed(seed)
                out[i] = policy(x[i])
        return out.clamp_(0, 1)


class RandAugment(TorchvisionPolicy):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` operations drawn per sample at magnitude ``strength``
    (0..30, torchvision's bins; 9 is the paper's ImageNet setting)."""

    name = "randaugment"
    num_ops = 2  # operations per sample, the paper's N for ImageNet

    def policy(self) -> nn.Module:
        return v2.RandAugment(num_ops=self.num_ops, magnitude=int(round(self.strength)),
                              num_magnitude_bins=MAGNITUDE_BINS)


class TrivialAugment(TorchvisionPolicy):
    """TrivialAugmentWide (Müller and Hutter 2021): one operation at a random magnitude per sample, no
    parameters to tune. Strength is unused."""

    name = "trivialaugment"

    def policy(self) -> nn.Module:
        return v2.TrivialAugmentWide(num_magnitude_bins=MAGNITUDE_BINS)
