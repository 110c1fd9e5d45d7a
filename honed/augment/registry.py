"""The augmentation registry: a decorator registers a builder under a name; one factory builds by name.

The names live in ``AUGMENTATIONS``, a :class:`honed.registry.Registry` of :class:`AugmentationSpec`.

Builders take ``(strength, p)`` and return a :class:`~honed.augment.ops.BatchAugmentation` (per-sample
image op) or a :class:`~honed.augment.ops.BatchMix` (batch-level mixer such as mixup). Each registration
carries its defaults, so callers never hard-code them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

from honed.errors import HonedError
from honed.registry import Registry

if TYPE_CHECKING:
    from honed.augment.ops import BatchAugmentation, BatchMix

    Augmentation = Union[BatchAugmentation, BatchMix]

Builder = Callable[[float, float], "Augmentation"]


@dataclass(frozen=True)
class AugmentationSpec:
    """What the registry knows about one augmentation: its builder and the defaults that travel with it."""

    name: str
    builder: Builder
    default_strength: float  # used when the caller gives no strength; meaning is per augmentation
    default_p: float  # probability that a sample is augmented, when the caller gives none
    help: str  # one line: what it does and what strength means


AUGMENTATIONS: Registry[AugmentationSpec] = Registry("augmentation")  # filled by @register_augmentation


def register_augmentation(
    name: str, *, default_strength: float, default_p: float = 1.0, help: str = "", override: bool = False
) -> Callable[[Builder], Builder]:
    """Register ``builder(strength, p)`` under ``name``; registering a name twice is an error unless
    ``override``."""

    def decorator(builder: Builder) -> Builder:
        _check_p(name, default_p)
        spec = AugmentationSpec(name, builder, float(default_strength), float(default_p), help)
        AUGMENTATIONS.register(name, spec, override=override)
        return builder

    return decorator


def list_augmentations(pattern: str = "*") -> list[str]:
    """Sorted names of registered augmentations matching a shell wildcard such as ``"*flip"``."""
    return sorted(AUGMENTATIONS.names(pattern))


def get_augmentation_spec(name: str) -> AugmentationSpec:
    """The registration of ``name``; unknown names raise a HonedError listing the valid ones."""
    return AUGMENTATIONS.get(name)


def create_augmentation(name: str, strength: float | None = None, p: float | None = None) -> "Augmentation":
    """Build the augmentation ``name``; ``None`` strength or p takes the registered default."""
    spec = get_augmentation_spec(name)
    strength = spec.default_strength if strength is None else float(strength)
    p = spec.default_p if p is None else float(p)
    if not math.isfinite(strength):
        raise HonedError(f"{name}: strength must be a finite number, got {strength}")
    _check_p(name, p)
    return spec.builder(strength, p)


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise HonedError(f"{name}: probability must be in [0, 1], got {p}")
