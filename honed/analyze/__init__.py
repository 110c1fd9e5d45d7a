"""Error analysis: name a run's weaknesses with evidence, recommend the fix, and apply it.

    from honed.analyze import analyze_run, improve_run
    analysis = analyze_run("honed-runs/baseline")   # RUN/analysis/: analysis.json + PNGs, a ledger row
    analysis.recommendations[0].policy               # e.g. "rotate:45@0.8"
    result, comparison = improve_run("honed-runs/baseline")  # a child run with the fix, trained and compared

Modules, one job each: ``source`` (a run's files and images), ``mistakes`` (worst predictions, confusion,
per-class scores, residuals), ``factors`` (what is probed and what fixes it), ``measures`` (per-image
measurements), ``probes`` (evaluation under transformations, bootstrap intervals), ``ranking`` (which factor
explains the failures: the score is documented there), ``slices``, ``recommend``, ``plots``, ``outputs``
(files and ledger row), ``shift`` and ``shift_evidence`` (which shift between the splits explains the
failures: validation images transformed back, with the images to show), ``analysis`` (``analyze_run``),
``candidates`` (the top fixes checked by short fine-tunes) and ``improve`` (``improve_run``).
"""

from honed.analyze.analysis import Analysis, analyze_run
from honed.analyze.factors import FACTORS, Factor, factor_names
from honed.analyze.improve import improve_run
from honed.analyze.outputs import read_analysis
from honed.analyze.ranking import FactorScore
from honed.analyze.recommend import Recommendation

__all__ = ["Analysis", "FACTORS", "Factor", "FactorScore", "Recommendation", "analyze_run", "factor_names",
           "improve_run", "read_analysis"]
