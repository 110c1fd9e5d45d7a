"""One registry implementation for every extension point: names -> builders, with errors that help.

Each module that owns builders creates its own instance (``AUGMENTATIONS = Registry("augmentation")``) and
registers into it, as timm's ``@register_model`` and Lightning's strategy registry do; there is no central
list. Registering a name twice is an error unless asked for (``override=True``); an unknown name raises a
:class:`HonedError` naming the kind, suggesting close names and listing the valid ones::

    OPTIMIZERS = Registry("optimizer")

    @OPTIMIZERS.register("sgd")
    def sgd(groups, lr): ...

    OPTIMIZERS.register("adamw", adamw)   # or as a call
    OPTIMIZERS["sgd"]; OPTIMIZERS.names("s*"); "sgd" in OPTIMIZERS

Names keep the order they were registered in (owners register their default first), so a flag's message
reads like its documentation; error messages list the valid names sorted, for scanning.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar, overload

from honed.errors import HonedError

T = TypeVar("T")
SUGGESTIONS = 3  # close names offered for a typo
CUTOFF = 0.6  # difflib similarity a name needs to be offered (difflib's own default)


class Registry(Generic[T]):
    """Named objects of one kind (``kind`` is the word messages use: "augmentation", "optimizer")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: None = None, *, override: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, override: bool = False) -> T: ...

    def register(self, name: str, obj: T | None = None, *, override: bool = False):
        """Register ``obj`` under ``name`` and return it; without ``obj``, a decorator that does so."""
        if obj is None:
            return lambda target: self.register(name, target, override=override)
        if not isinstance(name, str) or not name:
            raise HonedError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and not override:
            raise HonedError(f"{self.kind} {name!r} is already registered; pick another name "
                             "(or pass override=True to replace it)")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises a HonedError that lists the valid ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a hand-edited YAML file
            raise self.unknown(name) from None

    __getitem__ = get

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell wildcard ``pattern`` (``"res*"``), in registration order."""
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def suggest(self, name: object) -> list[str]:
        """Up to three registered names close to ``name`` (a typo's likely fix), closest first."""
        return close_names(name, self._entries)

    def unknown(self, name: object, *, extra: Iterable[str] = (), tail: str = "") -> HonedError:
        """The error for an unknown ``name``; ``extra`` names also count as valid, ``tail`` ends the message."""
        return unknown_name(self.kind, name, [*self._entries, *extra], tail=tail)

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register into a copy)."""
        twin: Registry[T] = Registry(self.kind)
        twin._entries = dict(self._entries)
        return twin

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


def unknown_name(kind: str, name: object, valid: Iterable[str], *, tail: str = "") -> HonedError:
    """``unknown augmentation 'hfilp' (did you mean hflip?): use one of ...``: one line naming the fix."""
    choices = sorted(set(valid))
    close = close_names(name, choices)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    if not choices:
        return HonedError(f"unknown {kind} {name!r}: no {kind} is registered{tail}")
    return HonedError(f"unknown {kind} {name!r}{hint}: use one of {', '.join(choices)}{tail}")


def close_names(name: object, choices: Iterable[str]) -> list[str]:
    """Up to ``SUGGESTIONS`` of ``choices`` similar to ``name`` (difflib), closest first; none for a non-string."""
    if not isinstance(name, str):
        return []
    return difflib.get_close_matches(name, sorted(set(choices)), n=SUGGESTIONS, cutoff=CUTOFF)
