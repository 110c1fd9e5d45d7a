"""The workflow's steps, in the order a practitioner takes them. Each reads and extends the saved state,
so a step that is already done is skipped when an interrupted workflow resumes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from honed.advise.image_size import default_image_size
from honed.config import RunConfig
from honed.errors import HonedError
from honed.metrics import GREATER_IS_BETTER
from honed.artifacts.run_folder import CONFIG_FILE
from honed.workflow import pace
from honed.workflow.context import Context
from honed.workflow.improve_step import PROBE_FIXED, _probe, improve  # noqa: F401 - steps.improve
from honed.workflow.plan import priced_as
from honed.workflow.state import Step

LABEL_CHECK_SHARE = 0.15  # the setup's label-issue check may take at most this share of the time left
BASE_FILE = "base.yaml"  # the resolved settings (strategy, learning rate) every run of the workflow starts from


def setup(ctx: Context) -> None:
    """Data check, validation strategy and metric, transfer strategy (the advisor), learning rate (LR range test)."""
    if ctx.state.done("setup"):
        return
    from honed.data.prepare import prepare_data

    started = time.perf_counter()
    base = ctx.spec.base
    ctx.state.metric = base.main_metric()
    data = prepare_data(base.data, seed=base.train.seed, reporter=ctx.reporter)
    manifest = data.manifest
    sizes = {split: int((manifest.frame["split"] == split).sum()) for split in ("train", "val", "test")}
    details = {"images": sizes, "skipped_files": len(data.bad_files), "warnings": data.warnings,
               "classes": len(manifest.classes) if manifest.task_type.is_classification else 0}
    for warning in data.warnings:
        ctx.reporter.message(f"data warning: {warning} (see `honed data check`)")
    if base.model.name == "auto":  # the pip-shipped backbone whose features fit best for their cost
        from honed.advise.compare import auto_models, compare_backbones

        comparison = compare_backbones(manifest, auto_models(), image_size=base.preprocess.image_size,
                                       seed=base.train.seed, reporter=ctx.reporter)
        base.model.name, base.model.pretrained, details["model"] = comparison.choice, True, comparison.summary()
        ctx.reporter.message(f"model auto -> {comparison.summary()}")
    largest = base.preprocess.image_size
    if not largest:  # from the images' size: small ones upscaled only as far as it pays (honed.advise.image_size)
        largest, details["image_size"] = default_image_size(manifest, base.model.name,
                                                             pretrained=bool(base.model.pretrained))
    plan = pace.plan_workflow(ctx, manifest, largest_size=largest)
    base.preprocess.image_size = plan.costs.image_size  # the given size, or the largest the budget allows
    base.model.strategy = _strategy(ctx, base, manifest, details)
    base.train.lr = _learning_rate(ctx, base, manifest, details)
    details["label_issues"] = _label_issues(ctx, base, manifest, plan.costs.infer_s * sizes["train"])
    plan = pace.plan_workflow(ctx, manifest, setup=plan, strategy=base.model.strategy)
    base.train.epochs = plan.epochs
    details["plan"] = f"{plan.epochs} epoch(s) a run, about {plan.run_s:.0f}s each"
    base.train.augment, base.model.drop_rate, base.train.weight_decay, base.train.label_smoothing = "", 0.0, 0.0, 0.0
    (ctx.folder / BASE_FILE).write_text(base.to_yaml())
    change = (f"setup: {sizes['train']} train / {sizes['val']} val images, metric {ctx.metric}, "
              f"strategy {base.model.strategy}, lr {base.train.lr:.2g}")
    change += label_issue_words(details["label_issues"], base.data.exclude)
    seconds = time.perf_counter() - started
    ctx.record_row(ctx.spec.name, kind="workflow", parent="", change=change, score=None, metrics={},
                   duration_s=seconds, path=ctx.spec.name, status="running")
    ctx.finish_step(Step("setup", "done", run=ctx.spec.name, change=change, seconds=seconds, details=details))


def _label_issues(ctx: Context, base: RunConfig, manifest, estimate_s: float) -> dict:
    """Counted and listed (``label_issues.csv``), never relabelled or dropped; a feature pass of the training
    images, free for a probe that reads the same cached features, skipped when it would take a large share."""
    if estimate_s > LABEL_CHECK_SHARE * pace.time_left(ctx):
        return {"skipped": f"budget: about {estimate_s:.0f}s of features, over {LABEL_CHECK_SHARE:.0%} of the "
                           "time left"}
    from honed.analyze.label_issues import count_for_workflow

    return count_for_workflow(manifest, base, ctx.folder, reporter=ctx.reporter)


def label_issue_words(found: dict, exclude: str) -> str:
    """The setup change's words on label issues: how many were found, and whether the runs exclude a list."""
    words = f", {found['found']} label issues found" if "found" in found else ""
    return words + (f", training without the images listed in {Path(exclude).name}" if exclude else "")


