"""The two kinds of augmentation: per-sample image ops and batch-level mixers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from honed.augment.ops.tensors import beta_draws, check_images, check_targets, on_device, rand


class BatchAugmentation(nn.Module):
    """An image augmentation applied to each sample with probability ``p``, with per-sample parameters.

    Subclasses implement :meth:`apply`, which augments every sample it is given; ``forward`` picks the
    samples and leaves the others untouched. ``p == 0`` returns the input unchanged.
    """

    def __init__(self, *, strength: float, p: float) -> None:
        super().__init__()
        self.strength = strength
        self.p = p

    select_subset = False  # True for ops too costly to run on unchosen samples (they sync with the host)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images(x)
        if self.p <= 0:
            return x
        g = on_device(generator, x.device)
        chosen = rand((x.shape[0],), g, x.device) < self.p
        if self.p >= 1:
            return self.apply(x, g)
        if not self.select_subset:
            # every sample augmented, the unchosen ones put back: no host synchronisation on the GPU
            return torch.where(chosen.view(-1, 1, 1, 1), self.apply(x, g), x)
        if not bool(chosen.any()):
            return x
        idx = chosen.nonzero().squeeze(1)
        out = x.clone()
        out[idx] = self.apply(x[idx], g)
        return out

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """Augment every sample of ``x`` with its own random parameters drawn from ``g``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"strength={self.strength:g}, p={self.p:g}"


class BatchMix(nn.Module):
    """A batch-level mixer (mixup, cutmix): mixes images with a shuffled partner and their labels alike.

    ``forward(x, y)`` takes float images ``[B, C, H, W]`` and one-hot or soft labels ``[B, K]`` and returns
    mixed ``(x, y)``. Each sample is mixed with probability ``p``; label mass per row is conserved.
    """

    def __init__(self, *, strength: float, p: float) -> None:
        super().__init__()
        self.strength = strength
        self.p = p

    def forward(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        check_images(x)
        check_targets(y, x)
        g = on_device(generator, x.device)
        batch = x.shape[0]
        chosen = rand((batch,), g, x.device) < self.p
        if batch < 2 or not bool(chosen.any()):
            return x, y
        perm = torch.randperm(batch, generator=g, device=x.device)
        lam = beta_draws(self.strength, batch, g, x.device)
        lam = torch.where(chosen, lam, torch.ones_like(lam))  # unchosen samples keep all of themselves
        return self.mix(x, y, perm, lam, g)

    def mix(
        self, x: Tensor, y: Tensor, perm: Tensor, lam: Tensor, g: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Mix sample i with sample ``perm[i]``, keeping about ``lam[i]`` of sample i."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"strength={self.strength:g}, p={self.p:g}"
