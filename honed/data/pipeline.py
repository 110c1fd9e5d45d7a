"""Train and evaluation batch preprocessing, side by side.

``eval_batch`` is the deterministic part alone (to float, normalize). ``train_batch`` is the same with the
augmentation policy in between: no random op can reach evaluation, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from honed.data.preprocess import normalize, to_unit_float


@dataclass
class BatchPipeline:
    mean: list[float]
    std: list[float]
    augmenter: torch.nn.Module | None = None  # a built honed.augment policy; None: no augmentation
    channels_last: bool = False  # memory format for convolutions on CUDA
    num_classes: int = 0  # for one-hot labels when the policy mixes (mixup / cutmix)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] on the device -> normalized float input."""
        return self._finish(normalize(to_unit_float(images), self.mean, self.std))

    def train_batch(self, images: torch.Tensor, targets: torch.Tensor,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, normalized input and its targets (soft labels when the policy mixes images)."""
        x = to_unit_float(images)
        if self.augmenter is not None:
            x = self.augmenter(x, generator)
            if self.augmenter.has_mix:
                soft = F.one_hot(targets, self.num_classes).float()
                x, targets = self.augmenter.mix(x, soft, generator)
        return self._finish(normalize(x, self.mean, self.std)), targets

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
