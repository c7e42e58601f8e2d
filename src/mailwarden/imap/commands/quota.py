"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208).

Each account has one quota root, named "" (empty), covering all its mailboxes, with one
resource: STORAGE in units of 1024 octets. An account without a limit has no quota
root. Quotas are set by the operator (``mailwarden user``), so SETQUOTA is refused.
"""

from __future__ import annotations

from mailwarden.imap.commands import AUTHED, command
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import parse_getquota, parse_getquotaroot
from mailwarden.imap.wire.encode import Code, encode_mailbox, encode_string, untagged
from mailwarden.imap.wire.tokens import Token

ROOT = ""


async def _quota_line(s: ImapSession) -> bytes | None:
    assert s.user is not None
    used, limit = await s.ctx.folders.quota(s.user.id)
    if not limit:
        return None
    # RFC 9208 §5.1: "STORAGE" usage and limit in units of 1024 octets (rounded up).
    resources = b"(STORAGE %d %d)" % (-(-used // 1024), limit // 1024)
    return untagged(b"QUOTA", encode_string(ROOT), resources)


@command("GETQUOTAROOT", AUTHED)
async def getquotaroot(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    name = s.mailbox_name(parse_getquotaroot(args))
    assert s.user is not None
    record = await s.ctx.folders.get(s.user.id, name)
    line = await _quota_line(s)
    roots = [encode_string(ROOT)] if line is not None else []
    s.write(untagged(b"QUOTAROOT", encode_mailbox(record.name), *roots))
    if line is not None:
        s.write(line)
    return Done(text="GETQUOTAROOT completed")


@command("GETQUOTA", AUTHED)
async def getquota(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    root = parse_getquota(args)
    line = await _quota_line(s) if root == ROOT.encode() else None
    if line is None:
        return Done("NO", "No such quota root", Code("NONEXISTENT"))
    s.write(line)
    return Done(text="GETQUOTA completed")


@command("SETQUOTA", AUTHED)
async def setquota(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    return Done("NO", "Quotas are set by the administrator", Code("NOPERM"))