def _strategy(ctx: Context, base: RunConfig, manifest, details: dict) -> str:
    if ctx.spec.strategy != "auto":
        details["strategy"] = f"{ctx.spec.strategy} (given)"
        return ctx.spec.strategy
    if not ctx.plan.advisor_sample:
        details["strategy"] = f"{ctx.plan.strategy} (advisor skipped: {ctx.plan.step('advisor').skipped})"
        return ctx.plan.strategy
    from honed.advise.advisor import ADVICE_FILE, advise_manifest
    from honed.tracking.atomic import write_json

    advice = advise_manifest(manifest, model=base.model.name, pretrained=base.model.pretrained,
                             weights=base.model.weights, image_size=base.preprocess.image_size, seed=base.train.seed,
                             sample_per_class=ctx.plan.advisor_sample, reporter=ctx.reporter)
    ctx.reporter.message(f"strategy auto -> {advice.summary()}")
    write_json(ctx.folder / ADVICE_FILE, advice.to_dict())
    details["strategy"] = advice.summary()
    from honed.workflow.choose import choose_strategy

    return choose_strategy(ctx, base, manifest, advice, details)  # the rule's prior, measured where it is unsure


def _learning_rate(ctx: Context, base: RunConfig, manifest, details: dict) -> float:
    if ctx.spec.lr:
        details["lr"] = f"{ctx.spec.lr:g} (given)"
        return ctx.spec.lr
    if base.model.strategy == "probe":  # a probe fits a scikit-learn head: no learning rate to find
        details["lr"] = f"{base.train.lr:g} (probe: not used)"
        return base.train.lr
    if not ctx.plan.lr_steps:
        details["lr"] = f"{base.train.lr:g} (the default: LR range test {ctx.plan.step('lr-test').skipped})"
        return base.train.lr
    from honed.training.lr_find import find_lr

    found = find_lr(base, manifest=manifest, reporter=ctx.reporter, out_dir=ctx.folder, steps=ctx.plan.lr_steps)
    details["lr"] = (f"{found.suggested_lr:.3g} (LR range test, {len(found.lrs)} batches, "
                     f"{ctx.folder.name}/{Path(str(found.plot)).name})")
    return float(found.suggested_lr)


def base_config(ctx: Context) -> RunConfig:
    return RunConfig.from_yaml(ctx.folder / BASE_FILE)


def baseline(ctx: Context) -> None:
    """The pretrained backbone with the chosen strategy: no augmentation, no added regularization."""
    if ctx.state.done("baseline"):
        return
    config = base_config(ctx)
    config.name, config.parent = ctx.run_name("baseline"), ctx.spec.name
    config.change = f"baseline: {config.model.strategy}, lr {config.train.lr:.2g}, no augmentation or regularization"
    fitting = max(pace.epochs_for(ctx, pace.time_left(ctx), config.model.strategy), 1)  # a baseline, however short
    if fitting < config.train.epochs and config.model.strategy != "probe":  # a probe has no epochs
        config.train.epochs = fitting
        config.change += f", {fitting} epoch(s) to fit the budget"
    train_step(ctx, "baseline", config)


def train_step(ctx: Context, key: str, config: RunConfig) -> Step:
    """Train (or resume) one run as a step; it is kept when it beats the workflow's best."""
    from honed.training.fit import train

    prior = ctx.state.step(key)
    if prior is not None and prior.status == "running":
        config = RunConfig.from_dict(prior.details["config"])  # the interrupted run, exactly as started
    run_dir = ctx.workspace / config.name
    resume = prior is not None and prior.status == "running" and (run_dir / CONFIG_FILE).exists()
    if prior is not None and not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its config was written: nothing in it to keep
    started = time.perf_counter()
    step = ctx.state.put(Step(key, "running", run=config.name, parent=config.parent or "", change=config.change,
                              seconds=prior.seconds if prior else 0.0, details={"config": config.to_dict()}))
    ctx.save()
    ctx.reporter.message(f"[bold]{key}[/]: training {config.name} ({config.change})")
    result = train(config, reporter=ctx.reporter, resume=resume)
    step.status, step.score = "done", float(result.score)
    step.seconds += time.perf_counter() - started
    step.details.update(runs=1, metrics=result.metrics)
    if "seconds" in result.history and not _on_cached_features(config):  # what an epoch costs here: the
        step.details["epoch_s"] = float(result.history["seconds"].mean())  # budget prices the next runs with it
    return ctx.finish_against_best(step)


