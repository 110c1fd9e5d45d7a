"""After a probe: the head trained on augmented images, started from the probe's weights.

A probe fits its head once, on one clean view of each training image: it cannot learn from augmentation,
so the improvement rounds skip it. When the budget leaves room (a probe is cheap, so it usually does), the
next step a practitioner takes on a small photo set is the PyTorch transfer-learning tutorial's: the
backbone frozen, the head trained for some epochs on random resized crops and flips. Seen on 244 photos of
ants and bees: the workflow chose the probe within one standard error of the head, finished in a fifth of its
5-minute budget, and scored 1.3 points under exactly that hand-written head. Started from the probe's
weights, the head begins where the probe ended; like any run it is kept only when it beats the best on
validation, and the ensemble step can then vote the two.
"""

from __future__ import annotations

from honed.analyze.image_sizes import SMALL_SIDE
from honed.artifacts.run_folder import BEST_WEIGHTS
from honed.workflow import pace
from honed.workflow.context import Context
from honed.workflow.plan import HEAD_EPOCHS as EPOCHS
from honed.workflow.plan import HEAD_MIN_EPOCHS as MIN_EPOCHS
from honed.workflow.plan import HEAD_SHARE as SHARE
from honed.workflow.plan import AUGMENTED_HEAD, epochs_that_fit

STEP = "augmented-head"
PHOTO_POLICY = "hflip,resized_crop:0.35"  # the ImageNet recipe (area >= 0.35 for small data sets)
SMALL_POLICY = "hflip,crop:0.125"  # images of SMALL_SIDE px or less: the CIFAR recipe, which loses no pixels


def policy_for(image_size: int) -> str:
    return SMALL_POLICY if image_size <= SMALL_SIDE else PHOTO_POLICY


def head_epochs(ctx: Context) -> int:
    """Epochs of the augmented head that fit SHARE of the time left (0 without a plan to price them)."""
    if ctx.plan is None:
        return 0
    seconds = SHARE * pace.time_left(ctx)
    return min(EPOCHS, epochs_that_fit(seconds, ctx.plan.costs, ctx.plan.data, AUGMENTED_HEAD))


def augmented_head(ctx: Context) -> None:
    """The step: only after a probe baseline, and only when MIN_EPOCHS fit."""
    from honed.workflow.steps import base_config, train_step

    if ctx.state.done(STEP) or not ctx.state.done("baseline"):
        return
    base = base_config(ctx)
    if base.model.strategy != "probe":
        return  # the other strategies learn from augmentation in the improvement rounds
    if not ctx.budget.runs_left(ctx.state.trained_runs()):
        ctx.skip(STEP, f"no runs left of --max-runs {ctx.spec.max_runs}")
        return
    epochs = head_epochs(ctx) if ctx.state.step(STEP) is None else EPOCHS  # a resumed run keeps its config
    if epochs < MIN_EPOCHS:
        ctx.skip(STEP, f"budget: {MIN_EPOCHS} epochs of the head on augmented images do not fit "
                       f"{SHARE:.0%} of the {max(pace.time_left(ctx), 0):.0f}s left")
        return
    probe = ctx.state.step("baseline").run
    config = base
    config.name, config.parent = ctx.run_name(STEP), probe
    config.model.strategy, config.model.weights = "head", str(ctx.workspace / probe / BEST_WEIGHTS)
    config.train.epochs, config.train.augment = epochs, policy_for(config.preprocess.image_size)
    config.change = (f"head on augmented images ({config.train.augment}), {epochs} epochs, started from the "
                     f"probe {probe}")
    train_step(ctx, STEP, config)
