"""Typed reads of one TOML table's keys, each error naming the key (``limits.grace_s``).

Used by :mod:`dvm.node.config` and :mod:`dvm.node.models` to parse ``provider.toml``: a value of
the wrong type, out of range, or a table with a key nobody reads raises :class:`ConfigError`
whose message names the key, because the operator has to find it in the file. Relative paths
are resolved against the config file's directory (``base_dir``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["boolean", "integer", "number", "resolve_path", "table", "text"]


def table(data: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config key {where} must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"config table {where} has unknown key(s): {', '.join(unknown)}")
    return value


def text(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in data:
        if default is None:
            raise ConfigError(f"config key {where}.{key} is required")
        return default
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key {where}.{key} must be a non-empty string")
    return value


def integer(data: Mapping[str, Any], key: str, where: str, default: int, *, low: int = 1) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"config key {where}.{key} must be an integer >= {low}")
    return value


def number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"config key {where}.{key} must be a positive number")
    return float(value)


def boolean(data: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config key {where}.{key} must be true or false")
    return value


def resolve_path(base_dir: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path
