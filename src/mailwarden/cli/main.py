"""Entry point of the `mailwarden` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mailwarden.cli.admin import alias_app, domain_app, user_app
from mailwarden.cli.audit import audit_command
from mailwarden.cli.common import EXIT_CONFIG, EXIT_ERROR, ConfigOpt, fail, settings_or_exit
from mailwarden.cli.initconf import write_initial_config
from mailwarden.cli.mail import mailbox_app, message_app
from mailwarden.cli.reputation import reputation_app
from mailwarden.cli.sending import auth_app, dkim_app, events_app, queue_app
from mailwarden.cli.setup import setup_command

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
app.command("audit")(audit_command)
app.command("setup")(setup_command)


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
    path = config or Path("mailwarden.yaml")
    if path.exists() and not force:
        raise fail(f"{path} already exists (use --force to overwrite)", EXIT_ERROR)
    settings = write_initial_config(path, hostname, data_dir, production)
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
    ca = settings.reputation.audit_ca_file
    if ca is not None and not ca.exists():
        problems.append(f"reputation.audit_ca_file: file {ca} does not exist")
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
