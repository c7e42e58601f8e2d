"""The first configuration: `mailwarden init` and `mailwarden setup` write it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from mailwarden.cli.common import EXIT_CONFIG, fail
from mailwarden.config.schema import Settings, default_listeners

PRODUCTION_PORTS = {
    "mx": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "http": 443,
}


def initial_config(hostname: str, data_dir: str, production: bool) -> dict[str, object]:
    listeners = {}
    for name, lst in default_listeners().items():
        entry = lst.model_dump(exclude={"enabled"})
        if production:
            entry["address"] = "*"
            entry["port"] = PRODUCTION_PORTS[name]
        listeners[name] = entry
    return {
        "hostname": hostname,
        "data_dir": data_dir,
        "storage": {"url": ""},
        "dns": {"nameservers": []},
        "listeners": listeners,
        "workers": 0 if production else 1,  # production: one server process per core
    }


def write_initial_config(path: Path, hostname: str, data_dir: str, production: bool) -> Settings:
    """The config file, data directory, a self-signed certificate and the database."""
    from mailwarden.app import build_services
    from mailwarden.config.loader import validate_mapping
    from mailwarden.core.errors import ConfigError
    from mailwarden.tlsconf import generate_self_signed

    data = initial_config(hostname, data_dir, production)
    try:
        settings = validate_mapping(data, path.resolve().parent)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# mailwarden configuration; reference: docs/config.md\n"
        + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    assert settings.tls.cert is not None and settings.tls.key is not None
    if not settings.tls.cert.exists():
        generate_self_signed(settings.hostname, settings.tls.cert, settings.tls.key)

    async def setup_db() -> None:
        services = await build_services(settings)
        await services.db.close()

    asyncio.run(setup_db())
    return settings
