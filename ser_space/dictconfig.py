"""The one serialisation helper of the config dataclasses: a dict round trip and ``replace``.

Every config of the project (``SpaceConfig`` here; ``FeatureConfig``, ``DataConfig``,
``TrainConfig``, ``SearchConfig``, ``RunConfig``, ``CompareConfig`` and ``SyntheticConfig`` in
``strategies``) is a frozen dataclass of plain values that derives from :class:`DictConfig`:
``to_dict`` gives plain data (nested configs as dicts; JSON turns tuples into lists),
``from_dict`` takes it back (lists become tuples, nested dicts their config) and refuses an
unknown field with one line naming it, and ``replace`` is ``dataclasses.replace`` (the fields
are checked again). A config with a stored layout of its own (a format number, a field kept
only when set) adapts ``to_dict`` / ``from_dict`` around these.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

__all__ = ["DictConfig"]

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """Mixin for frozen config dataclasses: ``to_dict``, ``from_dict`` (with the unknown-field check), ``replace``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (nested configs as dicts, tuples kept)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a dict such as ``to_dict()`` or its JSON; an unknown field is a one-line ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _typed(hints[name], value) for name, value in data.items()})

    def replace(self: T, **changes: Any) -> T:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, DictConfig) else value


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as the field's type wants it: a nested config from its dict, lists as tuples."""
    for option in typing.get_args(hint) or (hint,):
        if isinstance(option, type) and issubclass(option, DictConfig) and isinstance(value, dict):
            return option.from_dict(value)
    if isinstance(value, list):
        return tuple(_typed(None, item) if isinstance(item, list) else item for item in value)
    return value