def tune(ctx: Context) -> None:
    """A small Optuna search (learning rate, epochs, batch size, dropout) around the best run, within budget."""
    if ctx.state.done("tune"):
        return
    if ctx.spec.tune_trials <= 0:
        ctx.skip("tune", "no trials asked for (--tune-trials 0)")
        return
    if _probe(ctx):
        ctx.skip("tune", PROBE_FIXED)
        return
    from honed.search import tune as run_search

    trials, space, seconds = pace.tune_size(ctx)
    if trials < 1:
        ctx.skip("tune", f"budget: a trial takes about {pace.run_estimate(ctx):.0f}s, {max(seconds, 0):.0f}s left "
                         "after TTA and the ensemble")
        return
    started = time.perf_counter()
    base = RunConfig.from_yaml(ctx.workspace / _best_training_run(ctx) / CONFIG_FILE)
    base.name, base.parent = ctx.run_name("tune"), ctx.state.best
    ctx.state.put(Step("tune", "running", parent=ctx.state.best, details={"trials": trials}))
    ctx.save()
    result = run_search(base, trials=trials, timeout_s=seconds, study_name=ctx.run_name("tune"), space=space,
                        reporter=ctx.reporter)
    step = Step("tune", "done", run=result.best_run, parent=base.parent or "", score=result.best_score,
                change="tune: " + ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items()),
                seconds=time.perf_counter() - started, details={"runs": len(result.trials), "trials": trials})
    ctx.finish_against_best(step)


def tta(ctx: Context) -> None:
    """Test-time augmentation on the best run: kept for the export only when it raises the validation score."""
    if ctx.state.done("tta"):
        return
    if not ctx.spec.tta:
        ctx.skip("tta", "no views asked for (--tta '')")
        return
    why = pace.fits(ctx, pace.planned(ctx, "tta"))
    if why:
        ctx.skip("tta", why)
        return
    from honed.analyze.tta_evaluation import evaluate_tta
    from honed.combine.noise import paired_gain

    run = _best_training_run(ctx)
    started = time.perf_counter()
    evaluation = evaluate_tta(ctx.workspace / run, views=ctx.spec.tta, workers=ctx.spec.base.train.workers,
                              device=ctx.spec.base.train.device)
    rows = {(r["split"], r["tta"] == "none"): r for r in evaluation.rows}
    plain, with_tta = rows[("val", True)], rows[("val", False)]
    metrics = {k: v for k, v in with_tta.items() if isinstance(v, float)}
    if ("test", False) in rows:
        metrics.update({f"test_{k}": v for k, v in rows[("test", False)].items() if isinstance(v, float)})
    targets, plain_out, tta_out = evaluation.outputs["val"]
    gain = paired_gain(plain_out, tta_out, targets, task=evaluation.task, metric=ctx.metric,
                       seed=ctx.spec.base.train.seed)
    pays = _better_by(ctx, with_tta[ctx.metric], plain[ctx.metric]) and gain.beyond_noise
    name = ctx.run_name("tta")
    change = (f"TTA {evaluation.setting.describe()}: {ctx.metric} {plain[ctx.metric]:.4f} -> {with_tta[ctx.metric]:.4f}, "
              f"{with_tta['ms_per_image'] / max(plain['ms_per_image'], 1e-9):.1f}x the cost per image; "
              + ("kept for the export" if pays else "not worth it" if gain.gain <= 0 else
                 f"within noise ({gain.describe()}), not worth the cost"))
    seconds = time.perf_counter() - started
    ctx.record_row(name, kind="tta", parent=run, change=change, score=float(with_tta[ctx.metric]), metrics=metrics,
                   duration_s=seconds)
    step = Step("tta", "done", run=name, parent=run, change=change, score=float(with_tta[ctx.metric]),
                delta=float(with_tta[ctx.metric] - plain[ctx.metric]), seconds=seconds,
                details={"pays": pays, "views": ctx.spec.tta, "applies_to": run, "gain": gain.gain,
                         "gain_se": gain.se})
    ctx.finish_step(step)


