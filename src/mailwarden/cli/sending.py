"""`mailwarden domain dns`, `dkim ...`, `queue ...`, `auth ...`, `events ...`"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from mailwarden.app import Services
from mailwarden.cli.admin import domain_app
from mailwarden.cli.common import (
    EXIT_ERROR,
    ConfigOpt,
    JsonOpt,
    fail,
    print_rows,
    run_with_services,
)
from mailwarden.core.clock import SystemClock
from mailwarden.services.dns_records import records_to_publish
from mailwarden.store.records import QueuedMessage

dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True)
queue_app = typer.Typer(help="The outbound queue.", no_args_is_help=True)
auth_app = typer.Typer(help="Failed logins and lockouts.", no_args_is_help=True)
events_app = typer.Typer(
    help="Delivery events (one per attempt per recipient).", no_args_is_help=True
)

QueueIdArg = Annotated[str, typer.Argument(help="Queue id (see `mailwarden queue list`).")]


# -- domain dns / dkim ---------------------------------------------------------------
@domain_app.command("dns")
def domain_dns(domain: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Print every DNS record DOMAIN must publish: MX, SPF, DKIM, DMARC, TLS-RPT."""
    records = run_with_services(
        config, lambda s: records_to_publish(s.settings, s.accounts, s.dkim, domain)
    )
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in records], indent=2) + "\n")
        return
    for r in records:
        typer.echo(f"; {r.note}" if r.note else ";")
        typer.echo(r.zone_line())


@dkim_app.command("list")
def dkim_list(domain: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List DOMAIN's DKIM selectors: active ones sign, retiring ones stay published."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {
                "selector": k.selector,
                "algorithm": k.algorithm,
                "state": k.state,
                "created_at": k.created_at.isoformat() if k.created_at else "",
                "retire_at": k.retire_at.isoformat() if k.retire_at else "",
            }
            for k in await s.dkim.published(domain)
        ]

    print_rows(
        run_with_services(config, go),
        ["selector", "algorithm", "state", "created_at", "retire_at"],
        as_json,
    )


@dkim_app.command("rotate")
def dkim_rotate(domain: str, config: ConfigOpt = None) -> None:
    """New selectors sign from now on; the old ones stay published for dkim.rotation_grace."""

    async def go(s: Services) -> tuple[list[str], list[str]]:
        new, old = await s.dkim.rotate(domain)
        return [k.selector for k in new], [
            f"{k.selector} (until {k.retire_at:%Y-%m-%d %H:%M} UTC)" for k in old if k.retire_at
        ]

    new, old = run_with_services(config, go)
    typer.echo(
        f"new selectors: {', '.join(new)} (publish them now: mailwarden domain dns {domain})"
    )
    if old:
        typer.echo(f"still published: {', '.join(old)}")


# -- queue -----------------------------------------------------------------------------
def _message_row(m: QueuedMessage) -> dict[str, object]:
    pending = [r for r in m.recipients if r.state in ("queued", "deferred")]
    nxt = min((r.next_attempt_at for r in pending), default=None)
    return {
        "queue_id": m.queue_id,
        "created_at": m.created_at.isoformat(),
        "sender": m.mail_from or "<>",
        "size": m.size,
        "held": m.held,
        "recipients": len(m.recipients),
        "pending": len(pending),
        "next_attempt_at": nxt.isoformat() if nxt else "",
        "last_reply": next(
            (
                f"{r.last_code or ''} {r.last_enhanced} {r.last_text}".strip()
                for r in pending
                if r.last_text
            ),
            "",
        ),
    }


RECIPIENT_COLUMNS = [
    "recipient",
    "state",
    "attempts",
    "next_attempt_at",
    "last_code",
    "last_enhanced",
    "last_text",
]


def _recipient_rows(m: QueuedMessage) -> list[dict[str, object]]:
    return [
        {
            "recipient": r.rcpt,
            "state": r.state,
            "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at.isoformat(),
            "last_code": r.last_code,
            "last_enhanced": r.last_enhanced,
            "last_text": r.last_text,
        }
        for r in m.recipients
    ]


def _message_detail(m: QueuedMessage) -> dict[str, object]:
    return {
        **_message_row(m),
        "return_path": m.return_path,
        "account": m.account,
        "message_id": m.message_id,
        "expires_at": m.expires_at.isoformat(),
    }


