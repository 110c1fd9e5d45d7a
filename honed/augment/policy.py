"""Training augmentation policies: an ordered list of ``name[:strength][@probability]`` items.

``parse_policy("hflip,rotate:15,color:0.3@0.5,mixup:0.2")`` reads the compact form used on the command line;
``to_list()`` / ``from_list()`` give the YAML form. ``Policy.build()`` returns an :class:`Augmenter` that applies
the per-sample ops in order (``augmenter(x)``) and keeps mixup/cutmix apart as batch mixers
(``augmenter.mix(x, y)``), because they need the labels. Evaluation never uses a policy.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from honed.augment.ops import BatchAugmentation, BatchMix
from honed.augment.registry import create_augmentation
from honed.errors import HonedError

SYNTAX = "name[:strength][@probability], comma-separated, e.g. 'hflip,rotate:15,color:0.3@0.5,mixup:0.2'"
_TOKEN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<strength>[^:@]*))?(?:@(?P<p>[^:@]*))?$")


@dataclass(frozen=True)
class PolicyItem:
    """One augmentation in a policy; ``None`` takes the registered default strength or probability."""

    name: str
    strength: float | None = None  # meaning per augmentation; see `honed augment list`
    p: float | None = None  # probability that a sample gets this augmentation

    def __post_init__(self) -> None:
        for field_name in ("strength", "p"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise HonedError(f"{self.name}: {field_name} must be a number, got {value!r}")
            if value is not None:
                object.__setattr__(self, field_name, float(value))
        self.build()  # validates name, strength and p now rather than at the first batch

    def build(self) -> BatchAugmentation | BatchMix:
        return create_augmentation(self.name, self.strength, self.p)

    def __str__(self) -> str:
        text = self.name
        if self.strength is not None:
            text += f":{_format_number(self.strength)}"
        if self.p is not None:
            text += f"@{_format_number(self.p)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "strength": ..., "p": ...}`` without the keys left at their defaults."""
        out: dict[str, Any] = {"name": self.name}
        if self.strength is not None:
            out["strength"] = self.strength
        if self.p is not None:
            out["p"] = self.p
        return out


@dataclass(frozen=True)
class Policy:
    """An ordered list of augmentations; the empty policy is the identity."""

    items: tuple[PolicyItem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        for item in self.items:
            if not isinstance(item, PolicyItem):
                raise HonedError(f"a Policy holds PolicyItem objects, got {item!r}")

    def __str__(self) -> str:
        return ",".join(str(item) for item in self.items)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def parse(cls, text: str) -> Policy:
        return parse_policy(text)

    def to_list(self) -> list[dict[str, Any]]:
        """The YAML form: a list of ``{name, strength, p}`` mappings."""
        return [item.to_dict() for item in self.items]

    @classmethod
    def from_list(cls, entries: Sequence[dict[str, Any] | str]) -> Policy:
        """Read the YAML form; an entry may also be a compact token such as ``"rotate:15@0.5"``."""
        if isinstance(entries, str):
            return parse_policy(entries)
        return cls(tuple(_item_from_entry(entry) for entry in entries))

    def build(self) -> Augmenter:
        built = [item.build() for item in self.items]
        return Augmenter(
            [b for b in built if isinstance(b, BatchAugmentation)], [b for b in built if isinstance(b, BatchMix)]
        )


class Augmenter(nn.Module):
    """A built policy: per-sample ops applied in order, and batch mixers applied by :meth:`mix`."""

    def __init__(self, ops: Sequence[BatchAugmentation] = (), mixers: Sequence[BatchMix] = ()) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.mixers = nn.ModuleList(mixers)

    @property
    def has_mix(self) -> bool:
        return len(self.mixers) > 0

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a float batch ``[B, C, H, W]`` in [0, 1]; identity for an empty policy."""
        for op in self.ops:
            x = op(x, generator)
        return x

    def mix(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Mix a batch and its one-hot/soft labels ``[B, K]``; with several mixers, one is picked per batch."""
        if not self.mixers:
            return x, y
        index = 0
        if len(self.mixers) > 1:
            device = generator.device if generator is not None else None
            index = int(torch.randint(len(self.mixers), (1,), generator=generator, device=device))
        return self.mixers[index](x, y, generator)


def parse_policy(text: str) -> Policy:
    """Read ``"hflip,rotate:15,color:0.3@0.5"``; an empty string is the empty (identity) policy."""
    if not isinstance(text, str):
        raise HonedError(f"a policy is a string of the form {SYNTAX}; got {type(text).__name__}")
    if not text.strip():
        return Policy()
    return Policy(tuple(_parse_token(token.strip()) for token in text.split(",")))


def _parse_token(token: str) -> PolicyItem:
    match = _TOKEN.match(token)
    if match is None:
        raise HonedError(f"bad policy token {token!r}: expected {SYNTAX}")
    strength = _parse_number(token, match["strength"], "strength")
    p = _parse_number(token, match["p"], "probability")
    try:
        return PolicyItem(match["name"], strength, p)
    except HonedError as err:
        raise HonedError(f"bad policy token {token!r}: {err}") from None


def _parse_number(token: str, text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise HonedError(f"bad policy token {token!r}: {what} {text!r} is not a number; expected {SYNTAX}") from None
    if not math.isfinite(value):
        raise HonedError(f"bad policy token {token!r}: {what} must be finite; expected {SYNTAX}")
    return value


def _item_from_entry(entry: dict[str, Any] | str) -> PolicyItem:
    if isinstance(entry, str):
        return _parse_token(entry.strip())
    if not isinstance(entry, dict) or "name" not in entry or set(entry) - {"name", "strength", "p"}:
        raise HonedError(f"bad policy entry {entry!r}: use a mapping with keys name, strength, p, or a token {SYNTAX}")
    return PolicyItem(entry["name"], entry.get("strength"), entry.get("p"))


def _format_number(value: float) -> str:
    """Shortest text that reads back to ``value``: 15.0 -> "15", 0.3 -> "0.3"."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
