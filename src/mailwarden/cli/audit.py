"""`mailwarden audit DOMAIN`: every deliverability check, with the exact fix."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from mailwarden.app import Services
from mailwarden.cli.common import EXIT_ERROR, ConfigOpt, JsonOpt, run_with_services
from mailwarden.reputation.audit.model import WEIGHTS, AuditReport

STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def print_report(report: AuditReport, console: Console) -> None:
    """The checks as a table, then each fix in full (records are copied from here)."""
    table = Table("check", "status", "weight", "detail", title=f"audit of {report.domain}")
    for c in report.checks:
        status = f"[{STYLE[c.status]}]{c.status}[/]"
        table.add_row(c.name, status, str(WEIGHTS.get(c.name, 0)), c.detail)
    console.print(table)
    for c in report.checks:
        if c.fix and c.status in ("fail", "warn"):
            console.print(f"\n[bold]fix {c.name}[/bold] ({c.status}):", highlight=False)
            console.print(c.fix, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"\nscore {report.score}/100  ({report.queries} DNS queries, {report.seconds:.2f} s)",
        highlight=False,
    )


def audit_command(domain: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check DOMAIN's DNS, keys, TLS and blocklist status, as receivers will; print the fixes.

    Exits 1 when a check fails. The TLS check connects to this server's own listeners.
    """

    async def go(s: Services) -> AuditReport:
        return await s.audits.audit_and_compare(domain)

    report = run_with_services(config, go)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        print_report(report, Console())
    if any(c.status == "fail" for c in report.checks):
        raise typer.Exit(EXIT_ERROR)
