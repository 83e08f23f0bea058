"""Small validators shared by the frozen parameter dataclasses (`CombineParams`, `OverscanParams`)."""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum
from typing import Any, TypeVar

from ccdflow.errors import ConfigError

E = TypeVar("E", bound=StrEnum)


def parse_enum(enum: type[E], value: Any, *, key: str) -> E:
    """Return ``enum(value)`` or raise a `ConfigError` naming ``key`` and the allowed values."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ConfigError(key, f"{value!r} is not one of: {allowed}") from None


def parse_number(value: Any, *, key: str, minimum: float | None = 0.0, strict: bool = False,
                 allow_none: bool = False) -> float | None:
    """Return ``value`` as a finite float at or above ``minimum`` (above it if ``strict``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ConfigError(key, f"must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def parse_int(value: Any, *, key: str, minimum: int = 0, allow_none: bool = False) -> int | None:
    """Return ``value`` as an int at or above ``minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def to_plain_dict(params: Any) -> dict[str, Any]:
    """A dataclass as a dict of plain YAML/JSON/FITS-friendly values (enums as their strings)."""
    return {
        field.name: (value.value if isinstance(value, StrEnum) else value)
        for field in dataclasses.fields(params)
        for value in [getattr(params, field.name)]
    }


def check_keys(cls: type, data: dict[str, Any], *, key: str) -> None:
    """Raise a `ConfigError` naming the first key of ``data`` that ``cls`` has no field for."""
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping, got {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    for name in data:
        if name not in known:
            raise ConfigError(f"{key}.{name}", f"unknown key; expected one of {sorted(known)}")
