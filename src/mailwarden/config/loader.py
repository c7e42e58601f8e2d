"""Load Settings from YAML plus MAILWARDEN_* environment overrides; errors name the key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mailwarden.config.schema import Settings
from mailwarden.core.errors import ConfigError

DEFAULT_PATHS = (Path("mailwarden.yaml"), Path("/etc/mailwarden/mailwarden.yaml"))
ENV_PREFIX = "MAILWARDEN_"


def find_config(explicit: Path | None) -> Path:
    """``--config`` if given, else ./mailwarden.yaml, else /etc/mailwarden/mailwarden.yaml."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    for candidate in DEFAULT_PATHS:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "no config file: looked for ./mailwarden.yaml and /etc/mailwarden/mailwarden.yaml "
        "(create one with `mailwarden init`)"
    )


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``MAILWARDEN_LIMITS__MAX_RECIPIENTS=50`` → {"limits": {"max_recipients": 50}}.

    Values are parsed as YAML, so lists and numbers work:
    ``MAILWARDEN_DNS__NAMESERVERS='["127.0.0.1:53"]'``.
    """
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "MAILWARDEN_CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment {name}: not valid YAML ({exc})") from exc
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment {name}: conflicts with another override")
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        problems.append(f"{key}: {msg}")
    return problems


def validate_mapping(data: Mapping[str, Any], base_dir: Path) -> Settings:
    """Validate a raw mapping; relative paths are taken relative to ``base_dir``."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(format_validation_error(exc))
        ) from None
    return _absolutize(settings, base_dir)


def _absolutize(s: Settings, base: Path) -> Settings:
    data_dir = s.resolved_data_dir(base)
    tls = s.tls.model_copy(
        update={
            "cert": _abs(s.tls.cert, base) or data_dir / "tls" / "cert.pem",
            "key": _abs(s.tls.key, base) or data_dir / "tls" / "key.pem",
        }
    )
    rep = s.reputation.model_copy(update={"audit_ca_file": _abs(s.reputation.audit_ca_file, base)})
    return s.model_copy(update={"data_dir": data_dir, "tls": tls, "reputation": rep})


def _abs(p: Path | None, base: Path) -> Path | None:
    if p is None:
        return None
    return p if p.is_absolute() else (base / p).resolve()


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Find, read, override from the environment and validate the configuration."""
    env = os.environ if env is None else env
    if path is None and env.get("MAILWARDEN_CONFIG"):
        path = Path(env["MAILWARDEN_CONFIG"])
    cfg = find_config(path)
    data = _merge(read_yaml(cfg), _env_overrides(env))
    return validate_mapping(data, cfg.resolve().parent)
