"""Per-provider sending limits: packaged data (``rules/limits.yaml``) plus operator overrides."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    messages_per_hour: float  # base rate
    connections: int  # concurrent connections per lane
    messages_per_connection: int
    floor_per_hour: float  # AIMD never goes below
    cap_per_hour: float  # AIMD never goes above


_FIELDS = {f.name: f.type for f in fields(ProviderLimits)}
_INTS = frozenset({"connections", "messages_per_connection"})


def _value(provider: str, key: str, raw: object) -> float | int:
    where = f"limits.{provider}.{key}"
    if key not in _FIELDS:
        raise ValueError(f"{where}: unknown field; expected one of {', '.join(_FIELDS)}")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"{where}: expected a number, got {raw!r}")
    if not math.isfinite(raw) or raw <= 0:
        raise ValueError(f"{where}: must be a positive number, got {raw!r}")
    if key in _INTS:
        if raw != int(raw):
            raise ValueError(f"{where}: must be a whole number, got {raw!r}")
        return int(raw)
    return float(raw)


def _entry(provider: str, raw: object) -> dict[str, float | int]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"limits.{provider}: expected a mapping of fields, got {raw!r}")
    return {str(k): _value(provider, str(k), v) for k, v in raw.items()}


def _build(provider: str, values: Mapping[str, float | int]) -> ProviderLimits:
    missing = [k for k in _FIELDS if k not in values]
    if missing:
        raise ValueError(f"limits.{provider}: missing {', '.join(missing)}")
    lim = ProviderLimits(
        messages_per_hour=float(values["messages_per_hour"]),
        connections=int(values["connections"]),
        messages_per_connection=int(values["messages_per_connection"]),
        floor_per_hour=float(values["floor_per_hour"]),
        cap_per_hour=float(values["cap_per_hour"]),
    )
    if not lim.floor_per_hour <= lim.messages_per_hour <= lim.cap_per_hour:
        raise ValueError(
            f"limits.{provider}: need floor_per_hour <= messages_per_hour <= cap_per_hour, "
            f"got {lim.floor_per_hour:g} / {lim.messages_per_hour:g} / {lim.cap_per_hour:g}"
        )
    return lim


class LimitsTable:
    """Limits per provider name; unknown providers get the ``default`` entry."""

    __slots__ = ("_by_provider",)

    def __init__(self, by_provider: Mapping[str, ProviderLimits]) -> None:
        if DEFAULT not in by_provider:
            raise ValueError("limits: a 'default' entry is required")
        self._by_provider = dict(by_provider)

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        overrides: Mapping[str, Mapping[str, float]] | None = None,
    ) -> LimitsTable:
        """Read ``path`` (None: the packaged ``rules/limits.yaml``), then apply ``overrides``.

        Every entry, from the file or the overrides, is laid over ``default``: an entry
        may name only the fields it changes, and an override may add a new provider.
        Errors are ``ValueError`` naming the provider and key.
        """
        if path is None:
            text = resources.files("mailwarden.reputation").joinpath("rules/limits.yaml")
            data: Any = yaml.safe_load(text.read_text(encoding="utf-8"))
        else:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise ValueError("limits: expected a mapping of provider -> fields")
        merged: dict[str, dict[str, float | int]] = {
            str(p): _entry(str(p), v) for p, v in data.items()
        }
        for p, v in (overrides or {}).items():
            merged.setdefault(p, {}).update(_entry(p, v))
        if DEFAULT not in merged:
            raise ValueError("limits: a 'default' entry is required")
        base = _build(DEFAULT, merged[DEFAULT])
        table = {DEFAULT: base}
        for p, v in merged.items():
            if p != DEFAULT:
                table[p] = _build(p, {**_as_dict(base), **v})
        return cls(table)

    def for_provider(self, provider: str) -> ProviderLimits:
        return self._by_provider.get(provider) or self._by_provider[DEFAULT]

    def providers(self) -> list[str]:
        return sorted(self._by_provider)


def _as_dict(lim: ProviderLimits) -> dict[str, float | int]:
    return {k: getattr(lim, k) for k in _FIELDS}
