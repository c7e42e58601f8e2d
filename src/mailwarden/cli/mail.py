"""`mailwarden mailbox|message ...`: look into stored mail (like doveadm)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailwarden.app import Services
from mailwarden.cli.common import ConfigOpt, JsonOpt, print_rows, run_with_services

mailbox_app = typer.Typer(help="Folders of an account.", no_args_is_help=True)
message_app = typer.Typer(help="Stored messages.", no_args_is_help=True)


@mailbox_app.command("list")
def mailbox_list(address: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Folders of ADDRESS with message counts (like `doveadm mailbox status`)."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {
                "name": m.name,
                "special_use": m.special_use or "",
                "messages": m.messages,
                "unseen": m.unseen,
                "size": m.size,
                "uidvalidity": m.uidvalidity,
                "uidnext": m.uidnext,
                "highestmodseq": m.highestmodseq,
            }
            for m in await s.mailstore.mailboxes(address)
        ]

    print_rows(
        run_with_services(config, go),
        ["name", "special_use", "messages", "unseen", "size", "uidnext"],
        as_json,
    )


@message_app.command("list")
def message_list(
    address: str,
    mailbox: Annotated[str, typer.Option(help="Folder name.")] = "INBOX",
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 1000,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages in a folder: uid, from, subject, size, flags and authentication results."""

    async def go(s: Services) -> list[dict[str, object]]:
        return [
            {
                "uid": m.uid,
                "from": m.headers.from_addr,
                "subject": m.headers.subject,
                "size": m.size,
                "flags": list(m.flags),
                "internal_date": m.internal_date.isoformat(),
                "mail_from": m.mail_from,
                "rcpt_to": m.rcpt_to,
                "message_id": m.headers.message_id,
                "auth_results": m.auth_results,
            }
            for m in await s.mailstore.messages(address, mailbox, limit)
        ]

    print_rows(run_with_services(config, go), ["uid", "from", "subject", "size", "flags"], as_json)


@message_app.command("show")
def message_show(
    address: str,
    uid: Annotated[int, typer.Option(help="UID of the message.")],
    mailbox: Annotated[str, typer.Option(help="Folder name.")] = "INBOX",
    config: ConfigOpt = None,
) -> None:
    """Print the raw stored message."""

    async def go(s: Services) -> bytes:
        return await s.mailstore.raw_message(address, mailbox, uid)

    raw = run_with_services(config, go)
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
