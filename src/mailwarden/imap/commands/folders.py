"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS
(RFC 3501 §6.3, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE)."""

from __future__ import annotations

from mailwarden.imap.commands import AUTHED, command
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.args import parse_create, parse_mailbox, parse_status
from mailwarden.imap.wire.encode import Code, encode_list, encode_mailbox, untagged
from mailwarden.imap.wire.listing import ListRequest, parse_list, pattern_matches
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, Token
from mailwarden.services.folders import DELIMITER, Folder, InvalidName, normalize
from mailwarden.store.records import MailboxRecord

_DELIM = b'"/"'


@command("CREATE", AUTHED)
async def create(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_create(args)
    assert s.user is not None
    use = req.use[0] if req.use else None
    if len(req.use) > 1 or (use is not None and use == "\\All"):
        return Done("NO", "Unsupported special-use attribute", Code("USEATTR"))  # RFC 6154 §3
    try:
        await s.ctx.folders.create(s.user.id, s.mailbox_name(req.mailbox), use)
    except InvalidName as exc:
        if use is not None and "special-use" in str(exc):
            return Done("NO", str(exc), Code("USEATTR"))
        raise
    return Done(text="CREATE completed")


@command("DELETE", AUTHED)
async def delete(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    name = _one_mailbox(s, args, "DELETE")
    assert s.user is not None
    if s.selected is not None and normalize(name) == s.selected.mailbox.name:
        s.deselect()  # deleting the selected mailbox: it is no longer selected
    await s.ctx.folders.delete(s.user.id, name)
    return Done(text="DELETE completed")


@command("RENAME", AUTHED)
async def rename(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if len(args) != 2:
        raise ImapSyntaxError("RENAME needs two mailbox names")
    old, new = (s.mailbox_name(parse_mailbox(a)) for a in args)
    assert s.user is not None
    if normalize(old) == "INBOX":
        inbox = await s.ctx.folders.get(s.user.id, "INBOX")
        await s.ctx.messages.rename_inbox(s.user.id, inbox, new)
    else:
        await s.ctx.folders.rename(s.user.id, old, new)
    return Done(text="RENAME completed")


@command("SUBSCRIBE", AUTHED)
async def subscribe(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    name = _one_mailbox(s, args, "SUBSCRIBE")
    assert s.user is not None
    await s.ctx.folders.subscribe(s.user.id, name)
    return Done(text="SUBSCRIBE completed")


@command("UNSUBSCRIBE", AUTHED)
async def unsubscribe(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    name = _one_mailbox(s, args, "UNSUBSCRIBE")
    assert s.user is not None
    await s.ctx.folders.unsubscribe(s.user.id, name)
    return Done(text="UNSUBSCRIBE completed")


def _one_mailbox(s: ImapSession, args: list[Token], name: str) -> str:
    if len(args) != 1:
        raise ImapSyntaxError(f"{name} takes one mailbox name")
    return s.mailbox_name(parse_mailbox(args[0]))


@command("LIST", AUTHED)
async def list_(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_list(args)
    assert s.user is not None
    if req.patterns == (b"",) and not req.extended:
        # RFC 3501 §6.3.8: an empty pattern asks for the delimiter and root.
        s.write(untagged(b"LIST", b"(\\Noselect)", _DELIM, b'""'))
        return Done(text="LIST completed")
    folders = await s.ctx.folders.folders(s.user.id)
    for folder in _matching(s, req, folders):
        await _list_line(s, b"LIST", folder, req)
    return Done(text="LIST completed")


@command("LSUB", AUTHED)
async def lsub(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    # RFC 3501 §6.3.9: the subscribed names that match.
    req = parse_list(args)
    if req.extended:
        raise ImapSyntaxError("LSUB takes a reference and one pattern")
    assert s.user is not None
    folders = await s.ctx.folders.folders(s.user.id)
    for folder in _matching(s, req, folders, lsub=True):
        if folder.subscribed:
            attrs = [Atom("\\Noselect")] if folder.record is None else []
            s.write(untagged(b"LSUB", encode_list(attrs), _DELIM, encode_mailbox(folder.name)))
    return Done(text="LSUB completed")


def _matching(
    s: ImapSession, req: ListRequest, folders: list[Folder], *, lsub: bool = False
) -> list[Folder]:
    ref = s.mailbox_name(req.reference)
    patterns = [normalize(ref + s.mailbox_name(p)) for p in req.patterns]
    out = []
    for folder in folders:
        if not any(pattern_matches(p, folder.name, DELIMITER) for p in patterns):
            continue
        if "SUBSCRIBED" in req.select and not folder.subscribed:
            continue
        if folder.record is None and not lsub and "SUBSCRIBED" not in req.select:
            continue  # RFC 5258 §3: a subscription without a mailbox shows only then
        if "SPECIAL-USE" in req.select and not (folder.record and folder.record.special_use):
            continue  # RFC 6154 §3
        out.append(folder)
    return out


async def _list_line(s: ImapSession, kind: bytes, folder: Folder, req: ListRequest) -> None:
    attrs = [a for a in folder.attributes if a != "\\Subscribed" or _wants_subscribed(req)]
    s.write(
        untagged(kind, encode_list([Atom(a) for a in attrs]), _DELIM, encode_mailbox(folder.name))
    )
    if req.status_items and folder.record is not None:  # RFC 5819 §2
        assert s.user is not None
        record = await s.ctx.folders.get(s.user.id, folder.name, counts=True)
        await _status_line(s, record, req.status_items)


def _wants_subscribed(req: ListRequest) -> bool:
    return "SUBSCRIBED" in req.select or "SUBSCRIBED" in req.returns


@command("STATUS", AUTHED)
async def status_(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    req = parse_status(args)
    assert s.user is not None
    record = await s.ctx.folders.get(s.user.id, s.mailbox_name(req.mailbox), counts=True)
    await _status_line(s, record, req.items)
    return Done(text="STATUS completed")


async def _status_line(s: ImapSession, record: MailboxRecord, items: tuple[str, ...]) -> None:
    """``* STATUS name (MESSAGES n ...)`` (RFC 3501 §7.2.4, RFC 7162 §3.1.6, RFC 8438)."""
    values = {
        "MESSAGES": record.messages,
        "UIDNEXT": record.uidnext,
        "UIDVALIDITY": record.uidvalidity,
        "UNSEEN": record.unseen,
        "HIGHESTMODSEQ": record.highestmodseq,
        "SIZE": record.size,
    }
    if "RECENT" in items:
        values["RECENT"] = await s.ctx.folders.recent(record.id)
    if "HIGHESTMODSEQ" in items:
        s.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    flat: list[Atom | int] = []
    for item in items:
        flat += [Atom(item), values[item]]
    s.write(untagged(b"STATUS", encode_mailbox(record.name), encode_list(flat)))
