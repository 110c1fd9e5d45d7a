"""The advisor's rule: from the measurements to a strategy, with the reasons in words.

    no pretrained weights                                  -> scratch
    features transfer (gain >= GAIN_MIN), < PROBE_MAX/class -> probe
    features transfer, >= FULL_MIN per class               -> full     (not measured: see below)
    features miss the task, >= SCRATCH_MIN per class       -> scratch  (not measured: see below)
    otherwise                                              -> partial

Thresholds come from the transfer benchmark (``benchmarks/bench_transfer.py``); the figures quoted are its
test accuracies in ``benchmarks/results_transfer.md``. It measured one backbone (EfficientNet-Lite0 with
ImageNet weights) in CPU-sized runs: 3-6 epochs, 20 or 100 training images per class, 100-500 test images
(so 1-2 points are noise). Thresholds beyond that range are marked: there they are the usual practice,
not a measurement.
"""

from __future__ import annotations

from honed.advise.measure import Measurements

# The pretrained features must beat random ones by this much in the quick probe to count as transferring.
# Measured gains (results_transfer.md, second table): CIFAR 0.35, shapes 0.56-0.62, where the frozen features
# served (cifar-20: probe 61.8, best 63.6; shapes-20: probe 94.0 = best); and three low ones: position -0.02
# and 0.03 (where a disk sits: the features miss it, position-100: probe 72, partial 91) and plain shapes
# 0.04 (random features separate them too: 0.955). 0.15 lies between, nearer the low side: pretraining stays
# the default unless it clearly adds nothing.
GAIN_MIN = 0.15
# Below this many training images per class (and features that transfer), fit a probe. At 20 per class the
# frozen-feature strategies led (cifar-20: head 63.6, probe 61.8, full 59.8, partial 57.0; shapes-20: probe
# 94.0 = best); at 100 per class fine-tuning the last stages did (cifar-100: partial 71.8, probe 71.0, full
# 69.6; shapes-100: partial 98.5, probe 97.5). 50 is the geometric middle of the two measured sizes.
PROBE_MAX_PER_CLASS = 50
# From this many per class, fine-tune everything. NOT measured (fine-tuning 1,000 images per class is
# CPU-hours here): at 100 per class full never beat partial (cifar-100 69.6 vs 71.8, shapes-100 90.5 vs
# 98.5, position-100 69 vs 91). 1,000 per class is the usual practice.
FULL_MIN_PER_CLASS = 1000
# From this many per class, features that add nothing are learned from scratch. NOT measured: in 3-6 epochs
# scratch stayed 41-74 points behind the best pretrained strategy wherever one learned the task (20-100 per
# class), at chance on the position task the features miss, where partial fine-tuning reached 91.
SCRATCH_MIN_PER_CLASS = 1000
DEFAULT_STRATEGY = "partial"  # the measured winner from 100 per class, whether the features transfer or not


def decide(m: Measurements) -> tuple[str, list[str]]:
    """The strategy for these measurements, and why."""
    n = m.per_class_min
    size = f"{n} training images per class (rarest class)" if m.task == "classify" else f"{n} training images"
    if not m.pretrained:
        return "scratch", ["no pretrained weights were given (--pretrained or --weights): nothing to transfer"]
    score = "accuracy" if m.task == "classify" else "R^2"
    probe = (f"a quick linear probe on {m.sample} images scores {m.probe_pretrained:.2f} {score} with the "
             f"pretrained features and {m.probe_random:.2f} with random ones (gain {m.gain:+.2f})")
    if m.source_distance is not None and m.source_baseline:
        probe += (f"; the sample's features lie {m.source_distance / m.source_baseline:.1f}x as far from the source "
                  f"run's training data as a sample of that data from the rest of it (Fréchet distance "
                  f"{m.source_distance:.3g} vs {m.source_baseline:.3g})")
    if m.gain >= GAIN_MIN:
        reasons = [probe + f": at least {GAIN_MIN:.2f}, the pretrained features transfer"]
        if n < PROBE_MAX_PER_CLASS:
            return "probe", reasons + [f"{size}: below {PROBE_MAX_PER_CLASS}, fine-tuning does not pay; a linear "
                                       "head on the frozen features is as good and takes seconds"]
        if n >= FULL_MIN_PER_CLASS:
            return "full", reasons + [f"{size}: at least {FULL_MIN_PER_CLASS}, enough to fine-tune every layer"]
        return DEFAULT_STRATEGY, reasons + [
            f"{size}: from {PROBE_MAX_PER_CLASS} up to {FULL_MIN_PER_CLASS}, fine-tune the last stages and keep "
            "the early, generic ones"]
    reasons = [probe + f": below {GAIN_MIN:.2f}, the pretrained features add little over random ones (both "
               "separate this data, or neither does)"]
    if n >= SCRATCH_MIN_PER_CLASS:
        return "scratch", reasons + [f"{size}: enough (>= {SCRATCH_MIN_PER_CLASS}) to learn features from scratch"]
    hint = " (with this little data nothing may learn it: add images)" if n < PROBE_MAX_PER_CLASS else ""
    return DEFAULT_STRATEGY, reasons + [
        f"{size}: too few for scratch (< {SCRATCH_MIN_PER_CLASS}); fine-tune the last stages, so the features "
        f"adapt to this data{hint}"]
