"""Prediction: a trained run, bundle or ensemble loaded as a Predictor, and the inputs it accepts.

    predictor = honed.predict.load("honed-runs/baseline")
    predictor.predict(["cat.jpg"], top_k=3)
"""

from honed.predict.inputs import collect_inputs
from honed.predict.loading import load
from honed.predict.predictor import Predictor, inference_device

__all__ = ["Predictor", "collect_inputs", "inference_device", "load"]