def ensemble(ctx: Context) -> None:
    """Vote the best runs of the workflow together; kept when the ensemble beats the best single run beyond noise."""
    if ctx.state.done("ensemble"):
        return
    size = ctx.spec.ensemble_size
    members = _top_runs(ctx, size) if size >= 2 else []
    if len(members) < 2:
        ctx.skip("ensemble", "fewer than two finished runs to vote" if size >= 2 else "not asked for (--ensemble-size)")
        return
    why = pace.fits(ctx, pace.planned(ctx, "ensemble"))
    if why:
        ctx.skip("ensemble", why)
        return
    from honed.combine.noise import runs_gain
    from honed.ensemble import create_ensemble

    started = time.perf_counter()
    result = create_ensemble(members, name=ctx.run_name("ensemble"), workspace=ctx.workspace)
    step = Step("ensemble", "done", run=result.name, parent=members[0], score=float(result.score),
                change=f"soft vote of {', '.join(members)}", seconds=time.perf_counter() - started,
                details={"members": members, "member_scores": result.member_scores})
    gain = runs_gain(ctx.workspace / ctx.state.best, ctx.workspace / result.name, metric=ctx.metric)
    step.delta, step.kept = ctx.delta(step.score, ctx.state.best_score), ctx.improves(step.score)
    if gain is not None:  # an ensemble predicts once per member: it must win beyond noise
        step.details.update(gain=gain.gain, gain_se=gain.se)
        if step.kept and not gain.beyond_noise:
            step.change += f"; within noise of {ctx.state.best} ({gain.describe()}), not worth the cost"
            step.kept = False
    ctx.finish_step(step)


def export(ctx: Context) -> None:
    """The best step as a bundle (BN fused, parity checked), with its model card; refitted on train + val first
    unless --no-refit (``honed.workflow.refit``)."""
    if ctx.state.done("export"):
        return
    from honed.export.bundle import export_bundle
    from honed.workflow.refit import refit_best

    source = refit_best(ctx)  # the best run, or its refit on train + val

    started = time.perf_counter()
    target = ctx.folder / "bundle"
    if target.exists():
        shutil.rmtree(target)  # a bundle is published whole or not at all: one left here is from an older try
    tta_step = ctx.state.done("tta")
    use_tta = (tta_step is not None and tta_step.details.get("pays")
               and tta_step.details.get("applies_to") == ctx.state.best)
    report = export_bundle(ctx.workspace / source, target, formats=ctx.spec.export_formats,
                           tta=tta_step.details["views"] if use_tta else None)
    name = ctx.run_name("export")
    refit = f" (refit of {ctx.state.best} on train+val)" if source != ctx.state.best else ""
    change = f"bundle of {source}{refit}" + (f" with TTA {tta_step.details['views']}" if use_tta else "")
    seconds = time.perf_counter() - started
    ctx.record_row(name, kind="export", parent=source, change=change, score=ctx.state.best_score,
                   metrics={"files": list(report.files)}, duration_s=seconds,
                   path=str(target.relative_to(ctx.workspace)))
    ctx.finish_step(Step("export", "done", run=name, parent=source, change=change, score=ctx.state.best_score,
                         seconds=seconds, details={"bundle": str(target), "tta": bool(use_tta), "source": source}))


def report(ctx: Context) -> Path | None:
    """The workflow's HTML report, rewritten at the end of every session."""
    from honed.report import build_report

    bundle = ctx.folder / "bundle"
    return build_report(ctx.workspace / ctx.state.best, ctx.folder / "report.html", workspace=ctx.workspace,
                        bundle=bundle if bundle.exists() else None)


def _on_cached_features(config: RunConfig) -> bool:
    """A probe, or a head without augmentation: its epochs (the head alone) say nothing of other runs' cost."""
    return config.model.strategy == "probe" or priced_as(config.model.strategy, config.train.augment) == "head"


def _best_training_run(ctx: Context) -> str:
    """The best run that is a single model (TTA and search apply to one network, not to an ensemble)."""
    singles = [s for s in ctx.state.steps if s.status == "done" and s.details.get("runs") and s.score is not None]
    if not singles:
        raise HonedError("the workflow has no finished training run yet")
    sign = 1 if GREATER_IS_BETTER[ctx.metric] else -1
    return max(singles, key=lambda s: sign * s.score).run


def _top_runs(ctx: Context, k: int) -> list[str]:
    """The workflow's finished training runs (search trials included), best first."""
    from honed.tracking.ledger import Ledger

    prefix = f"{ctx.spec.name}-"
    with Ledger(ctx.workspace) as ledger:
        records = [r for r in ledger.runs(order_by_score=True)
                   if r.name.startswith(prefix) and r.kind == "train" and r.status == "done" and r.score is not None]
    return [r.name for r in records[:k]]


def _better_by(ctx: Context, new: float, old: float) -> bool:
    gain = new - old if GREATER_IS_BETTER[ctx.metric] else old - new
    return gain > ctx.spec.min_gain


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
