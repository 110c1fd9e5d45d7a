"""The workflow's improvement rounds: analyze the best run, check its top fixes by short fine-tunes from it
when the budget allows, and continue from it with the one that helped; repeated while a round helps."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from honed.artifacts.run_folder import CONFIG_FILE
from honed.config import RunConfig
from honed.workflow import pace
from honed.workflow.context import Context
from honed.workflow.plan import priced_as
from honed.workflow.state import Step

def improve(ctx: Context) -> None:
    """Analyze the best run, train a child with the fix the analysis recommends; repeat while it helps."""
    if ctx.spec.improve_rounds and _probe(ctx) and not ctx.state.step("improve-1"):
        ctx.skip("improve-1", PROBE_FIXED)
        return
    for round_ in range(1, ctx.spec.improve_rounds + 1):
        key = f"improve-{round_}"
        done = ctx.state.done(key)
        if done is not None:
            if not done.kept:
                return
            continue
        why = pace.improve_skipped(ctx)
        if why:
            ctx.skip(key, why)
            return
        step = _improve_round(ctx, key)
        if step is None or not step.kept:
            return


def _improve_round(ctx: Context, key: str) -> Step | None:
    """Check the analysis's top fixes by short fine-tunes from the best run when the budget allows, then continue
    from the best run with the one that helped (issue 18: check before you apply)."""
    from honed.analyze.candidates import best_candidate, candidate_config, compute_ratio, from_analysis

    prior = ctx.state.step(key)
    if prior is not None and prior.status == "running":
        return _train_step(ctx, key, RunConfig.from_dict(prior.details["config"]))
    parent_dir = ctx.workspace / ctx.state.best
    found = from_analysis(_analysis(ctx, parent_dir))
    if not found:
        ctx.skip(key, f"the analysis of {ctx.state.best} found no significant weakness to fix")
        return None
    parent = RunConfig.from_yaml(parent_dir / CONFIG_FILE)
    augments = any(c.augment for c in found) or parent.train.augment
    priced = priced_as(parent.model.strategy, augments)  # an augmented head has no feature cache
    fitting = pace.epochs_for(ctx, pace.time_left(ctx), priced)
    if fitting < 1:
        ctx.skip(key, f"budget: not one epoch fits in the {max(pace.time_left(ctx), 0):.0f}s left after the analysis")
        return None
    winner = found[0]
    short = max(1, round(0.25 * parent.train.epochs))
    # in epochs at the parent's input size: a fix at a larger input costs its pixels more (compute_ratio)
    checks = short * (1 + sum(compute_ratio(parent, c) for c in found))  # and the control, nothing changed
    final = parent.train.epochs * max(compute_ratio(parent, c) for c in found)
    if len(found) > 1 and fitting >= checks + final:  # the checks and the final run fit
        checked = _check(ctx, key, parent_dir, found, short)
        winner = best_candidate(checked, parent_score=ctx.state.best_score, metric=ctx.state.metric,
                                workspace=ctx.workspace)
        if winner is None:
            ctx.skip(key, f"none of the {len(checked) - 1} fixes checked beat the same short fine-tune of "
                          f"{ctx.state.best} without them")
            return None
        fitting -= round(checks)
    winner, epochs, note = sized_to_fit(parent, winner, fitting)
    if note:
        ctx.reporter.message(f"{key}: {note}")
    config = candidate_config(parent, parent_dir, winner, epochs=epochs, name=ctx.run_name(key))
    return _train_step(ctx, key, config)


def sized_to_fit(parent: RunConfig, winner, fitting: float) -> tuple[object, int, str]:
    """The fix and its epochs within ``fitting`` epochs' time at the parent's input size: at the fix's larger
    input when the epochs it asks for fit there, else at the parent's; and why, when the size was given up."""
    from honed.analyze.candidates import compute_ratio, continued_epochs

    wanted = continued_epochs(parent, winner)
    note = ""
    if winner.image_size and fitting / compute_ratio(parent, winner) < wanted:
        note = (f"{winner.group} at {winner.image_size} px does not fit the budget ({wanted} epochs at "
                f"{compute_ratio(parent, winner):.1f}x the compute): trained at {parent.preprocess.image_size} px")
        winner = replace(winner, image_size=None)
    return winner, min(wanted, int(fitting / compute_ratio(parent, winner))), note


def _check(ctx: Context, key: str, parent_dir: Path, found: list, epochs: int) -> list:
    """Each candidate fine-tuned briefly from the parent; a done step (and a ledger run) per candidate."""
    from honed.analyze.candidates import check_candidates
    from honed.training.fit import train

    def run(config: RunConfig):
        started = time.perf_counter()
        ctx.reporter.message(f"[bold]{key}[/]: checking {config.name} ({config.change})")
        result = train(config, reporter=ctx.reporter)
        ctx.state.put(Step(config.name.removeprefix(f"{ctx.spec.name}-"), "done", run=config.name,
                           parent=parent_dir.name, change=config.change, seconds=time.perf_counter() - started,
                           details={"check": True, "score": float(result.score)}))  # not a candidate for best
        ctx.save()
        return result

    return check_candidates(parent_dir, found, epochs=epochs, train=run,
                            name=lambda c: ctx.run_name(f"{key}-check-{c.group}"))


def _analysis(ctx: Context, run_dir: Path) -> dict:
    """The run's analysis (analyzing it first when it has none)."""
    from honed.analyze.analysis import analyze_run
    from honed.analyze.outputs import read_analysis

    saved = read_analysis(run_dir)
    if saved is None:
        started = time.perf_counter()
        ctx.reporter.message(f"analyzing {run_dir.name}: mistakes and sensitivity to scale, colour, rotation, blur...")
        images = pace.analysis_images(ctx)
        saved = analyze_run(run_dir, reporter=ctx.reporter, workers=ctx.spec.base.train.workers, max_images=images,
                            reference_images=max(images // 8, 32)).to_dict()
        ctx.state.put(Step(f"analysis-{run_dir.name}", "done", run=run_dir.name, seconds=time.perf_counter() - started,
                           change=_fix_in_words(saved)))
        ctx.save()
    return saved


def _fix_in_words(analysis: dict) -> str:
    recommended = analysis.get("recommended", {})
    parts = [recommended.get("policy", "")] + [f"{k} {v:g}" for k, v in recommended.get("regularization", {}).items()]
    return "recommends " + (", ".join(p for p in parts if p) or "nothing")


def _train_step(ctx: Context, key: str, config: RunConfig) -> Step:
    from honed.workflow.steps import train_step  # the steps module imports this one

    return train_step(ctx, key, config)


PROBE_FIXED = ("the probe strategy fits a light classifier on frozen features: augmentation, dropout, the "
               "learning rate and epochs do not change it (give --strategy head or full to tune them)")



def _probe(ctx: Context) -> bool:
    return _base_config(ctx).model.strategy == "probe"



def _base_config(ctx: Context) -> RunConfig:
    from honed.workflow.steps import base_config

    return base_config(ctx)
