"""The transfer strategy measured on the data itself where the advisor's rule is unsure.

The rule (``honed.advise.rule``) is the prior: it names the candidates. Where it is unsure (the measurements
near one of its thresholds, or a pick among ``probe``, ``head`` and ``partial``, which its benchmarks put within
noise of each other), each candidate is scored on the workflow's own images and the measurement decides:

    probe, head        k-fold cross-validation on frozen features extracted once (cached): nearly free
    partial, full ...  k-fold short runs (``honed.training.crossval``), while the budget allows

Below ``KFOLD_BELOW`` pooled train + val images the scores are k-fold (``CHOICE_FOLDS``); from there on the
workflow's own holdout, whose standard error is then small. The decision (``pick``): the best mean, and among
the candidates within one standard error of it the cheapest (``COST_ORDER``: cheaper to train and never dearer
to predict). Each candidate is a ledger row under the workflow (kind ``choice``) and a workflow step.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field


from honed.advise.advisor import Advice
from honed.advise.rule import FULL_MIN_PER_CLASS, PROBE_GAIN, PROBE_MAX_PER_CLASS
from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.metrics import GREATER_IS_BETTER
from honed.tracking.atomic import write_json
from honed.tracking.ledger import Ledger
from honed.workflow.choice_scores import Candidate, feature_scores, folds_of, pooled_se
from honed.workflow import pace
from honed.workflow.context import Context
from honed.workflow.plan import refit_seconds, run_seconds
from honed.workflow.plan import short_runs_seconds as plan_short_runs
from honed.workflow.state import Step

COST_ORDER = ("probe", "head", "partial", "gradual", "full", "scratch")  # cheapest to train first
FEATURE_CANDIDATES = ("probe", "head")  # scored on cached frozen features
# Below this many pooled images a 20% holdout is too noisy to rank strategies: at 2,000 images (400 held out,
# accuracy near 0.8) its standard error is 2.0 points, the size of the differences the transfer benchmarks
# call noise (advise/rule.py); 5-fold CV scores every image once, halving the variance of the mean. From
# 4,000 (800 held out: 1.4 points) the holdout is used. Derived from the binomial standard error, not yet
# from a benchmark of the decisions themselves.
KFOLD_BELOW = 4000
CHOICE_FOLDS = 5
NEAR = 2.0  # "near a threshold": within this factor of it
CHOICE_SHARE = 0.25  # of the budget: the most the short fine-tuning runs of the choice may take
SHORT_EPOCHS = 3  # epochs of a fine-tuning candidate's short runs (fewer when the workflow trains fewer)
CHOICE_FILE = "choice.json"


@dataclass
class Choice:
    strategy: str
    reason: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "reason": self.reason,
                "candidates": [{**asdict(c), "mean": c.mean, "std": c.std, "se": c.se} for c in self.candidates]}


def pick(candidates: list[Candidate], *, greater_is_better: bool) -> Choice:
    """The best mean; among candidates within one standard error of it, the cheapest (``COST_ORDER``)."""
    sign = 1.0 if greater_is_better else -1.0
    best = max(candidates, key=lambda c: sign * c.mean)
    within = [c for c in candidates if sign * (best.mean - c.mean) <= best.se + 1e-12]
    winner = min(within, key=lambda c: COST_ORDER.index(c.strategy))
    if winner is best:
        reason = f"{best.strategy} scored best ({best.mean:.4f} ± {best.std:.4f})"
    else:
        reason = (f"{winner.strategy} ({winner.mean:.4f}) is within one standard error ({best.se:.4f}) of the "
                  f"best, {best.strategy} ({best.mean:.4f}), and cheaper")
    return Choice(winner.strategy, reason, list(candidates))


def candidates_for(advice: Advice) -> list[str]:
    """The strategies worth measuring for this advice (empty: the rule is sure, its decision stands)."""
    m, decision = advice.measurements, advice.decision
    if decision == "scratch" or not m.pretrained:
        return []
    near = lambda value, threshold: threshold / NEAR <= value <= threshold * NEAR  # noqa: E731
    names = {decision}
    if decision in ("probe", "head", "partial") or near(m.gain, PROBE_GAIN) or near(m.per_class_min,
                                                                                    PROBE_MAX_PER_CLASS):
        names |= {"probe", "head", "partial"}
    if near(m.per_class_min, FULL_MIN_PER_CLASS):
        names |= {"partial", "full"}
    return sorted(names, key=COST_ORDER.index) if len(names) > 1 else []


def choose_strategy(ctx: Context, base: RunConfig, manifest: Manifest, advice: Advice, details: dict) -> str:
    """The advisor's decision, or the candidate the measurement prefers; each candidate recorded."""
    names = candidates_for(advice)
    if not names:
        return advice.decision
    pool = int(manifest.frame["split"].isin(["train", "val"]).sum())
    folds = CHOICE_FOLDS if pool < KFOLD_BELOW else 1
    started = time.perf_counter()
    measured = feature_scores(base, manifest, [n for n in names if n in FEATURE_CANDIDATES], folds=folds,
                              metric=ctx.metric, reporter=ctx.reporter)
    holdout_se = max((c.holdout_se or 0.0 for c in measured), default=0.0)
    for name in [n for n in names if n not in FEATURE_CANDIDATES]:
        why = _unaffordable(ctx, name, folds, base.train.epochs, spent=time.perf_counter() - started)
        if why:
            _record(ctx, None, name, folds, skipped=why)
            ctx.reporter.message(f"strategy {name} not measured ({why})")
            continue
        measured.append(_short_runs(ctx, base, manifest, name, folds, holdout_se))
    choice = pick(measured, greater_is_better=GREATER_IS_BETTER[ctx.metric])
    for candidate in measured:
        _record(ctx, candidate, candidate.strategy, folds, chosen=candidate.strategy == choice.strategy)
    write_json(ctx.folder / CHOICE_FILE, {"prior": advice.decision, "folds": folds, **choice.to_dict()})
    details["choice"] = f"prior {advice.decision}, measured: {choice.reason}"
    ctx.reporter.message(f"strategy measured on the data: {choice.strategy} ({choice.reason})")
    return choice.strategy


