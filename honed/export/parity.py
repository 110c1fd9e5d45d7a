"""Parity between a reference model and a candidate (fused, traced, exported) on the same inputs.

An export is only as good as its proof that it computes what the original computes; the report travels
with the exported file (``to_dict``) so the claim keeps its evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
import math
from typing import Any

import numpy as np
import torch

from honed.errors import HonedError

DEFAULT_ATOL = 1e-4  # float32 through another runtime: differences of 1e-6..1e-5 are normal
DEFAULT_RTOL = 1e-3  # relative to the reference value, as in torch.isclose


@dataclass(frozen=True)
class ParityReport:
    """How far a candidate's outputs are from the reference's, and whether that is within tolerance.

    ``passed`` uses ``torch.isclose`` semantics: ``|cand - ref| <= atol + rtol * |ref|`` everywhere (NaN
    matches NaN). ``max_rel_diff`` is ``max |cand - ref| / |ref|`` over elements with ``|ref| > atol``, for
    reading only. ``top1_agreement`` is the fraction of rows whose argmax agrees, for (batch, classes)
    outputs; None otherwise. Diffs are ``inf`` when shapes differ.
    """

    max_abs_diff: float
    max_rel_diff: float
    passed: bool
    atol: float
    rtol: float
    top1_agreement: float | None
    num_samples: int  # batch rows compared

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values for a bundle's metadata: non-finite floats become None."""
        return {key: _json_safe(value) for key, value in asdict(self).items()}


def check_parity(
    reference: Callable[[torch.Tensor], Any],
    candidate: Callable[[torch.Tensor], Any],
    inputs: torch.Tensor,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """Run both callables on ``inputs`` (no grad) and compare every output tensor.

    Outputs may be tensors, numpy arrays, or tuples/lists/dicts of them (as from onnxruntime); they are
    compared leaf by leaf in float64 on the CPU. The caller puts models in eval mode.
    """
    if atol < 0 or rtol < 0:
        raise HonedError(f"parity tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    with torch.no_grad():
        ref = _leaves(reference(inputs))
        cand = _leaves(candidate(inputs))
    num_samples = int(inputs.shape[0]) if inputs.dim() > 0 else 1
    if len(ref) != len(cand) or any(r.shape != c.shape for r, c in zip(ref, cand)):
        return ParityReport(math.inf, math.inf, False, atol, rtol, None, num_samples)
    diffs = [_diff(r, c, atol=atol, rtol=rtol) for r, c in zip(ref, cand)]
    return ParityReport(
        max_abs_diff=max((d[0] for d in diffs), default=0.0),
        max_rel_diff=max((d[1] for d in diffs), default=0.0),
        passed=all(d[2] for d in diffs),
        atol=atol,
        rtol=rtol,
        top1_agreement=_top1_agreement(ref[0], cand[0]) if ref else None,
        num_samples=num_samples,
    )


def combine_reports(reports: Sequence[ParityReport]) -> ParityReport:
    """One report for several parity checks (e.g. batch of 1 and of 2): worst diffs, all must pass."""
    if not reports:
        raise HonedError("combine_reports needs at least one report")
    first = reports[0]
    agreements = [(r.top1_agreement, r.num_samples) for r in reports if r.top1_agreement is not None]
    total = sum(n for _, n in agreements)
    return ParityReport(
        max_abs_diff=max(r.max_abs_diff for r in reports),
        max_rel_diff=max(r.max_rel_diff for r in reports),
        passed=all(r.passed for r in reports),
        atol=first.atol,
        rtol=first.rtol,
        top1_agreement=sum(a * n for a, n in agreements) / total if total else None,
        num_samples=sum(r.num_samples for r in reports),
    )


def _leaves(output: Any) -> list[torch.Tensor]:
    """Output tensors in a fixed order, as float64 CPU tensors."""
    if isinstance(output, torch.Tensor):
        return [output.detach().to("cpu", torch.float64)]
    if isinstance(output, np.ndarray):
        return [torch.from_numpy(np.asarray(output, dtype=np.float64))]
    if isinstance(output, Mapping):
        return [leaf for key in sorted(output) for leaf in _leaves(output[key])]
    if isinstance(output, (tuple, list)):
        return [leaf for item in output for leaf in _leaves(item)]
    raise HonedError(f"cannot compare model outputs of type {type(output).__name__}; return tensors or arrays")


def _diff(ref: torch.Tensor, cand: torch.Tensor, *, atol: float, rtol: float) -> tuple[float, float, bool]:
    """(max abs diff, max rel diff, within tolerance) for one pair of same-shape tensors."""
    if ref.numel() == 0:
        return 0.0, 0.0, True
    both_nan = ref.isnan() & cand.isnan()
    diff = torch.where(both_nan, torch.zeros_like(ref), (cand - ref).abs())
    significant = ref.abs() > atol
    rel = (diff[significant] / ref.abs()[significant]).max().item() if significant.any() else 0.0
    passed = bool(torch.isclose(cand, ref, rtol=rtol, atol=atol, equal_nan=True).all())
    return diff.max().item(), rel, passed


def _top1_agreement(ref: torch.Tensor, cand: torch.Tensor) -> float | None:
    """Fraction of rows with the same argmax, for classifier-shaped (batch, classes > 1) outputs."""
    if ref.dim() != 2 or ref.shape[1] < 2 or ref.shape[0] == 0:
        return None
    return (ref.argmax(dim=1) == cand.argmax(dim=1)).double().mean().item()


def _json_safe(value: Any) -> Any:
    """Non-finite floats become None, because JSON has no inf or NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
