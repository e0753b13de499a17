"""Loading a configuration: typed defaults (config.py), then a TOML file, then ``--set`` overrides,
each value checked against its field's type and the whole against the rules (config_rules.py).
Unknown sections and keys are errors naming where they came from."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streaming_lstm.core.config import AppConfig, ConfigError, DataConfig, MlflowConfig, ModelConfig, SparkConfig, StreamConfig, TrainConfig
from streaming_lstm.core.config_rules import validate

_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "stream": StreamConfig,
    "spark": SparkConfig,
    "mlflow": MlflowConfig,
}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's type; the error names ``key`` and ``value``."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if isinstance(value, str) and value.strip().startswith("["):
            value = _parse_scalar(value)  # TOML list syntax: "[128, 256]"
        if isinstance(value, str) and item_type is not str:
            # Command-line form: "128,256".
            value = [v for v in value.split(",") if v.strip()]
            try:
                value = [item_type(v) for v in value]
            except ValueError:
                raise ConfigError(f"{key}: expected a comma-separated list of {item_type.__name__}, got {value!r}") from None
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    elif origin is dict or annotation is dict:
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
    else:  # pragma: no cover - a field type this loader does not know is a bug here
        raise TypeError(f"unsupported config type {annotation!r} for {key}")
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        raise ConfigError(f"{key}: expected a list of {item.__name__} (TOML: [a, b]; on the command line: a,b), got {value!r}")
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{key}: expected {name}, got {value!r}")


COMMAND_LINE = "the command line (--set or a flag)"


def _build_section(name: str, cls: type, values: Mapping[str, Any], source: str | Mapping[str, str]) -> Any:
    """One section from ``values``; ``source`` says where a key came from (one name for all, or per key)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            where = source if isinstance(source, str) else source.get(key, "defaults")
            raise ConfigError(f"unknown key '{name}.{key}' in {where} (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """A command-line ``--set key=value`` value: TOML syntax if it parses, else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """Defaults, then the TOML file at ``path``, then ``overrides`` (``"section.key" -> value``).

    String override values for non-string fields are parsed (``"4"`` -> 4, ``"128,256"`` -> (128, 256)).
    """
    merged: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    origins: dict[str, dict[str, str]] = {name: {} for name in _SECTIONS}  # where each key was set
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for section, values in raw.items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown section '[{section}]' in {path} (known: {', '.join(_SECTIONS)})")
            if not isinstance(values, dict):
                raise ConfigError(f"'{section}' in {path} must be a table, got {values!r}")
            merged[section].update(values)
            origins[section].update(dict.fromkeys(values, str(path)))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or not key:
            raise ConfigError(f"unknown setting '{dotted}' (expected section.key, sections: {', '.join(_SECTIONS)})")
        hints = typing.get_type_hints(_SECTIONS[section])
        if isinstance(value, str) and hints.get(key) not in (str, None) and typing.get_origin(hints.get(key)) is not tuple:
            value = _parse_scalar(value)
        merged[section][key] = value
        origins[section][key] = COMMAND_LINE
    sections = {name: _build_section(name, cls, merged[name], origins[name]) for name, cls in _SECTIONS.items()}
    cfg = AppConfig(**sections)
    validate(cfg)
    return cfg


def from_dict(raw: Mapping[str, Any]) -> AppConfig:
    """Rebuild a config saved with :meth:`AppConfig.to_dict` (model metadata, broadcasts)."""
    cfg = AppConfig(**{name: _build_section(name, cls, raw.get(name, {}), "saved config") for name, cls in _SECTIONS.items()})
    validate(cfg)
    return cfg
