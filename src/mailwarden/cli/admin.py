"""`mailwarden domain|user|alias ...`"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailwarden.app import Services
from mailwarden.cli.common import (
    EXIT_ERROR,
    ConfigOpt,
    JsonOpt,
    fail,
    print_rows,
    run_with_services,
)

domain_app = typer.Typer(help="Domains this server receives mail for.", no_args_is_help=True)
user_app = typer.Typer(help="Mail accounts.", no_args_is_help=True)
alias_app = typer.Typer(help="Aliases and catch-alls.", no_args_is_help=True)


@domain_app.command("add")
def domain_add(name: str, config: ConfigOpt = None) -> None:
    """Start receiving mail for NAME and generate its DKIM keys (RSA-2048 and Ed25519)."""

    async def go(s: Services) -> tuple[str, list[str]]:
        domain = (await s.accounts.add_domain(name)).name
        keys = await s.dkim.generate(domain)
        return domain, [f"{k.selector} ({k.algorithm})" for k in keys]

    domain, selectors = run_with_services(config, go)
    typer.echo(f"added domain {domain}; DKIM selectors: {', '.join(selectors)}")
    typer.echo(f"publish its DNS records: mailwarden domain dns {domain}")


@domain_app.command("list")
def domain_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List hosted domains."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {"name": d.name, "created_at": d.created_at.isoformat()}
            for d in await s.accounts.list_domains()
        ]

    print_rows(run_with_services(config, go), ["name", "created_at"], as_json)


@domain_app.command("remove")
def domain_remove(name: str, config: ConfigOpt = None) -> None:
    """Stop hosting NAME and delete its users, aliases and mail."""

    async def go(s: Services) -> None:
        await s.accounts.remove_domain(name)

    run_with_services(config, go)
    typer.echo(f"removed domain {name}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not pw:
        raise fail("empty password", EXIT_ERROR)
    return pw


@user_app.command("add")
def user_add(
    address: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    quota: Annotated[int | None, typer.Option(help="Quota in bytes (0 = unlimited).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create the account ADDRESS (its domain must exist) with the default mailboxes."""
    password = _read_password(password_stdin)

    async def go(s: Services) -> str:
        return (await s.accounts.add_user(address, password, quota)).address

    typer.echo(f"added user {run_with_services(config, go)}")


@user_app.command("passwd")
def user_passwd(
    address: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    config: ConfigOpt = None,
) -> None:
    """Set a new password for ADDRESS."""
    password = _read_password(password_stdin)

    async def go(s: Services) -> None:
        await s.accounts.set_password(address, password)

    run_with_services(config, go)
    typer.echo(f"password changed for {address}")


@user_app.command("list")
def user_list(
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List accounts with quota and usage."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {
                "address": u.address,
                "quota_bytes": u.quota_bytes,
                "used_bytes": u.used_bytes,
                "disabled": u.disabled,
            }
            for u in await s.accounts.list_users(domain)
        ]

    print_rows(
        run_with_services(config, go), ["address", "quota_bytes", "used_bytes", "disabled"], as_json
    )


@user_app.command("remove")
def user_remove(address: str, config: ConfigOpt = None) -> None:
    """Delete ADDRESS and its mail."""

    async def go(s: Services) -> None:
        await s.accounts.remove_user(address)

    run_with_services(config, go)
    typer.echo(f"removed user {address}")


@alias_app.command("add")
def alias_add(source: str, destination: str, config: ConfigOpt = None) -> None:
    """Deliver mail for SOURCE (local@domain, or @domain for a catch-all) to DESTINATION."""

    async def go(s: Services) -> None:
        await s.accounts.add_alias(source, destination)

    run_with_services(config, go)
    typer.echo(f"added alias {source} -> {destination}")


@alias_app.command("list")
def alias_list(
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List aliases."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {"source": a.source, "destination": a.destination}
            for a in await s.accounts.list_aliases(domain)
        ]

    print_rows(run_with_services(config, go), ["source", "destination"], as_json)


@alias_app.command("remove")
def alias_remove(
    source: str,
    destination: Annotated[str | None, typer.Argument()] = None,
    config: ConfigOpt = None,
) -> None:
    """Remove an alias (all its destinations unless DESTINATION is given)."""

    async def go(s: Services) -> None:
        await s.accounts.remove_alias(source, destination)

    run_with_services(config, go)
    typer.echo(f"removed alias {source}")


@user_app.command("sent-copy")
def user_sent_copy(
    address: str,
    state: Annotated[str, typer.Argument(help="on or off")],
    config: ConfigOpt = None,
) -> None:
    """Whether mail ADDRESS submits is also filed in its Sent folder (default off:
    mail clients save their own copy over IMAP; turn on for apps that do not)."""
    if state not in ("on", "off"):
        raise fail("state must be on or off", EXIT_ERROR)

    async def go(s: Services) -> None:
        await s.accounts.set_save_sent(address, state == "on")

    run_with_services(config, go)
    typer.echo(f"sent copies for {address}: {state}")
