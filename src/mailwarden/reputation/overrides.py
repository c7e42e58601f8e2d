"""Config overrides of the policy defaults: checked when the config loads (a bad key is
named there), turned into the policy's settings values when the engine starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from mailwarden.reputation.policy.aimd import AimdSettings
from mailwarden.reputation.policy.breaker import BreakerSettings
from mailwarden.reputation.policy.limits import LimitsTable

T = TypeVar("T")


def _build(cls: type[T], section: str, values: Mapping[str, Any]) -> T:
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        value: Any = raw
        if key not in known:
            raise ValueError(f"{section}.{key}: unknown key; expected one of {', '.join(known)}")
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{section}.{key}: expected a list of numbers")
            value = tuple(float(v) for v in raw)
        elif isinstance(value, list | tuple):
            raise ValueError(f"{section}.{key}: expected a number, got a list")
        elif isinstance(default, int) and not isinstance(default, bool):
            if float(value) != int(value):
                raise ValueError(f"{section}.{key}: must be a whole number, got {value!r}")
            value = int(value)
        elif isinstance(default, str):
            value = str(value)
        else:
            value = float(value)
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"{section}.{key}: must not be negative, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def aimd_settings(values: Mapping[str, Any]) -> AimdSettings:
    return _build(AimdSettings, "reputation.aimd", values)


def breaker_settings(values: Mapping[str, Any]) -> BreakerSettings:
    return _build(BreakerSettings, "reputation.breaker", values)


def check_overrides(field: str, values: Mapping[str, Any]) -> None:
    """Raise ValueError naming the key when a config override is not valid."""
    if field == "aimd":
        aimd_settings(values)
    elif field == "breaker":
        breaker_settings(values)
    elif field == "limits":
        LimitsTable.load(overrides=values)
