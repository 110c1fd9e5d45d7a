"""Heads fitted on frozen features ("heads are models"): one registry, ``HEADS``, of every ``--head-model``.

Importing the package registers every head (the linear scikit-learn ones, then gbm), so a lookup never
depends on which head module happened to be imported first.
"""

from honed.models.heads.sklearn import HEADS, FittedHead, HeadSpec, head_kind, register_head, sklearn_threads
from honed.models.heads import gbm  # noqa: F401  (registers the gbm head)

__all__ = ["HEADS", "FittedHead", "HeadSpec", "head_kind", "register_head", "sklearn_threads"]
