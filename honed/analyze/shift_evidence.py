"""The evidence a person checks at a glance: the worst validation images that a shift explains, and the same
images transformed back, with the model's prediction on each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from honed.analyze.shift import ShiftScore, inverse_of
from honed.analyze.sensitivity import BatchPredictor, to_uint8


@dataclass
class ShiftEvidence:
    """The top shift's examples: paths, true labels, predictions before and after transforming back."""

    shift: str
    paths: list[str]
    targets: list[str]
    before: list[str]
    after: list[str]
    images: torch.Tensor | None = field(default=None, repr=False)  # uint8 [2K, 3, S, S]: originals, then back

    def to_dict(self) -> dict:
        return {"shift": self.shift, "paths": self.paths, "targets": self.targets, "before": self.before,
                "after": self.after, "recovered": int(sum(a == t for a, t in zip(self.after, self.targets)))}

    def titles(self) -> list[str]:
        top = [f"val: true {t}\npred {b}" for t, b in zip(self.targets, self.before)]
        return top + [f"transformed back\npred {a}" for a in self.after]


def shift_evidence(model: BatchPredictor, shift: ShiftScore, stats: dict, images: torch.Tensor,
                   targets: np.ndarray, paths: Sequence[str], classes: Sequence[str]) -> ShiftEvidence | None:
    """Evidence for ``shift`` from the validation ``images`` it was measured on (classification only)."""
    if not shift.examples or not classes:
        return None
    index = torch.as_tensor(shift.examples)
    chosen = images[index]
    back = to_uint8(inverse_of(shift, stats)(chosen.float() / 255))
    name = lambda outputs: [classes[int(i)] for i in np.asarray(outputs).argmax(1)]  # noqa: E731
    return ShiftEvidence(shift.name, [paths[i] for i in shift.examples],
                         [classes[int(targets[i])] for i in shift.examples],
                         name(model.predict_batch(chosen)), name(model.predict_batch(back)),
                         torch.cat([chosen, back]))


def save_gallery(evidence: ShiftEvidence, path: Path) -> Path:
    """Originals on the first row(s), the same images transformed back below them."""
    from honed.analyze import plots

    return plots.gallery(evidence.images, evidence.titles(), path, columns=len(evidence.paths))
