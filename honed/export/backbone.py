"""``export_backbone``: a run's trained feature extractor without its head, as a safetensors file that
``--weights`` accepts, so a model honed trained on one dataset is the pretrained start for another."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from honed.errors import HonedError
from honed.export.card import read_run_facts
from honed.models.factory import build_model
from honed.models.weights import head_keys
from honed.tracking.atomic import save_tensors


def export_backbone(run_dir: str | Path, out: str | Path, *, weights: str = "best.safetensors") -> tuple[Path, int]:
    """Write the run's weights minus its head to ``out``; returns the path and the number of tensors kept."""
    facts = read_run_facts(Path(run_dir))
    model = build_model(facts.config, facts.num_outputs, for_inference=True)  # only to know which keys are the head
    head = head_keys(model)
    if not head:
        raise HonedError(f"cannot tell the head of {facts.config.model.name} from its backbone: export the whole "
                         "run instead (`honed export RUN`)")
    tensors = load_file(str(facts.run_dir / weights))
    backbone = {key: value for key, value in tensors.items() if key not in head}
    out = Path(out)
    if out.suffix != ".safetensors":
        raise HonedError(f"--out {out} must end in .safetensors: it is a weights file, not a bundle")
    save_tensors(out, backbone, metadata={"format": "honed-backbone", "model": facts.config.model.name,
                                          "source_run": facts.run_dir.name, "dropped_head": ",".join(sorted(head))})
    return out, len(backbone)
