"""Shared CLI plumbing: --config/--json options, service set-up, errors → exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mailwarden.app import Services, build_services
from mailwarden.config import Settings, load_settings
from mailwarden.core.errors import (
    AlreadyExists,
    ConfigError,
    InvalidAddress,
    MailwardenError,
    NotFound,
)

# Exit codes (documented in README): sysexits(3) where one fits.
EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed (already exists, invalid value, ...)
EXIT_USAGE = 2  # bad command line (typer/click)
EXIT_NOT_FOUND = 3  # the named domain/user/alias/mailbox/message does not exist
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is missing or invalid

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default ./mailwarden.yaml, then /etc/mailwarden/mailwarden.yaml).",
        envvar="MAILWARDEN_CONFIG",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

err = Console(stderr=True)
out = Console()
T = TypeVar("T")


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None


def run_with_services(config: Path | None, fn: Callable[[Services], Awaitable[T]]) -> T:
    """Load config, open the store, run ``fn``, close; map domain errors to exit codes."""
    return run_with_settings(settings_or_exit(config), fn)


def run_with_settings(settings: Settings, fn: Callable[[Services], Awaitable[T]]) -> T:
    """run_with_services for settings already loaded (and perhaps adjusted)."""

    async def main() -> T:
        services = await build_services(settings)
        try:
            return await fn(services)
        finally:
            await services.db.close()

    try:
        return asyncio.run(main())
    except NotFound as exc:
        raise fail(str(exc), EXIT_NOT_FOUND) from None
    except (AlreadyExists, InvalidAddress, MailwardenError) as exc:
        raise fail(str(exc), EXIT_ERROR) from None


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(list(rows), indent=2, default=str) + "\n")
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    out.print(table)
