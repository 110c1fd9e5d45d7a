"""``export_bundle``: a run, or an ensemble of runs, packed as a bundle that predicts anywhere honed is
installed (``honed.export.run_bundle`` and ``honed.export.ensemble_bundle`` write each kind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from honed.artifacts.run_folder import BEST_WEIGHTS, RunFolder
from honed.errors import HonedError
from honed.export.ensemble_bundle import export_ensemble_bundle
from honed.export.run_bundle import BundleReport, export_run_bundle

__all__ = ["BundleReport", "export_bundle"]


def export_bundle(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  formats: Sequence[str] = ("bundle",), fuse: bool = True, archive: bool = False, tta: Any = None,
                  weights: str = BEST_WEIGHTS) -> BundleReport:
    """Pack the run at ``run_dir`` as a bundle at ``out_dir`` (a new folder, or ``out_dir``.zip with ``archive``);
    an ensemble run as an ensemble bundle. See ``export_run_bundle`` for ``formats``, ``fuse``, ``tta`` and
    ``weights``."""
    if RunFolder(Path(run_dir)).is_ensemble:
        if tta is not None:
            raise HonedError("test-time augmentation is set per model: export an ensemble without --tta")
        return export_ensemble_bundle(run_dir, out_dir, formats=formats, fuse=fuse, archive=archive)
    return export_run_bundle(run_dir, out_dir, formats=formats, fuse=fuse, archive=archive, tta=tta, weights=weights)