def _unaffordable(ctx: Context, strategy: str, folds: int, epochs: int, *, spent: float) -> str:
    """Why the short runs of ``strategy`` are not run ('' when they fit): priced before they start, they must fit
    CHOICE_SHARE of the budget and leave the baseline, its refit and the export their time (seen on 244 photos
    of ants and bees: unpriced 5-fold runs of ``partial`` took 230 s of a 300 s budget, and the refit, the TTA
    and the improvement were then skipped for time)."""
    if ctx.plan is None:
        return ""
    plan = ctx.plan
    short = plan_short_runs(plan.costs, plan.data, strategy, folds=folds, epochs=min(epochs, SHORT_EPOCHS))
    rest = run_seconds(plan.costs, plan.data, plan.epochs, strategy) + refit_seconds(
        plan.costs, plan.data, plan.epochs, strategy)
    room = min(CHOICE_SHARE * ctx.spec.budget_s - spent, pace.time_left(ctx) - rest)
    if short <= room:
        return ""
    return f"budget: its {folds_of(folds)} short runs take about {short:.0f}s, {max(room, 0):.0f}s to spare"


def _short_runs(ctx: Context, base: RunConfig, manifest: Manifest, strategy: str, folds: int,
                holdout_se: float) -> Candidate:
    """k-fold short runs of a fine-tuning strategy (``honed.training.crossval``), out of the ensemble's way."""
    from dataclasses import replace

    from honed.training.crossval import cross_validate

    config = copy.deepcopy(base)
    config.name, config.parent = ctx.run_name(f"choose-{strategy}"), ctx.spec.name
    config.model.strategy, config.data.folds = strategy, folds
    config.train.epochs = min(config.train.epochs, SHORT_EPOCHS)
    started = time.perf_counter()
    result = cross_validate(config, manifest=manifest, reporter=ctx.reporter)
    with Ledger(ctx.workspace) as ledger:  # fold runs validate on other images: never ensemble members
        for fold in result.folds:
            row = ledger.get(fold.name)
            ledger.upsert(replace(row, kind="cv-fold"))
        ledger.delete(result.name)  # its choice row replaces the cv row
    pooled = pooled_se([fold.run_dir for fold in result.folds], metric=ctx.metric, seed=base.train.seed) \
        if folds > 1 else 0.0
    return Candidate(strategy, [float(r.score) for r in result.folds],
                     f"{folds_of(folds)} short runs ({config.train.epochs} epochs)", holdout_se,
                     time.perf_counter() - started, pooled_se=pooled)


def _record(ctx: Context, candidate: Candidate | None, strategy: str, folds: int, *, chosen: bool = False,
            skipped: str = "") -> None:
    """The candidate as a workflow step and a ledger row under the workflow (mean ± std in its change)."""
    key, name = f"choose-{strategy}", ctx.run_name(f"choose-{strategy}")
    if candidate is None:
        ctx.state.put(Step(key, "skipped", change=skipped))
        ctx.save()
        return
    words = (f"strategy {strategy}: {candidate.how}, {ctx.metric} {candidate.mean:.4f} ± {candidate.std:.4f} "
             f"(se {candidate.se:.4f})" + ("; chosen" if chosen else ""))
    metrics = {"mean": candidate.mean, "std": candidate.std, "se": candidate.se, "scores": candidate.scores,
               "pooled_se": candidate.pooled_se, "folds": folds, "chosen": chosen}
    ctx.record_row(name, kind="choice", parent=ctx.spec.name, change=words, score=None, metrics=metrics,
                   duration_s=candidate.seconds)
    ctx.state.put(Step(key, "done", run=name, parent=ctx.spec.name, change=words, seconds=candidate.seconds,
                       details=metrics))
    ctx.save()
