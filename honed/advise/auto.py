"""``--strategy auto`` settled before training: the advisor decides, the run trains what it decided.

    config, advice = resolve_strategy(config)          # a new config; the given one is unchanged
    result = honed.advise.auto.train(config)           # resolve, then honed.training.fit.train

Training never runs the advisor itself: ``honed.training.fit.train`` refuses ``auto``.
"""

from __future__ import annotations

import copy

import torch.distributed as dist

from honed.advise.advisor import ADVICE_FILE, Advice, advise_run, record_advice
from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.data.prepare import prepare_data
from honed.progress import LogReporter, Reporter
from honed.runtime import setup_runtime
from honed.training.callbacks import Callback, RunInfo
from honed.training.fit import train as train_run
from honed.training.result import TrainResult


def resolve_strategy(config: RunConfig, manifest: Manifest | None = None,
                     reporter: Reporter | None = None) -> tuple[RunConfig, Advice | None]:
    """A copy of ``config`` with the advisor's strategy in place of ``auto`` and the decision in its change
    text, and the advice (None when the strategy was given). Under torchrun rank 0 decides and every rank
    follows (the runtime's process group is set up here; training later finds it set up)."""
    if config.model.strategy != "auto":
        return config, None
    runtime = setup_runtime(config.train.device, config.train.precision)
    advice, decision = None, [""]
    if runtime.is_main:
        data = prepare_data(config.data, seed=config.train.seed, manifest=manifest, reporter=reporter)
        advice = advise_run(config, data.manifest, reporter=reporter)
        decision = [advice.decision]
    if runtime.distributed:
        dist.broadcast_object_list(decision, src=0)
    resolved = copy.deepcopy(config)
    resolved.model.strategy = decision[0]
    note = f"strategy auto -> {decision[0]} (see {ADVICE_FILE})"
    resolved.change = f"{config.change}; {note}" if config.change else note
    return resolved, advice


class RecordAdvice(Callback):
    """Writes the advice into the run's folder (``advice.json``) when the run starts."""

    def __init__(self, advice: Advice):
        self.advice = advice

    def on_run_start(self, run: RunInfo) -> None:
        record_advice(run.run_dir, self.advice)


def advice_callbacks(advice: Advice | None) -> list[Callback]:
    """What records ``advice`` in the runs trained with it: nothing when there is none (rank > 0, or no auto)."""
    return [RecordAdvice(advice)] if advice is not None else []


def train(config: RunConfig, *, manifest: Manifest | None = None, reporter: Reporter | None = None,
          resume: bool = False, callbacks=()) -> TrainResult:
    """``honed.training.fit.train`` for a config whose strategy may be ``auto``: resolved first, the advice
    recorded in the run. The given config is unchanged; the one trained is ``result.config``."""
    reporter = reporter or LogReporter()
    config, advice = resolve_strategy(config, manifest, reporter)
    return train_run(config, manifest=manifest, reporter=reporter, resume=resume,
                     callbacks=[*advice_callbacks(advice), *callbacks])
