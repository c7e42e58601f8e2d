"""Entry point of the `mailwarden` command."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
import yaml

from mailwarden.cli.admin import alias_app, domain_app, user_app
from mailwarden.cli.common import EXIT_CONFIG, EXIT_ERROR, ConfigOpt, fail, settings_or_exit
from mailwarden.cli.mail import mailbox_app, message_app
from mailwarden.cli.reputation import reputation_app
from mailwarden.cli.sending import auth_app, dkim_app, events_app, queue_app
from mailwarden.config.schema import default_listeners

app = typer.Typer(
    help="mailwarden: an all-in-one mail server that protects its own sender reputation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check and document the configuration.", no_args_is_help=True)
app.add_typer(domain_app, name="domain")
app.add_typer(user_app, name="user")
app.add_typer(alias_app, name="alias")
app.add_typer(mailbox_app, name="mailbox")
app.add_typer(message_app, name="message")
app.add_typer(config_app, name="config")
app.add_typer(dkim_app, name="dkim")
app.add_typer(queue_app, name="queue")
app.add_typer(auth_app, name="auth")
app.add_typer(events_app, name="events")
app.add_typer(reputation_app, name="reputation")

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


@app.command()
def init(
    hostname: Annotated[str, typer.Option(help="This server's fully-qualified host name.")],
    data_dir: Annotated[
        str, typer.Option(help="Where mail, database and keys are kept.")
    ] = "./data",
    production: Annotated[
        bool, typer.Option(help="Real ports (25, 587, ...) on all addresses.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config file.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write mailwarden.yaml, create the data directory, a TLS certificate and the database."""
    from mailwarden.app import build_services
    from mailwarden.config.loader import validate_mapping
    from mailwarden.core.errors import ConfigError
    from mailwarden.tlsconf import generate_self_signed

    path = config or Path("mailwarden.yaml")
    if path.exists() and not force:
        raise fail(f"{path} already exists (use --force to overwrite)", EXIT_ERROR)
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
    typer.echo(
        f"wrote {path}; data in {settings.data_dir}; self-signed certificate in {settings.tls.cert}"
    )


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the server in the foreground until SIGTERM or SIGINT."""
    from mailwarden.workers import serve

    settings = settings_or_exit(config)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    # aiosmtpd logs every command and reply at INFO; that is debugging detail, not a log.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, settings.log_level_number))
    raise typer.Exit(serve(settings))


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the configuration; every bad key is named with the reason."""
    settings = settings_or_exit(config)
    problems = []
    for label, p in (("tls.cert", settings.tls.cert), ("tls.key", settings.tls.key)):
        if p is not None and not p.exists():
            problems.append(
                f"{label}: file {p} does not exist (run `mailwarden init` or set the path)"
            )
    if problems:
        raise fail("invalid configuration:\n  " + "\n  ".join(problems), EXIT_CONFIG)
    typer.echo(f"configuration OK (hostname {settings.hostname}, data in {settings.data_dir})")


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference (docs/config.md) generated from the schema."""
    from mailwarden.config.docs import render

    typer.echo(render(), nl=False)


def main() -> None:
    app()
