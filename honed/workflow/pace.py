"""The plan applied to a running workflow: made from the data and the timing probe before the first step,
remade once setup has decided the strategy, and consulted by every step against the time actually left.
A step's deadline is the budget's end less what the export and the report need; a step that cannot finish
by it is skipped and says why; a run's epochs are capped so it finishes by it, priced by the epochs the
workflow's runs have actually taken once there are some."""

from __future__ import annotations


from dataclasses import replace

from honed.data.manifest import Manifest
from honed.search.space import SearchSpace
from honed.workflow.context import Context
from honed.workflow.plan import (ANALYSIS_MIN, Asked, Data, Plan, analysis_seconds, epochs_that_fit, make_plan,
                                 reserve_seconds)
from honed.workflow.timing import measure_costs


def plan_workflow(ctx: Context, manifest: Manifest, *, setup: Plan | None = None, strategy: str = "",
                  largest_size: int = 0) -> Plan:
    """The plan for ``ctx``'s workflow (``setup``: the first plan, once setup is done and ``strategy`` known);
    saved in the state and shown through the reporter. ``largest_size``: the input size tried first when none
    was given (smaller ones follow while the budget asks for them)."""
    spec, base = ctx.spec, ctx.spec.base
    priced = replace(base, preprocess=replace(base.preprocess, image_size=largest_size or base.preprocess.image_size))
    costs = setup.costs if setup is not None else measure_costs(priced, manifest)
    frame = manifest.frame
    data = Data(train=int((frame["split"] == "train").sum()), val=int((frame["split"] == "val").sum()),
                test=int((frame["split"] == "test").sum()),
                classes=len(manifest.classes) if manifest.task_type.is_classification else 0, batch_size=base.train.batch_size)
    views = len([v for v in spec.tta.split(",") if v.strip()]) if spec.tta else 0
    asked = Asked(strategy=strategy or spec.strategy, lr_given=bool(spec.lr), epochs=base.train.epochs,
                  improve_rounds=spec.improve_rounds, tune_trials=spec.tune_trials, tta_views=views,
                  ensemble_size=spec.ensemble_size, analysis_images=spec.analysis_images,
                  size_given=bool(base.preprocess.image_size), pretrained=bool(base.model.pretrained or base.model.weights),
                  refit=spec.refit)
    plan = make_plan(spec.budget_s, ctx.budget.spent(), costs, data, asked, setup=setup)
    ctx.plan = plan
    ctx.state.plan = plan.to_dict()
    ctx.save()
    if setup is None:
        for line in plan.lines():
            ctx.reporter.message(line)
    else:
        ctx.reporter.message(f"plan after setup ({plan.strategy}): {plan.epochs} epoch(s) a run of ~{plan.run_s:.0f}s; "
                             + "; ".join(f"{s.key} {'skipped' if s.skipped else f'~{s.seconds:.0f}s'}"
                                         for s in plan.steps[2:]))
    return plan


def time_left(ctx: Context) -> float:
    """Seconds until the step deadline: the budget's end less the export's and the report's share, and the
    refit's while it is planned and has not started."""
    reserve = reserve_seconds(ctx.plan.costs) if ctx.plan is not None else 0.0
    return ctx.budget.remaining() - reserve - refit_reserve(ctx)


def refit_reserve(ctx: Context) -> float:
    """Seconds set aside for the refit of the best run so far: the plan's estimate, or that run's measured time
    scaled to train + val, whichever is larger (the longest run's while the best is not a single run). 0 when
    the refit is not planned, has started, or no longer fits: a reserve held past that point once left 130 s
    of the budget unused. Sized by the best run because only it is refitted: a 154 s head that was not kept
    once set a reserve larger than the time left, and the kept probe's 24 s refit went unprotected."""
    step = ctx.plan.step("refit") if ctx.plan is not None else None
    if step is None or step.skipped or ctx.state.step("refit") is not None:
        return 0.0
    runs = {s.run: s.seconds for s in ctx.state.steps if s.status == "done" and s.details.get("runs") == 1}
    seconds = runs.get(ctx.state.best, max(runs.values(), default=0.0))
    data = ctx.plan.data
    reserve = max(step.seconds, seconds * (data.train + data.val) / max(data.train, 1))
    return reserve if reserve <= ctx.budget.remaining() - reserve_seconds(ctx.plan.costs) else 0.0


