"""Commands valid in any state, and the small authenticated ones: CAPABILITY, NOOP,
LOGOUT (RFC 3501 §6.1), ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342), CHECK."""

from __future__ import annotations

from mailwarden import __version__
from mailwarden.imap.commands import ANY, AUTHED, SELECTED, command
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import parse_enable, parse_id
from mailwarden.imap.wire.encode import encode_list, untagged
from mailwarden.imap.wire.tokens import ImapSyntaxError, Token

# RFC 5161 §3.1: ENABLE answers with the extensions it turned on.
ENABLEABLE = ("CONDSTORE", "QRESYNC")


def _none(args: list[Token], name: str) -> None:
    if args:
        raise ImapSyntaxError(f"{name} takes no arguments")


@command("CAPABILITY", ANY)
async def capability(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    _none(args, "CAPABILITY")
    s.write(untagged(b"CAPABILITY", " ".join(s.capabilities()).encode("ascii")))
    return Done(text="CAPABILITY completed")


@command("NOOP", ANY)
async def noop(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 3501 §6.1.2: the way to poll for updates; the session syncs after every command.
    _none(args, "NOOP")
    return Done(text="NOOP completed")


@command("CHECK", SELECTED)
async def check(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 3501 §6.4.1: every change is already committed; nothing to checkpoint.
    _none(args, "CHECK")
    return Done(text="CHECK completed")


@command("LOGOUT", ANY)
async def logout(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    _none(args, "LOGOUT")
    s.logout()
    return Done(text="LOGOUT completed")


@command("ID", ANY)
async def id_(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 2971 §3.1: the client's fields are informational; we log nothing secret.
    parse_id(args)
    fields: list[str | None] = ["name", "mailwarden", "version", __version__]
    s.write(untagged(b"ID", encode_list(fields)))
    return Done(text="ID completed")


@command("ENABLE", AUTHED)
async def enable(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    wanted = parse_enable(args)
    newly: list[str] = []
    for cap in wanted:
        if cap not in ENABLEABLE or cap in s.enabled:
            continue
        if cap == "QRESYNC" and "CONDSTORE" not in s.enabled:  # RFC 7162 §3.2.3: implies it
            s.enabled.add("CONDSTORE")
            newly.append("CONDSTORE")
        s.enabled.add(cap)
        newly.append(cap)
    s.write(untagged(b"ENABLED", *(c.encode("ascii") for c in newly)))
    return Done(text="ENABLE completed")


@command("NAMESPACE", AUTHED)
async def namespace(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 2342 §5: one personal namespace with "/" as delimiter; no others.
    _none(args, "NAMESPACE")
    s.write(untagged(b"NAMESPACE", b'(("" "/")) NIL NIL'))
    return Done(text="NAMESPACE completed")
