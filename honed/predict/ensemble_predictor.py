"""``EnsemblePredictor``: several Predictors and a combination rule, used wherever one Predictor is.

Each member decodes and preprocesses the inputs its own way (its own input size, mean and std), predicts,
and the rule combines the outputs. ``predict``, ``predict_proba`` and the prediction table are the
Predictor's own, so ``honed predict`` and ``honed.load`` treat an ensemble like any model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from honed.combine.calibration import CALIBRATED_METHODS
from honed.combine.rules import CombinationRule, get_method
from honed.errors import HonedError
from honed.predict.predictor import Predictor


class EnsemblePredictor(Predictor):
    """Members (Predictors, each with its own preprocessing) combined by ``rule``."""

    def __init__(self, members: Sequence[Predictor], rule: CombinationRule, *, name: str = "ensemble",
                 temperature: float | None = None):
        # No Predictor.__init__: an ensemble has no single model; it sets what Predictor's methods read.
        if not members:
            raise HonedError("an ensemble needs at least one member")
        first = members[0]
        for member in members[1:]:
            if (member.task, member.classes, member.target_columns) != (first.task, first.classes,
                                                                        first.target_columns):
                raise HonedError("ensemble members predict different things (task or labels differ): "
                                 "combine models of the same data")
        get_method(rule.method, first.task)
        if rule.weights is not None and len(rule.weights) != len(members):
            raise HonedError(f"the rule has {len(rule.weights)} weights for {len(members)} members")
        self.members = list(members)
        self.rule = rule
        self.name = name
        self.config = first.config
        self.task = first.task
        self.classes = list(first.classes)
        self.target_columns = list(first.target_columns)
        self.device = first.device
        self.model = nn.ModuleList([m.model for m in members])
        # the ensemble's own temperature, fitted on its combined validation log-probabilities (soft votes only:
        # a hard vote's output is vote shares)
        self.temperature = temperature if rule.method in CALIBRATED_METHODS else None

    @property
    def tta(self) -> None:
        return None

    @tta.setter
    def tta(self, value) -> None:
        if value is not None:
            raise HonedError("test-time augmentation applies to single models: set it on the members "
                             "(ensemble.members[i].tta) or on their bundles")

    @property
    def image_size(self) -> int:
        return self.members[0].image_size

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [B,3,S,S] -> combined outputs; members of another size get the batch resized (approximate:
        ``predict_outputs`` decodes each member's inputs at its own size, exactly as it was trained)."""
        outputs = []
        for member in self.members:
            batch = images
            if images.shape[-1] != member.image_size:
                size = (member.image_size, member.image_size)
                batch = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True,
                                      align_corners=False).round().clamp(0, 255).to(torch.uint8)
            outputs.append(member.predict_batch(batch))
        return self.calibrate(self.rule.combine(np.stack(outputs)).astype(np.float32))

    def predict_outputs(self, images, *, batch_size: int = 64, workers: int = -1,
                        progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str]]:
        """Each member predicts every input at its own preprocessing; the rule combines. An input any member
        could not read is reported with that member's reason."""
        items = list(images)
        shown = _SharedProgress(progress, len(self.members))
        outputs, errors = [], [""] * len(items)
        for member in self.members:
            values, member_errors = member.predict_outputs(items, batch_size=batch_size, workers=workers,
                                                           progress=shown.advance)
            outputs.append(values)
            errors = [mine or theirs for mine, theirs in zip(errors, member_errors)]
        return self.calibrate(self.rule.combine(np.stack(outputs)).astype(np.float32)), errors


class _SharedProgress:
    """Members each advance through all inputs; the caller sees one pass."""

    def __init__(self, progress: Callable[[int], None] | None, members: int):
        self.progress, self.members, self.done, self.shown = progress, members, 0.0, 0

    def advance(self, n: int) -> None:
        if self.progress is None:
            return
        self.done += n / self.members
        step = int(self.done) - self.shown
        if step:
            self.shown += step
            self.progress(step)