def fits(ctx: Context, seconds: float) -> str:
    """"" when ``seconds`` of work finish by the deadline; otherwise why not, for the skipped step's line."""
    left = time_left(ctx)
    return "" if seconds <= left else f"budget: about {seconds:.0f}s needed, {max(left, 0):.0f}s left"


def epoch_seconds(ctx: Context) -> float | None:
    """The mean measured epoch of the workflow's runs so far (None before the first)."""
    measured = [s.details["epoch_s"] for s in ctx.state.steps if s.status == "done" and s.details.get("epoch_s")]
    return sum(measured) / len(measured) if measured else None


def epochs_for(ctx: Context, seconds: float, strategy: str) -> int:
    """Epochs a run can take in ``seconds`` (0: not even one), by measured epochs when there are some."""
    if ctx.plan is None:
        return 1 << 30
    return epochs_that_fit(seconds, ctx.plan.costs, ctx.plan.data, strategy, epoch_seconds(ctx))


def run_estimate(ctx: Context) -> float:
    """Seconds a training run of this workflow takes: measured when one ran, else the plan's estimate."""
    times = [s.seconds for s in ctx.state.steps if s.status == "done" and s.details.get("runs") == 1]
    if times:
        return sum(times) / len(times)
    return ctx.plan.run_s if ctx.plan is not None else 0.0


def planned(ctx: Context, key: str) -> float:
    """The plan's estimate of step ``key`` (0 without a plan)."""
    step = ctx.plan.step(key) if ctx.plan is not None else None
    return step.seconds if step is not None else 0.0


def analysis_images(ctx: Context) -> int:
    """Validation images an error analysis probes: what the plan affords, at most what was asked."""
    return ctx.plan.analysis_images if ctx.plan is not None else ctx.spec.analysis_images


def improve_skipped(ctx: Context) -> str:
    """Why an improvement round (an analysis, then a run) cannot take place now; "" when it can."""
    if not ctx.budget.runs_left(ctx.state.trained_runs()):
        return f"no runs left of --max-runs {ctx.spec.max_runs}"
    if ctx.plan is None:
        return ""
    images = analysis_images(ctx)
    if images < ANALYSIS_MIN:
        return f"budget or data: {images} validation images to analyze, at least {ANALYSIS_MIN} needed"
    return fits(ctx, run_estimate(ctx) + analysis_seconds(ctx.plan.costs, images))


def tune_size(ctx: Context) -> tuple[int, SearchSpace | None, float]:
    """(trials, their search space, seconds for them): as many trials as fit before TTA and the ensemble,
    their epochs capped so that each fits its share."""
    seconds = time_left(ctx) - planned(ctx, "tta") - planned(ctx, "ensemble")
    trials = min(ctx.spec.tune_trials, ctx.budget.runs_left(ctx.state.trained_runs()),
                 int(max(seconds, 0) // max(run_estimate(ctx), 1.0)))
    if trials < 1 or ctx.plan is None:
        return max(trials, 0), None, seconds
    default = SearchSpace()
    high = min(default.epochs[1], epochs_for(ctx, seconds / trials, ctx.plan.strategy))
    if high < 1:
        return 0, None, seconds
    # the head's trials are priced on its frozen-feature cache: dropout in front of the head would turn the cache
    # off (the backbone on every image, every epoch; seen: a 167 s tune took 495 s), so it is not searched there
    drop_rate = None if ctx.plan.strategy == "head" else default.drop_rate
    return trials, replace(default, epochs=(min(default.epochs[0], high), high), drop_rate=drop_rate), seconds


def close(ctx: Context) -> float:
    """The overrun beyond the budget (0 when within it), recorded in the state and said."""
    spent = ctx.budget.spent()
    ctx.state.overrun_s = max(spent - ctx.budget.seconds, 0.0)
    over = (f", {ctx.state.overrun_s:.0f}s over it (the last step's overrun)" if ctx.state.overrun_s > 0
            else f", {ctx.budget.seconds - spent:.0f}s under it")
    ctx.reporter.message(f"workflow {ctx.spec.name}: {spent:.0f}s of a {ctx.budget.seconds:.0f}s budget{over}")
    return ctx.state.overrun_s
