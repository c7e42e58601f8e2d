"""APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7889 APPENDLIMIT, RFC 3516 literal8).

The message is written to the blob store (fsync'd) and committed before the tagged OK.
Bare LF line ends are turned into CRLF, as IMAP messages are CRLF-terminated (§2.3.1.1
of RFC 5322 / RFC 3501 §6.4.5 sizes count CRLF).
"""

from __future__ import annotations

import re

from mailwarden.core.errors import NotFound
from mailwarden.imap.commands import AUTHED, command
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.encode import Code
from mailwarden.imap.wire.message_args import parse_append
from mailwarden.imap.wire.tokens import Token

_LINE_END = re.compile(rb"\r?\n")


@command("APPEND", AUTHED)
async def append(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_append(args)
    assert s.user is not None
    name = s.mailbox_name(req.mailbox)
    try:
        mailbox = await s.ctx.folders.get(s.user.id, name)
    except NotFound:  # §6.3.11: the client may CREATE it and try again
        return Done("NO", f"Mailbox {name} does not exist", Code("TRYCREATE"))
    raw = req.message
    if not raw:
        return Done("NO", "Cannot store an empty message")
    if len(raw) > s.ctx.appendlimit:
        return Done("NO", "Message too large", Code("TOOBIG"))  # RFC 7889 §4
    if b"\n" in raw and raw.count(b"\n") != raw.count(b"\r\n"):
        raw = _LINE_END.sub(b"\r\n", raw)
    uidvalidity, new_uid = await s.ctx.messages.append(
        s.user.id, mailbox, raw, req.flags, req.internal_date
    )
    return Done("OK", "APPEND completed", Code("APPENDUID", uidvalidity, str(new_uid)))
