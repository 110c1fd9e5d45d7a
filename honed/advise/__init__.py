"""The transfer advisor: measure the data against the backbone, pick a strategy, say why."""

from honed.advise.advisor import ADVICE_FILE, Advice, advise, advise_manifest, advise_run, read_advice, record_advice
from honed.advise.auto import resolve_strategy
from honed.advise.probe_gain import Measurements, measure
from honed.advise.rule import decide

__all__ = ["ADVICE_FILE", "Advice", "Measurements", "advise", "advise_manifest", "advise_run", "decide", "measure",
           "read_advice", "record_advice", "resolve_strategy"]
