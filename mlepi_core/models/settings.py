"""Plain-data round trip of an architecture's settings (the ``model_config`` of a saved model,
the ``model:`` block of a training config)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Mapping


class Settings:
    """Mixin for a frozen dataclass of settings: ``to_dict`` gives lists and dicts (YAML and
    JSON ready), ``from_dict`` turns them back into tuples and {str: float} mappings and
    refuses unknown keys. Subclasses name their ``SEQUENCES`` and ``MAPPINGS`` fields."""

    SEQUENCES: tuple[str, ...] = ()
    MAPPINGS: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in self.SEQUENCES:
            d[k] = list(d[k])
        for k in self.MAPPINGS:
            d[k] = None if d[k] is None else dict(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping):
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model setting(s) {sorted(unknown)}")
        for k in cls.SEQUENCES:
            if k in d:
                d[k] = tuple(d[k])
        for k in cls.MAPPINGS:
            if d.get(k) is not None:
                d[k] = {str(a): float(b) for a, b in dict(d[k]).items()}
        return cls(**d)
