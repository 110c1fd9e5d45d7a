"""A trained model on disk, read without any training code: the run folder (``RunFolder``, its file names,
readers and writers), weights as safetensors, bundles (their files and bundle.json), and ``load_trained``,
which turns a run or a bundle into the network, its head, its preprocessing and its labels."""

from honed.artifacts.run_folder import Labels, RunFolder
from honed.artifacts.trained import TrainedModel, is_bundle, load_trained

__all__ = ["Labels", "RunFolder", "TrainedModel", "is_bundle", "load_trained"]
