"""The advisor's rule: from the measurements to a strategy, with the reasons in words.

    no pretrained weights                          -> scratch
    gain < GAIN_MIN (the features miss the task)   -> full; scratch from SCRATCH_MIN_PER_CLASS per class
    fewer than PROBE_MAX_PER_CLASS per class       -> probe
    up to FULL_MIN_PER_CLASS per class             -> partial
    more                                           -> full

Thresholds come from the transfer benchmark (``benchmarks/bench_transfer.py``; the figures quoted are test
accuracies from ``benchmarks/results_transfer.md``). It measured one backbone (EfficientNet-Lite0 with
ImageNet weights) in CPU-sized runs (3-6 epochs, at most 100 training images per class), so thresholds
beyond that range are marked as the usual practice rather than measured: read them as sound defaults.
"""

from __future__ import annotations

from honed.advise.measure import Measurements

# The pretrained features must beat random ones by this much in the quick probe to count as transferring.
# Measured gains: position-100 0.02 (where a disk is: pooled features miss it; the probe was worst of the
# pretrained strategies), plain-shapes-100 0.19, CIFAR 0.35, shapes 0.56-0.59 (frozen features at or within
# ~1 point of the best there). 0.10 sits between the task the features miss and the lowest one they serve.
GAIN_MIN = 0.10
# Below this many training images per class, fit a probe: at 20 per class the frozen-feature strategies were
# the best (cifar-20: head 63.6, probe 61.8; partial 57.0, full 59.8; shapes-20: probe 94.0 = best), at 100
# per class fine-tuning the last stages was (cifar-100: partial 71.8, probe 71.0; shapes-100: partial 98.5,
# probe 97.5). 50 is the geometric middle of the two measured sizes.
PROBE_MAX_PER_CLASS = 50
# From this many per class, fine-tune everything. NOT measured here (fine-tuning 1,000 images per class is
# CPU-hours): at 100 per class full lost to partial (cifar-100, shapes-100); 1,000 is the usual practice.
FULL_MIN_PER_CLASS = 1000
# From this many per class, features that miss the task are learned from scratch. NOT measured: scratch was
# 25 to 60 points behind every pretrained strategy at 20-100 per class in 3-6 epochs (all five datasets).
SCRATCH_MIN_PER_CLASS = 1000
MID_STRATEGY = "partial"  # between PROBE_MAX and FULL_MIN per class
WEAK_SMALL_STRATEGY = "full"  # features that miss the task, too little data for scratch: adapt them all


def decide(m: Measurements) -> tuple[str, list[str]]:
    """The strategy for these measurements, and why."""
    n = m.per_class_min
    size = f"{n} training images per class (rarest class)" if m.task == "classify" else f"{n} training images"
    if not m.pretrained:
        return "scratch", ["no pretrained weights were given (--pretrained or --weights): nothing to transfer"]
    score = "accuracy" if m.task == "classify" else "R^2"
    probe = (f"a quick linear probe on {m.sample} images scores {m.probe_pretrained:.2f} {score} with the "
             f"pretrained features and {m.probe_random:.2f} with random ones (gain {m.gain:+.2f})")
    if m.gain < GAIN_MIN:
        reasons = [probe + f": below {GAIN_MIN:.2f}, the pretrained features miss what separates this data"]
        if n >= SCRATCH_MIN_PER_CLASS:
            return "scratch", reasons + [f"{size}: enough (>= {SCRATCH_MIN_PER_CLASS}) to learn features from scratch"]
        return WEAK_SMALL_STRATEGY, reasons + [
            f"{size}: too few for scratch (< {SCRATCH_MIN_PER_CLASS}); fine-tune every layer from the pretrained "
            "weights, so the features can learn what they miss"]
    reasons = [probe + f": at least {GAIN_MIN:.2f}, the pretrained features transfer"]
    if n < PROBE_MAX_PER_CLASS:
        return "probe", reasons + [f"{size}: below {PROBE_MAX_PER_CLASS}, fine-tuning does not pay; a linear head "
                                   "on frozen features is as good and takes seconds"]
    if n < FULL_MIN_PER_CLASS:
        return MID_STRATEGY, reasons + [f"{size}: from {PROBE_MAX_PER_CLASS} up to {FULL_MIN_PER_CLASS}, fine-tune "
                                        "the last stages and keep the early, generic ones"]
    return "full", reasons + [f"{size}: at least {FULL_MIN_PER_CLASS}, enough to fine-tune every layer"]
