"""Test-time augmentation: named views of a batch, aggregated into one prediction; never used in training.

    from honed.tta import TTAClassifier
    tta = TTAClassifier(honed.load("honed-runs/baseline"), views="flip").fit(val_paths, val_labels)
    honed.load("honed-runs/baseline", tta="flip,crops").predict(paths)  # a Predictor applying it
"""

from honed.tta.classifier import TTAClassifier
from honed.tta.setting import AGGREGATES, TTASetting, aggregate_outputs, as_setting
from honed.tta.views import GROUPS, expand_views, get_view, list_views, register_view

__all__ = ["AGGREGATES", "GROUPS", "TTAClassifier", "TTASetting", "aggregate_outputs",
           "as_setting", "expand_views", "get_view", "list_views", "register_view"]
