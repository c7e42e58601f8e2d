"""Configuration: one pydantic schema, loaded from mailwarden.yaml with MAILWARDEN_* overrides."""

from mailwarden.config.loader import DEFAULT_PATHS, find_config, load_settings, validate_mapping
from mailwarden.config.schema import Listener, Settings

__all__ = [
    "DEFAULT_PATHS",
    "Listener",
    "Settings",
    "find_config",
    "load_settings",
    "validate_mapping",
]
