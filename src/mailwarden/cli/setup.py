"""`mailwarden setup`: the first-run wizard.

Writes the configuration if there is none, creates the first domain and its DKIM keys,
an admin account that receives postmaster@, abuse@ and the report addresses, prints the
DNS records to publish, and re-checks them live until they are right.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mailwarden.app import Services
from mailwarden.cli.audit import print_report
from mailwarden.cli.common import ConfigOpt, run_with_settings, settings_or_exit
from mailwarden.cli.initconf import write_initial_config
from mailwarden.core.address import Address
from mailwarden.core.errors import InvalidAddress, NotFound
from mailwarden.reputation.audit.model import AuditReport
from mailwarden.services.dns_records import records_to_publish

# The records the wizard prints fix these checks; it is done when none of them fails.
RECORD_CHECKS = ("mx", "spf", "dkim", "dmarc", "mailboxes")
# The TLS check needs the running server; `mailwarden audit` covers it once it runs.
WIZARD_CHECKS = ("mx", "spf", "dkim", "dmarc", "rdns", "helo", "mta_sts", "dane", "mailboxes")
ROLE_ADDRESSES = ("postmaster", "abuse", "dmarc-reports", "tls-reports")


async def ask(text: str, **kwargs: Any) -> str:
    """typer.prompt off the event loop (it blocks on the terminal)."""
    return str(await asyncio.to_thread(typer.prompt, text, **kwargs))


async def _confirm(text: str) -> bool:
    return bool(await asyncio.to_thread(typer.confirm, text, default=False))


def _guess_domain(hostname: str) -> str:
    labels = hostname.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else hostname


async def _domain(s: Services, out: Console) -> str:
    hosted = [d.name for d in await s.accounts.list_domains()]
    default = hosted[0] if hosted else _guess_domain(s.settings.hostname)
    while True:
        name = (await ask("Mail domain (the part after @)", default=default)).strip().lower()
        try:
            if name not in hosted:
                name = (await s.accounts.add_domain(name)).name
                out.print(f"added domain {name}", highlight=False)
            break
        except InvalidAddress as exc:
            out.print(f"[red]{exc}[/red]", highlight=False)
    if not any(k.state == "active" for k in await s.dkim.published(name)):
        keys = await s.dkim.generate(name)
        out.print(f"DKIM keys: {', '.join(k.selector for k in keys)}", highlight=False)
    return name


async def _password() -> str:
    while True:
        pw = await ask("Password", hide_input=True, confirmation_prompt=True)
        if len(pw) >= 8:
            return pw
        typer.echo("use at least 8 characters")


async def _admin(s: Services, domain: str, out: Console) -> str:
    while True:
        address = (await ask("Admin mail address", default=f"admin@{domain}")).strip()
        try:
            Address.parse(address)
            if not await s.accounts.is_local_domain(address.rpartition("@")[2]):
                raise InvalidAddress(f"{address}: its domain is not hosted here")
            break
        except InvalidAddress as exc:
            out.print(f"[red]{exc}[/red]", highlight=False)
    try:
        await s.accounts.get_user(address)
        out.print(f"{address} exists; its password is unchanged", highlight=False)
    except NotFound:
        await s.accounts.add_user(address, await _password())
        out.print(f"created {address}", highlight=False)
    for local in ROLE_ADDRESSES:  # RFC 5321 §4.5.1 postmaster, RFC 2142 abuse, reports
        role = f"{local}@{domain}"
        if await s.accounts.resolve(Address.parse(role)) is None:
            await s.accounts.add_alias(role, address)
            out.print(f"{role} → {address}", highlight=False)
    return address


async def _records(s: Services, domain: str, out: Console) -> None:
    out.print(f"\n[bold]Publish these DNS records for {domain}:[/bold]\n")
    for record in await records_to_publish(s.settings, s.accounts, s.dkim, domain):
        out.print(record.zone_line(), markup=False, highlight=False, soft_wrap=True)
    out.print()


def ready(report: AuditReport) -> bool:
    return not any(c.status == "fail" for c in report.checks if c.name in RECORD_CHECKS)


async def _line_or_timeout(seconds: float) -> str | None:
    """A line from the terminal, or None when ``seconds`` pass first ("" at end of input)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not line.done():
            line.set_result(sys.stdin.readline())

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError):  # stdin is a regular file: no waiting on it
        return await ask("Press Enter to check again, q to stop", default="", show_default=False)
    try:
        async with asyncio.timeout(seconds):
            return await line
    except TimeoutError:
        return None
    finally:
        loop.remove_reader(fd)


async def _recheck(s: Services, domain: str, out: Console, interval: float) -> bool:
    while True:
        report = await s.audits.audit(domain, only=WIZARD_CHECKS)
        print_report(report, out)
        if ready(report):
            out.print(f"\n[green]{domain} is ready.[/green] Start the server: mailwarden run")
            out.print(f"then check TLS as well: mailwarden audit {domain}", highlight=False)
            return True
        out.print(
            f"Records not right yet. Checking again in {interval:g} s; "
            "press Enter to check now, q then Enter to stop."
        )
        answer = await _line_or_timeout(interval)
        if answer is not None and (answer == "" or answer.strip().lower() == "q"):
            out.print(f"stopped; check again later with: mailwarden audit {domain}")
            return False


def setup_command(
    config: ConfigOpt = None,
    interval: Annotated[
        float, typer.Option(min=1, help="Seconds between re-checks of the DNS records.")
    ] = 30.0,
) -> None:
    """First-run wizard: config, first domain, admin account, DNS records, live re-check."""
    path = config or Path("mailwarden.yaml")
    if not path.exists():
        default = socket.getfqdn()
        hostname = typer.prompt(
            "This server's host name (its MX)",
            default=default if default.count(".") >= 1 else None,
        )
        data_dir = typer.prompt("Where to keep mail, keys and the database", default="./data")
        production = typer.confirm("Listen on the real ports (25, 587, 465, 143, 993)?")
        write_initial_config(path, hostname, data_dir, production)
        typer.echo(f"wrote {path}")
    out = Console(highlight=False)

    async def go(s: Services) -> bool:
        domain = await _domain(s, out)
        await _admin(s, domain, out)
        await _records(s, domain, out)
        return await _recheck(s, domain, out, interval)

    settings = settings_or_exit(path)
    # Re-checks must see records published a moment ago: no answer cache of our own.
    # (A recursive resolver in between may still cache "not found" for its SOA minimum.)
    live = settings.model_copy(update={"dns": settings.dns.model_copy(update={"cache": False})})
    if not run_with_settings(live, go):
        raise typer.Exit(1)