@queue_app.command("list")
def queue_list(
    held: Annotated[bool, typer.Option("--held", help="Only held messages.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 1000,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages waiting to be delivered, oldest first."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            _message_row(m)
            for m in await s.queue_admin.list_messages(True if held else None, limit)
        ]

    cols = [
        "queue_id",
        "created_at",
        "sender",
        "recipients",
        "pending",
        "held",
        "next_attempt_at",
        "last_reply",
    ]
    print_rows(run_with_services(config, go), cols, as_json)


@queue_app.command("show")
def queue_show(queue_id: QueueIdArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One message with each recipient's state and last reply."""

    msg = run_with_services(config, lambda s: s.queue_admin.show(queue_id))
    if as_json:
        detail = {**_message_detail(msg), "recipient_states": _recipient_rows(msg)}
        sys.stdout.write(json.dumps(detail, indent=2, default=str) + "\n")
        return
    for key, value in _message_detail(msg).items():
        typer.echo(f"{key}: {value}")
    print_rows(_recipient_rows(msg), RECIPIENT_COLUMNS, False)


def _echo_count(verb: str, n: int, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"action": verb, "count": n}) + "\n")
    else:
        typer.echo(f"{verb}: {n}")


@queue_app.command("retry")
def queue_retry(queue_id: QueueIdArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Try a deferred message again now."""
    _echo_count(
        "retry", run_with_services(config, lambda s: s.queue_admin.retry(queue_id)), as_json
    )


@queue_app.command("flush")
def queue_flush(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Try every deferred message again now (postqueue -f)."""
    _echo_count("flush", run_with_services(config, lambda s: s.queue_admin.retry(None)), as_json)


@queue_app.command("hold")
def queue_hold(queue_id: QueueIdArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Keep a message in the queue without delivering it until released."""
    _echo_count(
        "hold", run_with_services(config, lambda s: s.queue_admin.hold(queue_id, True)), as_json
    )


@queue_app.command("release")
def queue_release(queue_id: QueueIdArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Let a held message be delivered again."""
    _echo_count(
        "release", run_with_services(config, lambda s: s.queue_admin.hold(queue_id, False)), as_json
    )


@queue_app.command("delete")
def queue_delete(queue_id: QueueIdArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Remove a message from the queue without sending a bounce."""

    async def go(s: Services) -> int:
        return len((await s.queue_admin.delete(queue_id)).recipients)

    _echo_count("delete", run_with_services(config, go), as_json)


# -- auth ------------------------------------------------------------------------------
@auth_app.command("lockouts")
def auth_lockouts(
    all_: Annotated[
        bool, typer.Option("--all", help="Also IPs and accounts below the limit.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """IPs and accounts locked out by failed logins (within submission.auth_window)."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {
                "kind": t.kind,
                "key": t.key,
                "failures": t.failures,
                "last": t.last.isoformat(),
                "locked": locked,
            }
            for t, locked in await s.guard.lockouts(include_below=all_)
        ]

    print_rows(
        run_with_services(config, go), ["kind", "key", "failures", "last", "locked"], as_json
    )


@auth_app.command("unlock")
def auth_unlock(
    key: Annotated[str, typer.Argument(help="An IP address or an account.")],
    config: ConfigOpt = None,
) -> None:
    """Forget the failed logins of an IP or an account, lifting its lockout."""
    n = run_with_services(config, lambda s: s.guard.unlock(key.lower()))
    typer.echo(f"unlocked {key} ({n} failed logins forgotten)")


# -- events ----------------------------------------------------------------------------
_SINCE = re.compile(r"^(\d+)([smhd])$")


def _since(text: str) -> datetime | None:
    if not text:
        return None
    m = _SINCE.match(text)
    if m is None:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise fail("--since takes 30m, 2h, 7d or an ISO date", EXIT_ERROR) from None
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return SystemClock().now() - timedelta(seconds=int(m.group(1)) * unit)


@events_app.command("list")
def events_list(
    since: Annotated[str, typer.Option(help="30m, 2h, 7d or an ISO date.")] = "",
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help="dimension=value, e.g. recipient_domain=gmail.com; repeatable."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delivery events, newest first."""
    where: dict[str, str] = {}
    for f in filters or []:
        key, sep, value = f.partition("=")
        if not sep:
            raise fail(f"--where {f!r}: use dimension=value", EXIT_ERROR)
        where[key.strip()] = value.strip()

    async def go(s: Services) -> list[dict[str, Any]]:
        try:
            found = await s.queue_admin.events(since=_since(since), filters=where, limit=limit)
        except ValueError as exc:
            raise fail(str(exc), EXIT_ERROR) from None
        return [e.as_dict() for e in found]

    cols = [
        "at",
        "outcome",
        "queue_id",
        "recipient",
        "code",
        "enhanced",
        "mx_host",
        "tls_version",
        "attempt",
    ]
    print_rows(run_with_services(config, go), cols, as_json)
