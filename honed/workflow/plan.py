"""The workflow's plan: from the data's size, the measured costs (``timing.measure_costs``) and the budget,
how big each step may be and which steps do not fit.

Setup is planned like every other step: the LR range test takes a bounded number of batches (at most one pass
over the training set, at most LR_SHARE of the budget), the advisor's probe a sample it can afford, the error
analysis as many validation images as ANALYSIS_SHARE allows; the runs' epochs shrink until the baseline fits
its share. Steps are then laid out in order against the time left, with the export and the report reserved
at the end; a step that does not fit is planned as skipped, with the reason. Issue 17: a 40 s budget ran for
476 s, its setup alone (advisor probe plus 100 LR-test batches of 64 at 224 px, for 196 images) for 393 s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from honed.workflow.timing import Costs

LR_STEPS = 100  # the range test's batches when data and budget allow (find_lr's default)
LR_MIN_STEPS = 10  # fewer recorded batches give no curve to read (find_lr refuses them)
LR_SHARE = 0.08  # of the budget, at most, for the LR range test
ADVISOR_SAMPLE = 200  # the advisor's default probe sample (honed.advise.probe_gain.SAMPLE_IMAGES)
ADVISOR_MIN_PER_CLASS = 6  # fewer and a 3-fold cross-validated probe score is noise
ADVISOR_SHARE = 0.08  # of the budget, at most, for the advisor's probe
ANALYSIS_MIN = 30  # validation images below which an error analysis cannot tell a factor from noise
ANALYSIS_SHARE = 0.1  # of the budget, at most, per error analysis
ANALYSIS_CONDITIONS = 30  # passes over each analyzed image: clean plus the 29 probe strengths of honed.analyze
BASELINE_SHARE = 0.35  # of the time left after setup: the baseline leaves room to improve on it
RUN_OVERHEAD_S = 2.0  # files, ledger row, loaders of a run, besides building the model
SKLEARN_S = 1.5  # the logistic-regression fits of the advisor's probe and of a probe strategy
EXPORT_IMAGES = 16  # images the export's parity check predicts
REPORT_S = 3.0  # the HTML report
# the head on augmented images after a probe (honed.workflow.augmented_head)
HEAD_EPOCHS = 10  # the PyTorch transfer-learning tutorial's head recipe; fewer when the budget asks for it
HEAD_MIN_EPOCHS = 3  # fewer passes over augmented images do not teach the head more than the probe knows
HEAD_SHARE = 0.4  # of the time left at most, so that its refit on train + val fits as well
TRAINS_BACKBONE = ("partial", "gradual", "full", "scratch")  # strategies that backpropagate through it


@dataclass
class Data:
    """The sizes the plan is priced on."""

    train: int
    val: int
    test: int
    classes: int  # 0 for regression
    batch_size: int


@dataclass
class PlannedStep:
    key: str
    seconds: float  # estimated cost
    size: str = ""  # what it will do, in words ("14 batches of 32", "2 epochs")
    skipped: str = ""  # why it will not run ("" when it runs)


@dataclass
class Plan:
    budget_s: float
    costs: Costs
    data: Data
    strategy: str  # the strategy the runs were priced for: given, decided, or the one the budget allows
    lr_steps: int  # batches of the LR range test (0: not run)
    advisor_sample: int  # images per class in the advisor's probe (0: not run)
    analysis_images: int  # validation images per error analysis (0: no improvement rounds)
    epochs: int  # epochs of every run (the given epochs, or fewer so the baseline fits)
    run_s: float  # estimated seconds of one training run
    tune_trials: int
    steps: list[PlannedStep] = field(default_factory=list)

    def step(self, key: str) -> PlannedStep | None:
        return next((s for s in self.steps if s.key == key), None)

    def seconds(self) -> float:
        """The estimated cost of the steps that run."""
        return sum(s.seconds for s in self.steps if not s.skipped)

    def lines(self) -> list[str]:
        """The plan for the terminal: one line per step, then the total against the budget."""
        out = [f"plan for {self.budget_s:.0f}s: {self.data.train} train / {self.data.val} val images at "
               f"{self.costs.image_size} px, {self.costs.train_s * 1000:.0f} ms per training image "
               f"(measured in {self.costs.seconds:.1f}s)"]
        for s in self.steps:
            what = f"skipped ({s.skipped})" if s.skipped else f"~{s.seconds:.0f}s" + (f", {s.size}" if s.size else "")
            out.append(f"  {s.key}: {what}")
        out.append(f"  total ~{self.seconds():.0f}s of {self.budget_s:.0f}s")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Plan:
        raw = dict(raw)
        raw["costs"], raw["data"] = Costs.from_dict(raw["costs"]), Data(**raw["data"])
        raw["steps"] = [PlannedStep(**s) for s in raw["steps"]]
        return cls(**raw)


@dataclass
class Asked:
    """What the workflow was asked for, as far as the plan cares."""

    strategy: str  # auto or a strategy name
    lr_given: bool
    epochs: int
    improve_rounds: int
    tune_trials: int
    tta_views: int  # test-time views besides the plain one (0: no TTA step)
    ensemble_size: int
    analysis_images: int  # at most this many
    size_given: bool = False  # an input size was given: the plan keeps it
    pretrained: bool = True  # without pretrained weights only training the whole network makes sense
    refit: bool = False  # the export refits the chosen run on train + val (on by default in the workflow)


def make_plan(budget_s: float, spent_s: float, costs: Costs, data: Data, asked: Asked, *,
              setup: Plan | None = None) -> Plan:
    """Size and lay out every step within ``budget_s``, ``spent_s`` of it already gone. ``setup``: the plan
    whose setup (LR test, advisor) has run, ``asked.strategy`` then the decided strategy: the rest is replanned."""
    if setup is None:
        setup_bound = (LR_SHARE + ADVISOR_SHARE) * budget_s + 2 * costs.build_s
        strategy, costs = _choose(budget_s - spent_s - setup_bound - reserve_seconds(costs), costs, data, asked)
        lr_steps, lr_step = _lr_steps(budget_s, costs, data, asked, strategy)
        sample, advisor_step = _advisor(budget_s, costs, data, asked)
        if asked.strategy == "auto" and strategy != _preferred(asked) and not advisor_step.skipped:
            sample, advisor_step = 0, PlannedStep("advisor", 0.0, skipped=f"budget: only {strategy} at "
                                                  f"{costs.image_size} px fits a run in the time")
        setup_s = lr_step.seconds + advisor_step.seconds
    else:  # already spent: in spent_s
        strategy, costs = asked.strategy, setup.costs
        lr_steps, sample, setup_s = setup.lr_steps, setup.advisor_sample, 0.0
        lr_step, advisor_step = setup.steps[0], setup.steps[1]
    steps = [lr_step, advisor_step]
    after_setup = budget_s - spent_s - setup_s - reserve_seconds(costs)
    epochs, run_s = _epochs(after_setup, costs, data, asked.epochs, strategy)
    steps.append(PlannedStep("baseline", run_s, f"{epochs} epoch(s)" if strategy != "probe" else "probe fit"))
    left = after_setup - run_s
    # the refit is on by default and uses all the labels: its time is set aside before the optional steps
    refit = PlannedStep("refit", refit_seconds(costs, data, epochs, strategy),
                        f"{epochs} epoch(s) on {data.train + data.val} images" if strategy != "probe" else
                        f"probe fit on {data.train + data.val} images")
    refit.skipped = "--no-refit" if not asked.refit else _fits(refit.seconds, left)
    left -= 0 if refit.skipped else refit.seconds
    if strategy == "probe":  # honed.workflow.augmented_head: the head on augmented images, after the probe
        head_epochs = min(HEAD_EPOCHS, epochs_that_fit(HEAD_SHARE * left, costs, data, AUGMENTED_HEAD))
        head = PlannedStep("augmented-head", run_seconds(costs, data, head_epochs, AUGMENTED_HEAD),
                           f"{head_epochs} epoch(s) of the head on augmented images")
        head.skipped = "" if head_epochs >= HEAD_MIN_EPOCHS else f"budget: ~{max(left, 0):.0f}s left"
        left -= 0 if head.skipped else head.seconds
        steps.append(head)
    analysis = _analysis_images(budget_s, costs, data, asked)
    improve_s = run_s + analysis_seconds(costs, analysis)
    for round_ in range(1, asked.improve_rounds + 1):
        step = PlannedStep(f"improve-{round_}", improve_s, f"analysis of {analysis} val images, one run")
        step.skipped = _why_not(strategy, analysis, improve_s, left)
        left -= 0 if step.skipped else improve_s
        steps.append(step)
        if step.skipped:
            break
    tta_s = tta_seconds(costs, data, asked.tta_views)
    ensemble_s = ensemble_seconds(costs, data, asked.ensemble_size)
    trials = 0 if strategy == "probe" else min(asked.tune_trials, int(max(left - tta_s - ensemble_s, 0) // run_s))
    tune = PlannedStep("tune", trials * run_s, f"{trials} trial(s)")
    tune.skipped = ("not asked for" if not asked.tune_trials else "probe: nothing to tune" if strategy == "probe"
                    else "" if trials else f"budget: a trial takes ~{run_s:.0f}s, ~{max(left, 0):.0f}s left")
    left -= tune.seconds
    steps.append(tune)
    for key, seconds, asked_for in (("tta", tta_s, asked.tta_views), ("ensemble", ensemble_s,
                                                                      asked.ensemble_size >= 2)):
        step = PlannedStep(key, seconds)
        step.skipped = "not asked for" if not asked_for else _fits(seconds, left)
        left -= 0 if step.skipped else seconds
        steps.append(step)
    steps.append(refit)
    steps.append(PlannedStep("export", export_seconds(costs), "bundle with parity check"))
    steps.append(PlannedStep("report", REPORT_S))
    return Plan(budget_s, costs, data, strategy, lr_steps, sample, analysis, epochs, run_s, trials, steps)


SIZES = (224, 192, 160, 128, 96, 64)  # input sizes tried, largest first, when none was given
# tried after full fine-tuning while the advisor has not decided: the probe, whose head is fitted to the end
# (its regularization cross-validated) in the time a few epochs of a head take; the augmented-head step follows
# it when time is left. Seen at load 18 on 244 photos: a 4-epoch head planned for the time scored 0.76.
CHEAPER = ("probe",)


def _preferred(asked: Asked) -> str:
    if asked.strategy != "auto":
        return asked.strategy
    return "full" if asked.pretrained else "scratch"


def _choose(seconds: float, costs: Costs, data: Data, asked: Asked) -> tuple[str, Costs]:
    """(strategy, costs at an input size): the first, largest size and costliest strategy first, whose
    one-epoch baseline takes at most BASELINE_SHARE of ``seconds``; else the cheapest (its overrun said)."""
    sizes = [costs.image_size] + ([] if asked.size_given else [s for s in SIZES if s < costs.image_size])
    strategies = [_preferred(asked)] + (list(CHEAPER) if asked.strategy == "auto" and asked.pretrained else [])
    candidates = [(strategy, costs.at(size)) for size in sizes for strategy in strategies]
    for strategy, priced in candidates:
        if run_seconds(priced, data, 1, strategy) <= BASELINE_SHARE * seconds:
            return strategy, priced
    return candidates[-1]


def _lr_steps(budget_s: float, costs: Costs, data: Data, asked: Asked, strategy: str) -> tuple[int, PlannedStep]:
    """Batches of the range test: at most LR_STEPS, one pass over the training set, LR_SHARE of the budget."""
    per_batch = data.batch_size * (costs.load_s + train_image_s(costs, strategy))
    one_pass = math.ceil(data.train / data.batch_size)
    steps = min(LR_STEPS, one_pass, int(LR_SHARE * budget_s // max(per_batch, 1e-9)))
    step = PlannedStep("lr-test", steps * per_batch + costs.build_s, f"{steps} batches of {data.batch_size}")
    if asked.lr_given:
        step.skipped = "learning rate given"
    elif strategy == "probe":
        step.skipped = "probe: no learning rate"
    elif one_pass < LR_MIN_STEPS:
        step.skipped = (f"one pass over {data.train} images is {one_pass} batches of {data.batch_size}, a curve "
                        f"needs {LR_MIN_STEPS}: the optimizer's default rate")
    elif steps < LR_MIN_STEPS:
        step.skipped = (f"budget: {LR_MIN_STEPS} batches take ~{LR_MIN_STEPS * per_batch:.0f}s, over "
                        f"{LR_SHARE:.0%} of it: the optimizer's default rate")
    if step.skipped:
        return 0, PlannedStep("lr-test", 0.0, skipped=step.skipped)
    return steps, step


def _advisor(budget_s: float, costs: Costs, data: Data, asked: Asked) -> tuple[int, PlannedStep]:
    """Images per class of the advisor's probe: its default sample, or what ADVISOR_SHARE buys."""
    if asked.strategy != "auto":
        return 0, PlannedStep("advisor", 0.0, skipped=f"strategy {asked.strategy} given")
    groups = max(data.classes, 1)
    per_image = 2 * (costs.load_s + costs.infer_s)  # pretrained and random-weight features
    fixed = 2 * costs.build_s + SKLEARN_S
    affordable = int(max(ADVISOR_SHARE * budget_s - fixed, 0) // per_image)
    per_class = min(max(-(-ADVISOR_SAMPLE // groups), 20), affordable // groups, data.train // groups)
    seconds = fixed + per_class * groups * per_image
    if per_class < ADVISOR_MIN_PER_CLASS:
        return 0, PlannedStep("advisor", 0.0, skipped=f"budget: ~{fixed + ADVISOR_MIN_PER_CLASS * groups * per_image:.0f}s "
                              f"for {ADVISOR_MIN_PER_CLASS} images per class, over {ADVISOR_SHARE:.0%} of it")
    return per_class, PlannedStep("advisor", seconds, f"{per_class} images per class")


def _epochs(seconds: float, costs: Costs, data: Data, asked: int, strategy: str) -> tuple[int, float]:
    """The given epochs, or fewer so the baseline takes at most BASELINE_SHARE of ``seconds``; at least one."""
    if strategy == "probe":
        return asked, run_seconds(costs, data, 1, strategy)
    per_epoch = epoch_seconds(costs, data, strategy)
    fixed = run_seconds(costs, data, 0, strategy)
    epochs = max(1, min(asked, int(max(BASELINE_SHARE * seconds - fixed, 0) // per_epoch)))
    return epochs, run_seconds(costs, data, epochs, strategy)


def _analysis_images(budget_s: float, costs: Costs, data: Data, asked: Asked) -> int:
    per_image = (costs.load_s + ANALYSIS_CONDITIONS * costs.infer_s) * 9 / 8  # plus an eighth as training images
    affordable = int(max(ANALYSIS_SHARE * budget_s - costs.build_s - RUN_OVERHEAD_S, 0) // per_image)
    return min(asked.analysis_images, data.val, affordable)


def _why_not(strategy: str, analysis: int, seconds: float, left: float) -> str:
    if strategy == "probe":
        return "probe: augmentation and regularization do not change it"
    if analysis < ANALYSIS_MIN:
        return f"budget or data: {analysis} val images to analyze, {ANALYSIS_MIN} needed"
    return _fits(seconds, left)


def _fits(seconds: float, left: float) -> str:
    return "" if seconds <= left else f"budget: ~{seconds:.0f}s needed, ~{max(left, 0):.0f}s left"


AUGMENTED_HEAD = "head-augmented"  # how a head run with augmentation is priced: no feature cache
HEAD_IMAGE_S = 0.001  # one image through the head alone on cached features (measured 0.1-0.4 ms on 2 cores)


def priced_as(strategy: str, augment: str) -> str:
    """The key a run is priced by: a ``head`` run trains on cached features unless it augments its images
    (``honed.training.frozen_head``), and then costs a backbone pass per image per epoch."""
    return AUGMENTED_HEAD if strategy == "head" and augment else strategy


def train_image_s(costs: Costs, strategy: str) -> float:
    """Seconds per training image: a backward pass through the backbone only when the strategy trains it."""
    return costs.train_s if strategy in TRAINS_BACKBONE else costs.infer_s * 1.2


def epoch_seconds(costs: Costs, data: Data, strategy: str) -> float:
    if strategy == "head":  # the head alone on features extracted once (priced in run_seconds)
        return (data.train + data.val) * HEAD_IMAGE_S
    return (data.train * (costs.load_s + train_image_s(costs, strategy))
            + data.val * (costs.load_s + costs.infer_s))


def run_seconds(costs: Costs, data: Data, epochs: int, strategy: str) -> float:
    """One run: build, ``epochs`` epochs (a probe: one feature pass and a fit), the test split, its files."""
    fixed = costs.build_s + RUN_OVERHEAD_S + data.test * (costs.load_s + costs.infer_s)
    extract = (data.train + data.val) * (costs.load_s + costs.infer_s)  # frozen features, once
    if strategy == "probe":
        return fixed + extract + SKLEARN_S
    if strategy == "head":
        return fixed + extract + epochs * epoch_seconds(costs, data, strategy)
    return fixed + epochs * epoch_seconds(costs, data, strategy)


def refit_seconds(costs: Costs, data: Data, epochs: int, strategy: str) -> float:
    """The chosen run again on train + val, with no validation split."""
    return run_seconds(costs, replace(data, train=data.train + data.val, val=0), epochs, strategy)


def short_runs_seconds(costs: Costs, data: Data, strategy: str, *, folds: int, epochs: int) -> float:
    """``folds`` runs of ``epochs`` on the pooled train + val images (one holdout run when ``folds`` is 1), each
    validating on its own fold and scoring no test split."""
    pool = data.train + data.val
    held = pool // folds if folds > 1 else data.val
    fold = replace(data, train=pool - held, val=held, test=0)
    return folds * run_seconds(costs, fold, epochs, strategy)


def epochs_that_fit(seconds: float, costs: Costs, data: Data, strategy: str, per_epoch: float | None = None) -> int:
    """Epochs a run can take in ``seconds`` (0 when not even one), priced by ``per_epoch`` when measured."""
    per_epoch = per_epoch or epoch_seconds(costs, data, strategy)
    return int(max(seconds - run_seconds(costs, data, 0, strategy), 0) // max(per_epoch, 1e-9))


def analysis_seconds(costs: Costs, images: int) -> float:
    per_image = (costs.load_s + ANALYSIS_CONDITIONS * costs.infer_s) * 9 / 8
    return costs.build_s + RUN_OVERHEAD_S + images * per_image


def tta_seconds(costs: Costs, data: Data, views: int) -> float:
    return costs.build_s + 1.0 + (data.val + data.test) * (costs.load_s + (1 + views) * costs.infer_s)


def ensemble_seconds(costs: Costs, data: Data, size: int) -> float:
    """The members' saved predictions are combined: no network runs."""
    return 3.0 + 0.5 * max(size, 0)


def reserve_seconds(costs: Costs) -> float:
    """Kept back for the last steps, which always run: the export and the report."""
    return export_seconds(costs) + REPORT_S


def export_seconds(costs: Costs) -> float:
    return 2 * costs.build_s + 2.0 + EXPORT_IMAGES * (costs.load_s + 2 * costs.infer_s)
